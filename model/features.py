"""Features as the model sees them: which columns they are, the matrix it reads, the neutral value of a gap, and
how many of them one pass holds (the chunk sizes of every module, here in one place).

Numerai's features are integers 0..4 (int8), some NaN. A missing value takes the neutral value 2, the middle of
the bins, wherever the project needs one value (the live path, a PCA centre, feature exposure); per era, the
neutral exposure of a NaN is that era's mean. `small_ints` and `fill_gaps` are the one conversion of feature
values (int8 when they are Numerai's bins, else float32; a gap filled with FILL_VALUE) that fit, the live path and
training's loader share.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import isspmatrix
from sklearn.exceptions import DataConversionWarning

from .eras import ERA_COLUMN, EraIndex

FEATURE_RANGE = (0, 4)
"""Numerai's feature bins: whole numbers from 0 to 4 (the training schema holds every feature to them)."""
FILL_VALUE = 2
"""Neutral value (the middle of Numerai's 0..4 feature bins) for a missing feature or a NaN."""

# ---- chunk sizes: how much of a matrix one pass holds, so memory stays bounded inside Numerai's 4 GB -------------
CHUNK_CELLS = 40_000_000
"""float32 cells per chunk of whole eras (~160 MB) in fit and predict: bounded memory inside Numerai's 4 GB."""
ENGINEERED_HEADROOM = 64
"""Columns a chunk leaves room for beside the features (the engineered columns)."""
LIVE_CHUNK_CELLS = 10_000_000
"""At most this many feature cells (rows × trained features; 1 byte each as int8) per chunk of whole eras of the
live path (model.live), unless one era alone is larger."""
DESIGN_CHUNK_ELEMENTS = 2**25
"""float32 elements of one chunk of rows of the residualization design (model.lstsq): an era (~5-7k rows) is one
chunk even with all 2,748 features; a bigger "era" (e.g. a frame without an era column) is processed in chunks of
<= 128 MB."""
CLUSTER_CHUNK_ELEMENTS = 1 << 22
"""Values of one float32 working block (rows × features) of the clusters' standardisation and projection: 16 MiB."""
CORRELATION_CHUNK_CELLS = 4_000_000
"""Values per block of columns in model.stats.era_correlations (float64 temporaries ~32 MB each)."""
FACTOR_CHUNK_ROWS = 32_768
"""Rows per float32 block of the factor composites' products (model.factors)."""


def rows_per_chunk(cells: int, width: int) -> int:
    """How many rows of `width` columns fit in `cells` cells (at least one)."""
    return max(1, cells // max(1, width))


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
        if array.dtype.kind == "O":  # numbers held as objects: as numbers (anything else is a TypeError here)
            array = array.astype(np.float64)
        if n_features is not None and array.shape[1] != n_features:
            raise ValueError(f"X has {array.shape[1]} features, but {owner} is expecting {n_features} features "
                             "as input")
        frame = pd.DataFrame(array, columns=[f"feature_{i}" for i in range(array.shape[1])])
    if len(frame) == 0:
        raise ValueError("Found array with 0 sample(s) (shape=(0, ...)) while a minimum of 1 is required")
    return frame


def as_target(y: Any, n_rows: int, owner: str = "the model") -> np.ndarray:
    """Y as a float64 vector of n_rows values, with scikit-learn's input errors; NaN marks a row without a target
    (left out of the fit), so only an all-NaN or infinite y is refused."""
    if y is None:
        raise ValueError(f"{owner} requires y to be passed, but the target y is None")
    target = np.asarray(y, dtype=np.float64)
    if target.ndim == 2 and target.shape[1] == 1:
        warnings.warn("A column-vector y was passed when a 1d array was expected: it is raveled",
                      DataConversionWarning, stacklevel=3)
    target = target.reshape(-1)
    if len(target) != n_rows:
        raise ValueError(f"y has {len(target)} values but X has {n_rows} rows")
    if np.isinf(target).any():
        raise ValueError("Input y contains infinity: every target must be finite or NaN (no target)")
    if np.isnan(target).all():
        raise ValueError("Input y contains NaN in every row: no row has a target to fit on")
    return target


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
    # a float32 frame comes back as a view of the user's data (read-only under pandas copy-on-write): filled in a copy
    values, _ = fill_gaps(block.to_numpy(dtype=np.float32, na_value=np.nan))
    as_int = small_ints(values) if values.size else None
    return values if as_int is None else as_int


def is_small_int(values: np.ndarray) -> bool:
    """Every value a whole number in 0..127 (so int8 holds it exactly, as Numerai's bins in training); NaN is not."""
    if values.size == 0:
        return True
    if not (values.min() >= 0 and values.max() <= 127):  # NaN fails here too
        return False
    if values.dtype.kind in "iub":
        return True
    return bool(np.array_equal(values.astype(np.int8), values))  # in 0..127 already: the cast is exact iff whole


def outside_the_range(values: np.ndarray) -> np.ndarray:
    """Where feature values lie outside FEATURE_RANGE (NaN does not)."""
    lo, hi = FEATURE_RANGE
    return (values < lo) | (values > hi)


def between_the_bins(values: np.ndarray) -> np.ndarray:
    """Where feature values are finite but not whole numbers (always False for an integer array)."""
    if values.dtype.kind != "f":
        return np.zeros(values.shape, dtype=bool)
    return np.isfinite(values) & (values != np.rint(values))


def cells_off_the_bins(block: np.ndarray) -> int:
    """How many cells of a feature block are not whole numbers within FEATURE_RANGE (the live path's blocks hold no
    NaN or inf: `fill_gaps` filled them, and that fill is logged apart)."""
    lo, hi = FEATURE_RANGE
    # Numerai's int8 bins, the usual case: two reductions (1 ms at 5,000 rows x 2,748 features here) instead of
    # three boolean passes (100 ms)
    if block.dtype.kind in "iub" and (block.size == 0 or (block.min() >= lo and block.max() <= hi)):
        return 0
    return int(np.count_nonzero(outside_the_range(block) | between_the_bins(block)))


def small_ints(values: np.ndarray) -> np.ndarray | None:
    """`values` as int8 when every one is a whole number in 0..127 (`is_small_int`), else None (a float32 column
    with a fraction or a NaN stays as it is)."""
    return values.astype(np.int8) if is_small_int(values) else None


def fill_gaps(values: np.ndarray, in_place: bool = False) -> tuple[np.ndarray, int]:
    """Float feature values with every NaN or infinite value replaced by FILL_VALUE, and how many were replaced.
    `in_place` writes into `values` (a buffer of the caller's own); otherwise a gap is filled in a copy."""
    bad = ~np.isfinite(values)
    n_bad = int(np.count_nonzero(bad))
    if n_bad:
        if in_place:
            values[bad] = FILL_VALUE
        else:
            values = np.where(bad, np.asarray(FILL_VALUE, dtype=values.dtype), values)
    return values, n_bad


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
    return rows_per_chunk(CHUNK_CELLS, n_features + ENGINEERED_HEADROOM)
