"""`NumeraiModel`: LightGBM on the raw features plus factor composites, gated interactions, point-in-time factor
timing and data-driven clusters, blended with two gated linear layers (over the raw features and over the engineered
columns), with a per-era residualization postprocessor; a scikit-learn regressor.

The estimator assembles the parts; each component owns its fit, its evidence gate, its transform and its column
names (`Clusters`, `Interactions`, `Timing`, `Residualizer`, `LinearLayer`), the statistics the gates share live in
`model.stats`, and the booster in `model.booster`. The six components are switches of one class, so the baseline
(all off: plain LightGBM on the raw features, predictions ranked per era) and every ablation share the code path
and the tree budget. Every component gates itself on evidence from the training eras, so a world that plants
nothing for a component costs (almost) nothing. docs/design.md tells the idea behind each component.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import NotFittedError

from .base import RanksPerEraMixin
from .benchmarks import benchmark_vector, choose_benchmark_column, filled_benchmark
from .booster import Rows, predict_raw, train_booster
from .clusters import ClusterGate
from .eras import EraIndex, check_era_labels, era_key, era_number
from .factors import Factors, factor_returns
from .features import (
    CHUNK_CELLS,
    as_frame,
    as_target,
    chunk_rows,
    feature_columns,
    feature_matrix,
)
from .interactions import Interactions
from .linear import LinearLayer, blend
from .params import check_params, resolve_n_jobs
from .residualizer import RESIDUALIZE_FEATURES, Residualizer
from .stats import era_coefficients, gate_embargo
from .target_free import Pieces, TargetFree
from .timing import STALENESS_POLICIES, Timing

COMPONENTS = ("clusters", "interactions", "timing", "residualizer", "linear", "structural")
VARIANTS = ("baseline", "full") + tuple(f"no_{c}" for c in COMPONENTS)
_log = logging.getLogger("model.timing")
_LOGGED_STALENESS = [""]  # the last staleness line logged by this process
CLUSTER_T = 3.0
"""Least |t| of a cluster gate (raised to the family-wise critical value for the number of tests)."""
LINEAR_T = 3.0
"""Least Newey-West t of the linear layer's gate: the per-era corr of its ridge fitted on the choosing block (60 % of
the training eras), on the later block after the embargo, which it never saw. One test per layer (the raw one and
the structural one), so no family-wise correction; asked of the later block alone it is a stricter bar than the
other gates' (their threshold scaled to the choosing block, then t 1.5 on the later one): a ridge that predicts only
noise must not move the ranks. The structural layer's columns were themselves confirmed on that later block (the
interactions', timing's and clusters' gates), so for it the block is not wholly unseen: the ship rule's validation
eras, which no gate saw, are what judge it out of sample, and on the null and control worlds of both families it
cost nothing (docs/benchmarks.md)."""


def lgbm_threads(n_jobs: Any) -> int:
    """LightGBM's num_threads for `n_jobs`: -1 is 0 (OpenMP's own count of the CPUs it may use, which honours
    OMP_NUM_THREADS as Numerai's one-CPU runtime sets it), anything else `resolve_n_jobs`."""
    return 0 if n_jobs == -1 else resolve_n_jobs(n_jobs)


@contextmanager
def _stage(seconds: dict[str, float], name: str) -> Iterator[None]:
    """Add the wall time of the block to seconds[name] (fit's per-stage timings, `fit_seconds_`)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start


def era_chunks(raw: np.ndarray, eras: EraIndex, benchmark: np.ndarray | None
               ) -> Iterator[tuple[np.ndarray, EraIndex, np.ndarray, np.ndarray | None]]:
    """The predict path's chunks of whole eras (bounded memory): each chunk's row positions, eras, features and
    benchmark. A call that is one sorted chunk (the live era) gets the arrays themselves, not copies."""
    for rows in eras.chunks(chunk_rows(raw.shape[1])):
        if len(rows) == len(raw) and bool(np.all(rows == np.arange(len(raw)))):
            yield rows, eras, raw, benchmark
        else:
            yield rows, eras.take(rows), raw[rows], None if benchmark is None else benchmark[rows]


def fit_residualizer(model: NumeraiModel, target_free: TargetFree | None, raw: np.ndarray, target: np.ndarray,
                     eras: EraIndex, features: list[str], composites: np.ndarray | None = None,
                     labels: np.ndarray | None = None) -> Residualizer:
    """The residualizer of `model`'s settings (its residualize_* parameters and gate embargo) fitted on these rows:
    NumeraiModel's own, and a TargetEnsemble's for the combination.

    The gate's linear proxy regresses the target on the composites (`composites`, else made from `target_free` by
    chunks of whole eras, else principal components of the features: made only if the gate asks); the cluster
    dummies are exposures by the rows' labels (`labels`, else `target_free`'s)."""
    chunk = chunk_rows(raw.shape[1])
    if composites is not None:
        basis: Any = composites
    elif target_free is not None:
        def basis() -> np.ndarray:
            return target_free.composites(raw, eras, chunk)
    else:
        def basis() -> np.ndarray:
            return Factors(None, model.n_factors, random_state=int(model.random_state)).fit(
                raw, eras, features).transform(raw, eras)
    if labels is None and target_free is not None:
        labels = target_free.labels(raw, eras)
    return Residualizer(
        model.residualize_proportion, model.residualize_features, model.residualize_n_features,
        clusters=model.residualize_clusters, benchmark=model.residualize_benchmark,
    ).fit(raw, target, eras, basis=basis, labels=labels,
          n_clusters=target_free.n_clusters_ if labels is not None else None, embargo=model.gate_embargo)


class NumeraiModel(RanksPerEraMixin, RegressorMixin, BaseEstimator):
    """Interaction-, timing- and cluster-aware LightGBM for Numerai, blended with two linear layers (over the raw
    features and over the engineered columns), with a residualization postprocessor.

    X is a DataFrame of the `era` column and the features (int8 0..4, NaN allowed); a frame without `era` is one
    era. Predictions are per-era ranks in (0, 1]. It works in Pipeline, cross_validate and GridSearchCV with an era
    splitter (validation.evaluation.splits.EraTimeSeriesSplit) and era scorers (validation.evaluation.scoring).

    Parameters
    ----------
    feature_groups : mapping of group → feature names, or None
        features.json's groups, whose per-stock means are the factor composites; None: principal components.
    clusters, interactions, timing, residualizer, linear, structural : bool, default=False, True, True, True, True, True
        The six component switches; all False is the baseline (plain LightGBM, ranked per era). `clusters` is
        off by default: on the battery of 12 synthetic worlds (README, benchmark 7) it took 0.0003 corr from the
        full model where effects were planted and 0.0004 where none were, its gate passing in every world without
        effects; switch it on to try it on your data.
    n_factors : int, default=8
        Principal-component factors when there are no groups.
    n_clusters, cluster_components : int, default=8, 10
        k-means clusters on a PCA of per-era standardised features.
    max_interactions, interaction_threshold : int, float, default=4, 4.5
        At most K products, each with |Newey-West t| above the larger of the threshold and the family-wise
        (Bonferroni 5 %) critical value for the number of candidates. 4.5: on the control world a product at t 3.8
        passed the family-wise 3.61 and cost 0.001 corr against plain LightGBM; planted products are far stronger.
    timing_window, timing_lag, timing_threshold : int, int, float, default=12, 5, 3.0
        Trailing mean of factor returns over `window` eras, lagged by `lag` eras (more than the target's horizon: a
        20-day target resolves about 4 eras later); evidence threshold of the timing gates (0 switches them off).
    timing_pooled : bool, default=False
        Also keep factor momentum on a test pooled over the factors, one test on every training era
        (`model.timing.Timing`'s `pooled`): when it passes, one timed column over all factors, which pays when the
        model is refreshed weekly and is 0 left alone. `nmu train` with `refresh = "weekly"` switches it on with a
        window of 4 (training.experiment.WEEKLY_TIMING).
    timing_staleness : {"neutral", "decay", "hold"}, default="neutral"
        Momentum for an era past the factor-return history (a pickle left alone after upload): the history's mean
        return, a decay towards it, or the newest window held. Chosen by measurement (README, "Leave it to
        auto-submit"); a predict-time setting, so `set_params` changes it on a fitted model.
    residualize_proportion : float in [0, 1], default=0.5
        Share of the prediction's per-era projection on the exposures that is removed.
    residualize_features : {"riskiest", "all", None}, default="riskiest"
        "riskiest": the `residualize_n_features` features whose correlation with the target changed most between
        the halves of training; "all"; None: no features.
    residualize_n_features : int, default=10
    residualize_clusters, residualize_benchmark : bool, default=True, False
        Add the cluster dummies / the benchmark column as exposures.
    linear_weight : float, default=0.5
        The linear layer's weight in the per-era rank blend rank(trees) + w x rank(ridge) (model.linear: a ridge
        of the era-centred target on the era-centred features, kept only if it predicts the later training eras, t
        above LINEAR_T). 0.5: of the weights 0.25, 0.5, 1 and 2 on 17 worlds of both families, the one whose worst
        world lost least against full without it (docs/benchmarks.md); a predict-time setting, so `set_params`
        changes it on a fitted model.
    structural_weight : float, default=2.0
        The structural layer's weight in the same blend, rank(trees) + linear_weight x rank(ridge) +
        structural_weight x rank(structural ridge): a ridge over the engineered columns (composites, kept products,
        timed exposures; each standardised), behind the same gate; it weighs what clusters, interactions and timing
        engineer, so with all three off it has nothing to weigh and stays None. 2: on the future eras of 18
        fresh-seed worlds of both families (tests/benchmarks/bench_blend.py) the weights 1.5, 2, 3 and 5 all scored
        above 1 pooled; 2 is the largest whose every group of worlds gained (+0.0005 pooled, t 6.5) and whose worst
        world lost no more than 0.0003 (3 and 5 lost 0.0006 and 0.0009 there). The battery's future eras and the
        held-out worlds, which chose nothing, judge it (docs/benchmarks.md "The weight of 2"). A predict-time
        setting.
    factor_model : bool, default=False
        Add the linear factor model's score (composites x Fama-MacBeth mean premia of training) as a column.
    lgbm_params : mapping or None
        LightGBM parameters merged over model.booster.DEFAULT_LGBM_PARAMS (scikit-learn style names accepted).
    n_jobs : int or None, default=-1
        Threads of LightGBM, scikit-learn's convention: None is 1, -1 every CPU this process may use, -2 all but
        one. (A `num_threads`/`n_jobs` entry of lgbm_params wins for the fit.)
    random_state : int, default=0
        The seed of everything.

    Attributes
    ----------
    feature_names_in_ : list of str
        The trained feature columns, in order.
    n_features_in_ : int
    benchmark_columns_ : list of str or None
        The benchmark column the model was fitted with (None: fitted without benchmark predictions).
    target_free_ : model.target_free.TargetFree or None
        The work that does not depend on the target: the composites and the clusters' structure (None for the
        baseline); an ensemble's members hold the same one.
    factors_ : Factors or None
        The composites (`target_free_.factors_`).
    clusters_ : ClusterGate or None
        The clusters' gate: which cluster columns this target gets (the structure is `target_free_.clusters_`).
    interactions_, timing_, residualizer_, linear_, structural_ : component or None
        The fitted components, each with its gate's choices (None when switched off; a linear layer's `coef_` is
        None when its gate refused it).
    factor_premia_ : ndarray or None
        Mean per-era premia of the composites (only with factor_model).
    engineered_names_ : list of str
        The columns the components add to the booster's input.
    as_of_era_ : str or None
        The newest era whose target the model has seen (the timing history's).
    booster_ : lightgbm.Booster
    fit_seconds_ : dict of str to float
        Wall time of each stage of fit.
    """

    reads_eras = True
    """Meta-estimators (ResidualizedRegressor) pass this model the `era` column."""

    _parameter_rules: ClassVar[dict[str, tuple]] = {
        "clusters": ("bool",), "interactions": ("bool",), "timing": ("bool",), "residualizer": ("bool",),
        "linear": ("bool",), "linear_weight": ("real", 0.0, None),
        "structural": ("bool",), "structural_weight": ("real", 0.0, None),
        "n_factors": ("int", 1, None), "n_clusters": ("int", 1, None), "cluster_components": ("int", 1, None),
        "max_interactions": ("int", 0, None), "interaction_threshold": ("real", 0, None),
        "timing_window": ("int", 1, None), "timing_lag": ("int", 0, None), "timing_threshold": ("real", 0, None),
        "timing_pooled": ("bool",), "timing_staleness": ("choice", *STALENESS_POLICIES),
        "residualize_proportion": ("real", 0.0, 1.0), "residualize_features": ("choice", *RESIDUALIZE_FEATURES),
        "residualize_n_features": ("int", 0, None), "residualize_clusters": ("bool",),
        "residualize_benchmark": ("bool",), "factor_model": ("bool",), "random_state": ("int", 0, None),
        "feature_groups": ("mapping", "none"), "lgbm_params": ("mapping", "none"), "n_jobs": ("n_jobs",),
    }
    """What each parameter may be (model.params): checked at fit, as scikit-learn checks, not in __init__."""

    def __init__(
        self,
        feature_groups: Mapping[str, Sequence[str]] | None = None,
        clusters: bool = False,
        interactions: bool = True,
        timing: bool = True,
        residualizer: bool = True,
        linear: bool = True,
        structural: bool = True,
        n_factors: int = 8,
        n_clusters: int = 8,
        cluster_components: int = 10,
        max_interactions: int = 4,
        interaction_threshold: float = 4.5,
        timing_window: int = 12,
        timing_lag: int = 5,
        timing_threshold: float = 3.0,
        timing_pooled: bool = False,
        timing_staleness: str = "neutral",
        residualize_proportion: float = 0.5,
        residualize_features: str | None = "riskiest",
        residualize_n_features: int = 10,
        residualize_clusters: bool = True,
        residualize_benchmark: bool = False,
        linear_weight: float = 0.5,
        structural_weight: float = 2.0,
        factor_model: bool = False,
        lgbm_params: Mapping[str, Any] | None = None,
        n_jobs: int | None = -1,
        random_state: int = 0,
    ):
        self.feature_groups = feature_groups
        self.clusters = clusters
        self.interactions = interactions
        self.timing = timing
        self.residualizer = residualizer
        self.linear = linear
        self.structural = structural
        self.n_factors = n_factors
        self.n_clusters = n_clusters
        self.cluster_components = cluster_components
        self.max_interactions = max_interactions
        self.interaction_threshold = interaction_threshold
        self.timing_window = timing_window
        self.timing_lag = timing_lag
        self.timing_threshold = timing_threshold
        self.timing_pooled = timing_pooled
        self.timing_staleness = timing_staleness
        self.residualize_proportion = residualize_proportion
        self.residualize_features = residualize_features
        self.residualize_n_features = residualize_n_features
        self.residualize_clusters = residualize_clusters
        self.residualize_benchmark = residualize_benchmark
        self.linear_weight = linear_weight
        self.structural_weight = structural_weight
        self.factor_model = factor_model
        self.lgbm_params = lgbm_params
        self.n_jobs = n_jobs
        self.random_state = random_state

    # ---- variants -------------------------------------------------------------------------------------
    def variant(self, name: str) -> NumeraiModel:
        """An unfitted copy: "baseline" (all components off), "full" (all on) or "no_<component>"."""
        params = self.get_params(deep=False)
        if name == "baseline":
            switches = {c: False for c in COMPONENTS}
        elif name == "full":
            switches = {c: True for c in COMPONENTS}
        elif name.startswith("no_") and name[3:] in COMPONENTS:
            switches = {c: c != name[3:] for c in COMPONENTS}
        else:
            raise ValueError(f"unknown variant {name!r}; choose one of {', '.join(VARIANTS)}")
        params.update(switches)
        return type(self)(**params)

    # ---- parameters -----------------------------------------------------------------------------------
    @property
    def _uses_factors(self) -> bool:
        return bool(self.clusters or self.interactions or self.timing)

    @property
    def _nw_lags(self) -> int:
        """Newey-West lags of every gate: neighbouring eras' targets overlap for about `timing_lag` - 1 eras."""
        return max(1, self.timing_lag - 1)

    @property
    def gate_embargo(self) -> int:
        """Eras between the eras that choose and the eras that confirm, in every gate (model.stats.gate_embargo of
        the gates' Newey-West lags)."""
        return gate_embargo(self._nw_lags)

    def make_target_free(self) -> TargetFree:
        """An unfitted TargetFree with this model's settings (its composites, and the clusters' structure when
        `clusters` is on)."""
        return TargetFree(self.feature_groups, self.n_factors, clusters=bool(self.clusters), n_clusters=self.n_clusters,
                          cluster_components=self.cluster_components, random_state=int(self.random_state))

    def _checked_target_free(self, target_free: TargetFree | None) -> TargetFree | None:
        """The target-free work fit was given (or None), refused unless fitted and with this model's clusters switch."""
        if target_free is None:
            return None
        if not target_free.__sklearn_is_fitted__():
            raise NotFittedError("NumeraiModel.fit: the given target_free is not fitted")
        if (target_free.clusters_ is not None) != bool(self.clusters):
            raise ValueError(f"NumeraiModel.fit: the given target_free {'has' if target_free.clusters_ else 'lacks'} "
                             f"the clusters' structure but `clusters` is {self.clusters!r}; make it with "
                             "model.make_target_free()")
        return target_free

    # ---- engineered features ------------------------------------------------------------------------
    def _engineer(self, raw: np.ndarray, eras: EraIndex, bench: np.ndarray | None,
                  pieces: Pieces | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Engineered columns (n, m) float32 for whole eras, and the cluster labels (or None). `pieces`: the
        target-free pieces of these rows when the caller (an ensemble) already computed them."""
        if self.target_free_ is None:
            return np.zeros((len(raw), 0), dtype=np.float32), None
        p = pieces if pieces is not None else self.target_free_.pieces(raw, eras)
        return self._assemble(p.comp_raw, p.z, p.labels, p.relative, eras, bench), p.labels

    def _assemble(self, comp_raw: np.ndarray, z: np.ndarray, labels: np.ndarray | None, relative: np.ndarray | None,
                  eras: EraIndex, bench: np.ndarray | None) -> np.ndarray:
        """The engineered columns (n, m) float32 from the composites and cluster pieces of whole eras (fit passes
        the pieces it already has; predict computes them in `_engineer`)."""
        parts = [z]
        if self.factor_premia_ is not None:  # the linear factor model's own score: composites x mean premia
            parts.append((z @ self.factor_premia_).astype(np.float32)[:, None])
        if self.clusters_ is not None:
            parts += self.clusters_.transform_columns(labels, relative)
        if self.interactions_ is not None:
            parts.append(self.interactions_.transform(z, relative))
        if self.timing_ is not None:
            parts.append(self.timing_.transform(z, comp_raw, eras, bench, getattr(self, "timing_staleness", "neutral")))
        return np.concatenate(parts, axis=1).astype(np.float32, copy=False)

    def _structural_columns(self, engineered: np.ndarray) -> np.ndarray:
        """The engineered columns the structural layer weighs: all but the categorical `cluster_id` (a label, not
        a quantity)."""
        keep = [i for i, name in enumerate(self.engineered_names_) if name != "cluster_id"]
        return engineered if len(keep) == engineered.shape[1] else engineered[:, keep]

    def _engineered_names(self) -> list[str]:
        if self.target_free_ is None:
            return []
        factor_names = self.factors_.names_
        names = [f"factor_{n}" for n in factor_names]
        names += ["factor_model"] if self.factor_premia_ is not None else []
        if self.clusters_ is not None:
            names += self.clusters_.feature_names(factor_names)
        if self.interactions_ is not None:
            names += list(self.interactions_.names_)
        if self.timing_ is not None:
            names += list(self.timing_.feature_names_)
        return names

    # ---- fit ------------------------------------------------------------------------------------------
    def fit(self, X: pd.DataFrame, y: Any, benchmark: pd.DataFrame | None = None,
            callbacks: list | None = None, target_free: TargetFree | None = None) -> NumeraiModel:
        """Fit the factors and the components on the training eras, then the booster on all columns.

        Parameters
        ----------
        X : DataFrame
            The `era` column and the features.
        y : array-like (n,)
            The target; NaN rows are left out.
        benchmark : DataFrame, optional
            Benchmark models' predictions indexed like X (timing's benchmark state, residualizer's exposure).
        callbacks : list, optional
            LightGBM callbacks (e.g. a progress bar).
        target_free : TargetFree, optional
            The fitted target-free work (factor composites and the clusters' structure: PCA and k-means) to use
            rather than fit, made with this model's settings (`self.make_target_free()`): a TargetEnsemble gives every
            member the first member's. The gates still judge this target.

        Returns
        -------
        self
        """
        check_params(self)
        X = as_frame(X, owner=type(self).__name__)
        target = as_target(y, len(X), owner=type(self).__name__)
        seconds: dict[str, float] = {}
        with _stage(seconds, "input"):
            features = feature_columns(X)
            if not features:
                raise ValueError(f"Found array with 0 feature(s) (shape=({len(X)}, 0)) while a minimum of 1 is required: "
                                 "X holds no feature columns")
            self.feature_names_in_ = np.asarray(features, dtype=object)
            self.n_features_in_ = len(features)
            raw = feature_matrix(X, features)
            if "era" in X.columns:
                check_era_labels(X["era"].unique())
            eras = EraIndex.from_frame(X)
            bench = benchmark_vector(benchmark, X.index, None)
            self.benchmark_columns_ = None
            if bench is not None and isinstance(benchmark, pd.DataFrame):
                self.benchmark_columns_ = [str(choose_benchmark_column(benchmark))]
        seed = int(self.random_state)

        self.target_free_ = self.factors_ = self.clusters_ = self.interactions_ = self.timing_ = None
        self.residualizer_ = self.linear_ = self.structural_ = None
        z = comp_raw = relative = labels = returns = joint = None
        self.factor_premia_ = None
        if self._uses_factors:
            with _stage(seconds, "factors"):
                self.target_free_ = self._checked_target_free(target_free) or \
                    self.make_target_free().fit(raw, eras, features)
                self.factors_ = self.target_free_.factors_
                comp_raw, z, labels, relative = self.target_free_.pieces(raw, eras, chunk_rows(raw.shape[1]))
                returns = factor_returns(z, target, eras)
                # Fama-MacBeth: per-era multiple-regression slopes of the target on all composites, averaged
                joint = era_coefficients([z[:, j] for j in range(z.shape[1])], target, eras)
                premia = np.nanmean(joint, axis=0) if np.isfinite(joint).any() else np.zeros(z.shape[1])
                self.factor_premia_ = np.nan_to_num(premia).astype(np.float32) if self.factor_model else None
        if self.clusters:
            with _stage(seconds, "clusters"):
                self.clusters_ = ClusterGate(CLUSTER_T, nw_lags=self._nw_lags).fit(
                    z, relative, labels, self.target_free_.n_clusters_, target, eras)
        if self.interactions:
            with _stage(seconds, "interactions"):
                self.interactions_ = Interactions(self.max_interactions, self.interaction_threshold, nw_lags=self._nw_lags)
                self.interactions_.fit(z, target, eras, self.factors_.names_, relative)
        if self.timing:
            with _stage(seconds, "timing"):
                self.timing_ = Timing(self.timing_window, self.timing_lag, self.timing_threshold, nw_lags=self._nw_lags,
                                      pooled=self.timing_pooled)
                self.timing_.fit(z, comp_raw, returns, eras, self.factors_.names_, bench, joint_returns=joint)
                self.as_of_era_ = self.timing_.as_of_era_
        else:
            resolved = eras.sums((~np.isnan(target)).astype(np.int64)) > 0
            self.as_of_era_ = str(eras.eras[resolved][-1]) if resolved.any() else None
        if self.residualizer:
            with _stage(seconds, "residualizer"):
                self.residualizer_ = fit_residualizer(self, self.target_free_, raw, target, eras, features,
                                                      composites=z, labels=labels)

        if self.linear:
            with _stage(seconds, "linear"):
                self.linear_ = LinearLayer(LINEAR_T, self._nw_lags, self.gate_embargo).fit(
                    raw, target, eras, chunk_rows(raw.shape[1]))

        with _stage(seconds, "engineered"):
            self.engineered_names_ = self._engineered_names()
            engineered = np.zeros((len(raw), 0), dtype=np.float32)
            if self.target_free_ is not None:
                engineered = np.empty((len(raw), len(self.engineered_names_)), dtype=np.float32)
                for rows in eras.chunks(chunk_rows(raw.shape[1])):  # the pieces fit already has, by chunks
                    engineered[rows] = self._assemble(
                        comp_raw[rows], z[rows], None if labels is None else labels[rows],
                        None if relative is None else relative[rows], eras.take(rows), None if bench is None else bench[rows])
            del z, comp_raw, relative
        if self.structural and engineered.shape[1]:
            with _stage(seconds, "structural"):
                self.structural_ = LinearLayer(LINEAR_T, self._nw_lags, self.gate_embargo, standardised=True).fit(
                    self._structural_columns(engineered), target, eras, chunk_rows(raw.shape[1]))
        with _stage(seconds, "lightgbm"):
            names = list(features) + list(self.engineered_names_)
            categorical = ["cluster_id"] if "cluster_id" in self.engineered_names_ else []
            self.booster_ = train_booster(raw, engineered, target, self.lgbm_params, names, categorical, seed,
                                          lgbm_threads(self.n_jobs), CHUNK_CELLS, callbacks)
        self.fit_seconds_ = seconds
        return self

    # ---- factor-return history ----------------------------------------------------------------------
    def update_factor_returns(self, X: pd.DataFrame, y: Any) -> NumeraiModel:
        """Extend the timing history with newly resolved eras of X (nothing else is refitted: same trees)."""
        self._check_fitted()
        target = np.asarray(y, dtype=np.float64).reshape(-1)
        eras = EraIndex.from_frame(X)
        if self.timing_ is None:
            resolved = eras.sums((~np.isnan(target)).astype(np.int64)) > 0
            newest = [str(e) for e in eras.eras[resolved]]
            if newest and (self.as_of_era_ is None or era_key(newest[-1]) > era_key(self.as_of_era_)):
                self.as_of_era_ = newest[-1]
            return self
        features = list(self.feature_names_in_)
        z = np.empty((len(X), len(self.factors_.names_)), dtype=np.float64)
        for rows in eras.chunks(chunk_rows(len(features))):
            z[rows] = self.factors_.transform(feature_matrix(X.iloc[rows], features), eras.take(rows))
        self.timing_.update(eras.eras, factor_returns(z, target, eras))
        self.as_of_era_ = self.timing_.as_of_era_
        return self

    # ---- predict --------------------------------------------------------------------------------------
    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "booster_")

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise NotFittedError("this NumeraiModel is not fitted yet: call fit(X, y) first")

    def predict(self, X: pd.DataFrame, benchmark: pd.DataFrame | None = None) -> np.ndarray:
        """Predictions in (0, 1], ranked within each era (residualized first when the residualizer is on).

        Parameters
        ----------
        X : DataFrame
            The `era` column and (at least) the trained features; a missing feature is NaN (logged).
        benchmark : DataFrame, optional
            Benchmark models' predictions indexed like X; a missing value takes the chunk's mean.

        Returns
        -------
        ndarray (n,) float64
        """
        self._check_fitted()
        X = as_frame(X, n_features=self.n_features_in_, owner=type(self).__name__)
        features = list(self.feature_names_in_)
        eras = EraIndex.from_frame(X)
        bench_all = benchmark_vector(benchmark, X.index, self.benchmark_columns_)
        out = np.empty(len(X), dtype=np.float64)
        for rows in eras.chunks(chunk_rows(len(features))):
            bench = None if bench_all is None else filled_benchmark(bench_all[rows])
            out[rows] = self.predict_eras(feature_matrix(X.iloc[rows], features), eras.take(rows), bench)
        return out

    def predict_eras(self, raw: np.ndarray, eras: EraIndex, benchmark: np.ndarray | None = None) -> np.ndarray:
        """The array-level predict of whole eras, which `predict` and Numerai's live function both call.

        Parameters
        ----------
        raw : ndarray (n, n_features_in_)
            The trained features in trained order (int8, or float32 with NaN).
        eras : EraIndex
            The rows' eras.
        benchmark : ndarray (n,), optional
            The benchmark column, without NaN.

        Returns
        -------
        ndarray (n,) float64: per-era ranks in (0, 1].
        """
        self._check_fitted()
        self.log_staleness(eras)
        out = np.empty(len(raw), dtype=np.float64)
        threads = lgbm_threads(self.n_jobs)
        for rows, sub, chunk, bench in era_chunks(raw, eras, benchmark):
            out[rows] = self.predict_chunk(chunk, sub, bench, threads)
        return out

    def predict_chunk(self, chunk: np.ndarray, eras: EraIndex, bench: np.ndarray | None, threads: int,
                      pieces: Pieces | None = None) -> np.ndarray:
        """`predict_eras` of one chunk of whole eras (per-era ranks, residualized when the model has a
        residualizer); `pieces`: the chunk's `target_free_.pieces`, when the caller already computed them."""
        engineered, labels = self._engineer(chunk, eras, bench, pieces)
        values = predict_raw(self.booster_, Rows(chunk, engineered, None), threads)
        structural = getattr(self, "structural_", None)  # getattr: a model pickled before the layers existed
        values = blend(values, eras, [
            (getattr(self, "linear_", None), chunk, float(getattr(self, "linear_weight", 0.0))),
            (structural, None if structural is None else self._structural_columns(engineered),
             float(getattr(self, "structural_weight", 0.0)))])
        if self.residualizer_ is None:
            return eras.rank(values)
        return self.residualizer_.transform(values, chunk, eras, labels, bench)

    def log_staleness(self, eras: EraIndex) -> None:
        """One log line (logger "model.timing") when an era's momentum lacks factor returns past the history."""
        if self.timing_ is None or not len(self.timing_.momentum_factors_):
            return
        stale = self.timing_.staleness(eras.eras)
        if not (np.nan_to_num(stale, nan=0.0) > 0).any():
            return
        worst = int(np.nanargmax(stale))
        era, gap = eras.eras[worst], stale[worst]
        how = (f"era {str(era)!r} has no number: {gap:.0f} week(s) since the history was last extended"
               if not np.isfinite(era_number(era)) else f"era {era} is {gap:.0f} era(s) past what its momentum saw")
        message = (f"timing history as of era {self.timing_.as_of_era_}: {how}; momentum features use the "
                   f"{getattr(self, 'timing_staleness', 'neutral')!r} policy (run `nmu refresh` weekly to keep them "
                   "current)")
        if message != _LOGGED_STALENESS[0]:  # once, not per chunk of a multi-era call or per ensemble member
            _LOGGED_STALENESS[0] = message
            _log.warning("%s", message)
