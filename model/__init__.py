"""What runs inside Numerai: the estimator, its components and the live predict function.

Imports numpy, pandas, scipy, lightgbm and scikit-learn's base classes only (every runtime image has scikit-learn
1.6.1); the whole package is pickled by value into model.pkl.
"""

from .ensemble import TargetEnsemble
from .estimator import COMPONENTS, VARIANTS, NumeraiModel
from .residualized_regressor import ResidualizedRegressor
from .residualizer import Residualizer

__all__ = ["COMPONENTS", "VARIANTS", "NumeraiModel", "ResidualizedRegressor", "Residualizer", "TargetEnsemble"]
