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
    return era_coefficients([a, b, np.asarray(a) * np.asarray(b)], target, eras)[:, 2]


def era_coefficients(columns: Sequence[np.ndarray], target: np.ndarray, eras: EraIndex) -> np.ndarray:
    """Per-era least-squares coefficients (n_eras, m) of the centred target on the era-centred columns, per unit
    of the target's per-era dispersion (one batched m×m solve for all eras); NaN for eras with < 10 targets."""
    y = np.asarray(target, dtype=np.float64)
    valid = ~np.isnan(y)
    w = valid.astype(np.float64)
    count = np.maximum(eras.sums(w), 1.0)
    yv = np.where(valid, y, 0.0)
    cols = [np.where(valid, np.asarray(c, dtype=np.float64), 0.0) for c in columns]
    m = len(cols)
    centred = []
    for c in cols:
        centred.append(np.where(valid, c - eras.broadcast(eras.sums(c) / count), 0.0))
    yc = np.where(valid, yv - eras.broadcast(eras.sums(yv) / count), 0.0)
    stacked = np.stack(centred, axis=1)  # (n, m)
    del cols, centred
    # one column of the per-era Gram matrices at a time: an (n, m) temporary, never the (n, m, m) outer products
    gram_terms = np.stack([eras.sums(stacked * stacked[:, j : j + 1]) for j in range(m)], axis=2)
    rhs = eras.sums(stacked * yc[:, None])
    ridge = 1e-8 * np.trace(gram_terms, axis1=1, axis2=2)[:, None, None] * np.eye(m) + 1e-12 * np.eye(m)
    try:
        beta = np.linalg.solve(gram_terms + ridge, rhs[:, :, None])[:, :, 0]
    except np.linalg.LinAlgError:
        beta = np.full((gram_terms.shape[0], m), np.nan)
    # scale-free: coefficient per unit target dispersion, so eras with different spreads weigh alike
    sy = np.sqrt(eras.sums(yc * yc) / count)
    out = beta / np.where(sy > 0, sy, np.nan)[:, None]
    out[eras.sums(w) < 10] = np.nan
    return out


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
        tstats = np.zeros(len(candidates))
        for c, (i, j, kind) in enumerate(candidates):
            other = relative[:, j] if kind else composites[:, j]
            coef = product_coefficients(composites[:, i].astype(np.float64), other.astype(np.float64), target, eras)
            tstats[c] = newey_west_t(coef, self.nw_lags)[0]
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
