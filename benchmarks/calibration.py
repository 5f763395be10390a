"""Calibration of the verdict's interval: coverage, false positives and power on simulated studies.

    .venv/bin/python benchmarks/calibration.py --studies 10000 --out benchmarks/results/calibration-DATE.txt
    .venv/bin/python benchmarks/calibration.py --quick                  # 200 studies per cell; ~1 min per 1000, 2 cores

A study is simulated from a per-image model, with no training: image i has a difficulty z_i (logit) shared by
both models and a model x image effect w_i shared by every replicate; each replicate j has its own seed effect per
model (a_jR, a_jC) and, in k-fold, its own split effect g_j; a holdout study has ONE split effect g for all of its
replicates (its one fixed split). Model M is correct on image i in replicate j with probability
expit(z_i +/- (w_i + g + delta_logit)/2 + a_jM) (+ for the ResNet, - for the CNN), a Bernoulli draw. The target is
the population difference E[p_R - p_C] over images, seeds and splits (exactly 0 at delta_logit = 0 by symmetry).

Per scenario and number of replicates it prints, side by side:
    old       the interval reslab's verdict read before statistics.design (`old_interval` below: sd^2/n + se_test^2
              on n-1 df; se_test is the image-resampling standard error in its plug-in form, the bootstrap's limit)
              and the MDE it printed (`old_mde`: t-based, training spread only), on holdout studies;
    holdout   `design_interval(d, "holdout")`, crossed seed x image mean squares, Satterthwaite df;
    kfold     `design_interval(d, "kfold", folds=...)`, the k-fold variance components, on k-fold studies
              (J replicates = repeats x folds: 3 = 1x3, 5 = 1x5, 10 = 2x5; each tests its fold of the N images);
    kfold NB  the same studies with Nadeau & Bengio's (2003) corrected resampled t (method="corrected_t").
Columns: coverage of the nominal interval and false-positive rate at delta = 0; the median printed MDE at
delta = 0; then, in studies simulated at a true difference equal to that MDE, the coverage and the power (the
share whose interval lies above 0; 0.80 is what the MDE promises).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import optimize, stats
from scipy.special import expit

from reslab.statistics.design import design_interval, minimum_detectable_difference

CONFIDENCE, POWER = 0.95, 0.8
MEAN_LOGIT, SD_DIFFICULTY = 2.2, 1.5  # accuracies about 0.85-0.9, as on the built-in set
REPLICATES = (3, 5, 10)
KFOLD_LAYOUT = {3: (1, 3), 5: (1, 5), 10: (2, 5)}  # J replicates -> (repeats, folds)
METHODS = ("old", "holdout", "kfold", "kfold NB")
HOLDOUT_METHODS = ("old", "holdout")  # read holdout studies: one fixed split each
MDE_STUDIES = 200  # studies whose MDE is computed (a noncentral-t root each) for the median


def old_interval(differences: np.ndarray, se_test: float, confidence: float) -> tuple[float, float]:
    """The verdict's interval before statistics.design: mean +/- t_{n-1} sqrt(sd^2/n + se_test^2), which counts the
    per-image noise twice (inside sd and again in se_test) on the replicates' n - 1 df."""
    n, mean = differences.size, float(differences.mean())
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * float(np.sqrt(differences.var(ddof=1) / n + se_test ** 2))
    return mean - half, mean + half


def old_mde(differences: np.ndarray, confidence: float, power: float) -> float:
    """The MDE printed before statistics.design: (t_{1-alpha/2, n-1} + t_{power, n-1}) sd / sqrt(n), the training
    spread alone (no test-image component)."""
    n = differences.size
    t_sum = stats.t.ppf(1 - (1 - confidence) / 2, n - 1) + stats.t.ppf(power, n - 1)
    return float(t_sum * differences.std(ddof=1) / np.sqrt(n))


@dataclass(frozen=True)
class Scenario:
    """One simulated world; the sds are on the logit scale."""

    name: str
    n_images: int
    sd_seed: float
    sd_model_image: float
    sd_split: float = 0.0


SCENARIOS = (
    Scenario("seed noise dominates", 500, sd_seed=0.25, sd_model_image=0.3),
    Scenario("model x image dominates", 500, sd_seed=0.05, sd_model_image=1.5),
    Scenario("split effect (seed noise + split sd 0.17)", 500, sd_seed=0.25, sd_model_image=0.3, sd_split=0.17),
    Scenario("small test set N = 60", 60, sd_seed=0.25, sd_model_image=0.8),
)


def _correct(rng, logit: np.ndarray) -> np.ndarray:
    return rng.random(logit.shape) < expit(logit)


def simulate_holdout(rng, sc: Scenario, n_seeds: int, n_studies: int, delta_logit: float) -> np.ndarray:
    """(studies, seeds, N) differences c_R - c_C of holdout studies: one test set and one split per study."""
    shape = (n_studies, 1, sc.n_images)
    z = MEAN_LOGIT + SD_DIFFICULTY * rng.standard_normal(shape)
    shift = sc.sd_model_image * rng.standard_normal(shape) + sc.sd_split * rng.standard_normal((n_studies, 1, 1))
    a_r, a_c = (sc.sd_seed * rng.standard_normal((n_studies, n_seeds, 1)) for _ in range(2))
    half = (shift + delta_logit) / 2
    return _correct(rng, z + half + a_r).astype(np.int8) - _correct(rng, z - half + a_c).astype(np.int8)


def simulate_kfold(rng, sc: Scenario, repeats: int, k: int, n_studies: int,
                   delta_logit: float) -> tuple[np.ndarray, np.ndarray]:
    """(d, folds), both (studies, repeats, N): repeated k-fold studies, a seed and a split effect per replicate."""
    big_n = sc.n_images
    z = MEAN_LOGIT + SD_DIFFICULTY * rng.standard_normal((n_studies, 1, big_n))
    w = sc.sd_model_image * rng.standard_normal((n_studies, 1, big_n))
    folds = rng.permuted(np.broadcast_to(np.arange(big_n) % k, (n_studies, repeats, big_n)), axis=2)
    replicate = folds + k * np.arange(repeats)[None, :, None]  # (studies, r, N): which replicate tests the cell
    per_rep = lambda sd: np.take_along_axis(sd * rng.standard_normal((n_studies, repeats * k)),  # noqa: E731
                                            replicate.reshape(n_studies, -1), axis=1).reshape(replicate.shape)
    a_r, a_c, g = per_rep(sc.sd_seed), per_rep(sc.sd_seed), per_rep(sc.sd_split)
    half = (w + g + delta_logit) / 2
    d = _correct(rng, z + half + a_r).astype(np.int8) - _correct(rng, z - half + a_c).astype(np.int8)
    return d, folds


def true_difference(sc: Scenario, delta_logit: float, draws: int = 400_000) -> float:
    """E[p_R - p_C] over images, seeds and splits, by Monte Carlo with fixed draws (smooth in delta_logit)."""
    rng = np.random.default_rng(12345)
    z, w, a_r, a_c, g = rng.standard_normal((5, draws))
    z = MEAN_LOGIT + SD_DIFFICULTY * z
    half = (sc.sd_model_image * w + sc.sd_split * g + delta_logit) / 2
    return float((expit(z + half + sc.sd_seed * a_r) - expit(z - half + sc.sd_seed * a_c)).mean())


def logit_shift_for(sc: Scenario, target: float) -> float:
    """delta_logit whose true difference is `target` (> 0)."""
    return float(optimize.brentq(lambda x: true_difference(sc, x) - target, 0.0, 8.0, xtol=1e-5))


def intervals(method: str, d: np.ndarray, folds: np.ndarray | None, n_mde: int) -> tuple[np.ndarray, ...]:
    """(lo, hi, mde) per study; mde is computed for the first n_mde studies only (NaN after)."""
    n = d.shape[0]
    lo, hi, mde = np.empty(n), np.empty(n), np.full(n, np.nan)
    for s in range(n):
        ds = d[s].astype(np.float64)
        if method == "old":
            per_image = ds.mean(axis=0)
            se_test = float(np.sqrt(((per_image - per_image.mean()) ** 2).sum())) / ds.shape[1]
            lo[s], hi[s] = old_interval(ds.mean(axis=1), se_test, CONFIDENCE)
            if s < n_mde:
                mde[s] = old_mde(ds.mean(axis=1), CONFIDENCE, POWER)
            continue
        if method == "holdout":
            r = design_interval(ds, "holdout", confidence=CONFIDENCE)
        else:
            r = design_interval(ds, "kfold", folds=folds[s], confidence=CONFIDENCE,
                                method="corrected_t" if method == "kfold NB" else "components")
        lo[s], hi[s] = r.lo, r.hi
        if s < n_mde:
            mde[s] = minimum_detectable_difference(r.se, r.df, confidence=CONFIDENCE, power=POWER)
    return lo, hi, mde


def simulate(rng, method: str, sc: Scenario, n_rep: int, n_studies: int, delta_logit: float):
    if method in HOLDOUT_METHODS:
        return simulate_holdout(rng, sc, n_rep, n_studies, delta_logit), None
    return simulate_kfold(rng, sc, *KFOLD_LAYOUT[n_rep], n_studies, delta_logit)


def calibrate_cell(rng, sc: Scenario, n_rep: int, n_studies: int) -> dict:
    """{method: {"cov0", "fp0", "mde", "cov1", "power"}} for one scenario and number of replicates."""
    out = {}
    null = {"holdout": simulate(rng, "holdout", sc, n_rep, n_studies, 0.0),
            "kfold": simulate(rng, "kfold", sc, n_rep, n_studies, 0.0)}
    for method in METHODS:
        d, folds = null["holdout" if method in HOLDOUT_METHODS else "kfold"]
        lo, hi, mde = intervals(method, d, folds, min(MDE_STUDIES, n_studies))
        med = float(np.nanmedian(mde))
        cell = {"cov0": float(np.mean((lo <= 0) & (hi >= 0))), "fp0": float(np.mean((lo > 0) | (hi < 0))),
                "mde": med}
        if med > 0:
            d1, folds1 = simulate(rng, method, sc, n_rep, n_studies, logit_shift_for(sc, med))
            lo1, hi1, _ = intervals(method, d1, folds1, 0)
            cell.update(cov1=float(np.mean((lo1 <= med) & (hi1 >= med))), power=float(np.mean(lo1 > 0)))
        else:
            cell.update(cov1=float("nan"), power=float("nan"))
        out[method] = cell
    return out


def _within(cell: dict) -> bool:
    return 0.93 <= cell["cov0"] <= 0.97 and cell["fp0"] <= 0.06 and (
        not np.isfinite(cell["cov1"]) or 0.93 <= cell["cov1"] <= 0.97)


def _claimed(method: str, sc: Scenario) -> bool:
    """Whether `method` claims to cover `sc`: an interval read on holdout studies does not claim a split effect."""
    return not (method in HOLDOUT_METHODS and sc.sd_split > 0)


def report(results: dict, n_studies: int, seed: int, seconds: float) -> str:
    mc = np.sqrt(0.95 * 0.05 / n_studies)
    lines = [
        f"# benchmarks/calibration.py --studies {n_studies} --seed {seed}: nominal {CONFIDENCE:g} intervals, "
        f"power {POWER:g}",
        f"# Monte Carlo error (1 sd) of a coverage near 0.95: +/- {mc:.4f}; of a rate near 0.05: the same; "
        f"of a power near 0.8: +/- {np.sqrt(0.16 / n_studies):.4f}. MDE = median over the first "
        f"{min(MDE_STUDIES, n_studies)} null studies.",
        f"# difficulty logit ~ N({MEAN_LOGIT}, {SD_DIFFICULTY}); k-fold layouts (J: repeats x folds): "
        + ", ".join(f"{j}: {r}x{k}" for j, (r, k) in KFOLD_LAYOUT.items()),
        "# cov0/fp0: coverage and false positives at delta = 0; cov1/power: at delta = that method's MDE. "
        "'*' marks a cell outside cov [0.93, 0.97] or fp0 > 0.06.",
    ]
    header = f"{'J':>3}  " + "  ".join(f"{m:<34}" for m in METHODS)
    sub = f"{'':>3}  " + "  ".join(f"{'cov0   fp0    MDE    cov1   power':<34}" for _ in METHODS)
    for sc in SCENARIOS:
        lines += ["", f"## {sc.name}: N = {sc.n_images}, sd seed {sc.sd_seed}, sd model x image "
                      f"{sc.sd_model_image}, sd split {sc.sd_split}", header, sub]
        for n_rep in REPLICATES:
            cells = results[sc.name][n_rep]
            row = [f"{c['cov0']:.3f}  {c['fp0']:.3f}  {c['mde']:.4f} {c['cov1']:.3f}  {c['power']:.3f}"
                   + ("*" if not _within(c) else " ") for c in (cells[m] for m in METHODS)]
            lines.append(f"{n_rep:>3}  " + "  ".join(f"{r:<34}" for r in row))
    lines += ["", "# Within the target in every scenario it claims (coverage in [0.93, 0.97] at delta = 0 and at "
                  "the MDE, fp0 <= 0.06):"]
    for m in METHODS:
        bad = {claimed: [f"{sc.name} J={n}" for sc in SCENARIOS for n in REPLICATES
                         if _claimed(m, sc) == claimed and not _within(results[sc.name][n][m])]
               for claimed in (True, False)}
        lines.append(f"#   {m:<9} " + ("yes" if not bad[True] else "no: " + "; ".join(bad[True]))
                     + ("" if not bad[False] else "; outside, not claimed: " + "; ".join(bad[False])))
    lines += [
        "# A holdout study has one fixed split: its split effect is a bias shared by every seed and image of the",
        "# study, which no interval over seeds and images can cover (the split-effect rows of 'old' and 'holdout').",
        "# k-fold gives every replicate its own split, so the split effect becomes replicate variance it covers.",
        f"# {seconds:.0f} s",
    ]
    return "\n".join(lines)


def run(n_studies: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {sc.name: {n: calibrate_cell(rng, sc, n, n_studies) for n in REPLICATES} for sc in SCENARIOS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", type=int, default=1000, help="simulated studies per cell (default 1000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="200 studies per cell")
    ap.add_argument("--out", type=Path, default=None, help="also write the output to this file")
    args = ap.parse_args()
    n_studies = 200 if args.quick else args.studies
    start = time.perf_counter()
    text = report(run(n_studies, args.seed), n_studies, args.seed, time.perf_counter() - start)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
