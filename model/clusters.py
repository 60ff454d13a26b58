"""Data-driven industries: PCA of per-era standardised features, then k-means on the PCA scores.

The talk behind the design (docs/design.md) finds that industries learnt from the data (dimension reduction + a classifier)
beat fixed sector labels. `Clusters` learns them with numpy only, so its fitted state is a few small arrays:

* fit: a deterministic row SAMPLE spread over eras (never all rows) is standardised within each era
  (NaN → era mean → 0, constant column → 0), reduced by PCA (exact eigen-decomposition of the smaller Gram
  matrix when rows or features are ≤ GRAM_SIZE, else a randomized range finder with power iterations; no
  LAPACK QR/SVD on large matrices) and clustered by k-means (k-means++ init, `n_init` restarts, empty
  clusters re-seeded). The sample is drawn from evenly spaced eras, at least MIN_ROWS_PER_ERA rows each.
* predict / transform: every era is standardised with its own statistics (two passes over its rows) and
  projected in bounded row chunks (float32, at most ~CLUSTER_CHUNK_ELEMENTS values at a time, never a float64 copy
  of the frame); predict gives each row its nearest centroid, transform the PCA scores.
* relative / dummies: cluster-relative values (minus the era × cluster mean) and one-hot cluster
  exposures for the residualizer.

Labels are ordered by cluster size in the fitting sample (0 = largest), so they are stable across refits.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import ClassVar

import numpy as np
import pandas as pd
from sklearn.exceptions import NotFittedError

from .eras import EraIndex
from .features import CLUSTER_CHUNK_ELEMENTS, rows_per_chunk
from .params import check_params
from .stats import confirm, era_coefficients, familywise_threshold, gate_embargo, series_stat

# Sampled eras get at least this many rows (or all of theirs) so their mean and std are estimated well.
MIN_ROWS_PER_ERA = 500
# With at most this many features (or sample rows) the PCA is an exact eigen-decomposition of the smaller
# Gram matrix; above it a randomized range finder.
GRAM_SIZE = 512


def _chunk_rows(n_features: int) -> int:
    """Rows per working block so that one float32 block holds at most CLUSTER_CHUNK_ELEMENTS values."""
    return rows_per_chunk(CLUSTER_CHUNK_ELEMENTS, n_features)


def _era_stats(features: np.ndarray, rows: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and inverse std (0 for constant or all-NaN columns) of `features[rows]`, NaN ignored, in chunks."""
    n_features = features.shape[1]
    s1 = np.zeros(n_features, dtype=np.float64)
    s2 = np.zeros(n_features, dtype=np.float64)
    count = np.zeros(n_features, dtype=np.int64)
    shift: np.ndarray | None = None
    may_nan = features.dtype.kind not in "iub"
    for start in range(0, len(rows), chunk):
        block = np.asarray(features[rows[start : start + chunk]], dtype=np.float32)
        nan = np.isnan(block) if may_nan else None
        if nan is not None and not nan.any():
            nan = None
        if shift is None:  # shift by the first block's mean: keeps the one-pass variance accurate
            if nan is None:
                shift = block.mean(axis=0, dtype=np.float64).astype(np.float32)
            else:
                valid = (~nan).sum(axis=0)
                total = np.where(nan, 0.0, block).sum(axis=0, dtype=np.float64)
                shift = np.divide(total, valid, out=np.zeros(n_features), where=valid > 0).astype(np.float32)
        d = block
        d -= shift
        if nan is None:
            count += len(d)
        else:
            d[nan] = 0.0
            count += len(d) - nan.sum(axis=0)
        s1 += d.sum(axis=0, dtype=np.float64)
        d *= d
        s2 += d.sum(axis=0, dtype=np.float64)
    if shift is None:
        shift = np.zeros(n_features, dtype=np.float32)
    safe = np.maximum(count, 1)
    m1 = s1 / safe
    var = np.maximum(s2 / safe - m1 * m1, 0.0)
    mean = shift.astype(np.float64) + m1
    constant = (count == 0) | (var <= 1e-10 * (1.0 + mean * mean))
    inv_std = np.where(constant, 0.0, 1.0 / np.sqrt(np.where(constant, 1.0, var)))
    return mean.astype(np.float32), inv_std.astype(np.float32)


def _standardized_blocks(
    features: np.ndarray, groups: Iterable[np.ndarray], chunk: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (row positions, float32 z-scores) group (era) by group in blocks of at most `chunk` rows.

    Each group is standardised with its own mean and std, so the result for a row depends only on its era.
    """
    may_nan = features.dtype.kind not in "iub"
    for rows in groups:
        if len(rows) == 0:
            continue
        mean, inv_std = _era_stats(features, rows, chunk)
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            z = np.asarray(features[part], dtype=np.float32)
            z -= mean
            if may_nan:
                np.nan_to_num(z, copy=False, nan=0.0)  # NaN → era mean → z = 0
            z *= inv_std
            yield part, z


def _sample_rows(eras: EraIndex, sample_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Per-era row positions of a sample of about `sample_size` rows spread over evenly spaced eras."""
    groups = [rows for _, rows in eras.rows()]
    if len(eras) <= sample_size:
        return groups
    per_era = max(MIN_ROWS_PER_ERA, -(-sample_size // eras.n_eras))
    n_pick = min(eras.n_eras, max(1, -(-sample_size // per_era)))
    picked = np.unique(np.round(np.linspace(0, eras.n_eras - 1, n_pick)).astype(np.int64))
    chosen = []
    for e in picked:
        rows = groups[e]
        take = min(len(rows), per_era)
        chosen.append(rows if take == len(rows) else np.sort(rng.choice(rows, size=take, replace=False)))
    return chosen


def _orthonormal(y: np.ndarray) -> np.ndarray:
    """Orthonormal basis (float64) of the columns of a tall matrix via its small Gram matrix, applied twice.

    Used instead of LAPACK's QR, which is pathologically slow when its threads compete for the CPU; two
    Gram passes (as in CholeskyQR2) give an orthonormal basis to machine precision.
    """
    y = np.asarray(y, dtype=np.float64)
    for _ in range(2):
        eigval, eigvec = np.linalg.eigh(y.T @ y)
        keep = eigval > max(float(eigval.max(initial=0.0)), 1e-300) * 1e-12
        y = y @ (eigvec[:, keep] / np.sqrt(eigval[keep]))
    return y


def _top_eigen(gram: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """The `n_components` largest eigenvalues (clipped at 0, descending) of a symmetric matrix and their vectors."""
    eigval, eigvec = np.linalg.eigh(gram)
    top = np.argsort(-eigval, kind="stable")[:n_components]
    return np.maximum(eigval[top], 0.0), eigvec[:, top]


def _pca(z: np.ndarray, n_components: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Leading principal axes (n_components, F) and their variances of the (already centred) matrix `z`.

    Exact (eigen-decomposition of the smaller Gram matrix) when rows or features are few; otherwise a
    randomized range finder with power iterations (Halko, Martinsson & Tropp 2011), all float32 products
    over z and float64 algebra on the small matrices.
    """
    n, f = z.shape
    if f <= GRAM_SIZE:
        zd = z.astype(np.float64)
        sq, axes = _top_eigen(zd.T @ zd, n_components)
        axes = axes.T
    elif n <= GRAM_SIZE:
        zd = z.astype(np.float64)
        sq, left = _top_eigen(zd @ zd.T, n_components)
        axes = (zd.T @ left).T / np.sqrt(np.where(sq > 0, sq, 1.0))[:, None]
    else:
        width = min(n, f, n_components + 10)
        q = _orthonormal(z @ rng.standard_normal((f, width)).astype(np.float32))
        for _ in range(4):
            if q.shape[1] == 0:  # z is (numerically) zero
                break
            q = _orthonormal(z.T @ q.astype(np.float32))
            q = _orthonormal(z @ q.astype(np.float32))
        if q.shape[1] == 0:
            sq, axes = np.zeros(0), np.zeros((0, f))
        else:
            b = (z.T @ q.astype(np.float32)).T.astype(np.float64)  # (width, F) = qᵀ z
            sq, left = _top_eigen(b @ b.T, n_components)
            axes = (b.T @ left).T / np.sqrt(np.where(sq > 0, sq, 1.0))[:, None]
    if len(axes) < n_components:  # rank-deficient sample: pad with zero axes (their scores are 0)
        sq = np.concatenate([sq, np.zeros(n_components - len(axes))])
        axes = np.vstack([axes, np.zeros((n_components - len(axes), f))])
    # deterministic signs: the largest loading of every axis is positive
    pivot = np.abs(axes).argmax(axis=1)
    signs = np.sign(axes[np.arange(len(axes)), pivot])
    signs[signs == 0] = 1.0
    return axes * signs[:, None], sq / max(n - 1, 1)


def _sq_distances(x: np.ndarray, centroids: np.ndarray, xx: np.ndarray | None = None) -> np.ndarray:
    """Squared Euclidean distances (n, k) between rows of x and the centroids (clipped at 0).

    The cross term uses einsum, not a BLAS product: for a handful of centroids in a low-dimensional score
    space a tiny multi-threaded matrix product is slower, and einsum gives the same bits for any chunking.
    `xx` (the rows' squared norms) can be passed in when the same x is used repeatedly.
    """
    if xx is None:
        xx = np.einsum("ij,ij->i", x, x)
    cross = np.einsum("ij,kj->ik", x, centroids)
    d = xx[:, None] - 2.0 * cross + np.einsum("ij,ij->i", centroids, centroids)[None, :]
    return np.maximum(d, 0.0, out=d)


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each next centre drawn with probability ∝ squared distance to the nearest one."""
    n = len(x)
    centres = np.empty((k, x.shape[1]), dtype=np.float64)
    centres[0] = x[rng.integers(n)]
    closest = _sq_distances(x, centres[:1])[:, 0]
    for j in range(1, k):
        total = closest.sum()
        idx = rng.integers(n) if total <= 0 else int(rng.choice(n, p=closest / total))
        centres[j] = x[idx]
        closest = np.minimum(closest, _sq_distances(x, centres[j : j + 1])[:, 0])
    return centres


def kmeans(x: np.ndarray, k: int, max_iter: int, tol: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """One Lloyd run from a k-means++ start; empty clusters are re-seeded at the worst-fitted points."""
    centres = _kmeans_pp(x, k, rng)
    xx = np.einsum("ij,ij->i", x, x)
    for _ in range(max_iter):
        d = _sq_distances(x, centres, xx)
        labels = d.argmin(axis=1)
        own = d[np.arange(len(x)), labels]
        counts = np.bincount(labels, minlength=k)
        new = np.zeros_like(centres)
        for c in range(x.shape[1]):
            new[:, c] = np.bincount(labels, weights=x[:, c], minlength=k)
        filled = counts > 0
        new[filled] /= counts[filled, None]
        empty = np.flatnonzero(~filled)
        if len(empty):  # re-seed each empty cluster at one of the points farthest from its centroid
            worst = np.argsort(-own, kind="stable")[: len(empty)]
            new[empty[: len(worst)]] = x[worst]
            if len(worst) < len(empty):
                new[empty[len(worst) :]] = x[rng.integers(len(x), size=len(empty) - len(worst))]
        shift = ((new - centres) ** 2).sum()
        centres = new
        if shift <= tol and not len(empty):
            break
    inertia = float(_sq_distances(x, centres, xx).min(axis=1).sum())
    return centres, inertia


def cluster_dummies(labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """One-hot cluster exposures (n, n_clusters) float32 of labels in 0..n_clusters-1."""
    lab = np.asarray(labels).astype(np.int64)
    if len(lab) and (lab.min() < 0 or lab.max() >= n_clusters):
        raise ValueError(f"cluster labels must lie in 0..{n_clusters - 1}, got {lab.min()}..{lab.max()}")
    out = np.zeros((len(lab), n_clusters), dtype=np.float32)
    out[np.arange(len(lab)), lab] = 1.0
    return out


class Clusters:
    """Data-driven industries: PCA of per-era standardised features + k-means, all numpy state. It does not look at a
    target (an ensemble's members share one); `ClusterGate` decides, per target, which of its columns a model gets.

    A plain class, not a scikit-learn estimator: `fit(features, eras)` takes the rows' eras where scikit-learn's
    contract has a target.

    Parameters
    ----------
    n_clusters : int, default=8
        k of k-means.
    n_components : int, default=10
        Principal components the rows are clustered in.
    sample_size : int, default=50_000
        Rows sampled (spread over eras) to fit the PCA and k-means.
    n_init, max_iter : int
        k-means restarts and iterations.
    random_state : int, default=0
        Seed of the sample, the PCA's range finder and k-means.

    Attributes
    ----------
    components_, centroids_ : ndarray
        PCA axes (n_components, F) and k-means centroids, clusters ordered by size (0 = largest).
    """

    _parameter_rules: ClassVar[dict[str, tuple]] = {
        "n_clusters": ("int", 1, None), "n_components": ("int", 1, None), "sample_size": ("int", 1, None),
        "n_init": ("int", 1, None), "max_iter": ("int", 1, None), "random_state": ("int", 0, None)}

    def __init__(
        self,
        n_clusters: int = 8,
        n_components: int = 10,
        sample_size: int = 50_000,
        n_init: int = 4,
        max_iter: int = 100,
        random_state: int = 0,
    ):
        self.n_clusters = n_clusters
        self.n_components = n_components
        self.sample_size = sample_size
        self.n_init = n_init
        self.max_iter = max_iter
        self.random_state = random_state

    # --- fitting --------------------------------------------------------------------------------------
    @staticmethod
    def _check(features: np.ndarray, eras: EraIndex) -> np.ndarray:
        x = np.asarray(features)
        if x.ndim != 2:
            raise ValueError(f"features must be 2-D (rows × features), got shape {x.shape}")
        if len(x) != len(eras):
            raise ValueError(f"features have {len(x)} rows but the era index has {len(eras)}")
        if x.dtype.kind not in "iubf":
            x = x.astype(np.float32)
        return x

    def fit(self, features: np.ndarray, eras: EraIndex) -> Clusters:
        """Learn PCA axes and k-means centroids from a per-era standardised row sample of `features`."""
        check_params(self)
        x = self._check(features, eras)
        n, f = x.shape
        if n == 0 or f == 0:
            raise ValueError(f"Clusters.fit needs at least one row and one feature, got shape {x.shape}")
        k = int(self.n_clusters)
        rng = np.random.default_rng(self.random_state)

        groups = _sample_rows(eras, int(self.sample_size), rng)
        n_sample = int(sum(len(g) for g in groups))
        z = np.empty((n_sample, f), dtype=np.float32)
        filled = 0
        for _, block in _standardized_blocks(x, groups, _chunk_rows(f)):
            z[filled : filled + len(block)] = block
            filled += len(block)

        n_comp = max(1, min(int(self.n_components), f, n_sample))
        axes, variances = _pca(z, n_comp, rng)
        self.components_ = axes.astype(np.float32)
        scores = (z @ self.components_.T).astype(np.float64)
        del z
        total_var = float(np.sum(variances)) if variances.size else 0.0
        self.explained_variance_ = variances.astype(np.float64)

        tol = 1e-4 * float(scores.var(axis=0).mean()) * k if len(scores) > 1 else 0.0
        best: tuple[np.ndarray, float] | None = None
        for _ in range(max(1, int(self.n_init))):
            centres, inertia = kmeans(scores, k, max(1, int(self.max_iter)), tol, rng)
            if best is None or inertia < best[1] - 1e-12 * abs(best[1]):
                best = (centres, inertia)
        centres, inertia = best
        # order clusters by size in the sample (0 = largest), ties by first coordinate: stable labels
        labels = _sq_distances(scores, centres).argmin(axis=1)
        sizes = np.bincount(labels, minlength=k)
        order = np.lexsort((centres[:, 0], -sizes))
        self.centroids_ = centres[order].astype(np.float32)
        self.cluster_sizes_ = sizes[order].astype(np.int64)
        self.inertia_ = inertia
        self.n_features_in_ = f
        self.n_components_ = n_comp
        self.n_samples_fit_ = n_sample
        self.total_variance_ = total_var
        return self

    # --- prediction -----------------------------------------------------------------------------------
    def _check_fitted(self, x: np.ndarray) -> None:
        if not hasattr(self, "centroids_"):
            raise NotFittedError("Clusters is not fitted: call fit(features, eras) first")
        if x.shape[1] != self.n_features_in_:
            raise ValueError(f"Clusters was fitted on {self.n_features_in_} features, got {x.shape[1]}")

    def transform(self, features: np.ndarray, eras: EraIndex) -> np.ndarray:
        """PCA scores (n, n_components_) float32 of per-era standardised rows, computed in bounded chunks."""
        x = self._check(features, eras)
        self._check_fitted(x)
        out = np.empty((len(x), self.n_components_), dtype=np.float32)
        for part, z in _standardized_blocks(x, (rows for _, rows in eras.rows()), _chunk_rows(x.shape[1])):
            out[part] = z @ self.components_.T
        return out

    def predict(self, features: np.ndarray, eras: EraIndex) -> np.ndarray:
        """Cluster labels (n,) int16: the nearest centroid of each row's PCA scores, era by era in chunks."""
        x = self._check(features, eras)
        self._check_fitted(x)
        labels = np.empty(len(x), dtype=np.int16)
        centres = self.centroids_.astype(np.float32)
        for part, z in _standardized_blocks(x, (rows for _, rows in eras.rows()), _chunk_rows(x.shape[1])):
            labels[part] = _sq_distances(z @ self.components_.T, centres).argmin(axis=1)
        return labels

    # --- derived features -------------------------------------------------------------------------------
    @staticmethod
    def relative(values: np.ndarray, labels: np.ndarray, eras: EraIndex) -> np.ndarray:
        """Values (n,) or (n, k) minus their era × cluster mean (NaN ignored, stays NaN) → float32."""
        v = np.asarray(values)
        flat = v.reshape(len(v), -1)
        lab = np.asarray(labels).astype(np.int64)
        if len(flat) != len(eras) or len(lab) != len(eras):
            raise ValueError(f"values ({len(flat)}), labels ({len(lab)}) and eras ({len(eras)}) differ in length")
        n_lab = int(lab.max()) + 1 if len(lab) else 1
        group, _ = pd.factorize(eras.codes.astype(np.int64) * n_lab + lab)
        n_groups = int(group.max()) + 1 if len(group) else 0
        out = np.empty(flat.shape, dtype=np.float32)
        for c in range(flat.shape[1]):
            col = flat[:, c].astype(np.float64)
            valid = ~np.isnan(col)
            total = np.bincount(group, weights=np.where(valid, col, 0.0), minlength=n_groups)
            count = np.bincount(group, weights=valid, minlength=n_groups)
            mean = np.divide(total, count, out=np.zeros(n_groups), where=count > 0)
            out[:, c] = col - mean[group]
        return out.reshape(v.shape)

    def dummies(self, labels: np.ndarray) -> np.ndarray:
        """One-hot cluster exposures (n, n_clusters) float32, e.g. for the residualizer."""
        k = len(self.centroids_) if hasattr(self, "centroids_") else int(self.n_clusters)
        return cluster_dummies(labels, k)

    # --- the evidence gate and the model's columns ---------------------------------------------------------
    def pieces(self, features: np.ndarray, eras: EraIndex, composites: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What the other components build on: each row's cluster label and its cluster-relative composites."""
        labels = self.predict(features, eras)
        return labels, self.relative(composites, labels, eras)



class ClusterGate:
    """Which of the clusters' columns a model gets for its target: the cluster id, and the cluster-relative
    composites, each kept only with evidence from the training eras.

    Parameters
    ----------
    threshold : float, default=3.0
        Least |Newey-West t| of a gated column (raised to the family-wise critical value for the number of tests).
    nw_lags : int, default=4
        Newey-West lags (neighbouring eras' targets overlap).

    Attributes
    ----------
    relative_keep_ : ndarray of int
        The cluster-relative composites kept: those that explain the target beyond their composite on the first
        training eras and still on the later, embargoed ones (model.stats.confirm).
    cluster_id_used_ : bool
        Whether the cluster id is a column: some cluster's per-era mean target is non-zero, confirmed likewise.
    relative_evidence_, cluster_evidence_ : model.stats.Evidence
    relative_tstats_, cluster_tstats_ : ndarray
        The gates' t-statistics.
    """

    _parameter_rules: ClassVar[dict[str, tuple]] = {"threshold": ("real", 0, None), "nw_lags": ("int", 0, None)}

    def __init__(self, threshold: float = 3.0, nw_lags: int = 4):
        self.threshold = threshold
        self.nw_lags = nw_lags

    def fit(self, composites: np.ndarray, relative: np.ndarray, labels: np.ndarray, n_clusters: int,
            target: np.ndarray, eras: EraIndex) -> ClusterGate:
        """Keep a cluster-relative composite only if it explains the target beyond its composite, and the cluster id
        only if some cluster's per-era mean target is non-zero (labels in 0..n_clusters-1): chosen on the first
        training eras, confirmed on the later, embargoed ones."""
        check_params(self)
        lags, embargo = self.nw_lags, gate_embargo(self.nw_lags)
        k = composites.shape[1]
        series = np.column_stack([era_coefficients([composites[:, j], relative[:, j]], target, eras)[:, 1]
                                  for j in range(k)])
        self.relative_evidence_ = confirm(series_stat(series, lags), eras.n_eras, familywise_threshold(k, self.threshold),
                                          embargo)
        self.relative_tstats_ = self.relative_evidence_.select_t
        self.relative_keep_ = np.flatnonzero(self.relative_evidence_.passed).astype(np.int64)
        valid = ~np.isnan(target)
        yc = np.where(valid, target - eras.broadcast(eras.means(target)), 0.0)
        cell = eras.codes.astype(np.int64) * n_clusters + labels.astype(np.int64)
        total = np.bincount(cell, weights=yc, minlength=eras.n_eras * n_clusters).reshape(eras.n_eras, n_clusters)
        count = np.bincount(cell, weights=valid, minlength=eras.n_eras * n_clusters).reshape(eras.n_eras, n_clusters)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(count >= 5, total / count, np.nan)
        sd = np.sqrt(eras.means(np.where(valid, yc * yc, np.nan)))
        scaled = means / sd[:, None]
        self.cluster_evidence_ = confirm(series_stat(scaled, lags), eras.n_eras,
                                         familywise_threshold(n_clusters, self.threshold), embargo)
        self.cluster_tstats_ = self.cluster_evidence_.select_t
        self.cluster_id_used_ = bool(self.cluster_evidence_.passed.any())
        return self

    def transform_columns(self, labels: np.ndarray, relative: np.ndarray) -> list[np.ndarray]:
        """The model's cluster columns: the id (if used) and the kept cluster-relative composites."""
        parts = []
        if self.cluster_id_used_:
            parts.append(labels.astype(np.float32)[:, None])
        parts.append(relative[:, self.relative_keep_])
        return parts

    def feature_names(self, factor_names: list[str]) -> list[str]:
        """Names of `transform_columns`' columns."""
        return (["cluster_id"] if self.cluster_id_used_ else []) + [f"rel_{factor_names[j]}" for j in self.relative_keep_]
