"""The work of NumeraiModel that does not depend on the target: the factor composites and the clusters' structure
(PCA + k-means), as one fitted object.

A NumeraiModel fits one (`target_free_`); a TargetEnsemble fits it once, with its first member, and gives it to the
other members (`NumeraiModel.fit(..., target_free=...)`), so at predict time it computes the pieces of a chunk of eras
once for every member that holds the same object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from sklearn.exceptions import NotFittedError

from .clusters import Clusters
from .eras import EraIndex
from .factors import Factors


class Pieces(NamedTuple):
    """The target-free pieces of some whole eras: the composites (raw and per-era z-scores), and the cluster labels
    and cluster-relative composites (None without clusters)."""

    comp_raw: np.ndarray
    z: np.ndarray
    labels: np.ndarray | None
    relative: np.ndarray | None


class TargetFree:
    """Factor composites and, optionally, the clusters' structure, fitted on the features alone.

    A plain class, not a scikit-learn estimator (its fit takes the rows' eras and the feature names, no target).

    Parameters
    ----------
    feature_groups : mapping of group → feature names, or None
        The composites' groups; None: principal components.
    n_factors : int, default=8
        Principal-component factors when there are no groups.
    clusters : bool, default=False
        Fit the clusters' structure too.
    n_clusters, cluster_components : int, default=8, 10
        k-means clusters on a PCA of per-era standardised features.
    random_state : int, default=0
        Seed of the factors' and the clusters' row samples.

    Attributes
    ----------
    factors_ : model.factors.Factors
        The fitted composites.
    clusters_ : model.clusters.Clusters or None
        The fitted clusters' structure (None unless `clusters`).
    n_clusters_ : int or None
        The number of clusters.
    """

    def __init__(self, feature_groups: Mapping[str, Sequence[str]] | None = None, n_factors: int = 8,
                 clusters: bool = False, n_clusters: int = 8, cluster_components: int = 10, random_state: int = 0):
        self.feature_groups = feature_groups
        self.n_factors = n_factors
        self.clusters = clusters
        self.n_clusters = n_clusters
        self.cluster_components = cluster_components
        self.random_state = random_state

    def fit(self, raw: np.ndarray, eras: EraIndex, features: Sequence[str]) -> TargetFree:
        """Fit the composites (and the clusters' structure) on the features `raw` (n, F) of the named columns."""
        seed = int(self.random_state)
        self.factors_ = Factors(self.feature_groups, self.n_factors, random_state=seed).fit(raw, eras, features)
        self.clusters_ = Clusters(self.n_clusters, self.cluster_components, random_state=seed).fit(raw, eras) \
            if self.clusters else None
        self.n_clusters_ = len(self.clusters_.centroids_) if self.clusters_ is not None else None
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "factors_")

    def pieces(self, raw: np.ndarray, eras: EraIndex, chunk_rows: int | None = None) -> Pieces:
        """The pieces of whole eras; the raw composites computed `chunk_rows` rows of whole eras at a time when given
        (bounded memory in fit), else in one call."""
        if not self.__sklearn_is_fitted__():
            raise NotFittedError("this TargetFree is not fitted yet: call fit(raw, eras, features) first")
        if chunk_rows is None:
            comp_raw = self.factors_.raw(raw, eras)
        else:
            comp_raw = np.empty((len(raw), len(self.factors_.names_)), dtype=np.float64)
            for rows in eras.chunks(chunk_rows):
                comp_raw[rows] = self.factors_.raw(raw[rows], eras.take(rows))
        z = eras.standardize(comp_raw)
        labels = relative = None
        if self.clusters_ is not None:
            labels, relative = self.clusters_.pieces(raw, eras, z)
        return Pieces(comp_raw, z, labels, relative)

    def composites(self, raw: np.ndarray, eras: EraIndex, chunk_rows: int) -> np.ndarray:
        """The per-era z-scored composites (n, k) float32 of whole eras, `chunk_rows` rows at a time."""
        z = np.empty((len(raw), len(self.factors_.names_)), dtype=np.float32)
        for rows in eras.chunks(chunk_rows):
            z[rows] = self.factors_.transform(raw[rows], eras.take(rows))
        return z

    def labels(self, raw: np.ndarray, eras: EraIndex) -> np.ndarray | None:
        """The rows' cluster labels (None without clusters)."""
        return self.clusters_.predict(raw, eras) if self.clusters_ is not None else None
