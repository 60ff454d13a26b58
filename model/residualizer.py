"""The residualizer component: which exposures NumeraiModel's predictions are residualized on, gated on the
training eras, and the postprocessor that applies them (the per-era work is `model.lstsq`'s kernel).

Exposure sets: the riskiest features (whose correlation with the target moved most between the halves of training)
or all features, the cluster dummies, the benchmark column. The gate keeps a set only if residualizing a linear
proxy on it raises the proxy's sharpe on the later training eras (an embargo after the eras that fit the proxy).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import ClassVar

import numpy as np

from .clusters import cluster_dummies
from .eras import EraIndex
from .features import era_filled
from .lstsq import residualize, residualize_predictions
from .params import check_params
from .stats import MIN_CONFIRM_ERAS, era_correlations, evidence_blocks

__all__ = ["RESIDUALIZE_FEATURES", "SHARPE_GAIN", "Residualizer"]

RESIDUALIZE_FEATURES = ("riskiest", "all", None)
SHARPE_GAIN = 1.1
"""The gate keeps an exposure set only if it raises the linear proxy's second-half sharpe by this factor."""


def _riskiest(corr: np.ndarray | None, n_features: int) -> np.ndarray:
    """Indices of the `n_features` features whose per-era correlation with the target (`corr`, (eras, F)) moved
    most between the halves of those eras."""
    if corr is None or len(corr) // 2 < 1:
        return np.zeros(0, dtype=np.int64)
    half = len(corr) // 2
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN feature: no change
        change = np.abs(np.nanmean(corr[:half], axis=0) - np.nanmean(corr[half:], axis=0))
    change = np.nan_to_num(change, nan=0.0)
    n = min(int(n_features), corr.shape[1])
    return np.sort(np.argsort(-change, kind="stable")[:n]).astype(np.int64)


def _proxy_scores(values: np.ndarray, target: np.ndarray, eras: EraIndex) -> tuple[float, float]:
    """(mean, sharpe) of the per-era correlation of `values` with the target."""
    c = era_correlations(eras.standardize(values.reshape(-1, 1), dtype=np.float64), target, eras)[:, 0]
    c = c[~np.isnan(c)]
    return (float(c.mean()), float(c.mean() / c.std())) if len(c) > 2 and c.std() > 0 else (0.0, 0.0)


class Residualizer:
    """The residualization postprocessor: per era, removes `proportion` of the predictions' projection on the chosen
    exposures (the talk's "specific return"), then ranks them to (0, 1].

    Exposure sets: the features ("riskiest": the `n_features` whose correlation with the target moved most between
    the halves of training, or "all"), the cluster dummies (when cluster labels are given) and the benchmark column
    (when given). With `gate`, a set is used only if it raises a linear proxy's sharpe by 10 % without costing more
    than 10 % of its mean corr on the later training eras, the proxy (and the riskiest features) fitted on the first
    ones, an embargo apart (model.stats.evidence_blocks).

    A plain class, not a scikit-learn estimator: its fit takes the features, the target, the rows' eras, the proxy's
    basis and the cluster labels, not (X, y). `ResidualizedRegressor` is the scikit-learn estimator around it.

    Parameters
    ----------
    proportion : float in [0, 1], default=0.5
        Share of the projection removed.
    features : {"riskiest", "all", None}, default="riskiest"
        Which features are exposures.
    n_features : int, default=10
        How many riskiest features.
    clusters : bool, default=True
        Cluster dummies are exposures (when the fit is given cluster labels).
    benchmark : bool, default=False
        The benchmark column is an exposure (when predictions come with one).
    gate : bool, default=True
        Keep only the exposure sets that pass the evidence gate above.

    Attributes
    ----------
    riskiest_ : ndarray of int
        The riskiest features' positions.
    parts_ : tuple of str
        The exposure sets used: "features", "clusters".
    evidence_ : dict
        The proxy's (mean, sharpe) on the second training half, alone and after each set.
    n_clusters_ : int or None
        The number of clusters of the dummies.
    """

    _parameter_rules: ClassVar[dict[str, tuple]] = {
        "proportion": ("real", 0.0, 1.0), "features": ("choice", *RESIDUALIZE_FEATURES), "n_features": ("int", 0, None),
        "clusters": ("bool",), "benchmark": ("bool",), "gate": ("bool",)}

    def __init__(self, proportion: float = 0.5, features: str | None = "riskiest", n_features: int = 10,
                 clusters: bool = True, benchmark: bool = False, gate: bool = True):
        self.proportion = proportion
        self.features = features
        self.n_features = n_features
        self.clusters = clusters
        self.benchmark = benchmark
        self.gate = gate

    def _requested(self, with_clusters: bool) -> list[str]:
        parts = []
        if self.features == "all" or (self.features == "riskiest" and self.n_features):
            parts.append("features")
        if self.clusters and with_clusters:
            parts.append("clusters")
        return parts

    def fit(self, raw: np.ndarray, target: np.ndarray, eras: EraIndex,
            basis: Callable[[], np.ndarray] | np.ndarray | None = None, labels: np.ndarray | None = None,
            n_clusters: int | None = None, embargo: int = 5) -> Residualizer:
        """Choose the riskiest features and gate the exposure sets on the training eras.

        `basis` (composites (n, k), or a function returning them, called only when the gate needs them) is what
        the linear proxy regresses the target on; `labels` (n,) and `n_clusters` the rows' clusters; `embargo` the
        eras between the choosing and the judging eras (their targets overlap)."""
        check_params(self)
        corr = era_correlations(raw, target, eras) if self.features == "riskiest" else None
        self.riskiest_ = _riskiest(corr, self.n_features) if self.features == "riskiest" else np.zeros(0, dtype=np.int64)
        self.n_clusters_ = n_clusters if labels is not None else None
        requested = self._requested(labels is not None)
        self.evidence_: dict[str, tuple[float, float]] = {}
        select, later = evidence_blocks(eras.n_eras, embargo)
        if not requested or float(self.proportion) == 0.0:
            self.parts_ = ()
        elif not self.gate:  # not asked to: do as asked
            self.parts_ = tuple(requested)
        elif select.stop < 16 or later.stop - later.start < MIN_CONFIRM_ERAS:  # too few eras to show anything
            self.parts_ = ()
        else:
            self.parts_ = self._gated(raw, target, eras, basis() if callable(basis) else basis, labels, corr, requested,
                                      select, later)
        return self

    def _gated(self, raw: np.ndarray, target: np.ndarray, eras: EraIndex, basis: np.ndarray, labels: np.ndarray | None,
               corr: np.ndarray | None, requested: list[str], select: slice, later: slice) -> tuple[str, ...]:
        """The proxy is fitted on the choosing eras and every exposure set judged on the later, embargoed eras."""
        first = eras.codes < select.stop
        second = eras.codes >= later.start
        basis = np.asarray(basis, dtype=np.float64)
        valid = ~np.isnan(target)
        yc = target - eras.broadcast(eras.means(target))
        fit_rows = first & valid
        beta, *_ = np.linalg.lstsq(basis[fit_rows], yc[fit_rows], rcond=None)
        sub_b = eras.take(np.flatnonzero(second))
        proxy = basis[second] @ beta
        y_b = target[second]
        base_mean, base_sharpe = _proxy_scores(proxy, y_b, sub_b)
        self.evidence_["proxy"] = (base_mean, base_sharpe)
        kept = []
        for part in requested:
            if part == "features":
                if self.features == "all":
                    exposure = era_filled(raw[second], sub_b)
                else:
                    idx = _riskiest(None if corr is None else corr[select], self.n_features)
                    exposure = era_filled(raw[:, idx][second], sub_b)  # the chosen columns only, then rows
            else:
                exposure = cluster_dummies(labels[second], self.n_clusters_)[:, 1:]
            mean, sharpe = _proxy_scores(residualize(proxy, exposure, sub_b, float(self.proportion)), y_b, sub_b)
            self.evidence_[part] = (mean, sharpe)
            if sharpe > SHARPE_GAIN * base_sharpe and base_sharpe > 0 and mean >= 0.9 * base_mean:
                kept.append(part)
        return tuple(kept)

    def exposures(self, raw: np.ndarray, eras: EraIndex, labels: np.ndarray | None = None,
                  benchmark: np.ndarray | None = None) -> np.ndarray | None:
        """The exposure columns (n, m) of whole eras for the chosen sets, or None when there are none."""
        parts = []
        if "features" in self.parts_ and self.features == "all":
            parts.append(era_filled(raw, eras))
        elif "features" in self.parts_ and len(self.riskiest_):
            parts.append(era_filled(raw[:, self.riskiest_], eras))
        if "clusters" in self.parts_ and labels is not None and self.n_clusters_:
            parts.append(cluster_dummies(labels, self.n_clusters_)[:, 1:])  # the intercept is always included
        if self.benchmark and benchmark is not None:
            parts.append(np.asarray(benchmark, dtype=np.float32).reshape(-1, 1))
        return np.concatenate(parts, axis=1) if parts else None

    def transform(self, predictions: np.ndarray, raw: np.ndarray, eras: EraIndex, labels: np.ndarray | None = None,
                  benchmark: np.ndarray | None = None) -> np.ndarray:
        """Per era: gaussianize the predictions, residualize them on the exposures, rank to (0, 1]; only a rank when
        there are no exposures."""
        exposures = self.exposures(raw, eras, labels, benchmark)
        if exposures is None:
            return eras.rank(predictions)
        return residualize_predictions(predictions, exposures, eras, self.proportion)
