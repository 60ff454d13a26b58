"""Interactions: products of factor composites that explain the target beyond their main effects, consistently.

Candidates are pairs of composites and composite × cluster-relative composite. In every training era the centred
target is regressed on both main effects and the centred product (one batched 3×3 solve for all eras); a
candidate's score is the t-statistic of the product's per-era coefficient across eras, with a Newey-West
correction for the overlap of neighbouring eras' targets. Only candidates whose |t| clears a family-wise
threshold are kept (at most `max_pairs`), so a world without interactions adds nothing.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.special import ndtri

from .eras import EraIndex
from .params import Params


def newey_west_t(values: np.ndarray, lags: int) -> np.ndarray:
    """t-statistic of the mean of each column of `values` (T, m) with Bartlett-weighted autocovariances; NaN rows skipped."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    x = x[~np.isnan(x).any(axis=1)]
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
        from scipy.stats import t as student_t

        return max(floor, float(student_t.isf(p, dof)))
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
    c = np.nan_to_num(np.asarray(columns, dtype=np.float64)[eras.order], nan=0.0)
    c[~valid] = 0.0
    c -= np.repeat(np.add.reduceat(c, eras.starts, axis=0) / safe[:, None], eras.counts, axis=0)
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


class Interactions(Params):
    """Choose and build the products of composites whose per-era coefficient is consistently non-zero."""

    def __init__(self, max_pairs: int = 4, threshold: float = 3.0, nw_lags: int = 4):
        self.max_pairs = max_pairs
        self.threshold = threshold
        self.nw_lags = nw_lags

    def fit(
        self,
        composites: np.ndarray,
        target: np.ndarray,
        eras: EraIndex,
        names: Sequence[str],
        relative: np.ndarray | None = None,
    ) -> "Interactions":
        """Score every candidate pair on the training eras and keep the consistent ones."""
        k = composites.shape[1]
        candidates: list[tuple[int, int, int]] = [(i, j, 0) for i in range(k) for j in range(i + 1, k)]
        if relative is not None:
            candidates += [(i, j, 1) for i in range(k) for j in range(k) if i != j]
        partners = composites if relative is None else np.concatenate([composites, relative], axis=1)
        pairs = np.asarray([(i, j + k * kind) for i, j, kind in candidates], dtype=np.int64).reshape(-1, 2)
        coef = pair_coefficients(composites, partners, pairs, target, eras)
        # NaN eras (too few targets) are the same for every pair, so one call drops them for all
        tstats = newey_west_t(coef, self.nw_lags) if len(candidates) else np.zeros(0)
        self.threshold_ = familywise_threshold(len(candidates), self.threshold)
        order = np.argsort(-np.abs(tstats), kind="stable")
        keep = [c for c in order[: self.max_pairs] if abs(tstats[c]) > self.threshold_]
        self.candidates_ = np.asarray(candidates, dtype=np.int64).reshape(-1, 3)
        self.tstats_ = tstats
        self.pairs_ = self.candidates_[keep] if keep else np.zeros((0, 3), dtype=np.int64)
        self.pair_tstats_ = tstats[keep] if keep else np.zeros(0)
        self.names_ = [
            f"ix_{names[i]}_x_{'rel_' if kind else ''}{names[j]}" for i, j, kind in self.pairs_.tolist()
        ]
        return self

    def ranking(self, names: Sequence[str]) -> list[tuple[str, str, str, float]]:
        """Every candidate (a, b, kind, t) ordered by |t|, strongest first: for reports and tests."""
        order = np.argsort(-np.abs(self.tstats_), kind="stable")
        kinds = ("composite", "relative")
        return [
            (names[self.candidates_[c, 0]], names[self.candidates_[c, 1]], kinds[self.candidates_[c, 2]], float(self.tstats_[c]))
            for c in order
        ]

    def transform(self, composites: np.ndarray, relative: np.ndarray | None = None) -> np.ndarray:
        """The kept products (n, n_pairs) float32."""
        out = np.empty((composites.shape[0], len(self.pairs_)), dtype=np.float32)
        for c, (i, j, kind) in enumerate(self.pairs_.tolist()):
            other = relative[:, j] if kind else composites[:, j]
            out[:, c] = composites[:, i] * other
        return out
