"""The booster: LightGBM's parameters, its training Dataset built from int8 features without a float copy of the
whole matrix, training, and prediction in bounded batches and blocks of trees.

`training_dataset` hands LightGBM the features through `Rows`, a `lightgbm.Sequence` serving float32 batches of
the int8 (or float) raw features and the float32 engineered columns side by side, so the float copy LightGBM
needs never exceeds one batch. LightGBM finds the bin boundaries from a sample of `bin_construct_sample_cnt`
rows (each column's non-zero values as float64, gathered at once by `RowsDataset`), then pushes the batches. The
bins depend only on the sampled rows and the bin parameters, so the trees equal those grown from
`lgb.Dataset(X.astype("float32"))` with the same parameters (`data_random_seed` is set explicitly: LightGBM's
Sequence path ignores `seed` when it picks the sample).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import lightgbm as lgb
import numpy as np

try:  # LightGBM's own test of a zero in its Sequence sampling (lightgbm.basic, 4.0 and later)
    from lightgbm.basic import ZERO_THRESHOLD
except ImportError:  # pragma: no cover
    ZERO_THRESHOLD = 1e-35

# Numerai's standard LightGBM recipe for its real data (the example models): 2,000 trees, learning rate 0.01,
# max_depth 5, num_leaves 31 (2**5 - 1), colsample_bytree 0.1. Our default keeps that tree shape and column
# sampling but uses a smaller budget fit for the synthetic world (thousands of stocks per era, ~100 features) so
# a fit takes about a minute on 2 cores: 1,000 trees at learning rate 0.02 (the same learning-rate x trees
# product). 10 % of the columns per tree also keeps the few engineered columns from crowding out the raw
# features (with 50 % the continuous composites dominate the trees and overfit: measured worse on both the
# planted and the control world). max_bin 15: raw features take 5 levels, engineered ones need only coarse bins.
DEFAULT_LGBM_PARAMS: dict[str, Any] = {
    "objective": "regression",
    "num_iterations": 1000,
    "learning_rate": 0.02,
    "max_depth": 5,
    "num_leaves": 31,
    "feature_fraction": 0.1,
    "min_data_in_leaf": 20,
    "max_bin": 15,  # features take 5 levels; engineered columns need only coarse bins
    "verbosity": -1,
}
ALIASES = {
    "n_estimators": "num_iterations",
    "num_boost_round": "num_iterations",
    "num_trees": "num_iterations",
    "num_rounds": "num_iterations",
    "colsample_bytree": "feature_fraction",
    "subsample": "bagging_fraction",
    "subsample_freq": "bagging_freq",
    "min_child_samples": "min_data_in_leaf",
    "reg_lambda": "lambda_l2",
    "reg_alpha": "lambda_l1",
    "min_split_gain": "min_gain_to_split",
    "n_jobs": "num_threads",
    "random_state": "seed",
    "max_bins": "max_bin",
}
"""scikit-learn style names (as in a config's [lightgbm] table) → LightGBM's own names."""
PREDICT_CELLS = 4_000_000
"""float32 values handed to booster.predict at once (~16 MB)."""
PREDICT_TREES = 1000
"""Trees per booster.predict call. Deep forests gain from blocks (a block's nodes stay in cache across a batch of
rows): 6,000 depth-10 trees on 6,700 rows took 29.4 s in one call, 7.1 s in blocks of 2,000, 6.7 s in blocks of 500.
Numerai's shallow shape gains too: 2,000 trees of 31 leaves over 2,764 columns, 13,264 rows fed in batches of 1,447
(PREDICT_CELLS), one thread, took 2.43 s in one call, 2.35 s in blocks of 1,500, 2.12 s in blocks of 1,000 or 700,
2.25 s in blocks of 500 and 2.91 s in blocks of 250 (each block converts the rows again)."""

# rows LightGBM samples to find bin boundaries (its default is 200,000). What LightGBM keeps of the sample is each
# column's non-zero values as float64 and their positions as int32, up to 12 bytes per sampled cell, which sets the
# peak of building the Dataset. (LightGBM's own Sequence sampling, which `RowsDataset` replaces, also held every
# sampled row as float64 twice on the way: about 2 x 8 bytes more per cell, and one Python call per sampled row.)
# 100,000 is the smallest sample LightGBM accepts without warning ("too small bin_construct_sample_cnt", printed
# even at verbosity -1, when the sample is under 100,000 rows and 20 % of the data); raw features take five levels,
# so their bins are exact at any size.
BIN_SAMPLE_ROWS = 100_000
BATCH_ROWS = 16_384  # rows per float32 batch pushed into the Dataset (~51 MB at 780 columns)
SAMPLE_CELLS = 8_000_000
"""Sampled cells gathered at once (in the features' own dtype) while `Rows.bin_sample` converts them column by
column."""


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
        """Columns of a batch: the raw features and the engineered columns."""
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

    def bin_sample(self, indices: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """LightGBM's bin sample of the rows at `indices` (sorted positions in this sequence): per column, the
        values that are not zero (NaN kept) as float64 and their int32 positions in the sample. The same arrays as
        LightGBM's Sequence sampling makes from one float64 row at a time (`__getitem__` of an integer), here
        gathered in blocks of columns in the features' own dtype and converted one column at a time."""
        rows = np.asarray(indices, dtype=np.int64)
        if self.rows is not None:
            rows = self.rows[rows]
        positions = np.arange(len(rows), dtype=np.int32)
        values: list[np.ndarray] = []
        where: list[np.ndarray] = []
        step = max(1, SAMPLE_CELLS // max(1, len(rows)))
        for block in (self.raw, self.engineered):
            for start in range(0, block.shape[1], step):
                columns = np.ascontiguousarray(block[rows, start : start + step].T)
                for column in columns:  # through float32, as the batches serve it
                    column = column.astype(np.float32, copy=False).astype(np.float64)
                    keep = (np.abs(column) > ZERO_THRESHOLD) | np.isnan(column)
                    values.append(column[keep])
                    where.append(positions[keep])
        return values, where

    def __getitem__(self, idx: Any) -> np.ndarray:
        if isinstance(idx, numbers.Integral):  # LightGBM samples single rows for binning and wants float64
            return self._take(int(idx)).astype(np.float64)
        if isinstance(idx, slice) and idx.step in (None, 1):  # a batch: a view of raw when rows is None
            return self._take(slice(*idx.indices(len(self))[:2]))
        if isinstance(idx, slice):
            return self._take(np.arange(*idx.indices(len(self))))
        return self._take(np.asarray(idx))


class RowsDataset(lgb.Dataset):
    """`lgb.Dataset` that takes the bin sample of a `Rows` sequence with `Rows.bin_sample`: the same sample (rows
    from LightGBM's own `_create_sample_indices`) and so the same bins and trees, without LightGBM's Python loop
    over the sampled rows and its two float64 copies of them. At 88,113 rows x 603 int8 features the Dataset was
    built in 2.0-2.4 s instead of 3.1-4.6 s and peaked 649 MB above its input instead of 892 MB; at 176,074 rows
    (a sample of 100,000) 3.6 s and 759 MB instead of 5.7 s and 1,014 MB. It overrides `Dataset.__sample`, the
    private method through which LightGBM (4.0 and later) samples sequences, called as (seqs, total_nrow); should
    a LightGBM release drop it, LightGBM's own sampling runs (same trees, the old cost; tests/test_booster.py
    notices)."""

    def _Dataset__sample(self, seqs: list[Any], total_nrow: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        if len(seqs) != 1 or not isinstance(seqs[0], Rows):
            return lgb.Dataset._Dataset__sample(self, seqs=seqs, total_nrow=total_nrow)  # type: ignore[attr-defined]
        return seqs[0].bin_sample(self._create_sample_indices(total_nrow=total_nrow))


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
    return RowsDataset(
        data,
        label=target[labelled].astype(np.float32),
        feature_name=feature_name,
        categorical_feature=categorical_feature,
        params=dataset_params(params),
        free_raw_data=True,
    )


def lgbm_params(user: Mapping[str, Any] | None) -> dict[str, Any]:
    """DEFAULT_LGBM_PARAMS with the user's parameters merged over them, all under LightGBM's own names."""
    params = dict(DEFAULT_LGBM_PARAMS)
    for key, value in (user or {}).items():
        params[ALIASES.get(key, key)] = value
    return params


def safe_name(name: str) -> str:
    """A column name LightGBM accepts (it rejects some characters)."""
    return "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in str(name))


def train_booster(raw: np.ndarray, engineered: np.ndarray, target: np.ndarray, user_params: Mapping[str, Any] | None,
                  names: Sequence[str], categorical: Sequence[str], seed: int, threads: int, dense_cells: int,
                  callbacks: list | None = None, init_score: np.ndarray | None = None) -> lgb.Booster:
    """Train the booster on the raw and engineered columns (deterministic for a seed and thread count); `init_score`
    (n,): a starting score per row for the trees to grow from (rows without a target are left out with them)."""
    params = lgbm_params(user_params)
    params.update(seed=int(seed), deterministic=True, force_col_wise=True,
                  num_threads=int(params.get("num_threads") or threads))
    rounds = int(params.pop("num_iterations"))
    # a float32 copy of at most `dense_cells` cells; larger data goes in float32 batches (int8 stays int8)
    data = training_dataset(
        raw, engineered, target, params,
        feature_name=[safe_name(n) for n in names],
        categorical_feature=[safe_name(c) for c in categorical] if categorical else "auto",
        dense_cells=dense_cells,
    )
    if init_score is not None:
        data.set_init_score(np.asarray(init_score)[~np.isnan(np.asarray(target))])
    booster = lgb.train(params, data, num_boost_round=rounds, callbacks=callbacks)
    booster.free_dataset()
    return booster


def predict_raw(booster: lgb.Booster, rows: Rows, threads: int) -> np.ndarray:
    """The booster's raw scores, fed in float32 batches of about PREDICT_CELLS values (bounded memory).

    A model with more than PREDICT_TREES trees is summed over blocks of that many trees: LightGBM walks every tree
    for one row before the next row, so 30,000 deep trees miss the cache on every row, while a block's nodes stay in
    cache across the batch (measured 4x faster on deep forests). Raw scores, not the objective's link: only the
    per-era ranks of these values are used.
    """
    n = len(rows)
    step = max(1, PREDICT_CELLS // max(1, rows.width))
    best = int(booster.best_iteration or 0)  # 0 from training without early stopping, -1 from a model string or copy
    trees = best if best > 0 else int(booster.current_iteration())
    out = np.zeros(n)
    for start in range(0, n, step):
        batch = rows[start : start + step]
        for first in range(0, trees, PREDICT_TREES):
            out[start : start + len(batch)] += booster.predict(
                batch, start_iteration=first, num_iteration=min(PREDICT_TREES, trees - first),
                raw_score=True, num_threads=threads,
            )
    return out
