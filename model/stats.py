"""The statistics the components' evidence gates share: per-era correlations and regression coefficients, the
Newey-West t of a per-era series, family-wise thresholds, and the out-of-sample test every gate passes (chosen on
the first block of training eras, confirmed on a later, embargoed block).

Every function is pure (numpy in, numpy out) and works era by era from an `EraIndex`, vectorised over eras.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri, stdtrit

from .eras import EraIndex
from .features import CORRELATION_CHUNK_CELLS, rows_per_chunk


def era_correlations(columns: np.ndarray, target: np.ndarray, eras: EraIndex) -> np.ndarray:
    """Per-era Pearson correlation (n_eras, k) of each column with the target over the rows that have a target.

    A NaN value takes its era's mean (the neutral value); an era with fewer than two targets or a column constant
    in an era gives NaN. Columns go in blocks of about 4M values, so int8 features of many rows need no float64
    copy of the whole matrix. A factor's return (its per-era correlation with the target) is this function of the
    composites.
    """
    x_all = np.asarray(columns)
    if x_all.ndim == 1:
        x_all = x_all[:, None]
    out = np.empty((eras.n_eras, x_all.shape[1]))
    width = rows_per_chunk(CORRELATION_CHUNK_CELLS, len(x_all))  # columns per block of len(x_all) rows
    for start in range(0, x_all.shape[1], width):
        block = np.asarray(x_all[:, start : start + width], dtype=np.float64)
        if np.isnan(block).any():
            block = np.where(np.isnan(block), eras.broadcast(eras.means(block)), block)
        out[:, start : start + width] = _era_correlations(block, target, eras)
    return out


def _era_correlations(columns: np.ndarray, target: np.ndarray, eras: EraIndex) -> np.ndarray:
    """`era_correlations` of one block of NaN-free float64 columns (n, k)."""
    z = columns
    y = np.asarray(target, dtype=np.float64)
    valid = ~np.isnan(y)
    count = eras.sums(valid.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        ybar = eras.sums(np.where(valid, y, 0.0)) / count
        yc = np.where(valid, y - eras.broadcast(ybar), 0.0)
        zv = np.where(valid[:, None], z, 0.0)
        zbar = eras.sums(zv) / count[:, None]
        zc = np.where(valid[:, None], z - eras.broadcast(zbar), 0.0)
        cov = eras.sums(zc * yc[:, None])
        sz = np.sqrt(eras.sums(zc * zc))
        sy = np.sqrt(eras.sums(yc * yc))
        corr = cov / (sz * sy[:, None])
    corr[~np.isfinite(corr)] = np.nan
    return corr



def newey_west_t(values: np.ndarray, lags: int) -> np.ndarray:
    """t-statistic of the mean of each column of `values` (T, m) with Bartlett-weighted autocovariances; each column
    skips its own NaN eras (a cluster too small in some eras does not take those eras from the others)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    nan = np.isnan(x)
    if nan.any() and not (nan.all(axis=1) | ~nan.any(axis=1)).all():  # NaN in different eras per column
        return np.array([newey_west_t(x[~nan[:, j], j], lags)[0] for j in range(x.shape[1])])
    x = x[~nan.any(axis=1)]
    t = x.shape[0]
    if t < 3:
        return np.zeros(x.shape[1])
    mean = x.mean(axis=0)
    d = x - mean
    var = (d * d).sum(axis=0) / t
    for lag in range(1, min(lags, t - 1) + 1):
        weight = 1.0 - lag / (lags + 1.0)
        var = var + 2.0 * weight * (d[lag:] * d[:-lag]).sum(axis=0) / t
    var = np.maximum(var, (d * d).sum(axis=0) / t * 1e-3)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = mean / np.sqrt(var / t)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def familywise_threshold(n_tests: int, floor: float, alpha: float = 0.05, dof: int | None = None) -> float:
    """A two-sided Bonferroni critical value for `n_tests` tests at level `alpha` (normal, or Student t with
    `dof` degrees of freedom for few eras), never below `floor`."""
    if n_tests <= 0:
        return floor
    p = alpha / (2.0 * n_tests)
    if dof is not None and dof > 0:
        # scipy.special, not scipy.stats.t: a distribution object as a global of this by-value module would carry its
        # RandomState into the pickle, which numpy 1.26 (the Python 3.10 image) cannot read from numpy 2
        return max(floor, float(-stdtrit(dof, p)))
    return max(floor, float(-ndtri(p)))


def product_coefficients(a: np.ndarray, b: np.ndarray, target: np.ndarray, eras: EraIndex) -> np.ndarray:
    """Per-era coefficient of the era-centred product a·b in a regression of the centred target on [a, b, a·b]."""
    a2, b2 = (np.asarray(v, dtype=np.float64).reshape(-1, 1) for v in (a, b))
    return pair_coefficients(a2, b2, np.zeros((1, 2), dtype=np.int64), target, eras)[:, 0]


def _era_centred(columns: np.ndarray, target: np.ndarray, eras: EraIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Columns (n, m) and target in era order, each centred within its era over the rows with a target (other rows
    0, NaN values 0), and the per-era count of those rows."""
    y = np.asarray(target, dtype=np.float64)[eras.order]
    valid = ~np.isnan(y)
    count = np.add.reduceat(valid.astype(np.float64), eras.starts)
    safe = np.maximum(count, 1.0)
    columns = np.asarray(columns)
    # rows into era order before the float64 copy (int8 features: an eighth of the bytes to move), no NaN pass over
    # integer columns, which hold none, and the era means taken off in place: the linear layer's fit at 200,000 rows
    # x 400 features took 6.4 s, most of it here (tests/benchmarks/bench_curves.py's linear-layer points)
    c = columns[eras.order].astype(np.float64)
    if columns.dtype.kind == "f":
        np.nan_to_num(c, copy=False, nan=0.0)
    everything = bool(valid.all())
    if not everything:
        c[~valid] = 0.0
    means = np.add.reduceat(c, eras.starts, axis=0) / safe[:, None]
    for k, rows in enumerate(_era_slices(eras)):  # in place, era by era: no (n, m) array of repeated means
        c[rows] -= means[k]
    if not everything:
        c[~valid] = 0.0
    yv = np.where(valid, y, 0.0)
    yc = np.where(valid, yv - np.repeat(np.add.reduceat(yv, eras.starts) / safe, eras.counts), 0.0)
    return c, yc, count


def _era_slices(eras: EraIndex) -> list[slice]:
    """Each era's rows in era order (as `_era_centred` returns them)."""
    return [slice(int(s), int(s + n)) for s, n in zip(eras.starts, eras.counts)]


def _solve_scaled(gram: np.ndarray, rhs: np.ndarray, yc: np.ndarray, count: np.ndarray, eras: EraIndex) -> np.ndarray:
    """Batched solves of per-era normal equations gram (T, ..., m, m) · beta = rhs (T, ..., m) with a tiny ridge,
    per unit of the target's per-era dispersion; NaN for eras with < 10 targets."""
    m = gram.shape[-1]
    eye = np.eye(m)
    ridge = 1e-8 * np.trace(gram, axis1=-2, axis2=-1)[..., None, None] * eye + 1e-12 * eye
    try:
        beta = np.linalg.solve(gram + ridge, rhs[..., None])[..., 0]
    except np.linalg.LinAlgError:
        beta = np.full(rhs.shape, np.nan)
    # scale-free: coefficient per unit target dispersion, so eras with different spreads weigh alike
    sy = np.sqrt(np.add.reduceat(yc * yc, eras.starts) / np.maximum(count, 1.0))
    out = beta / np.where(sy > 0, sy, np.nan).reshape((-1,) + (1,) * (beta.ndim - 1))
    out[count < 10] = np.nan
    return out


def era_coefficients(columns: Sequence[np.ndarray], target: np.ndarray, eras: EraIndex) -> np.ndarray:
    """Per-era least-squares coefficients (n_eras, m) of the centred target on the era-centred columns, per unit
    of the target's per-era dispersion (one batched m×m solve for all eras); NaN for eras with < 10 targets."""
    c, yc, count = _era_centred(np.column_stack([np.asarray(v, dtype=np.float64) for v in columns]), target, eras)
    m = c.shape[1]
    gram = np.empty((eras.n_eras, m, m))
    rhs = np.empty((eras.n_eras, m))
    for e, rows in enumerate(_era_slices(eras)):  # one small BLAS product per era, no (n, m, m) temporaries
        gram[e] = c[rows].T @ c[rows]
        rhs[e] = c[rows].T @ yc[rows]
    return _solve_scaled(gram, rhs, yc, count, eras)


def pair_coefficients(
    left: np.ndarray, right: np.ndarray, pairs: np.ndarray, target: np.ndarray, eras: EraIndex
) -> np.ndarray:
    """Per-era product coefficients (n_eras, P) of the pairs (column i of `left`, column j of `right`) = rows of
    `pairs`: as `product_coefficients` for each pair, from per-era moment matrices shared by all pairs (five small
    products per era) instead of one pass over the rows per pair. The product of the era-centred columns spans
    the same space with a and b as the raw product, so its coefficient is the same."""
    k = left.shape[1]
    c, yc, count = _era_centred(np.concatenate([left, right], axis=1), target, eras)
    a, b = c[:, :k], c[:, k:]
    n_eras = eras.n_eras
    s_ab, s_aab, s_abb, s_aabb, s_aby = (np.empty((n_eras, k, b.shape[1])) for _ in range(5))
    s_aa, s_ay = np.empty((n_eras, k)), np.empty((n_eras, k))
    s_bb, s_by = np.empty((n_eras, b.shape[1])), np.empty((n_eras, b.shape[1]))
    for e, rows in enumerate(_era_slices(eras)):
        ae, be, ye = a[rows], b[rows], yc[rows]
        aa, bb = ae * ae, be * be
        s_ab[e], s_aab[e], s_abb[e], s_aabb[e] = ae.T @ be, aa.T @ be, ae.T @ bb, aa.T @ bb
        s_aby[e] = (ae * ye[:, None]).T @ be
        s_aa[e], s_bb[e] = aa.sum(axis=0), bb.sum(axis=0)
        s_ay[e], s_by[e] = ye @ ae, ye @ be
    i, j = pairs[:, 0], pairs[:, 1]
    n = np.maximum(count, 1.0)[:, None]
    ab = s_ab[:, i, j]
    # Gram of [a, b, p - mean p] per era and pair (a, b centred: sum a = sum b = 0)
    gram = np.empty((n_eras, len(pairs), 3, 3))
    gram[..., 0, 0] = s_aa[:, i]
    gram[..., 1, 1] = s_bb[:, j]
    gram[..., 2, 2] = s_aabb[:, i, j] - ab * ab / n
    gram[..., 0, 1] = gram[..., 1, 0] = ab
    gram[..., 0, 2] = gram[..., 2, 0] = s_aab[:, i, j]
    gram[..., 1, 2] = gram[..., 2, 1] = s_abb[:, i, j]
    rhs = np.stack([s_ay[:, i], s_by[:, j], s_aby[:, i, j]], axis=-1)
    return _solve_scaled(gram, rhs, yc, count, eras)[..., 2]


# ---- evidence: chosen on one block of training eras, confirmed on a later, embargoed block -------------------------
SELECT_SHARE = 0.6
"""The first 60 % of the training eras choose a candidate; the eras after them and an embargo confirm it."""
CONFIRM_T = 1.5
"""Least |t| on the confirmation block, with the choosing block's sign."""
CONFIRM_SIZE = 0.4
"""Least size on the confirmation block, as a share of the choosing block's estimate (winners shrink; noise
vanishes)."""
MIN_CONFIRM_ERAS = 10
"""Fewer confirmation eras than this: nothing is confirmed (a component that cannot show evidence adds nothing)."""


def gate_embargo(nw_lags: int) -> int:
    """Eras between the eras that choose and the eras that confirm, in every gate: one more than the Newey-West lags,
    i.e. past the eras whose targets overlap."""
    return nw_lags + 1


def evidence_blocks(n_eras: int, embargo: int) -> tuple[slice, slice]:
    """The era positions that choose and the later ones that confirm, `embargo` eras apart (their targets overlap)."""
    cut = int(round(n_eras * SELECT_SHARE))
    return slice(0, cut), slice(min(n_eras, cut + max(0, embargo)), n_eras)


@dataclass
class Evidence:
    """Per candidate: the t and the estimate on the choosing block and on the confirming block, and the verdict."""

    select_t: np.ndarray
    select_size: np.ndarray
    confirm_t: np.ndarray
    confirm_size: np.ndarray
    chosen: np.ndarray
    passed: np.ndarray


def confirm(stat_of_part: Callable[[slice], tuple[np.ndarray, np.ndarray]], n_eras: int, threshold: float,
            embargo: int) -> Evidence:
    """Choose the candidates whose |t| on the choosing block exceeds `threshold` scaled to that block's eras, and keep
    those that hold on the confirming block: the same sign, |t| > CONFIRM_T and at least CONFIRM_SIZE of the choosing
    block's size. `stat_of_part(part)` gives (t, size) arrays of every candidate on the eras `part`.

    `threshold` is what the effect's t would be over all `n_eras`; on the choosing block the same effect shows
    t x sqrt(share of the eras), so the choice asks for the same effect size as a full-sample test would, and the
    later block, which it never saw, decides."""
    select, later = evidence_blocks(n_eras, embargo)
    threshold = threshold * np.sqrt(select.stop / max(1, n_eras))
    t_s, m_s = (np.asarray(v, dtype=np.float64) for v in stat_of_part(select))
    if later.stop - later.start < MIN_CONFIRM_ERAS:
        nothing = np.zeros(t_s.shape, dtype=bool)
        return Evidence(t_s, m_s, np.zeros_like(t_s), np.zeros_like(m_s), nothing, nothing)
    t_c, m_c = (np.asarray(v, dtype=np.float64) for v in stat_of_part(later))
    chosen = np.abs(t_s) > threshold
    held = (np.sign(t_c) == np.sign(t_s)) & (np.abs(t_c) > CONFIRM_T) & (np.abs(m_c) >= CONFIRM_SIZE * np.abs(m_s))
    return Evidence(t_s, m_s, t_c, m_c, chosen, chosen & held)


def series_stat(series: np.ndarray, lags: int) -> Callable[[slice], tuple[np.ndarray, np.ndarray]]:
    """`stat_of_part` of per-era series (T, m): each column's Newey-West t and mean over the eras of a part."""
    def stat(part: slice) -> tuple[np.ndarray, np.ndarray]:
        block = series[part]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column: mean NaN, t 0
            mean = np.nanmean(block, axis=0) if len(block) else np.zeros(series.shape[1])
        return newey_west_t(block, lags) if len(block) else np.zeros(series.shape[1]), np.nan_to_num(mean)

    return stat
