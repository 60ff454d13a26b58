"""model.booster: the float32 batches of int8 features, and the same trees as from a float32 matrix."""

import lightgbm as lgb
import numpy as np
import pytest

from model.booster import Rows, RowsDataset, dataset_params, training_dataset


@pytest.mark.parametrize("engineered_cols", [0, 3])
@pytest.mark.parametrize("subset", [False, True])
@pytest.mark.parametrize("dtype", [np.int8, np.float32])
def test_rows_serve_the_float32_matrix(engineered_cols, subset, dtype):
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 5, size=(50, 6)).astype(dtype)
    if dtype == np.float32:
        raw[3, 2] = np.nan
    engineered = rng.standard_normal((50, engineered_cols), dtype=np.float32)
    rows = np.arange(1, 50, 3) if subset else None
    dense = np.hstack([raw, engineered]).astype(np.float32)[rows if subset else slice(None)]
    seq = Rows(raw, engineered, rows)
    assert len(seq) == len(dense) and seq.width == dense.shape[1]
    one = seq[4]
    assert one.dtype == np.float64 and np.array_equal(one, dense[4], equal_nan=True)  # LightGBM's sampling wants float64
    for idx in (slice(0, 7), slice(2, None), slice(1, 12, 2), [5, 0, 3], np.array([2, 9])):
        batch = seq[idx]
        assert batch.dtype == np.float32
        np.testing.assert_array_equal(batch, dense[idx])


def _tree_section(booster: lgb.Booster) -> str:
    text = booster.model_to_string()
    return text[text.index("Tree=0") : text.index("end of trees")]


def test_batches_and_a_float32_matrix_grow_the_same_trees():
    """More rows than the bin sample and a non-default seed: the Sequence path must sample the rows LightGBM's
    C++ matrix path samples (data_random_seed), or the bins and so the trees differ. NaN targets are left out."""
    rng = np.random.default_rng(1)
    n = 12_000
    raw = rng.integers(0, 5, size=(n, 20), dtype=np.int8)
    engineered = rng.standard_normal((n, 3), dtype=np.float32)
    target = (raw[:, 0] - raw[:, 1] + engineered[:, 0] + rng.standard_normal(n)).astype(np.float64)
    target[::9] = np.nan
    params = {"objective": "regression", "max_bin": 15, "num_leaves": 15, "learning_rate": 0.1, "verbosity": -1,
              "seed": 7, "deterministic": True, "force_col_wise": True, "num_threads": 1,
              "bin_construct_sample_cnt": 3_000}
    labelled = ~np.isnan(target)
    reference = lgb.Dataset(np.hstack([raw, engineered]).astype(np.float32)[labelled], label=target[labelled],
                            params=dataset_params(params))
    batches = training_dataset(raw, engineered, target, params)
    matrix = training_dataset(raw, engineered, target, params, dense_cells=n * 23)
    trees = [_tree_section(lgb.train(params, d, num_boost_round=4)) for d in (reference, batches, matrix)]
    assert batches.num_data() == labelled.sum()
    assert "split_feature" in trees[0] and trees[1] == trees[0] and trees[2] == trees[0]


@pytest.mark.parametrize("dtype", [np.int8, np.float32])
@pytest.mark.parametrize("subset", [False, True])
def test_the_bin_sample_is_lightgbms_own(dtype, subset):
    """RowsDataset's vectorized sampling hands LightGBM the very arrays its own Sequence sampling makes (the same
    rows, each column's non-zero values as float64, NaN kept, and their int32 positions), in blocks of columns."""
    assert hasattr(lgb.Dataset, "_Dataset__sample")  # the private method RowsDataset overrides is still there
    rng = np.random.default_rng(2)
    n = 3_000
    raw = rng.integers(0, 5, size=(n, 9)).astype(dtype)
    if dtype == np.float32:
        raw[::7, 3] = np.nan
    engineered = rng.standard_normal((n, 2), dtype=np.float32)
    engineered[::5, 1] = 0.0
    rows = np.arange(0, n, 2) if subset else None
    params = {"bin_construct_sample_cnt": 1_000, "data_random_seed": 3, "verbosity": -1}
    ours = RowsDataset([Rows(raw, engineered, rows)], params=params)
    theirs = lgb.Dataset([Rows(raw, engineered, rows)], params=params)
    total = len(Rows(raw, engineered, rows))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("model.booster.SAMPLE_CELLS", 2_000)  # several blocks of columns
        values, where = ours._Dataset__sample([Rows(raw, engineered, rows)], total)
    expected_values, expected_where = theirs._Dataset__sample(seqs=[Rows(raw, engineered, rows)], total_nrow=total)
    assert len(values) == len(expected_values) == 11
    for v, w, ev, ew in zip(values, where, expected_values, expected_where):
        assert v.dtype == ev.dtype == np.float64 and w.dtype == ew.dtype == np.int32
        np.testing.assert_array_equal(v, ev)
        np.testing.assert_array_equal(w, ew)
