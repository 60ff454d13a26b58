"""Which benchmark-model column to use: the one home of that rule, for loading, scoring (BMC) and the live path.

Numerai names its benchmark models `v<version>_<model>`, e.g. `v52_lgbm_ender20` in data v5.2 and
`v53_lgbm_ender20` in v5.3. A model fitted on one data version keeps working on the next: a trained column that is
gone is replaced by the newest column of the same model (its name after the version prefix).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

PREFERRED_SUFFIX = "_lgbm_ender20"
"""The benchmark compared against by default: LightGBM on the main target (ender, 20 days), as Numerai's BMC."""
NOT_BENCHMARKS = ("era", "id", "data_type")
_VERSIONED = re.compile(r"^v(\d+)_(.+)$")


def benchmark_role(name: Any) -> str:
    """The model a benchmark column holds, without its data-version prefix: "v53_lgbm_ender20" → "lgbm_ender20"."""
    match = _VERSIONED.match(str(name))
    return match.group(2) if match else str(name)


def benchmark_version(name: Any) -> int:
    """The data version in a benchmark column's prefix as a number ("v53_lgbm_ender20" → 53), -1 without one."""
    match = _VERSIONED.match(str(name))
    return int(match.group(1)) if match else -1


def benchmark_columns(frame: pd.DataFrame) -> list[str]:
    """The numeric, non-boolean columns of a benchmark frame (not era, id or data_type), in frame order."""
    return [str(c) for c in frame.columns if str(c) not in NOT_BENCHMARKS
            and pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])]


def _newest(names: Sequence[str]) -> str | None:
    return max(names, key=benchmark_version) if names else None  # max keeps the first of equal versions


def match_benchmark_column(frame: pd.DataFrame, wanted: str) -> str | None:
    """`wanted` when the frame has it, else the newest column of the same model (another data version), else None."""
    numeric = benchmark_columns(frame)
    if wanted in numeric:
        return wanted
    return _newest([c for c in numeric if benchmark_role(c) == benchmark_role(wanted)])


def choose_benchmark_column(frame: pd.DataFrame, wanted: Sequence[str] | None = None) -> str | None:
    """The benchmark column to use: the first of `wanted` that the frame has (or the same model of another data
    version), else the newest `*_lgbm_ender20`, else the first numeric column; None when there is no numeric one."""
    for name in wanted or ():
        found = match_benchmark_column(frame, name)
        if found is not None:
            return found
    numeric = benchmark_columns(frame)
    return _newest([c for c in numeric if c.endswith(PREFERRED_SUFFIX)]) or (numeric[0] if numeric else None)


def benchmark_vector(benchmark: Any, index: pd.Index, columns: Sequence[str] | None) -> np.ndarray | None:
    """One benchmark column (the `columns` rule of `choose_benchmark_column`) aligned to `index` as float64, or None
    when there is none to use: what the estimators read from a `benchmark=` frame."""
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


def filled_benchmark(values: np.ndarray) -> np.ndarray:
    """A benchmark vector with its gaps at the mean of the rest (0.5, the middle of a rank, when all are missing)."""
    if not np.isnan(values).any():
        return values
    return np.where(np.isnan(values), np.nanmean(values) if (~np.isnan(values)).any() else 0.5, values)
