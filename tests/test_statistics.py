"""Tests for reslab.statistics: expected values worked out by hand, and checks against scipy."""

import math

import numpy as np
import pytest
from scipy import stats

from reslab import statistics as st
from reslab.statistics import (
    VERDICT_RULE,
    accuracy_ci,
    classification_report,
    compare_replicates,
    comparison_verdict,
    confusion_matrix,
    hierarchical_bootstrap_diff,
    mcnemar_exact,
    design_interval,
    improvement_probability,
    paired_bootstrap_diff,
    replicate_mcnemar,
    replicate_summary,
    sign_count,
)

# Hand example shared by the confusion-matrix and report tests.
Y_TRUE = np.array([0, 0, 0, 1, 1, 2])
Y_PRED = np.array([0, 1, 0, 1, 1, 0])


def test_confusion_matrix_hand_example():
    cm = confusion_matrix(Y_TRUE, Y_PRED, 3)
    expected = np.array(
        [
            [2, 1, 0],
            [0, 2, 0],
            [1, 0, 0],
        ]
    )
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, expected)


def test_confusion_matrix_keeps_unused_classes():
    cm = confusion_matrix(np.array([0, 0]), np.array([0, 0]), 4)
    assert cm.shape == (4, 4)
    assert cm[0, 0] == 2 and cm.sum() == 2


def test_classification_report_hand_example():
    rep = classification_report(Y_TRUE, Y_PRED, ["cat", "dog", "frog"])
    # cat: tp=2, predicted 3, support 3 -> P=2/3, R=2/3, F1=2/3
    # dog: tp=2, predicted 3, support 2 -> P=2/3, R=1,   F1=0.8
    # frog: never predicted -> P=0 (zero_division=0), R=0, F1=0
    assert rep["accuracy"] == pytest.approx(4 / 6)
    pc = rep["per_class"]
    assert pc["cat"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert pc["dog"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert pc["frog"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert isinstance(pc["frog"]["support"], int)
    assert rep["macro_precision"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert rep["macro_recall"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert rep["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 0) / 3)


def test_classification_report_perfect():
    y = np.array([0, 1, 2, 1])
    rep = classification_report(y, y, ["a", "b", "c"])
    assert rep["accuracy"] == 1.0
    assert rep["macro_f1"] == 1.0


def _pair(n, acc_a, acc_b, seed=1):
    rng = np.random.default_rng(seed)
    return rng.random(n) < acc_a, rng.random(n) < acc_b


def test_bootstrap_identical_predictions_zero():
    a, _ = _pair(500, 0.7, 0.7)
    res = paired_bootstrap_diff(a, a.copy(), n_resamples=500)
    assert res["diff"] == 0.0
    assert res["ci_low"] == 0.0 and res["ci_high"] == 0.0
    assert res["n_resamples"] == 500 and res["confidence"] == 0.95


def test_bootstrap_b_better_excludes_zero():
    rng = np.random.default_rng(3)
    a = rng.random(2000) < 0.7
    # b is right wherever a is, and also on ~half of a's errors.
    b = a | (rng.random(2000) < 0.5)
    res = paired_bootstrap_diff(a, b)
    assert res["diff"] == pytest.approx(b.mean() - a.mean())
    assert res["diff"] > 0
    assert res["ci_low"] > 0


def test_bootstrap_accepts_int_01():
    a = np.array([1, 0, 1, 1])
    b = np.array([1, 1, 1, 1])
    res = paired_bootstrap_diff(a, b, n_resamples=200)
    assert res["diff"] == pytest.approx(0.25)


def test_mcnemar_known_case():
    # b = 0 (a-only), c = 10 (b-only): two-sided exact p = 2 * 0.5**10.
    a = np.array([False] * 10 + [True] * 5)
    b = np.array([True] * 10 + [True] * 5)
    res = mcnemar_exact(a, b)
    assert res["n_a_only"] == 0 and res["n_b_only"] == 10
    assert res["p_value"] == pytest.approx(2 * 0.5**10)


def test_mcnemar_symmetric():
    a, b = _pair(200, 0.6, 0.7, seed=4)
    r_ab = mcnemar_exact(a, b)
    r_ba = mcnemar_exact(b, a)
    assert r_ab["n_a_only"] == r_ba["n_b_only"]
    assert r_ab["n_b_only"] == r_ba["n_a_only"]
    assert r_ab["p_value"] == pytest.approx(r_ba["p_value"])


def test_mcnemar_no_discordance():
    a = np.array([True, False, True])
    res = mcnemar_exact(a, a.copy())
    assert res == {"n_a_only": 0, "n_b_only": 0, "p_value": 1.0}


def test_mcnemar_balanced_discordance_is_one():
    # b = c = 3: the observation is the mode of Binomial(6, 0.5) -> p = 1.
    a = np.array([True] * 3 + [False] * 3)
    res = mcnemar_exact(a, ~a)
    assert res["p_value"] == pytest.approx(1.0)


def test_wilson_known_value():
    correct = np.array([True] * 8 + [False] * 2)
    low, high = accuracy_ci(correct)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)


def test_wilson_extremes_stay_in_unit_interval():
    low, high = accuracy_ci(np.ones(20, dtype=bool))
    assert high == pytest.approx(1.0) and 0.8 < low < 1.0
    low, high = accuracy_ci(np.zeros(20, dtype=bool))
    assert low == pytest.approx(0.0) and 0.0 < high < 0.2
    # 0.99 is wider than 0.95.
    l95, h95 = accuracy_ci(np.array([True] * 8 + [False] * 2), 0.95)
    l99, h99 = accuracy_ci(np.array([True] * 8 + [False] * 2), 0.99)
    assert l99 < l95 and h99 > h95


@pytest.mark.parametrize("k, n, conf", [(8, 10, 0.95), (0, 7, 0.9), (599, 600, 0.99), (301, 600, 0.95)])
def test_wilson_matches_the_textbook_formula(k, n, conf):
    # Wilson (1927): (p + z^2/2n +/- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)
    p, z = k / n, stats.norm.ppf(0.5 + conf / 2)
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low, high = accuracy_ci(np.arange(n) < k, conf)
    assert (low, high) == pytest.approx(((centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: confusion_matrix(np.array([0, 1]), np.array([0]), 2), "same length"),
        (lambda: confusion_matrix(np.array([]), np.array([]), 2), "non-empty"),
        (lambda: confusion_matrix(np.zeros((2, 2), int), np.zeros((2, 2), int), 2), "1-D"),
        (lambda: confusion_matrix(np.array([0, 2]), np.array([0, 1]), 2), r"\[0, 2\)"),
        (lambda: classification_report(np.array([0]), np.array([0]), []), "class_names"),
        (lambda: paired_bootstrap_diff(np.array([True]), np.array([True, False])), "same length"),
        (lambda: paired_bootstrap_diff(np.array([], bool), np.array([], bool)), "non-empty"),
        (lambda: paired_bootstrap_diff(np.array([True]), np.array([True]), confidence=1.5), "confidence"),
        (lambda: paired_bootstrap_diff(np.array([True]), np.array([True]), n_resamples=0), "n_resamples"),
        (lambda: paired_bootstrap_diff(np.array([0, 2]), np.array([1, 1])), "boolean"),
        (lambda: mcnemar_exact(np.array([True, False]), np.array([True])), "same length"),
        (lambda: mcnemar_exact(np.ones((2, 2), bool), np.ones((2, 2), bool)), "1-D"),
        (lambda: accuracy_ci(np.array([], bool)), "non-empty"),
        (lambda: accuracy_ci(np.array([True]), confidence=0.0), "confidence"),
        (lambda: hierarchical_bootstrap_diff(np.ones(3, bool), np.ones(3, bool)), "2-D"),
        (lambda: hierarchical_bootstrap_diff(np.ones((2, 3), bool), np.ones((3, 3), bool)), "same shape"),
        (lambda: hierarchical_bootstrap_diff(np.ones((2, 3)), np.ones((2, 3)) * 2), "boolean"),
        (lambda: hierarchical_bootstrap_diff(np.ones((2, 3), bool), np.ones((2, 3), bool), levels="x"), "levels"),
        (lambda: improvement_probability([0.5, float("nan")], [0.5, 0.6]), "finite"),
        (lambda: replicate_summary([0.5, float("nan")]), "finite"),
    ],
)
def test_invalid_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---- paired bootstrap: the CI's width against scipy and the analytic standard error ----

def _ci(res):
    return res["ci_low"], res["ci_high"]


def _width(lo_hi):
    return lo_hi[1] - lo_hi[0]


def _analytic_half_width(a, b, conf=0.95):
    """z * SE of a paired difference of proportions: SE^2 = (p01 + p10 - (p01 - p10)^2) / n."""
    p01, p10 = np.mean(~a & b), np.mean(a & ~b)
    return stats.norm.ppf(0.5 + conf / 2) * math.sqrt((p01 + p10 - (p01 - p10) ** 2) / a.size)


def test_bootstrap_ci_width_matches_scipy_paired_and_the_analytic_se():
    a, b = _pair(600, 0.72, 0.78, seed=9)
    ours = paired_bootstrap_diff(a, b, n_resamples=5000, seed=1)
    ref = stats.bootstrap((b.astype(float), a.astype(float)), lambda x, y, axis: x.mean(axis) - y.mean(axis),
                          paired=True, vectorized=True, n_resamples=5000, method="percentile",
                          confidence_level=0.95, rng=np.random.default_rng(2)).confidence_interval
    width = _width(_ci(ours))
    assert width == pytest.approx(_width(ref), rel=0.08)
    assert width == pytest.approx(2 * _analytic_half_width(a, b), rel=0.08)
    assert (ours["ci_low"] + ours["ci_high"]) / 2 == pytest.approx(ours["diff"], abs=0.01)


# ---- replicated comparison: summaries, two-level bootstrap, probability of improvement, verdict ----

def _replicates(r=10, n=600, spread=0.06, acc_a=0.75, acc_b=0.78, seed=0):
    """(R, N) correctness matrices whose per-replicate accuracy varies by `spread` (training variance)."""
    rng = np.random.default_rng(seed)
    skill = rng.normal(0, spread, size=(2, r, 1))
    u = rng.random((r, n))  # shared per-image difficulty couples the two models' errors
    return u < acc_a + skill[0], np.where(rng.random((r, n)) < 0.5, u, rng.random((r, n))) < acc_b + skill[1]


def test_replicate_summary_matches_scipy_t_interval():
    x = np.array([0.71, 0.74, 0.69, 0.80, 0.77])
    s = replicate_summary(x, confidence=0.9)
    ci = stats.ttest_1samp(x, 0.0).confidence_interval(0.9)
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert s == pytest.approx({"n": 5, "mean": x.mean(), "sd": x.std(ddof=1), "ci_low": ci.low,
                               "ci_high": ci.high, "min": 0.69, "max": 0.80})


def test_replicate_summary_one_replicate_and_zero_spread():
    one = replicate_summary([0.8])
    assert one["mean"] == 0.8 and one["min"] == one["max"] == 0.8
    assert math.isnan(one["sd"]) and math.isnan(one["ci_low"]) and math.isnan(one["ci_high"])
    flat = replicate_summary([0.5, 0.5, 0.5])
    assert (flat["sd"], flat["ci_low"], flat["ci_high"]) == (0.0, 0.5, 0.5)


@pytest.mark.parametrize("levels", st.BOOTSTRAP_LEVELS)
def test_hierarchical_bootstrap_known_answers(levels):
    a, _ = _replicates(r=4, n=50)
    same = hierarchical_bootstrap_diff(a, a.copy(), n_resamples=300, levels=levels)
    assert (same["diff"], same["ci_low"], same["ci_high"]) == (0.0, 0.0, 0.0)
    wrong = np.zeros((4, 50), bool)
    all_b = hierarchical_bootstrap_diff(wrong, ~wrong, n_resamples=300, levels=levels)
    assert (all_b["diff"], all_b["ci_low"], all_b["ci_high"]) == (1.0, 1.0, 1.0)
    assert (all_b["n_replicates"], all_b["n_test"], all_b["levels"]) == (4, 50, levels)


def test_hierarchical_bootstrap_fills_every_chunk(monkeypatch):
    monkeypatch.setattr(st.bootstrap, "_CHUNK_ELEMENTS", 50)  # 5 resamples per chunk for N = 10
    wrong = np.zeros((3, 10), bool)
    res = hierarchical_bootstrap_diff(wrong, ~wrong, n_resamples=23)
    assert (res["ci_low"], res["ci_high"], res["se"]) == (1.0, 1.0, 0.0)


def test_hierarchical_bootstrap_images_level_is_the_paired_bootstrap():
    a, b = _pair(600, 0.7, 0.76, seed=5)
    one = hierarchical_bootstrap_diff(a[None], b[None], n_resamples=5000, levels="images")
    single = paired_bootstrap_diff(a, b, n_resamples=5000)
    assert one["diff"] == single["diff"]
    assert _width(_ci(one)) == pytest.approx(2 * _analytic_half_width(a, b), rel=0.08)
    assert _width(_ci(one)) == pytest.approx(
        _width(_ci(single)), rel=0.08)


def test_hierarchical_bootstrap_replicates_level_matches_scipy_on_the_replicate_differences():
    a, b = _replicates(r=12, spread=0.05)
    res = hierarchical_bootstrap_diff(a, b, n_resamples=5000, levels="replicates")
    diffs = b.mean(1) - a.mean(1)
    ref = stats.bootstrap((diffs,), np.mean, n_resamples=5000, method="percentile",
                          rng=np.random.default_rng(0)).confidence_interval
    assert res["diff"] == pytest.approx(diffs.mean())
    assert _width(_ci(res)) == pytest.approx(_width(ref), rel=0.1)


def test_two_level_ci_is_wider_than_test_sampling_alone_only_when_replicates_vary():
    a, b = _replicates(spread=0.06)
    both = hierarchical_bootstrap_diff(a, b, n_resamples=4000)
    images = hierarchical_bootstrap_diff(a, b, n_resamples=4000, levels="images")
    assert both["diff"] == images["diff"] == pytest.approx(np.mean(b.mean(1) - a.mean(1)))
    assert both["ci_low"] < both["diff"] < both["ci_high"]
    assert _width(_ci(both)) > 1.5 * _width(_ci(images))
    # Identical replicates: no training variance, so both levels give the test-sampling interval.
    a1, b1 = np.repeat(a[:1], 10, 0), np.repeat(b[:1], 10, 0)
    w_both = _width(_ci(hierarchical_bootstrap_diff(a1, b1, n_resamples=4000)))
    w_images = _width(_ci(hierarchical_bootstrap_diff(a1, b1, n_resamples=4000, levels="images")))
    assert w_both == pytest.approx(w_images, rel=0.08)


def test_replicated_statistics_are_deterministic_under_the_seed():
    a, b = _replicates(r=5, n=200)
    acc_a, acc_b = a.mean(1), b.mean(1)
    for fn, args in ((paired_bootstrap_diff, (a[0], b[0])), (hierarchical_bootstrap_diff, (a, b))):
        r1, r2, r3 = fn(*args, n_resamples=500, seed=3), fn(*args, n_resamples=500, seed=3), \
            fn(*args, n_resamples=500, seed=4)
        assert r1 == r2
        assert _ci(r1) != _ci(r3)
    assert compare_replicates(a, b, n_resamples=200, seed=1) == compare_replicates(a, b, n_resamples=200, seed=1)


def test_probability_of_improvement_is_mann_whitney_u_over_nm():
    rng = np.random.default_rng(4)
    acc_a, acc_b = rng.integers(70, 80, 9) / 100, rng.integers(72, 82, 9) / 100  # with ties
    res = improvement_probability(acc_a, acc_b)
    u = stats.mannwhitneyu(acc_b, acc_a, alternative="two-sided").statistic
    assert res["probability"] == pytest.approx(u / 81)
    assert 0.0 <= res["ci_low"] < res["probability"] < res["ci_high"] <= 1.0
    assert res["p_method"] == "asymptotic"  # ties: no exact null distribution
    loss = improvement_probability(-acc_a, -acc_b, higher_is_better=False)
    assert loss["probability"] == pytest.approx(res["probability"])


def test_probability_of_improvement_known_answers_and_no_degenerate_interval():
    a, b = np.array([0.6, 0.7, 0.65]), np.array([0.8, 0.9, 0.85])
    separated = improvement_probability(a, b)
    assert separated["probability"] == 1.0 and separated["ci_high"] == 1.0
    assert separated["ci_low"] < 0.7  # complete separation of 3 vs 3 is weak evidence, not certainty
    assert separated["p_value"] == pytest.approx(0.1)  # exact two-sided Mann-Whitney: 2 / C(6, 3)
    assert improvement_probability(b, a)["probability"] == 0.0
    assert improvement_probability(a, a)["probability"] == 0.5
    # S(x, y) = 1/2 on ties: b beats a in 2 pairs, ties in 2 of 4 -> (2 + 1) / 4
    assert improvement_probability([0.5, 0.7], [0.5, 0.7])["probability"] == 0.5
    assert improvement_probability([0.5, 0.5], [0.5, 0.7])["probability"] == 0.75


def test_sign_count_and_per_replicate_mcnemar():
    assert sign_count([0.7, 0.8, 0.6, 0.5], [0.75, 0.8, 0.55, 0.9]) == \
        {"n": 4, "n_b_better": 2, "n_a_better": 1, "n_ties": 1}
    assert sign_count([1.0, 2.0], [0.5, 2.5], higher_is_better=False)["n_b_better"] == 1
    a, b = _replicates(r=3, n=100)
    rows = replicate_mcnemar(a, b)
    assert [r["replicate"] for r in rows] == [0, 1, 2]
    assert all(rows[k] == {"replicate": k, **mcnemar_exact(a[k], b[k])} for k in range(3))


def _interval(lo: float, hi: float, n: int = 4) -> st.DesignInterval:
    """A holdout interval with the given bounds (estimate at their middle), for the rule's boundary cases."""
    est = (lo + hi) / 2
    return st.DesignInterval(design="holdout", method="components", estimate=est, se=max((hi - lo) / 4, 1e-12),
                             df=3.0, lo=lo, hi=hi, confidence=0.95,
                             components={"replicate": 1e-4, "image": 1e-4, "residual": 0.3},
                             n_rows=n, n_folds=1, n_images=300, covers="test")


@pytest.mark.parametrize("ci, label, winner, leans", [
    ((0.0, 0.05), "not established at 95 %", None, "ResNet"),   # touches 0
    ((-0.05, 0.0), "not established at 95 %", None, "CNN"),  # touches 0
    ((-0.01, 0.03), "not established at 95 %", None, "ResNet"),
    ((1e-9, 0.05), "ResNet better", "ResNet", "ResNet"),
    ((-0.05, -1e-9), "CNN better", "CNN", "CNN"),
])
def test_verdict_rule_at_its_boundaries(ci, label, winner, leans):
    v = comparison_verdict(_interval(*ci), name_a="CNN", name_b="ResNet")
    assert (v["label"], v["winner"], v["leans"], v["n_replicates"]) == (label, winner, leans, 4)
    assert v["rule"] == VERDICT_RULE and "touches 0" in VERDICT_RULE
    assert v["mean_difference"] == pytest.approx(sum(ci) / 2)
    assert f"{v['minimum_detectable_difference']:.3f}" in v["sentence"]
    assert ("includes 0" in v["sentence"]) == (winner is None)
    assert (f"leans towards {leans}" in v["sentence"]) == (winner is None)


def test_verdict_with_one_replicate_and_with_zero_spread():
    rng = np.random.default_rng(0)
    one = compare_replicates(rng.random((1, 200)) < 0.7, rng.random((1, 200)) < 0.7, n_resamples=200)["verdict"]
    assert one["label"] == "not established at 95 %" and math.isnan(one["minimum_detectable_difference"])
    assert "no estimate of training variance" in one["sentence"]
    same = np.zeros((3, 50), bool)
    flat = compare_replicates(same, ~same, n_resamples=200)["verdict"]
    assert flat["label"] == "B better" and flat["minimum_detectable_difference"] == 0.0
    assert "do not vary" in flat["sentence"]
    assert "99 %" in st.verdict_rule(0.99)


def test_the_mde_is_the_verdicts_own_test_and_says_what_would_shrink_it():
    """At the printed MDE the interval's own two-sided t-test has the stated power (noncentral t), and the
    sentence names the floor the test images set and the cheaper way down."""
    a, b = _replicates(r=5, n=300)
    res = compare_replicates(a, b, n_resamples=200)
    interval, v = res["interval"], res["verdict"]
    crit = stats.t.ppf(0.975, interval["df"])
    nc = v["minimum_detectable_difference"] / interval["se"]
    assert stats.nct.sf(crit, interval["df"], nc) + stats.nct.cdf(-crit, interval["df"], nc) == \
        pytest.approx(0.8, abs=1e-6)
    assert 0 <= v["mde"]["floor"] <= v["minimum_detectable_difference"]
    assert "would shrink it more" in v["sentence"]


def test_compare_replicates_assembles_consistent_results():
    a, b = _replicates(r=6, n=300)
    res = compare_replicates(a, b, name_a="CNN", name_b="ResNet", n_resamples=1000)
    diffs = b.mean(1) - a.mean(1)
    assert (res["n_replicates"], res["n_test"]) == (6, 300)
    assert res["differences"] == pytest.approx(diffs.tolist())
    assert res["bootstrap"]["diff"] == pytest.approx(diffs.mean()) == res["summary_difference"]["mean"]
    assert res["bootstrap"]["levels"] == "both" and res["bootstrap_test_only"]["levels"] == "images"
    assert res["summary_a"]["mean"] == pytest.approx(a.mean())
    assert res["sign_count"] == sign_count(a.mean(1), b.mean(1)) and len(res["mcnemar"]) == 6
    design = design_interval(b.astype(int) - a.astype(int), "holdout")
    assert (res["interval"]["ci_low"], res["interval"]["ci_high"]) == (design.lo, design.hi)
    assert res["verdict"] == comparison_verdict(design, name_a="CNN", name_b="ResNet")
    assert res["probability_of_improvement"] == improvement_probability(a.mean(1), b.mean(1))
