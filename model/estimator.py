"""`NumeraiModel`: LightGBM on the raw features plus factor composites, gated interactions, point-in-time factor
timing and data-driven clusters, with a per-era residualization postprocessor.

The four components (`clusters`, `interactions`, `timing`, `residualizer`) are switches of one class, so the
baseline (all off: plain LightGBM on the raw features, predictions ranked per era) and every ablation share the
code path and the tree budget. Every component gates itself on evidence from the training eras, so a world
that plants nothing for a component costs (almost) nothing. See ../shared/DESIGN.md for the idea.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Sequence

import lightgbm as lgb
import numpy as np
import pandas as pd

from .benchmarks import choose_benchmark_column
from .clusters import Clusters
from .eras import ERA_COLUMN, EraIndex
from .factors import Factors, factor_returns
from .interactions import Interactions, era_coefficients, familywise_threshold, newey_west_t
from .lgbm_data import Rows as _Rows, training_dataset
from .params import Params
from .residualize import residualize, residualize_predictions
from .timing import Timing, era_number

COMPONENTS = ("clusters", "interactions", "timing", "residualizer")
_HALF_T = 1.0  # |t| each training half must pass, with the full sample's sign, for a cluster gate
_CLUSTER_T = 3.0  # least |t| of a cluster gate (raised to the family-wise critical value for the number of tests)
VARIANTS = ("baseline", "full") + tuple(f"no_{c}" for c in COMPONENTS)

# Numerai's standard LightGBM recipe for its real data (the example models): 2,000 trees, learning rate 0.01,
# max_depth 5, num_leaves 31 (2**5 - 1), colsample_bytree 0.1. Our default keeps that tree shape and column
# sampling but uses a smaller budget fit for the synthetic world (thousands of stocks per era, ~100 features) so
# a fit takes about a minute on 2 cores: 1,000 trees at learning rate 0.02 (the same learning-rate x trees
# product). 10 % of the columns per tree also keeps the few engineered columns from crowding out the raw
# features (with 50 % the continuous composites dominate the trees and overfit: measured worse on both the
# planted and the control world). max_bin 15: raw features take 5 levels, engineered ones need only coarse bins.
DEFAULT_LGBM_PARAMS: dict[str, Any] = {
    "objective": "regression",
    "num_iterations": 1000,
    "learning_rate": 0.02,
    "max_depth": 5,
    "num_leaves": 31,
    "feature_fraction": 0.1,
    "min_data_in_leaf": 20,
    "max_bin": 15,  # features take 5 levels; engineered columns need only coarse bins
    "verbosity": -1,
}
# scikit-learn style names (as in a config's [lightgbm] table) → LightGBM's own names
_ALIASES = {
    "n_estimators": "num_iterations",
    "num_boost_round": "num_iterations",
    "num_trees": "num_iterations",
    "num_rounds": "num_iterations",
    "colsample_bytree": "feature_fraction",
    "subsample": "bagging_fraction",
    "subsample_freq": "bagging_freq",
    "min_child_samples": "min_data_in_leaf",
    "reg_lambda": "lambda_l2",
    "reg_alpha": "lambda_l1",
    "min_split_gain": "min_gain_to_split",
    "n_jobs": "num_threads",
    "random_state": "seed",
    "max_bins": "max_bin",
}
_CHUNK_ELEMENTS = 40_000_000  # float32 cells per chunk of eras (~160 MB): bounded memory on Numerai's 4 GB
_log = logging.getLogger("model.estimator")
_RISKIEST_CELLS = 4_000_000  # values per block of features in _riskiest (float64 temporaries ~32 MB each)
_PREDICT_CELLS = 4_000_000  # float32 values handed to booster.predict at once (~16 MB)
# trees per booster.predict call. Deep forests gain from blocks (a block's nodes stay in cache across a batch of
# rows): 6,000 depth-10 trees on 6,700 rows took 29.4 s in one call, 7.1 s in blocks of 2,000, 6.7 s in blocks of
# 500. A shallow 2,000-tree model loses 15 % in blocks of 500, so 2,000: Numerai's standard model is one call.
_PREDICT_TREES = 2000
# the residualizer's gate: an exposure set is used only if it raises the linear proxy's second-half sharpe by this factor
_RESIDUALIZE_SHARPE_GAIN = 1.1


def _lgbm_params(user: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults with the user's parameters merged over them, all under LightGBM's own names."""
    params = dict(DEFAULT_LGBM_PARAMS)
    for key, value in (user or {}).items():
        params[_ALIASES.get(key, key)] = value
    return params


def _benchmark_vector(benchmark: Any, index: pd.Index, columns: Sequence[str] | None) -> np.ndarray | None:
    """One benchmark column aligned to `index` (float64), or None when there is none to use."""
    if benchmark is None:
        return None
    if isinstance(benchmark, pd.Series):
        frame = benchmark.to_frame()
    elif isinstance(benchmark, pd.DataFrame):
        frame = benchmark
    else:
        values = np.asarray(benchmark, dtype=np.float64)
        return values.reshape(len(index), -1)[:, 0] if values.size else None
    column = choose_benchmark_column(frame, columns)
    if column is None:
        return None
    if frame.index.equals(index):
        values = frame[column].to_numpy(dtype=np.float64)
    else:
        values = frame[column].reindex(index).to_numpy(dtype=np.float64)
    if np.isnan(values).all():
        return None
    return values


def _feature_columns(X: pd.DataFrame) -> list[str]:
    """The feature columns of X: every `feature_*` column, else every numeric column but `era`."""
    names = [str(c) for c in X.columns if str(c).startswith("feature")]
    if names:
        return names
    return [str(c) for c in X.columns if c != ERA_COLUMN and pd.api.types.is_numeric_dtype(X[c])]


def _matrix(X: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """The feature block as int8 when every column is int8 (no copy up-cast), else float32; missing columns NaN."""
    present = [c for c in columns if c in X.columns]
    if len(present) < len(columns):
        missing = [c for c in columns if c not in X.columns]
        _log.warning("%d trained features missing from X (taken as NaN): %s", len(missing), ", ".join(missing[:5]))
        X = X.reindex(columns=list(columns))
    block = X[list(columns)]
    dtypes = set(block.dtypes)
    if len(dtypes) == 1 and next(iter(dtypes)) == np.int8:
        return block.to_numpy()
    return block.to_numpy(dtype=np.float32, na_value=np.nan)


def _chunk_rows(n_features: int) -> int:
    """Rows per chunk of whole eras so a float32 block of the features plus up to 64 engineered columns stays
    around _CHUNK_ELEMENTS cells."""
    return max(1, _CHUNK_ELEMENTS // (n_features + 64))


def _era_feature_corr(raw: np.ndarray, target: np.ndarray, eras: EraIndex) -> np.ndarray:
    """Per-era correlation (n_eras, F) of each feature (NaN → its era mean) with the target over the rows that have
    one; NaN for a constant feature or an era with < 2 targets. Era by era, in blocks of about _RISKIEST_CELLS
    values (a few float64 copies of a block), from sums: no standardised copy of the matrix."""
    n_features = raw.shape[1]
    out = np.full((eras.n_eras, n_features), np.nan)
    y_all = np.asarray(target, dtype=np.float64)
    for e, (_, rows) in enumerate(eras.rows()):
        y = y_all[rows]
        valid = ~np.isnan(y)
        n = int(valid.sum())
        if n < 2:
            continue
        yc = y[valid] - y[valid].mean()
        syy = float(yc @ yc)
        width = max(1, min(n_features, _RISKIEST_CELLS // len(rows)))
        for start in range(0, n_features, width):
            x = np.asarray(raw[rows, start : start + width], dtype=np.float64)
            if raw.dtype.kind == "f":
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column stays NaN
                    x = np.where(np.isnan(x), np.nanmean(x, axis=0), x)
            if n < len(rows):
                x = x[valid]
            s1 = x.sum(axis=0)
            s2 = np.einsum("ij,ij->j", x, x)
            sxx = s2 - s1 * s1 / n
            with np.errstate(invalid="ignore", divide="ignore"):
                corr = (yc @ x) / np.sqrt(np.where(sxx > 1e-12 * s2, sxx, np.nan) * syy)
            out[e, start : start + width] = corr
    out[~np.isfinite(out)] = np.nan
    return out


@contextmanager
def _stage(seconds: dict[str, float], name: str) -> Iterator[None]:
    """Add the wall time of the block to seconds[name] (fit's per-stage timings, `fit_seconds_`)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start


class NumeraiModel(Params):
    """Interaction-, timing- and cluster-aware LightGBM for Numerai with a residualization postprocessor.

    Parameters (stored untouched; learned state ends in `_`):
      feature_groups: mapping group → feature names (features.json groups); None → principal-component factors.
      clusters, interactions, timing, residualizer: the four component switches; all False = the baseline.
      n_factors: principal-component factors when there are no groups.
      n_clusters, cluster_components: k-means clusters on a PCA of per-era standardised features.
      max_interactions, interaction_threshold: at most K products, each with |Newey-West t| above the larger of
        the threshold (default 4.5: on the control world a product at t 3.8 passed the family-wise 3.61 and cost
        0.001 corr against plain LightGBM; planted products are far stronger) and the family-wise (Bonferroni 5 %) critical value for the number of candidates.
      timing_window, timing_lag, timing_threshold: trailing mean of factor returns over `window` eras, lagged by
        `lag` eras (> the target horizon: a 20-day target resolves about 4 eras later); evidence threshold
        (family-wise and both training halves must agree; 0 switches the timing gates off).
      residualize_proportion: share of the prediction's per-era projection on the exposures that is removed.
      residualize_features: "riskiest" exposures = the `residualize_n_features` features whose factor return
        changed most between the halves of training; "all"; or None (no features).
      residualize_clusters, residualize_benchmark: add cluster dummies / the benchmark column as exposures.
      factor_model: add the linear factor model's score (composites x Fama-MacBeth mean premia of training) as
        one column, whenever the composites are added.
      lgbm_params: LightGBM parameters merged over DEFAULT_LGBM_PARAMS (sklearn-style names accepted).
      n_jobs: LightGBM threads (None: all cores); random_state: the seed of everything.

    Evidence gates (all on training eras only; the learned choices end in `_`): interactions_.pairs_,
    relative_keep_ (cluster-relative composites that add to their composite, with the sign and |t| > 1 in both
    training halves), cluster_id_used_ (likewise), timing_'s
    state_pairs_ / momentum_keep_, residualize_parts_ (exposure sets that improve a linear proxy's sharpe on the
    second training half). The factor composites themselves are added whenever clusters, interactions or
    timing is on: they are the basis every component builds on.
    """

    def __init__(
        self,
        feature_groups: Mapping[str, Sequence[str]] | None = None,
        clusters: bool = True,
        interactions: bool = True,
        timing: bool = True,
        residualizer: bool = True,
        n_factors: int = 8,
        n_clusters: int = 8,
        cluster_components: int = 10,
        max_interactions: int = 4,
        interaction_threshold: float = 4.5,
        timing_window: int = 12,
        timing_lag: int = 5,
        timing_threshold: float = 3.0,
        residualize_proportion: float = 0.5,
        residualize_features: str | None = "riskiest",
        residualize_n_features: int = 10,
        residualize_clusters: bool = True,
        residualize_benchmark: bool = False,
        factor_model: bool = False,
        lgbm_params: Mapping[str, Any] | None = None,
        n_jobs: int | None = None,
        random_state: int = 0,
    ):
        self.feature_groups = feature_groups
        self.clusters = clusters
        self.interactions = interactions
        self.timing = timing
        self.residualizer = residualizer
        self.n_factors = n_factors
        self.n_clusters = n_clusters
        self.cluster_components = cluster_components
        self.max_interactions = max_interactions
        self.interaction_threshold = interaction_threshold
        self.timing_window = timing_window
        self.timing_lag = timing_lag
        self.timing_threshold = timing_threshold
        self.residualize_proportion = residualize_proportion
        self.residualize_features = residualize_features
        self.residualize_n_features = residualize_n_features
        self.residualize_clusters = residualize_clusters
        self.residualize_benchmark = residualize_benchmark
        self.factor_model = factor_model
        self.lgbm_params = lgbm_params
        self.n_jobs = n_jobs
        self.random_state = random_state

    # ---- variants ---------------------------------------------------------------------
    def variant(self, name: str) -> "NumeraiModel":
        """An unfitted copy: "baseline" (all components off), "full" (all on) or "no_<component>"."""
        params = self.get_params()
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

    # ---- engineered features ------------------------------------------------------------------------
    @property
    def _uses_factors(self) -> bool:
        return bool(self.clusters or self.interactions or self.timing)

    def _engineer(
        self, raw: np.ndarray, eras: EraIndex, bench: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Engineered columns (n, m) float32 for whole eras, and the cluster labels (or None)."""
        if not self._uses_factors:
            return np.zeros((len(raw), 0), dtype=np.float32), None
        comp_raw = self.factors_.raw(raw, eras)
        z = eras.standardize(comp_raw)
        labels = relative = None
        if self.clusters_ is not None:
            labels = self.clusters_.predict(raw, eras)
            relative = self.clusters_.relative(z, labels, eras)
        return self._assemble(comp_raw, z, labels, relative, eras, bench), labels

    def _assemble(self, comp_raw: np.ndarray, z: np.ndarray, labels: np.ndarray | None, relative: np.ndarray | None,
                  eras: EraIndex, bench: np.ndarray | None) -> np.ndarray:
        """The engineered columns (n, m) float32 from the composites and cluster pieces of whole eras (fit passes
        the pieces it already has; predict computes them in `_engineer`)."""
        parts = [z]
        if self.factor_premia_ is not None:  # the linear factor model's own score: composites x mean premia
            parts.append((z @ self.factor_premia_).astype(np.float32)[:, None])
        if self.clusters_ is not None:
            if self.cluster_id_used_:
                parts.append(labels.astype(np.float32)[:, None])
            parts.append(relative[:, self.relative_keep_])
        if self.interactions_ is not None:
            parts.append(self.interactions_.transform(z, relative))
        if self.timing_ is not None:
            parts.append(self.timing_.transform(z, comp_raw, eras, bench))
        return np.concatenate(parts, axis=1).astype(np.float32, copy=False)

    def _engineered_names(self) -> list[str]:
        if not self._uses_factors:
            return []
        names = [f"factor_{n}" for n in self.factors_.names_]
        names += ["factor_model"] if self.factor_premia_ is not None else []
        if self.clusters_ is not None:
            names += ["cluster_id"] if self.cluster_id_used_ else []
            names += [f"rel_{self.factors_.names_[j]}" for j in self.relative_keep_]
        if self.interactions_ is not None:
            names += list(self.interactions_.names_)
        if self.timing_ is not None:
            names += list(self.timing_.feature_names_)
        return names

    # ---- fit ------------------------------------------------------------------------------------------
    def fit(self, X: pd.DataFrame, y: Any, benchmark: pd.DataFrame | None = None, callbacks: list | None = None) -> "NumeraiModel":
        """Fit factors, clusters, interactions and timing on the training eras, then the booster on all columns.
        `fit_seconds_` keeps the wall time of each stage (input, factors, each component, engineered, lightgbm)."""
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"X must be a pandas DataFrame with an `era` column and features, got {type(X).__name__}")
        target = np.asarray(y, dtype=np.float64).reshape(-1)
        if len(target) != len(X):
            raise ValueError(f"y has {len(target)} values but X has {len(X)} rows")
        seconds: dict[str, float] = {}
        with _stage(seconds, "input"):
            self.feature_names_in_ = _feature_columns(X)
            self.n_features_in_ = len(self.feature_names_in_)
            if not self.feature_names_in_:
                raise ValueError("X holds no feature columns")
            raw = _matrix(X, self.feature_names_in_)
            eras = EraIndex.from_frame(X)
            bench = _benchmark_vector(benchmark, X.index, None)
            self.benchmark_columns_ = None
            if bench is not None and isinstance(benchmark, pd.DataFrame):
                self.benchmark_columns_ = [str(choose_benchmark_column(benchmark))]
        seed = int(self.random_state)

        self.factors_ = self.clusters_ = self.interactions_ = self.timing_ = None
        z = comp_raw = relative = labels = returns = joint = None
        self.factor_premia_ = None
        if self._uses_factors:
            with _stage(seconds, "factors"):
                self.factors_ = Factors(self.feature_groups, self.n_factors, random_state=seed).fit(raw, eras, self.feature_names_in_)
                comp_raw = np.empty((len(raw), len(self.factors_.names_)), dtype=np.float64)
                for rows in eras.chunks(_chunk_rows(raw.shape[1])):
                    comp_raw[rows] = self.factors_.raw(raw[rows], eras.take(rows))
                z = eras.standardize(comp_raw)
                returns = factor_returns(z, target, eras)
                # Fama-MacBeth: per-era multiple-regression slopes of the target on all composites, averaged
                joint = era_coefficients([z[:, j] for j in range(z.shape[1])], target, eras)
                premia = np.nanmean(joint, axis=0) if np.isfinite(joint).any() else np.zeros(z.shape[1])
                self.factor_premia_ = np.nan_to_num(premia).astype(np.float32) if self.factor_model else None
        if self.clusters:
            with _stage(seconds, "clusters"):
                self.clusters_ = Clusters(self.n_clusters, self.cluster_components, random_state=seed).fit(raw, eras)
                labels = self.clusters_.predict(raw, eras)
                relative = self.clusters_.relative(z, labels, eras)
                self._gate_clusters(z, relative, labels, target, eras)
        if self.interactions:
            with _stage(seconds, "interactions"):
                self.interactions_ = Interactions(self.max_interactions, self.interaction_threshold, nw_lags=max(1, self.timing_lag - 1))
                self.interactions_.fit(z, target, eras, self.factors_.names_, relative)
        if self.timing:
            with _stage(seconds, "timing"):
                self.timing_ = Timing(self.timing_window, self.timing_lag, self.timing_threshold, nw_lags=max(1, self.timing_lag - 1))
                self.timing_.fit(z, comp_raw, returns, eras, self.factors_.names_, bench, joint_returns=joint)
                self.as_of_era_ = self.timing_.as_of_era_
        else:
            resolved = eras.sums((~np.isnan(target)).astype(np.int64)) > 0
            self.as_of_era_ = str(eras.eras[resolved][-1]) if resolved.any() else None
        with _stage(seconds, "residualizer"):
            corr = _era_feature_corr(raw, target, eras) if self.residualizer and self.residualize_features == "riskiest" else None
            self.riskiest_ = self._riskiest(corr)
            self.residualize_parts_ = self._gate_residualizer(raw, z, labels if self.clusters else None, target, eras, corr)

        with _stage(seconds, "engineered"):
            self.engineered_names_ = self._engineered_names()
            engineered = np.zeros((len(raw), 0), dtype=np.float32)
            if self._uses_factors:
                engineered = np.empty((len(raw), len(self.engineered_names_)), dtype=np.float32)
                for rows in eras.chunks(_chunk_rows(raw.shape[1])):  # the pieces fit already has, by chunks
                    engineered[rows] = self._assemble(
                        comp_raw[rows], z[rows], None if labels is None else labels[rows],
                        None if relative is None else relative[rows], eras.take(rows), None if bench is None else bench[rows])
            del z, comp_raw, relative
        with _stage(seconds, "lightgbm"):
            self.booster_ = self._train(raw, engineered, target, callbacks)
        self.fit_seconds_ = seconds
        return self

    def _riskiest(self, corr: np.ndarray | None) -> np.ndarray:
        """Indices of the features whose per-era correlation with the target (`corr`, (eras, F) from
        `_era_feature_corr`) moved most between the halves of those eras."""
        if self.residualize_features != "riskiest" or corr is None or len(corr) // 2 < 1:
            return np.zeros(0, dtype=np.int64)
        half = len(corr) // 2
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN feature: no change
            change = np.abs(np.nanmean(corr[:half], axis=0) - np.nanmean(corr[half:], axis=0))
        change = np.nan_to_num(change, nan=0.0)
        n = min(int(self.residualize_n_features), corr.shape[1])
        return np.sort(np.argsort(-change, kind="stable")[:n]).astype(np.int64)

    def _gate_clusters(self, z: np.ndarray, relative: np.ndarray, labels: np.ndarray, target: np.ndarray, eras: EraIndex) -> None:
        """Keep a cluster-relative composite only if it explains the target beyond its composite, consistently
        across eras, and the cluster id only if some cluster's per-era mean target is consistently non-zero."""
        lags = max(1, self.timing_lag - 1)
        k = z.shape[1]
        series = np.column_stack([era_coefficients([z[:, j], relative[:, j]], target, eras)[:, 1] for j in range(k)])
        rel_t = np.array([newey_west_t(series[:, j], lags)[0] for j in range(k)])
        self.relative_tstats_ = rel_t
        passed = (np.abs(rel_t) > familywise_threshold(k, _CLUSTER_T)) & _halves_agree(series, rel_t, lags)
        self.relative_keep_ = np.flatnonzero(passed).astype(np.int64)
        n_clusters = len(self.clusters_.centroids_)
        valid = ~np.isnan(target)
        yc = np.where(valid, target - eras.broadcast(eras.means(target)), 0.0)
        cell = eras.codes.astype(np.int64) * n_clusters + labels.astype(np.int64)
        total = np.bincount(cell, weights=yc, minlength=eras.n_eras * n_clusters).reshape(eras.n_eras, n_clusters)
        count = np.bincount(cell, weights=valid, minlength=eras.n_eras * n_clusters).reshape(eras.n_eras, n_clusters)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(count >= 5, total / count, np.nan)
        sd = np.sqrt(eras.means(np.where(valid, yc * yc, np.nan)))
        scaled = means / sd[:, None]
        cluster_t = np.array([newey_west_t(scaled[:, c], lags)[0] for c in range(n_clusters)])
        self.cluster_tstats_ = cluster_t
        passed = (np.abs(cluster_t) > familywise_threshold(n_clusters, _CLUSTER_T)) & _halves_agree(scaled, cluster_t, lags)
        self.cluster_id_used_ = bool(passed.any())

    def _requested_parts(self) -> list[str]:
        parts = []
        if self.residualize_features == "all" or (self.residualize_features == "riskiest" and self.residualize_n_features):
            parts.append("features")
        if self.residualize_clusters and self.clusters:
            parts.append("clusters")
        return parts

    def _gate_residualizer(self, raw: np.ndarray, z: np.ndarray | None, labels: np.ndarray | None, target: np.ndarray,
                           eras: EraIndex, corr: np.ndarray | None) -> tuple[str, ...]:
        """Which exposure sets to residualize on: those that raise the sharpe of a linear proxy model on the
        second half of training (fitted on the first half) by 10 % without costing more than 10 % of its mean corr;
        the riskiest features of the first half come from its rows of `corr` (per-era feature correlations)."""
        requested = self._requested_parts() if self.residualizer else []
        if not requested or float(self.residualize_proportion) == 0.0:
            return ()
        half = eras.n_eras // 2
        if half < 8:  # too few eras for evidence: do as asked
            return tuple(requested)
        first = eras.codes < half
        second = ~first
        basis = z
        if basis is None:
            basis = Factors(None, self.n_factors, random_state=int(self.random_state)).fit(raw, eras, self.feature_names_in_).transform(raw, eras)
        basis = np.asarray(basis, dtype=np.float64)
        valid = ~np.isnan(target)
        ybar = eras.means(target)
        yc = target - eras.broadcast(ybar)
        fit_rows = first & valid
        beta, *_ = np.linalg.lstsq(basis[fit_rows], yc[fit_rows], rcond=None)
        sub_b = eras.take(np.flatnonzero(second))
        proxy = basis[second] @ beta
        y_b = target[second]

        def scores(values: np.ndarray) -> tuple[float, float]:
            c = factor_returns(sub_b.standardize(values.reshape(-1, 1), dtype=np.float64), y_b, sub_b)[:, 0]
            c = c[~np.isnan(c)]
            return (float(c.mean()), float(c.mean() / c.std())) if len(c) > 2 and c.std() > 0 else (0.0, 0.0)

        base_mean, base_sharpe = scores(proxy)
        kept = []
        self.residualize_evidence_ = {"proxy": (base_mean, base_sharpe)}
        for part in requested:
            if part == "features":
                if self.residualize_features == "all":
                    exposure = _filled(raw[second], sub_b)
                else:
                    idx = self._riskiest(None if corr is None else corr[:half])
                    exposure = _filled(raw[:, idx][second], sub_b)  # the chosen columns only, then rows
            else:
                exposure = np.eye(int(labels.max()) + 1, dtype=np.float32)[labels[second].astype(np.int64)][:, 1:]
            mean, sharpe = scores(residualize(proxy, exposure, sub_b, float(self.residualize_proportion)))
            self.residualize_evidence_[part] = (mean, sharpe)
            if sharpe > _RESIDUALIZE_SHARPE_GAIN * base_sharpe and base_sharpe > 0 and mean >= 0.9 * base_mean:
                kept.append(part)
        return tuple(kept)

    def _train(self, raw: np.ndarray, engineered: np.ndarray, target: np.ndarray, callbacks: list | None) -> lgb.Booster:
        params = _lgbm_params(self.lgbm_params)
        threads = self.n_jobs if self.n_jobs is not None else (os.cpu_count() or 1)
        params.update(
            seed=int(self.random_state),
            deterministic=True,
            force_col_wise=True,
            num_threads=int(params.get("num_threads") or threads),
        )
        rounds = int(params.pop("num_iterations"))
        names = list(self.feature_names_in_) + list(self.engineered_names_)
        categorical = ["cluster_id"] if "cluster_id" in self.engineered_names_ else "auto"
        # a float32 copy of at most one chunk's cells; larger data goes in float32 batches (int8 stays int8)
        data = training_dataset(
            raw, engineered, target, params,
            feature_name=[_safe_name(n) for n in names],
            categorical_feature=[_safe_name(c) for c in categorical] if categorical != "auto" else "auto",
            dense_cells=_CHUNK_ELEMENTS,
        )
        booster = lgb.train(params, data, num_boost_round=rounds, callbacks=callbacks)
        booster.free_dataset()
        return booster

    # ---- factor-return history ----------------------------------------------------------------------
    def update_factor_returns(self, X: pd.DataFrame, y: Any) -> "NumeraiModel":
        """Extend the timing history with newly resolved eras of X (without refitting anything else)."""
        self._check_fitted()
        target = np.asarray(y, dtype=np.float64).reshape(-1)
        eras = EraIndex.from_frame(X)
        if self.timing_ is None:
            resolved = eras.sums((~np.isnan(target)).astype(np.int64)) > 0
            newest = [str(e) for e in eras.eras[resolved]]
            if newest and (self.as_of_era_ is None or _later(newest[-1], self.as_of_era_)):
                self.as_of_era_ = newest[-1]
            return self
        z = np.empty((len(X), len(self.factors_.names_)), dtype=np.float64)
        for rows in eras.chunks(_chunk_rows(len(self.feature_names_in_))):
            z[rows] = self.factors_.transform(_matrix(X.iloc[rows], self.feature_names_in_), eras.take(rows))
        returns = factor_returns(z, target, eras)
        self.timing_.update(eras.eras, returns)
        self.as_of_era_ = self.timing_.as_of_era_
        return self

    # ---- predict --------------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "booster_"):
            raise ValueError("this NumeraiModel is not fitted yet: call fit(X, y) first")

    def predict(self, X: pd.DataFrame, benchmark: pd.DataFrame | None = None) -> np.ndarray:
        """Predictions in (0, 1], ranked within each era (residualized first when the residualizer is on)."""
        self._check_fitted()
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"X must be a pandas DataFrame, got {type(X).__name__}")
        eras = EraIndex.from_frame(X)
        bench_all = _benchmark_vector(benchmark, X.index, self.benchmark_columns_)
        out = np.empty(len(X), dtype=np.float64)
        for rows in eras.chunks(_chunk_rows(len(self.feature_names_in_))):
            sub = eras.take(rows)
            raw = _matrix(X.iloc[rows], self.feature_names_in_)
            bench = None if bench_all is None else bench_all[rows]
            if bench is not None and np.isnan(bench).any():
                bench = np.where(np.isnan(bench), np.nanmean(bench) if (~np.isnan(bench)).any() else 0.5, bench)
            engineered, labels = self._engineer(raw, sub, bench)
            values = self._booster_predict(_Rows(raw, engineered, None))
            out[rows] = self._postprocess(values, raw, labels, bench, sub)
        return out

    def _booster_predict(self, rows: _Rows) -> np.ndarray:
        """The booster's raw scores, fed in float32 batches of about _PREDICT_CELLS values (bounded memory).

        A model with more than _PREDICT_TREES trees is summed over blocks of that many trees: LightGBM walks every
        tree for one row before the next row, so 30,000 deep trees miss the cache on every row, while a block's
        nodes stay in cache across the batch (measured 4x faster on deep forests). Raw scores, not
        the objective's link: only the per-era ranks of these values are used.
        """
        n, width = len(rows), len(self.feature_names_in_) + len(self.engineered_names_)
        step = max(1, _PREDICT_CELLS // max(1, width))
        trees = int(self.booster_.best_iteration or self.booster_.current_iteration())
        out = np.zeros(n)
        for start in range(0, n, step):
            batch = rows[start : start + step]
            for first in range(0, trees, _PREDICT_TREES):
                out[start : start + len(batch)] += self.booster_.predict(
                    batch, start_iteration=first, num_iteration=min(_PREDICT_TREES, trees - first),
                    raw_score=True, num_threads=self._predict_threads(),
                )
        return out

    def _predict_threads(self) -> int:
        return int(self.n_jobs) if self.n_jobs is not None else 0

    def _postprocess(self, values: np.ndarray, raw: np.ndarray, labels: np.ndarray | None, bench: np.ndarray | None, eras: EraIndex) -> np.ndarray:
        """Per era: rank, or gaussianize + residualize on the chosen exposures + rank."""
        if not self.residualizer:
            return eras.rank(values)
        exposures = []
        parts = getattr(self, "residualize_parts_", ("features", "clusters"))
        if "features" in parts and self.residualize_features == "all":
            exposures.append(_filled(raw, eras))
        elif "features" in parts and len(self.riskiest_):
            exposures.append(_filled(raw[:, self.riskiest_], eras))
        if "clusters" in parts and labels is not None and self.clusters_ is not None:
            exposures.append(self.clusters_.dummies(labels)[:, 1:])  # intercept is always included
        if self.residualize_benchmark and bench is not None:
            exposures.append(bench.reshape(-1, 1).astype(np.float32))
        if not exposures:
            return eras.rank(values)
        return residualize_predictions(values, np.concatenate(exposures, axis=1), eras, self.residualize_proportion)


def _halves_agree(series: np.ndarray, full_t: np.ndarray, lags: int, floor: float = _HALF_T) -> np.ndarray:
    """(m,) mask: each column of the per-era `series` (T, m) has the full sample's sign with |t| > `floor` in
    both halves of the training eras (the timing gates' consistency test)."""
    half = len(series) // 2
    ok = np.ones(series.shape[1], dtype=bool)
    for part in (slice(0, half), slice(half, None)):
        t = np.array([newey_west_t(series[part, j], lags)[0] for j in range(series.shape[1])])
        ok &= (np.sign(t) == np.sign(full_t)) & (np.abs(t) > floor)
    return ok


def _filled(raw: np.ndarray, eras: EraIndex) -> np.ndarray:
    """Features as float32 with NaN replaced by the era mean (the neutral exposure)."""
    x = np.asarray(raw, dtype=np.float32)
    if x.dtype.kind == "f" and np.isnan(x).any():
        means = eras.broadcast(np.nan_to_num(eras.means(x), nan=2.0)).astype(np.float32)
        x = np.where(np.isnan(x), means, x)
    return x


def _later(a: str, b: str) -> bool:
    return era_number(a) > era_number(b) or (era_number(a) == era_number(b) and a > b)


def _safe_name(name: str) -> str:
    """LightGBM rejects some characters in feature names; replace them."""
    return "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in str(name))
