"""What the project's estimators share: their predictions are per-era ranks in (0, 1], which sets their scikit-learn
tags and the one scikit-learn check they cannot pass."""

from __future__ import annotations

from typing import Any

RANKS_PER_ERA_XFAIL = {
    "check_methods_subset_invariance": "predictions are ranks within the rows given (one era without an `era` "
                                       "column), so a subset of the rows ranks differently",
}
"""The scikit-learn estimator check that no estimator predicting per-era ranks can pass, with the reason: scikit-learn
feeds 2-D arrays without an `era` column, which are one era."""


class RanksPerEraMixin:
    """Mixin (left of RegressorMixin and BaseEstimator) of the estimators that predict per-era ranks: NaN features
    are allowed, the score is not on the target's scale, and the checks they cannot pass are declared with why."""

    def _more_tags(self) -> dict[str, Any]:
        """scikit-learn's checks this estimator cannot pass, each with the reason (read by tests/test_sklearn.py, as
        LightGBM declares its own)."""
        return {"_xfail_checks": dict(RANKS_PER_ERA_XFAIL)}

    def __sklearn_tags__(self):  # noqa: D105 - scikit-learn's tags
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # Numerai's features have NaN
        tags.regressor_tags.poor_score = True  # predictions are per-era ranks in (0, 1], not on the target's scale
        return tags
