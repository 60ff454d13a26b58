"""LightGBM's training Dataset built from int8 features without a float copy of the whole matrix.

`training_dataset` hands LightGBM the features through `Rows`, a `lightgbm.Sequence` serving float32 batches of
the int8 (or float) raw features and the float32 engineered columns side by side, so the float copy LightGBM
needs never exceeds one batch. LightGBM finds the bin boundaries from a sample of `bin_construct_sample_cnt`
rows (held as float64 while it bins), then pushes the batches. The bins depend only on the sampled rows and the
bin parameters, so the trees equal those grown from `lgb.Dataset(X.astype("float32"))` with the same parameters
(`data_random_seed` is set explicitly: LightGBM's Sequence path ignores `seed` when it picks the sample).
"""

from __future__ import annotations

import numbers
from typing import Any, Mapping

import lightgbm as lgb
import numpy as np

# rows LightGBM samples to find bin boundaries (its default is 200,000). The Sequence path collects the sampled
# rows as float64 and copies them into one array before keeping each column's non-zero values, so the sample
# costs about 2 x 8 bytes per cell and sets the peak of building the Dataset (bench_lgbm_dataset.py, 500k rows x
# 780 features: 1.38 GB at 100,000 rows, 2.94 GB for a float32 copy). 100,000 is the smallest sample LightGBM
# accepts without warning ("too small bin_construct_sample_cnt", printed even at verbosity -1, when the sample is
# under 100,000 rows and 20 % of the data); raw features take five levels, so their bins are exact at any size.
BIN_SAMPLE_ROWS = 100_000
BATCH_ROWS = 16_384  # rows per float32 batch pushed into the Dataset (~51 MB at 780 columns)


class Rows(lgb.Sequence):
    """Raw features (int8 or float) and engineered columns (float32) served to LightGBM in float32 batches;
    `rows` (indices into both) restricts them to a subset without copying it."""

    def __init__(self, raw: np.ndarray, engineered: np.ndarray, rows: np.ndarray | None, batch_size: int = BATCH_ROWS):
        self.raw = raw
        self.engineered = engineered
        self.rows = rows
        self.batch_size = batch_size

    def __len__(self) -> int:
        return len(self.rows) if self.rows is not None else len(self.raw)

    @property
    def width(self) -> int:
        return self.raw.shape[1] + self.engineered.shape[1]

    def _take(self, idx: Any) -> np.ndarray:
        if self.rows is not None:
            idx = self.rows[idx]
        raw = self.raw[idx]
        if self.engineered.shape[1] == 0:
            return np.asarray(raw, dtype=np.float32)
        out = np.empty(raw.shape[:-1] + (self.width,), dtype=np.float32)
        out[..., : self.raw.shape[1]] = raw
        out[..., self.raw.shape[1] :] = self.engineered[idx]
        return out

    def __getitem__(self, idx: Any) -> np.ndarray:
        if isinstance(idx, numbers.Integral):  # LightGBM samples single rows for binning and wants float64
            return self._take(int(idx)).astype(np.float64)
        if isinstance(idx, slice) and idx.step in (None, 1):  # a batch: a view of raw when rows is None
            return self._take(slice(*idx.indices(len(self))[:2]))
        if isinstance(idx, slice):
            return self._take(np.arange(*idx.indices(len(self))))
        return self._take(np.asarray(idx))


def dataset_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """LightGBM parameters for building the Dataset: `params` with the bin sample size defaulted to
    BIN_SAMPLE_ROWS and `data_random_seed` made explicit (from `seed`), so the Sequence path and a float32 matrix
    sample the same rows and so find the same bins."""
    out = dict(params)
    out.setdefault("bin_construct_sample_cnt", BIN_SAMPLE_ROWS)
    if "seed" in out:
        out.setdefault("data_random_seed", out["seed"])
    return out


def training_dataset(
    raw: np.ndarray,
    engineered: np.ndarray,
    target: np.ndarray,
    params: Mapping[str, Any],
    feature_name: list[str] | str = "auto",
    categorical_feature: list[str] | str = "auto",
    dense_cells: int = 0,
) -> lgb.Dataset:
    """LightGBM's training Dataset (constructed lazily, e.g. by lgb.train) of the rows whose target is not NaN,
    `raw` and `engineered` side by side. Up to `dense_cells` values go in as one float32 matrix (fastest for
    small data); more go through `Rows` in float32 batches. Both give the same bins and so the same trees."""
    target = np.asarray(target)
    labelled = np.flatnonzero(~np.isnan(target))
    source = Rows(raw, engineered, None if len(labelled) == len(target) else labelled)
    data = source[0 : len(source)] if len(source) * source.width <= dense_cells else [source]
    return lgb.Dataset(
        data,
        label=target[labelled].astype(np.float32),
        feature_name=feature_name,
        categorical_feature=categorical_feature,
        params=dataset_params(params),
        free_raw_data=True,
    )
