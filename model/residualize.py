"""Per-era residualization (the talk's "specific return"), in three layers, as scikit-learn's `_ridge.py` orders
its solvers, its base and its estimators:

- `model.lstsq`: the float32 least-squares kernel, `residualize` and `residualize_predictions`;
- `model.residualizer`: `Residualizer`, NumeraiModel's residualizer component (which exposures, and their gate);
- `model.residualized_regressor`: `ResidualizedRegressor`, the residualizer behind any scikit-learn regressor.

This module gathers their public names, so `from model.residualize import ...` keeps working.
"""

from .lstsq import residualize, residualize_predictions
from .residualized_regressor import ResidualizedRegressor
from .residualizer import RESIDUALIZE_FEATURES, SHARPE_GAIN, Residualizer

__all__ = ["RESIDUALIZE_FEATURES", "SHARPE_GAIN", "ResidualizedRegressor", "Residualizer", "residualize",
           "residualize_predictions"]
