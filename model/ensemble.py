"""`TargetEnsemble`: one NumeraiModel per target (and per seed), combined per era by a weighted rank average, in one
pickle.

Numerai's own examples and most serious users train on several targets and average the members' per-era ranks.
Here every member is the same NumeraiModel variant fitted on its own target (an auxiliary target's NaN rows left
out of that member only), `seeds` times with as many LightGBM seeds (bagging over seeds: the columns each tree
samples differ); the work that does not depend on the target (factor composites, the clusters' PCA and
k-means: a `model.target_free.TargetFree`) is fitted once, by the first member, and held by every member and the
ensemble. The residualizer is applied once, to the combination (`model.estimator.fit_residualizer`, as a
NumeraiModel fits its own).
The ensemble has the estimator's live interface (`feature_names_in_`, `benchmark_columns_`, `predict_eras`), so
Numerai's live function and `export_pickle` take it as they take one model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.exceptions import NotFittedError

from .base import RanksPerEraMixin
from .benchmarks import benchmark_vector, filled_benchmark
from .eras import EraIndex, era_key
from .estimator import NumeraiModel, era_chunks, fit_residualizer, lgbm_threads
from .features import as_frame, as_target, feature_matrix
from .params import check_params
from .target_free import TargetFree

_log = logging.getLogger("model.ensemble")


class TargetEnsemble(RanksPerEraMixin, RegressorMixin, BaseEstimator):
    """Several targets' NumeraiModels averaged per era (rank average), residualized once.

    Parameters
    ----------
    model : NumeraiModel, optional
        The member template (its residualizer settings are the ensemble's); default NumeraiModel().
    targets : sequence of str
        The targets, in order; the first is the main one (the residualizer's gate uses it).
    weights : sequence of float, optional
        Each target's weight in the average (default equal), shared equally by its seeds.
    seeds : int, default=1
        Members per target: member k of a target has the template's random_state + k.

    Attributes
    ----------
    members_ : list of NumeraiModel
        The fitted members, target by target and seed by seed within a target (their own residualizers off).
    member_names_ : list of str
        Each member's name: its target, with " (seed k)" when seeds > 1.
    weights_ : ndarray
        Each member's normalised weight.
    residualizer_ : Residualizer or None
        The residualizer of the combination.
    target_free_ : TargetFree or None
        The target-free work the members share (the first member's).
    feature_names_in_, n_features_in_, benchmark_columns_, as_of_era_
        As NumeraiModel's (the as-of era is the oldest of the members').
    """

    reads_eras = True

    _parameter_rules: ClassVar[dict[str, tuple]] = {"model": ("regressor", "none"), "seeds": ("int", 1, None)}
    """What each parameter may be (model.params; `targets` and `weights`, which depend on each other, in `_check`)."""

    def __init__(self, model: NumeraiModel | None = None, targets: Sequence[str] = ("target",),
                 weights: Sequence[float] | None = None, seeds: int = 1):
        self.model = model
        self.targets = targets
        self.weights = weights
        self.seeds = seeds

    def _check(self) -> tuple[NumeraiModel, list[str], np.ndarray]:
        check_params(self)
        targets = [str(t) for t in self.targets]
        if not targets or len(set(targets)) != len(targets):
            raise ValueError(f"TargetEnsemble: parameter `targets` is {self.targets!r}; it must name distinct targets")
        weights = np.ones(len(targets)) if self.weights is None else np.asarray(self.weights, dtype=np.float64)
        if weights.shape != (len(targets),) or not np.all(np.isfinite(weights)) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"TargetEnsemble: parameter `weights` is {self.weights!r}; it must give one non-negative "
                             f"weight per target ({len(targets)}), not all zero")
        model = NumeraiModel() if self.model is None else self.model
        return model, targets, np.repeat(weights / weights.sum() / self.seeds, self.seeds)

    def _member_target(self, index: int) -> tuple[str, int]:
        """The target and the seed offset of member `index`."""
        seeds = int(self.seeds)
        return str(list(self.targets)[index // seeds]), index % seeds

    def _n_members(self) -> int:
        return len(list(self.targets)) * int(self.seeds)

    def _target_values(self, Y: Any, target: str) -> np.ndarray:
        """The column of `target` in Y (a frame or mapping of targets, or one target's values when there is one)."""
        if isinstance(Y, (pd.DataFrame, Mapping)):
            if target not in Y:
                raise ValueError(f"TargetEnsemble: Y lacks the target column {target!r}")
            return np.asarray(Y[target], dtype=np.float64).reshape(-1)
        if len(list(self.targets)) == 1:
            return np.asarray(Y, dtype=np.float64).reshape(-1)
        raise ValueError(f"TargetEnsemble: Y must hold one column per target {list(self.targets)}")

    def fit(self, X: pd.DataFrame, Y: pd.DataFrame | Mapping[str, Any], benchmark: pd.DataFrame | None = None,
            callbacks: list | None = None) -> TargetEnsemble:
        """Fit one member per target on the rows where that target is known, sharing the target-free work.

        Parameters
        ----------
        X : DataFrame
            The `era` column and the features.
        Y : DataFrame or mapping
            One column per target (NaN: not known for that row); with one target, its values also do.
        benchmark, callbacks
            As NumeraiModel.fit.

        Returns
        -------
        self
        """
        X = as_frame(X, owner=type(self).__name__)
        if not isinstance(Y, (pd.DataFrame, Mapping)) and len(list(self.targets)) == 1:  # scikit-learn's checks of y
            Y = as_target(Y, len(X), owner=type(self).__name__)
        first = self.fit_member(0, X, Y, benchmark, callbacks)
        others = [self.fit_member(i, X, Y, benchmark, callbacks, target_free=first.target_free_)
                  for i in range(1, self._n_members())]
        return self.assemble([first, *others], X, Y)

    def fit_member(self, index: int, X: pd.DataFrame, Y: pd.DataFrame | Mapping[str, Any],
                   benchmark: pd.DataFrame | None = None, callbacks: list | None = None,
                   target_free: TargetFree | None = None) -> NumeraiModel:
        """Fit member `index` alone (an independent job: `nmu train` runs each on its executor): target
        `targets[index // seeds]` with seed offset `index % seeds`, on the rows where that target is known, with its
        own residualizer off.

        Parameters
        ----------
        index : int
            The member's position (target by target, seed by seed).
        X, Y, benchmark, callbacks
            As `fit`.
        target_free : TargetFree, optional
            The first member's `target_free_`: its factor composites and cluster structure are used, not refitted
            (give it to every member but the first).

        Returns
        -------
        NumeraiModel, fitted (the ensemble itself is not changed: `assemble` makes it from its members).
        """
        template, targets, _ = self._check()
        X = as_frame(X, owner=type(self).__name__)
        if not 0 <= index < self._n_members():
            raise ValueError(f"TargetEnsemble: member {index} does not exist; the targets are {targets} with "
                             f"{self.seeds} seed(s) each")
        target, seed = self._member_target(index)
        y = self._target_values(Y, target)
        known = ~np.isnan(y)
        rows = X if known.all() else X.loc[known]
        bench = benchmark if benchmark is None or known.all() else benchmark.loc[known]
        member = clone(template).set_params(residualizer=False)
        if seed:
            member.set_params(random_state=int(template.random_state) + seed)
        return member.fit(rows, y[known], benchmark=bench, callbacks=callbacks, target_free=target_free)

    def assemble(self, members: Sequence[NumeraiModel], X: pd.DataFrame,
                 Y: pd.DataFrame | Mapping[str, Any]) -> TargetEnsemble:
        """Make the fitted ensemble from its fitted members (one per target, in order, from `fit_member`): the live
        interface from the first, and the residualizer of the combination fitted on X and the main target when the
        template's residualizer is on.

        Returns
        -------
        self
        """
        template, targets, self.weights_ = self._check()
        X = as_frame(X, owner=type(self).__name__)
        if len(members) != self._n_members():
            raise ValueError(f"TargetEnsemble: {len(members)} fitted member(s) for {len(targets)} targets {targets} "
                             f"with {self.seeds} seed(s) each")
        self.members_: list[NumeraiModel] = list(members)
        self.member_names_ = [t if int(self.seeds) == 1 else f"{t} (seed {k + 1})"
                              for t, k in map(self._member_target, range(len(members)))]
        first = self.members_[0]
        self.feature_names_in_ = first.feature_names_in_
        self.n_features_in_ = first.n_features_in_
        self.benchmark_columns_ = first.benchmark_columns_
        self.as_of_era_ = min((m.as_of_era_ for m in self.members_ if m.as_of_era_ is not None), default=None,
                              key=era_key)
        self.target_free_ = first.target_free_
        self.residualizer_ = None
        if template.residualizer:
            features = list(self.feature_names_in_)
            self.residualizer_ = fit_residualizer(template, self.target_free_, feature_matrix(X, features),
                                                  self._target_values(Y, targets[0]), EraIndex.from_frame(X), features)
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "members_")

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise NotFittedError("this TargetEnsemble is not fitted yet: call fit(X, Y) first")

    def predict_eras(self, raw: np.ndarray, eras: EraIndex, benchmark: np.ndarray | None = None) -> np.ndarray:
        """The weighted average of the members' per-era ranks, residualized once (or ranked) per era.

        Chunk by chunk of whole eras, the target-free pieces (composites, cluster labels, cluster-relative
        composites) are computed once and given to every member that shares them: they cost about a tenth of a
        member's predict at Numerai's width (1.1 of 14 s over 10 eras, 2,000 trees x 2,748 features, one thread).
        """
        self._check_fitted()
        for member in self.members_:
            member.log_staleness(eras)
        threads = lgbm_threads(self.members_[0].n_jobs)
        shared = self.target_free_
        shares = [shared is not None and m.target_free_ is shared for m in self.members_]
        seconds = np.zeros(len(self.members_))
        out = np.empty(len(raw))
        for rows, sub, chunk, bench in era_chunks(raw, eras, benchmark):
            pieces = shared.pieces(chunk, sub) if any(shares) else None
            combined = np.zeros(len(rows))
            for i, (weight, member) in enumerate(zip(self.weights_, self.members_)):
                start = time.perf_counter()
                combined += weight * member.predict_chunk(chunk, sub, bench, threads, pieces if shares[i] else None)
                seconds[i] += time.perf_counter() - start
            if self.residualizer_ is None:
                out[rows] = sub.rank(combined)
            else:
                labels = pieces.labels if pieces is not None else (
                    shared.labels(chunk, sub) if shared is not None else None)
                out[rows] = self.residualizer_.transform(combined, chunk, sub, labels, bench)
        total = seconds.sum() or 1.0
        _log.info("ensemble members' share of the predict time: %s",
                  ", ".join(f"{t} {100 * s / total:.0f} %" for t, s in zip(self.member_names_, seconds)))
        return out

    def predict(self, X: pd.DataFrame, benchmark: pd.DataFrame | None = None) -> np.ndarray:
        """Predictions in (0, 1], ranked within each era, as NumeraiModel.predict."""
        self._check_fitted()
        X = as_frame(X, n_features=self.n_features_in_, owner=type(self).__name__)
        eras = EraIndex.from_frame(X)
        bench = benchmark_vector(benchmark, X.index, self.benchmark_columns_)
        bench = None if bench is None else filled_benchmark(bench)
        return self.predict_eras(feature_matrix(X, list(self.feature_names_in_)), eras, bench)

    def member_predictions(self, X: pd.DataFrame, benchmark: pd.DataFrame | None = None) -> dict[str, np.ndarray]:
        """Each member's own predictions (per-era ranks) of X, by member name, given what the ensemble is given: for
        the members' scores."""
        self._check_fitted()
        return {name: m.predict(X, benchmark=benchmark) for name, m in zip(self.member_names_, self.members_)}

    def update_factor_returns(self, X: pd.DataFrame, Y: pd.DataFrame | Mapping[str, Any]) -> TargetEnsemble:
        """Feed each member its own target's newly resolved eras (nothing is refitted)."""
        self._check_fitted()
        for index, member in enumerate(self.members_):
            member.update_factor_returns(X, self._target_values(Y, self._member_target(index)[0]))
        self.as_of_era_ = min((m.as_of_era_ for m in self.members_ if m.as_of_era_ is not None), default=None,
                              key=era_key)
        return self

    @property
    def booster_(self) -> Any:
        """The first member's booster (for tools that look at one)."""
        return self.members_[0].booster_
