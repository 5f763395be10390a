"""The interval of the mean paired difference from a variance model of the study design, and its power.

Inputs are per-(replicate, image) paired differences ``d = correct_b - correct_a`` (values in {-1, 0, 1}):

* ``holdout``: one fixed test set of N images, n replicates (one training seed each); ``d`` is (n, N), row s is
  seed s, column i the same test image in every row.
* ``kfold``: repeated k-fold over a data set of N images, r repeats x k folds, each fold its own replicate (own seed,
  own train/val from the other folds); every image is tested once per repeat, so ``d`` is (r, N) and
  ``folds[r, i]`` names the fold (0..k-1) that tested image i in repeat r.

Both designs share one linear model (random effects, method of moments):

    d[cell] = delta + u[replicate of cell] + b[image of cell] + e[cell],
    Var(u) = s2_rep (training: seed, and the split in k-fold), Var(b) = s2_img (model x image effect: which images
    a data set happens to hold), Var(e) = s2_res (Bernoulli noise and replicate x image interaction).

The mean difference over all cells has Var(dbar) = v_rep * s2_rep + s2_img / N + s2_res / (R N), with R the rows of
``d`` and v_rep = sum over replicates of (cells of the replicate / cells)^2 (1/n for holdout, 1/(r k) for balanced
k-fold). The components come from mean squares (MS) whose expectations are linear in them; Var(dbar) is then a
linear combination sum_k c_k MS_k, with Satterthwaite's (1946) degrees of freedom
df = (sum_k c_k E_k)^2 / sum_k (c_k E_k)^2 / df_k (bounded below by the df of the least stable MS that enters
with a positive coefficient, see `_combine`), E_k the expected mean squares fitted at non-negative components
(Thompson 1962; equal to the observed MS_k unless a component estimate is negative). A component estimated below
zero is set to zero and the combination re-derived without it, but only where the unbiased total is not positive
(see `_combine`).

Holdout (two-way crossed random design without replication; Searle, Casella & McCulloch, "Variance Components",
1992, sec. 4.6): with MS_seed = N sum_s (dbar_s. - dbar)^2 / (n-1), MS_image = n sum_i (dbar_.i - dbar)^2 / (N-1)
and MS_resid the interaction mean square on (n-1)(N-1) df,

    E[MS_seed] = s2_res + N s2_rep,   E[MS_image] = s2_res + n s2_img,   E[MS_resid] = s2_res,

so Var(dbar) = s2_rep/n + s2_img/N + s2_res/(nN) = (MS_seed + MS_image - MS_resid) / (nN).

K-fold (derived the same way; replicates are nested in repeats, images are crossed with repeats): with
MS_within the pooled within-fold MS (rN - rk df), MS_fold = sum_r sum_f m_rf (dbar_rf - dbar_r)^2 / (rk - r)
and, for r >= 2, MS_image = r sum_i (dbar_.i - dbar)^2 / (N-1),

    E[MS_within] = s2_img + s2_res,   E[MS_fold] = s2_img + s2_res + m0 s2_rep,
    E[MS_image] = s2_res + r s2_img + g s2_rep,   g = (N - r N v_rep) / (N - 1),

m0 = sum_r (N - sum_f m_rf^2 / N) / (rk - r). With r == 1, s2_img and s2_res cannot be told apart (each image is
tested once), but Var(dbar) needs only their sum and reduces to MS_fold / N: the plain t over the k fold means.
The alternative made for overlapping training sets, Nadeau & Bengio's (2003) corrected resampled t over the J fold
differences, (1/J + n_test/n_train) S^2 on J-1 df (Bouckaert & Frank 2004 for repeated k-fold), is
``method="corrected_t"``; benchmarks/calibration.py compares the two.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, stats

from ._inputs import check_confidence

__all__ = ["DESIGNS", "KFOLD_METHODS", "DesignInterval", "design_interval", "minimum_detectable_difference",
           "mde_floor", "mde_options"]

DESIGNS = ("holdout", "kfold")
KFOLD_METHODS = ("components", "corrected_t")
COMPONENTS = ("replicate", "image", "residual")


@dataclass(frozen=True)
class DesignInterval:
    """The interval of the mean difference B - A and the variance model behind it.

    Attributes:
        design: "holdout" or "kfold"; method: "components" or "corrected_t".
        estimate, se, df, lo, hi: mean difference, its standard error, degrees of freedom, interval bounds.
        confidence: two-sided coverage of [lo, hi].
        components: per-cell variance components {"replicate", "image", "residual"} (NaN where not estimable;
            with one row of ``d`` "image" holds image + residual, which cannot be told apart).
        n_rows: seeds (holdout) or repeats (kfold); n_folds: 1 (holdout) or k; n_images: N.
        covers: what the interval covers, in words.
    """

    design: str
    method: str
    estimate: float
    se: float
    df: float
    lo: float
    hi: float
    confidence: float
    components: dict = field(compare=False)
    n_rows: int
    n_folds: int
    n_images: int
    covers: str


def _check_d(d) -> np.ndarray:
    arr = np.asarray(d, dtype=np.float64)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"d must be a non-empty 2-D array (replicates or repeats, images), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("d must be finite")
    return arr


def _check_folds(folds, shape: tuple[int, int]) -> tuple[np.ndarray, int]:
    f = np.asarray(folds)
    if f.shape != shape:
        raise ValueError(f"folds must have d's shape {shape} (repeats, images), got {f.shape}")
    if not np.issubdtype(f.dtype, np.integer) or f.min() < 0:
        raise ValueError("folds must hold non-negative integer fold indices")
    k = int(f.max()) + 1
    sizes = np.stack([np.bincount(row, minlength=k) for row in f])  # (r, k)
    if k < 2 or (sizes == 0).any():
        raise ValueError(f"folds must name k >= 2 folds, each non-empty in every repeat; got sizes {sizes.tolist()}")
    return f, k


def _holdout_model(n: int, big_n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, df, v): E[MS] = A @ components for MS (seed, image, resid); Var(dbar) = v @ components."""
    a = np.array([[big_n, 0, 1], [0, n, 1], [0, 0, 1]], dtype=np.float64)
    df = np.array([n - 1, big_n - 1, (n - 1) * (big_n - 1)], dtype=np.float64)
    return a, df, np.array([1 / n, 1 / big_n, 1 / (n * big_n)])


def _kfold_model(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, df, v) for MS (within, fold[, image]) of repeated k-fold with fold sizes `sizes` (r, k)."""
    r, k = sizes.shape
    big_n = int(sizes[0].sum())
    v_rep = float((sizes.astype(np.float64) ** 2).sum() / (r * big_n) ** 2)
    m0 = float((big_n - (sizes ** 2).sum(axis=1) / big_n).sum() / (r * k - r))
    rows = [[0.0, 1.0, 1.0], [m0, 1.0, 1.0]]
    df = [r * big_n - r * k, r * k - r]
    if r >= 2:
        rows.append([(big_n - r * big_n * v_rep) / (big_n - 1), float(r), 1.0])
        df.append(big_n - 1)
    return np.array(rows), np.array(df, dtype=np.float64), np.array([v_rep, 1 / big_n, 1 / (r * big_n)])


def _holdout_mean_squares(d: np.ndarray) -> np.ndarray:
    n, big_n = d.shape
    grand, rows, cols = d.mean(), d.mean(axis=1), d.mean(axis=0)
    ms_seed = big_n * ((rows - grand) ** 2).sum() / (n - 1)
    ms_image = n * ((cols - grand) ** 2).sum() / (big_n - 1)
    resid = d - rows[:, None] - cols[None, :] + grand
    return np.array([ms_seed, ms_image, (resid ** 2).sum() / ((n - 1) * (big_n - 1))])


def _kfold_mean_squares(d: np.ndarray, folds: np.ndarray, k: int) -> np.ndarray:
    r, big_n = d.shape
    ss_within = ss_fold = 0.0
    for row, f in zip(d, folds):
        m = np.bincount(f, minlength=k)
        means = np.bincount(f, weights=row, minlength=k) / m
        ss_within += ((row - means[f]) ** 2).sum()
        ss_fold += (m * (means - row.mean()) ** 2).sum()
    ms = [ss_within / (r * big_n - r * k), ss_fold / (r * k - r)]
    if r >= 2:
        ms.append(r * ((d.mean(axis=0) - d.mean()) ** 2).sum() / (big_n - 1))
    return np.array(ms)


def _restricted_components(a: np.ndarray, ms: np.ndarray, df: np.ndarray) -> np.ndarray:
    """Non-negative components whose expected mean squares A @ theta fit `ms`, by df-weighted least squares.

    A component estimated below zero is set to zero and the others refitted, until none is negative. MS whose
    expectations then coincide are pooled, weighted by their df: Thompson's (1962, "The problem of negative
    estimates of variance components", Ann. Math. Statist. 33) restricted estimate, e.g. MS_seed < MS_resid in a
    holdout gives s2_rep = 0 and s2_res = (SS_seed + SS_resid) / (df_seed + df_resid).
    """
    w = np.sqrt(df)
    kept = np.ones(a.shape[1], dtype=bool)
    while True:
        theta = np.zeros(a.shape[1])
        theta[kept] = np.linalg.lstsq(w[:, None] * a[:, kept], w * ms, rcond=None)[0]
        negative = kept & (theta < 0)
        negative[-1] = False  # the residual is a mean square itself, never negative
        if not negative.any():
            return np.maximum(theta, 0.0)
        kept &= ~negative


def _combine(a: np.ndarray, ms: np.ndarray, df: np.ndarray, v: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(Var(dbar), Satterthwaite df, components) from mean squares.

    The unbiased combination is kept whenever it is positive, even if a component estimate is negative (its
    MS then only corrects the others); only a non-positive total drops the negative components (set to zero)
    and re-derives the combination without them. The components reported, and the expected mean squares at which
    Satterthwaite's df is evaluated, are the restricted (non-negative) ones of `_restricted_components`.
    """
    kept = np.ones(a.shape[1], dtype=bool)
    w = np.sqrt(df)
    while True:
        theta = np.zeros(a.shape[1])
        theta[kept] = np.linalg.lstsq(a[:, kept], ms, rcond=None)[0]
        # c with c @ A[:, kept] = v[kept] (an unbiased linear combination of the MS for the kept model) and the
        # least sum c_k^2 / df_k: unique for the full model; without a dropped component, MS that now share an
        # expectation enter pooled by their df (the combination of least variance), not equally weighted
        c = w * np.linalg.lstsq((w[:, None] * a[:, kept]).T, v[kept], rcond=None)[0]
        var = float(c @ ms)
        negative = kept & (theta < 0)
        negative[-1] = False  # the residual is a mean square itself, never negative
        if var > 0 or not negative.any():
            break
        kept &= ~negative
    var = max(var, 0.0)
    theta = _restricted_components(a, ms, df)
    # Satterthwaite's (1946) df = E[sum c_k MS_k]^2 / sum (c_k E[MS_k])^2 / df_k needs the expected mean squares.
    # Plugging in the observed MS is poor when one enters with a negative coefficient (Gaylor & Hopper 1969,
    # Technometrics 11): with MS_seed below MS_resid in the holdout, the estimated variance and 1 / df shrink
    # together, so the interval is narrowest where it is too narrow already. The df are therefore evaluated at the
    # fitted E[MS] = A @ theta of the restricted components: the observed MS whenever no component estimate is
    # negative (A is square), and never an E[MS] below what its model says it must exceed (E[MS_seed] >= E[MS_resid]).
    expected = c * (a @ theta)
    denom = float((expected ** 2 / df).sum())
    dof = float(expected.sum()) ** 2 / denom if denom > 0 else float("inf")
    # A negative coefficient can drive Satterthwaite's df below that of every MS it adds (to ~0 when the
    # subtracted MS nearly cancels the sum); bound it by the least stable MS with a positive coefficient.
    positive = expected > 0
    if positive.any():
        dof = max(dof, float(df[positive].min()))
    return var, dof, theta


def _interval(design, method, mean, var, dof, confidence, components, n_rows, n_folds, big_n, covers):
    se = float(np.sqrt(var))
    q = float(stats.t.ppf((1 + confidence) / 2, dof)) if np.isfinite(dof) else float(
        stats.norm.ppf((1 + confidence) / 2))
    return DesignInterval(design=design, method=method, estimate=mean, se=se, df=float(dof), lo=mean - q * se,
                          hi=mean + q * se, confidence=float(confidence), components=components, n_rows=n_rows,
                          n_folds=n_folds, n_images=big_n, covers=covers)


def design_interval(d, design: str = "holdout", *, folds=None, method: str = "components",
                    test_train_ratio: float | None = None, confidence: float = 0.95) -> DesignInterval:
    """The interval of the mean paired difference B - A from the variance model of `design` (see the module doc).

    Args:
        d: (rows, N) per-cell differences correct_b - correct_a: rows are seeds (holdout) or repeats (kfold).
        design: "holdout" (one fixed test set) or "kfold" (repeated k-fold; needs `folds`).
        folds: kfold only: (r, N) integer fold (0..k-1) that tested image i in repeat r.
        method: kfold only: "components" (the variance model) or "corrected_t" (Nadeau & Bengio 2003).
        test_train_ratio: corrected_t only: n_test / n_train of one fold (default 1 / (k - 1)).
        confidence: two-sided coverage, in (0, 1).

    Returns:
        A `DesignInterval`. A holdout with one seed covers test-set sampling only (the seed's variance is not
        estimable) and says so in `covers`.
    """
    check_confidence(confidence)
    d = _check_d(d)
    rows, big_n = d.shape
    mean = float(d.mean())
    if design == "holdout":
        if folds is not None or method != "components":
            raise ValueError("folds and method='corrected_t' apply to design='kfold' only")
        if big_n < 2:
            raise ValueError(f"design='holdout' needs at least 2 test images, got {big_n}")
        if rows == 1:
            var = float(d.var(ddof=1)) / big_n
            comps = {"replicate": float("nan"), "image": var * big_n, "residual": float("nan")}
            return _interval(design, method, mean, var, big_n - 1, confidence, comps, 1, 1, big_n,
                             "test-set sampling only (one seed: training variance not estimable)")
        a, df, v = _holdout_model(rows, big_n)
        var, dof, theta = _combine(a, _holdout_mean_squares(d), df, v)
        return _interval(design, method, mean, var, dof, confidence, dict(zip(COMPONENTS, theta.tolist())),
                         rows, 1, big_n, "training variance and test-set sampling (the split is fixed)")
    if design != "kfold":
        raise ValueError(f"design must be one of {DESIGNS}, got {design!r}")
    if folds is None:
        raise ValueError("design='kfold' needs folds, the (repeats, images) fold index of every cell")
    if method not in KFOLD_METHODS:
        raise ValueError(f"method must be one of {KFOLD_METHODS}, got {method!r}")
    folds, k = _check_folds(folds, d.shape)
    covers = "training variance (seed and split) and test-set sampling"
    if method == "corrected_t":
        fold_d = np.concatenate([np.bincount(f, weights=row, minlength=k) / np.bincount(f, minlength=k)
                                 for row, f in zip(d, folds)])
        ratio = 1 / (k - 1) if test_train_ratio is None else float(test_train_ratio)
        if not ratio > 0:
            raise ValueError(f"test_train_ratio must be > 0, got {test_train_ratio}")
        j = fold_d.size
        var = (1 / j + ratio) * float(fold_d.var(ddof=1))
        comps = {"replicate": float(fold_d.var(ddof=1)), "image": float("nan"), "residual": float("nan")}
        return _interval(design, method, float(fold_d.mean()), var, j - 1, confidence, comps, rows, k, big_n,
                         covers)
    sizes = np.stack([np.bincount(f, minlength=k) for f in folds])
    a, df, v = _kfold_model(sizes)
    ms = _kfold_mean_squares(d, folds, k)
    if rows == 1:  # image and residual only enter as their sum: fit them as one component
        a, v = np.column_stack([a[:, 0], a[:, 1]]), v[:2]
    var, dof, theta = _combine(a, ms, df, v)
    comps = dict(zip(COMPONENTS, theta.tolist())) if rows >= 2 else {
        "replicate": float(theta[0]), "image": float(theta[1]), "residual": float("nan")}
    return _interval(design, method, mean, var, dof, confidence, comps, rows, k, big_n, covers)


def minimum_detectable_difference(se: float, df: float, *, confidence: float = 0.95, power: float = 0.8) -> float:
    """Smallest true difference that the two-sided t-test of level 1 - confidence detects with `power`.

    The test rejects when |estimate / se| > t_{(1+confidence)/2, df}; under a true difference delta, estimate / se
    is noncentral t with df degrees of freedom and noncentrality delta / se (scipy.stats.nct), both tails counted.

    Args:
        se: the interval's standard error (>= 0); df: its degrees of freedom (> 0, inf for the normal limit).
        confidence: two-sided 1 - alpha, in (0, 1). power: wanted power, in (alpha, 1).

    Returns:
        The difference, in the units of se (0.0 when se is 0).
    """
    check_confidence(confidence)
    if not (1 - confidence) < power < 1:
        raise ValueError(f"power must be in (1 - confidence, 1) = ({1 - confidence:g}, 1), got {power}")
    if not se >= 0 or not df > 0:
        raise ValueError(f"se must be >= 0 and df > 0, got se={se}, df={df}")
    if se == 0:
        return 0.0
    if not np.isfinite(df) or df > 1e6:
        z = stats.norm.ppf
        lam = optimize.brentq(lambda x: stats.norm.sf(z((1 + confidence) / 2) - x)
                              + stats.norm.cdf(-z((1 + confidence) / 2) - x) - power, 0.0, 50.0)
        return float(lam * se)
    crit = float(stats.t.ppf((1 + confidence) / 2, df))

    def shortfall(lam: float) -> float:
        lower = float(stats.nct.cdf(-crit, df, lam))  # scipy returns NaN where this tail underflows
        return float(stats.nct.sf(crit, df, lam)) + (lower if np.isfinite(lower) else 0.0) - power

    hi = 2 * (crit + float(stats.t.ppf(power, df))) + 1
    while shortfall(hi) < 0:
        hi *= 2
    return float(optimize.brentq(shortfall, 0.0, hi) * se)


def mde_floor(result: DesignInterval, *, power: float = 0.8) -> float:
    """The MDE with infinitely many seeds (holdout) or repeats (kfold) on the same N images: the image component
    alone, s2_img / N on N - 1 df. With one row of d it includes the residual, so it is an upper bound."""
    s2_img = result.components["image"]
    if result.method != "components" or not np.isfinite(s2_img):
        return float("nan")
    return minimum_detectable_difference(float(np.sqrt(max(s2_img, 0.0) / result.n_images)), result.n_images - 1,
                                         confidence=result.confidence, power=power)


def _predicted(result: DesignInterval, rows: int, big_n: int) -> tuple[float, float]:
    """(se, df) the design would have with `rows` seeds/repeats and `big_n` images, at the estimated components."""
    theta = np.array([result.components[c] for c in COMPONENTS], dtype=np.float64)
    if result.design == "kfold" and result.n_rows == 1:
        theta[2] = 0.0  # fitted as one image component: more repeats are credited with no residual gain
    if not np.isfinite(theta).all():
        return float("nan"), float("nan")
    if result.design == "holdout":
        a, df, v = _holdout_model(rows, big_n)
    else:
        k = result.n_folds
        sizes = np.tile(np.bincount(np.arange(big_n) % k, minlength=k), (rows, 1))
        a, df, v = _kfold_model(sizes)
        if rows == 1:
            a, v, theta = np.column_stack([a[:, 0], a[:, 1]]), v[:2], np.array([theta[0], theta[1] + theta[2]])
    var, dof, _ = _combine(a, a @ theta, df, v)
    return float(np.sqrt(var)), dof


def mde_options(result: DesignInterval, *, factor: int = 2, power: float = 0.8) -> dict:
    """The MDE now, under each hypothetical change of the design, and the floor set by the test images.

    Each change multiplies one size by `factor`: seeds (holdout) or repeats (kfold: each adds k replicates, each
    with its own seed), or images (N). Its MDE is computed at the estimated variance components with the df that
    the changed design would have (Satterthwaite at the expected mean squares).

    Args:
        result: a `design_interval` result with method "components".
        factor: how many times more seeds/repeats or images each option has (>= 2).
        power: power of the MDE.

    Returns:
        {"now": MDE, "more seeds" or "more repeats": MDE, "more images": MDE, "floor": `mde_floor`,
         "best": the name of the option with the smallest MDE}
    """
    if result.method != "components":
        raise ValueError("mde_options needs a design_interval result with method='components'")
    if int(factor) != factor or factor < 2:
        raise ValueError(f"factor must be an integer >= 2, got {factor}")
    kw = dict(confidence=result.confidence, power=power)
    more = "more seeds" if result.design == "holdout" else "more repeats"
    out = {"now": minimum_detectable_difference(result.se, result.df, **kw)}
    for name, rows, big_n in ((more, result.n_rows * factor, result.n_images),
                              ("more images", result.n_rows, result.n_images * factor)):
        se, dof = _predicted(result, rows, big_n)
        out[name] = minimum_detectable_difference(se, dof, **kw) if np.isfinite(se) else float("nan")
    out["floor"] = mde_floor(result, power=power)
    out["best"] = min((more, "more images"), key=lambda n: out[n] if np.isfinite(out[n]) else np.inf)
    return out
