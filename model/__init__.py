"""What runs inside Numerai: the estimator, its components and the live predict function.

Imports numpy, pandas, scipy and lightgbm only; the whole package is pickled by value into model.pkl.
"""

from .estimator import COMPONENTS, VARIANTS, NumeraiModel

__all__ = ["COMPONENTS", "VARIANTS", "NumeraiModel"]
