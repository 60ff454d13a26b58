"""Features as the model sees them: which columns they are, the matrix it reads, the neutral value of a gap.

Numerai's features are integers 0..4 (int8), some NaN. A missing value takes the neutral value 2, the middle of
the bins, wherever the project needs one value (the live path, a PCA centre, feature exposure); per era, the
neutral exposure of a NaN is that era's mean.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import isspmatrix

from .eras import ERA_COLUMN, EraIndex

FILL_VALUE = 2
"""Neutral value (the middle of Numerai's 0..4 feature bins) for a missing feature or a NaN."""
CHUNK_CELLS = 40_000_000
"""float32 cells per chunk of whole eras (~160 MB) in fit and predict: bounded memory inside Numerai's 4 GB."""
ENGINEERED_HEADROOM = 64
"""Columns a chunk leaves room for beside the features (the engineered columns)."""
_log = logging.getLogger("model.features")


def as_frame(X: Any, n_features: int | None = None, owner: str = "the model") -> pd.DataFrame:
    """X as a DataFrame, with scikit-learn's input errors: a 2-D array gets columns feature_0, feature_1, ... (and
    must have `n_features` columns when given); sparse, complex, 1-D or empty input is refused."""
    if isspmatrix(X) or type(X).__module__.startswith("scipy.sparse"):
        raise TypeError(f"{owner} does not accept sparse input: give a dense DataFrame of `era` and the features")
    if isinstance(X, pd.DataFrame):
        frame = X
        if not all(isinstance(c, str) for c in frame.columns):  # e.g. 0, 1, 2: features are named by text
            frame = X.copy(deep=False)
            frame.columns = [str(c) for c in X.columns]
    else:
        array = np.asarray(X)
        if array.ndim != 2:
            raise ValueError(f"Expected a 2D frame or array (rows x features), got {array.ndim}D input of shape "
                             f"{array.shape}: Reshape your data, e.g. with array.reshape(1, -1) for one row")
        if array.dtype.kind == "c":
            raise ValueError("Complex data not supported")
        if n_features is not None and array.shape[1] != n_features:
            raise ValueError(f"X has {array.shape[1]} features, but {owner} is expecting {n_features} features "
                             "as input")
        frame = pd.DataFrame(array, columns=[f"feature_{i}" for i in range(array.shape[1])])
    if len(frame) == 0:
        raise ValueError("Found array with 0 sample(s) (shape=(0, ...)) while a minimum of 1 is required")
    return frame


def feature_columns(X: pd.DataFrame) -> list[str]:
    """The feature columns of X: every `feature_*` column, else every numeric column but `era`."""
    names = [str(c) for c in X.columns if str(c).startswith("feature")]
    if names:
        return names
    return [str(c) for c in X.columns if c != ERA_COLUMN and pd.api.types.is_numeric_dtype(X[c])]


def feature_matrix(X: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """The feature block in trained order: int8 when every value is a whole number in 0..127 (no up-cast copy of an
    int8 frame), else float32. A NaN or a missing column takes FILL_VALUE, as on Numerai's live path, so fit,
    predict and the live function see the same values (a missing column is logged)."""
    present = [c for c in columns if c in X.columns]
    if len(present) < len(columns):
        missing = [c for c in columns if c not in X.columns]
        _log.warning("%d trained features missing from X (taken as %d): %s", len(missing), FILL_VALUE,
                     ", ".join(missing[:5]))
        X = X.reindex(columns=list(columns))
    block = X[list(columns)]
    dtypes = set(block.dtypes)
    if len(dtypes) == 1 and next(iter(dtypes)) == np.int8:
        return block.to_numpy()
    values = block.to_numpy(dtype=np.float32, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():  # a float32 frame comes back as a read-only view of the user's data (pandas copy-on-write)
        values = np.where(bad, np.float32(FILL_VALUE), values)
    if values.size and values.min() >= 0 and values.max() <= 127 and np.array_equal(np.rint(values), values):
        return values.astype(np.int8)
    return values


def era_filled(raw: np.ndarray, eras: EraIndex) -> np.ndarray:
    """Features as float32 with NaN replaced by the era's mean (the neutral exposure; FILL_VALUE for an all-NaN
    column)."""
    x = np.asarray(raw, dtype=np.float32)
    if x.dtype.kind == "f" and np.isnan(x).any():
        means = eras.broadcast(np.nan_to_num(eras.means(x), nan=FILL_VALUE)).astype(np.float32)
        x = np.where(np.isnan(x), means, x)
    return x


def chunk_rows(n_features: int) -> int:
    """Rows per chunk of whole eras so a float32 block of the features plus the engineered columns stays around
    CHUNK_CELLS cells."""
    return max(1, CHUNK_CELLS // (n_features + ENGINEERED_HEADROOM))
