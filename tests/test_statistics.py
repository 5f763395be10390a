"""Tests for reslab.statistics; expected values are worked out by hand."""

import math

import numpy as np
import pytest

from reslab.statistics import (
    accuracy_ci,
    classification_report,
    confusion_matrix,
    mcnemar_exact,
    paired_bootstrap_diff,
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


def test_bootstrap_ci_contains_diff_and_is_ordered():
    a, b = _pair(300, 0.6, 0.65, seed=7)
    res = paired_bootstrap_diff(a, b, n_resamples=2000, confidence=0.9, seed=5)
    assert res["ci_low"] <= res["diff"] <= res["ci_high"]
    assert res["ci_low"] < res["ci_high"]


def test_bootstrap_deterministic_given_seed():
    a, b = _pair(400, 0.6, 0.65, seed=2)
    r1 = paired_bootstrap_diff(a, b, n_resamples=1000, seed=11)
    r2 = paired_bootstrap_diff(a, b, n_resamples=1000, seed=11)
    r3 = paired_bootstrap_diff(a, b, n_resamples=1000, seed=12)
    assert r1 == r2
    assert (r1["ci_low"], r1["ci_high"]) != (r3["ci_low"], r3["ci_high"])


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
    assert not math.isnan(l99)


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
    ],
)
def test_invalid_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
