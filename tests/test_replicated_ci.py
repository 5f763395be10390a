"""The verdict's interval: t over replicates plus shared test sampling, checked by formula and by coverage."""
import numpy as np
import pytest
from scipy import stats

from reslab.statistics import hierarchical_bootstrap_diff, replicated_diff_ci


def test_matches_the_t_formula():
    d = np.array([0.02, -0.01, 0.05, 0.03])
    ci = replicated_diff_ci(d, se_test=0.01, confidence=0.95)
    se = np.sqrt(d.var(ddof=1) / 4 + 0.01 ** 2)
    q = stats.t.ppf(0.975, 3)
    assert ci["diff"] == pytest.approx(d.mean())
    assert (ci["ci_low"], ci["ci_high"]) == pytest.approx((d.mean() - q * se, d.mean() + q * se))
    assert ci["df"] == 3 and "training variance" in ci["covers"]


def test_one_replicate_falls_back_to_test_sampling():
    ci = replicated_diff_ci([0.04], se_test=0.02)
    assert ci["df"] is None and ci["covers"] == "test-set sampling"
    assert (ci["ci_low"], ci["ci_high"]) == pytest.approx((0.04 - 1.959964 * 0.02, 0.04 + 1.959964 * 0.02))


def test_rejects_a_negative_standard_error():
    with pytest.raises(ValueError, match="se_test"):
        replicated_diff_ci([0.1, 0.2], se_test=-1)


def simulate(rng, n_rep=3, n_test=200, train_sd=0.06):
    """Two models whose per-replicate skill varies with the seed, on one shared test set; true difference 0."""
    difficulty = rng.uniform(0.2, 0.9, n_test)  # the shared test set: one draw per study
    skill = rng.normal(0, train_sd, (2, n_rep))  # training variance
    p = np.clip(difficulty[None, None, :] + skill[:, :, None], 0, 1)
    correct = rng.random((2, n_rep, n_test)) < p
    return correct[0], correct[1]


def test_coverage_with_three_replicates_beats_the_bootstrap():
    rng = np.random.default_rng(0)
    hits_t = hits_boot = 0
    trials = 200
    for k in range(trials):
        a, b = simulate(rng)
        d = b.mean(1) - a.mean(1)
        se_test = hierarchical_bootstrap_diff(a, b, levels="images", n_resamples=300, seed=k)["se"]
        ci = replicated_diff_ci(d, se_test)
        boot = hierarchical_bootstrap_diff(a, b, n_resamples=300, seed=k)
        hits_t += ci["ci_low"] <= 0 <= ci["ci_high"]
        hits_boot += boot["ci_low"] <= 0 <= boot["ci_high"]
    assert hits_t / trials >= 0.9  # nominal 95 %
    assert hits_boot / trials < hits_t / trials  # the two-level bootstrap under-covers with 3 replicates
