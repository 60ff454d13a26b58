"""`ResidualizedRegressor`: any scikit-learn regressor with its per-era predictions residualized on chosen
exposures (the residualizer component, `model.residualizer.Residualizer`, behind a meta-estimator)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, MetaEstimatorMixin, RegressorMixin, clone
from sklearn.exceptions import NotFittedError

from .base import RanksPerEraMixin
from .eras import ERA_COLUMN, EraIndex
from .features import as_frame, as_target, feature_matrix
from .params import check_params
from .residualizer import Residualizer

__all__ = ["ResidualizedRegressor"]

class ResidualizedRegressor(RanksPerEraMixin, MetaEstimatorMixin, RegressorMixin, BaseEstimator):
    """Any regressor, with its per-era predictions residualized on chosen exposures (a scikit-learn meta-estimator).

    `fit(X, y)` fits a clone of `estimator` and the residualizer on the training eras; `predict(X)` residualizes the
    estimator's predictions era by era (the `era` column of X; none means one era) and returns ranks in (0, 1].
    The estimator sees X without the `era` column unless it reads eras itself (a NumeraiModel does).

    Parameters
    ----------
    estimator : regressor
        A NumeraiModel, an LGBMRegressor, a Pipeline, ...
    proportion : float in [0, 1], default=0.5
        Share of the projection on the exposures that is removed.
    features : {"riskiest", "all"} or list of str, default="riskiest"
        The exposures: the riskiest features (see `Residualizer`), every feature, or these columns of X.
    n_features : int, default=10
        How many riskiest features.

    Attributes
    ----------
    estimator_ : regressor
        The fitted clone.
    residualizer_ : Residualizer
        The fitted residualizer (the same code NumeraiModel's residualizer runs).
    feature_names_in_ : list of str
        The feature columns of X at fit (without `era`).
    exposure_names_ : list of str
        The columns of X the residualizer reads.
    """

    reads_eras = True
    """The live function passes it the `era` column (it residualizes era by era, and hands its estimator X without
    `era` unless that one reads eras too)."""

    _parameter_rules: ClassVar[dict[str, tuple]] = {
        "estimator": ("regressor",), "proportion": ("real", 0.0, 1.0), "n_features": ("int", 0, None)}
    """What each parameter may be (model.params; `features` is checked against the columns of X)."""

    def __init__(self, estimator: Any = None, proportion: float = 0.5, features: Any = "riskiest", n_features: int = 10):
        self.estimator = estimator
        self.proportion = proportion
        self.features = features
        self.n_features = n_features

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "estimator_")

    def fit(self, X: pd.DataFrame, y: Any) -> ResidualizedRegressor:
        """Fit the estimator on X (era and features) and y, and the residualizer on the training eras."""
        check_params(self)
        X = as_frame(X, owner=type(self).__name__)
        columns = [str(c) for c in X.columns if c != ERA_COLUMN]
        if not columns:
            raise ValueError(f"Found array with 0 feature(s) (shape=({len(X)}, 0)) while a minimum of 1 is required: "
                             "X holds no feature columns")
        if isinstance(self.features, str):
            if self.features not in ("riskiest", "all"):
                raise ValueError(f"ResidualizedRegressor: parameter `features` is {self.features!r}; it must be "
                                 "'riskiest', 'all' or a list of columns of X")
            self.exposure_names_ = columns
            kind = self.features
        else:
            self.exposure_names_ = [str(c) for c in self.features]
            missing = [c for c in self.exposure_names_ if c not in X.columns]
            if missing:
                raise ValueError(f"ResidualizedRegressor: the exposure columns {missing[:5]} are not columns of X")
            kind = "all"
        self.feature_names_in_ = columns
        self.n_features_in_ = len(columns)
        target = as_target(y, len(X), owner=type(self).__name__)
        eras = EraIndex.from_frame(X)
        self.estimator_ = clone(self.estimator).fit(_inner_X(self.estimator, X), target)
        raw = feature_matrix(X, self.exposure_names_)
        self.residualizer_ = Residualizer(self.proportion, kind, self.n_features, clusters=False, gate=False)
        self.residualizer_.fit(raw, target, eras)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The estimator's predictions residualized per era, as ranks in (0, 1]."""
        if not self.__sklearn_is_fitted__():
            raise NotFittedError("this ResidualizedRegressor is not fitted yet: call fit(X, y) first")
        X = as_frame(X, n_features=self.n_features_in_, owner=type(self).__name__)
        values = np.asarray(self.estimator_.predict(_inner_X(self.estimator_, X)), dtype=np.float64).reshape(-1)
        values = np.where(np.isfinite(values), values, np.nanmean(values) if np.isfinite(values).any() else 0.0)
        return self.residualizer_.transform(values, feature_matrix(X, self.exposure_names_), EraIndex.from_frame(X))


def _inner_X(estimator: Any, X: pd.DataFrame) -> pd.DataFrame:
    """X for the wrapped estimator: without `era` unless the estimator reads eras itself."""
    if getattr(estimator, "reads_eras", False) or ERA_COLUMN not in X.columns:
        return X
    return X.drop(columns=[ERA_COLUMN])
