"""Factors: per-era standardised composites of feature groups (or leading principal components) and their returns.

A factor is the per-stock mean of a feature group's features (NaN ignored; a stock with no value takes the era
mean), z-scored within each era. With no groups, the factors are the leading principal components of the
era-centred features, fitted on a row sample. A factor's return in era t is the per-era correlation of the
target with the factor, computed for every era in one vectorised pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .eras import EraIndex
from .features import FACTOR_CHUNK_ROWS, FILL_VALUE
from .stats import era_correlations


def _chunked_matmul(features: np.ndarray, weights: np.ndarray, centre: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(Σ valid·x·w, Σ valid·w) over the columns, in row chunks so no float copy of the whole matrix exists."""
    n = features.shape[0]
    sums = np.empty((n, weights.shape[1]), dtype=np.float64)
    counts = np.empty((n, weights.shape[1]), dtype=np.float64)
    w = weights.astype(np.float32)
    has_nan = features.dtype.kind == "f"
    for start in range(0, n, FACTOR_CHUNK_ROWS):
        block = features[start : start + FACTOR_CHUNK_ROWS].astype(np.float32)
        if centre is not None:
            block -= centre[start : start + FACTOR_CHUNK_ROWS]
        if has_nan:
            valid = ~np.isnan(block)
            block = np.where(valid, block, np.float32(0.0))
            counts[start : start + FACTOR_CHUNK_ROWS] = valid.astype(np.float32) @ w
        else:
            counts[start : start + FACTOR_CHUNK_ROWS] = w.sum(axis=0)
        sums[start : start + FACTOR_CHUNK_ROWS] = block @ w
    return sums, counts


def factor_returns(composites: np.ndarray, target: np.ndarray, eras: EraIndex) -> np.ndarray:
    """Factor returns: the per-era correlation (n_eras, k) of the target with each composite, NaN where unknown
    (`model.stats.era_correlations`)."""
    return era_correlations(composites, target, eras)


class Factors:
    """Factor composites: feature-group means (or principal components), z-scored within each era.

    A plain class, not a scikit-learn estimator: its fit takes the feature matrix, the rows' eras and the feature names, not (X, y).

    Parameters
    ----------
    groups : mapping of group name to feature names, or None
        features.json's groups; None (or no group with a trained feature) uses principal components instead.
    n_components : int, default=8
        Principal components when there are no groups.
    sample_size : int, default=50_000
        Rows sampled to find the principal axes.
    random_state : int, default=0
        Seed of the row sample.

    Attributes
    ----------
    kind_ : {"groups", "pca"}
        Which composites were built.
    weights_ : ndarray (F, k) float32
        Each composite's weights over the features.
    names_ : list of str
        The composites' names (group names, or pc1, pc2, ...).
    """

    def __init__(
        self,
        groups: Mapping[str, Sequence[str]] | None = None,
        n_components: int = 8,
        sample_size: int = 50_000,
        random_state: int = 0,
    ):
        self.groups = groups
        self.n_components = n_components
        self.sample_size = sample_size
        self.random_state = random_state

    def fit(self, features: np.ndarray, eras: EraIndex, feature_names: Sequence[str]) -> Factors:
        """Learn the composite weights: group membership, or principal axes of a row sample."""
        names = list(feature_names)
        position = {name: i for i, name in enumerate(names)}
        self.names_: list[str] = []
        columns = []
        for group, members in (self.groups or {}).items():
            idx = sorted({position[m] for m in members if m in position})
            if idx:
                column = np.zeros(len(names), dtype=np.float32)
                column[idx] = 1.0
                columns.append(column)
                self.names_.append(str(group))
        if columns:
            self.kind_ = "groups"
            self.weights_ = np.stack(columns, axis=1)
        else:
            self.kind_ = "pca"
            self.weights_ = self._principal_axes(features, eras)
            self.names_ = [f"pc{i + 1}" for i in range(self.weights_.shape[1])]
        return self

    def _principal_axes(self, features: np.ndarray, eras: EraIndex) -> np.ndarray:
        """Leading principal axes (F, k) of era-centred features on a row sample (NaN → era mean)."""
        rng = np.random.default_rng(self.random_state)
        n = features.shape[0]
        rows = np.sort(rng.choice(n, size=min(n, self.sample_size), replace=False))
        sub = EraIndex(eras.eras[eras.codes[rows]])
        x = np.asarray(features[rows], dtype=np.float64)
        x = x - sub.broadcast(sub.means(x))
        x = np.nan_to_num(x, nan=0.0)
        _, _, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
        k = max(1, min(self.n_components, vt.shape[0]))
        axes = vt[:k].T
        # a sign convention so refits give identical axes: the largest loading of each axis is positive
        signs = np.sign(axes[np.argmax(np.abs(axes), axis=0), np.arange(k)])
        return (axes * np.where(signs == 0, 1.0, signs)).astype(np.float32)

    def raw(self, features: np.ndarray, eras: EraIndex) -> np.ndarray:
        """Unstandardised composites (n, k): group means (NaN where a stock has no value) or PC scores."""
        if self.kind_ == "groups":
            sums, counts = _chunked_matmul(features, self.weights_)
            with np.errstate(invalid="ignore", divide="ignore"):
                return sums / np.where(counts > 0, counts, np.nan)
        centre = eras.broadcast(eras.means(features)).astype(np.float32)
        centre = np.nan_to_num(centre, nan=FILL_VALUE)
        sums, _ = _chunked_matmul(features, self.weights_, centre=centre)
        return sums

    def transform(self, features: np.ndarray, eras: EraIndex) -> np.ndarray:
        """Per-era z-scored composites (n, k) float32; a missing composite is 0 (the era mean)."""
        return eras.standardize(self.raw(features, eras))
