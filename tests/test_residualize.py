"""model.residualize: agreement with numerai-tools `neutralize`, singular eras, shapes, the postprocessor, speed sanity."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from numerai_tools.scoring import neutralize

import model.lstsq as lstsq_module
from model.eras import EraIndex
from model.residualize import Residualizer, residualize, residualize_predictions


def _world(seed: int = 0, eras: int = 5, rows: int = 400, k: int = 30, m: int = 3):
    """Random int8 0..4 exposures over several eras, values partly explained by them (so the fit matters)."""
    rng = np.random.default_rng(seed)
    n = eras * rows
    era = np.repeat([f"{i + 1:04d}" for i in range(eras)], rows)
    X = rng.integers(0, 5, size=(n, k)).astype(np.int8)
    V = X[:, :5].astype(np.float64) @ rng.standard_normal((5, m)) + rng.standard_normal((n, m))
    return era, X, V


def _neutralize_by_era(values: np.ndarray, exposures: np.ndarray, era: np.ndarray, proportion: float) -> np.ndarray:
    """The reference: numerai-tools neutralize run era by era."""
    values2 = values.reshape(len(values), -1)
    out = np.empty(values2.shape)
    for e in np.unique(era):
        mask = era == e
        out[mask] = neutralize(
            pd.DataFrame(values2[mask]), pd.DataFrame(np.asarray(exposures[mask], dtype=np.float64)), proportion
        ).to_numpy()
    return out.reshape(values.shape)


def _lstsq_residual(values: np.ndarray, exposures: np.ndarray, era: np.ndarray) -> np.ndarray:
    """Minimum-norm least squares residual on [exposures, 1] per era (numpy's SVD lstsq, default rcond)."""
    out = np.empty(values.shape)
    for e in np.unique(era):
        mask = era == e
        design = np.hstack([exposures[mask].astype(np.float64), np.ones((mask.sum(), 1))])
        beta = np.linalg.lstsq(design, values[mask], rcond=None)[0]
        out[mask] = values[mask] - design @ beta
    return out


def _per_era_corr(values: np.ndarray, exposures: np.ndarray, era: np.ndarray) -> np.ndarray:
    """|Pearson correlation| of each value column with each non-constant exposure, per era."""
    result = []
    for e in np.unique(era):
        mask = era == e
        v = values[mask] - values[mask].mean(axis=0)
        x = exposures[mask].astype(np.float64)
        x = x - x.mean(axis=0)
        norm_x = np.linalg.norm(x, axis=0)
        keep = norm_x > 0
        corr = (x[:, keep].T @ v) / norm_x[keep][:, None] / np.linalg.norm(v, axis=0)[None, :]
        result.append(np.abs(corr).max())
    return np.array(result)


@pytest.mark.parametrize("proportion", [1.0, 0.5])
@pytest.mark.parametrize("deficient", [False, True])
def test_agrees_with_numerai_tools_neutralize(proportion: float, deficient: bool) -> None:
    era, X, V = _world(seed=1)
    if deficient:  # a duplicated and a constant exposure column: rank-deficient design in every era
        X[:, 7] = X[:, 3]
        X[:, 11] = 2
    ours = residualize(V, X, era, proportion)
    reference = _neutralize_by_era(V, X, era, proportion)
    assert ours.shape == V.shape and ours.dtype == np.float64
    deviation = np.abs(ours - reference).max(axis=0) / V.std(axis=0)
    assert (deviation < 1e-5).all(), deviation
    assert not np.allclose(ours, V)  # it did remove something


def test_agrees_with_neutralize_on_mixed_float_and_integer_exposures() -> None:
    """Integer features (exact float32 Gram) mixed with float benchmark columns (float64 path), as a frame or array."""
    era, X, V = _world(seed=2, k=20)
    rng = np.random.default_rng(2)
    bench = (V[:, :1] + rng.standard_normal((len(V), 2))).astype(np.float32)
    frame = pd.DataFrame(X, columns=[f"feature_{i}" for i in range(X.shape[1])])
    frame[["bench_a", "bench_b"]] = bench
    dense = np.hstack([X.astype(np.float64), bench.astype(np.float64)])
    reference = _neutralize_by_era(V, dense, era, 1.0)
    for exposures in (frame, dense, dense.astype(np.float32)):
        ours = residualize(V, exposures, era)
        assert np.abs(ours - reference).max() < 1e-5 * V.std(axis=0).min()


def test_large_integers_take_the_float64_path() -> None:
    """Integers too large for an exact float32 Gram still give the right answer."""
    era, _, V = _world(seed=3, k=10)
    X = np.random.default_rng(3).integers(0, 100_000, size=(len(V), 10)).astype(np.int64)
    ours = residualize(V, X, era)
    assert np.abs(ours - _neutralize_by_era(V, X, era, 1.0)).max() < 1e-5 * V.std(axis=0).min()


def test_vector_and_single_column_shapes_agree() -> None:
    era, X, V = _world(seed=4)
    flat = residualize(V[:, 0], X, era)
    column = residualize(V[:, :1], X, era)
    assert flat.shape == (len(V),) and column.shape == (len(V), 1)
    np.testing.assert_allclose(flat, column[:, 0], rtol=0, atol=1e-12)
    series = residualize(pd.Series(V[:, 0]), pd.DataFrame(X), pd.Series(era))
    np.testing.assert_allclose(series, flat, rtol=0, atol=1e-12)


def test_columns_are_independent() -> None:
    """Sharing one factorisation across columns gives each column the answer it would get alone."""
    era, X, V = _world(seed=5, m=4)
    together = residualize(V, X, era)
    for j in range(V.shape[1]):
        np.testing.assert_allclose(together[:, j], residualize(V[:, j], X, era), rtol=0, atol=1e-10)


@pytest.mark.parametrize("case", ["duplicate", "constant", "zero", "few_rows"])
def test_singular_eras_are_finite_and_match_minimum_norm_lstsq(case: str) -> None:
    era, X, V = _world(seed=6, eras=4, rows=200, k=25)
    if case == "duplicate":
        X[:, 1] = X[:, 0]
        X[:, 2] = X[:, 0]
    elif case == "constant":
        X[:, 4] = 3
    elif case == "zero":
        X[era == "0002", 6] = 0
    else:  # an era with fewer rows than exposure columns (+ intercept)
        era = era.copy()
        era[:12] = "0000"
    ours = residualize(V, X, era)
    assert np.isfinite(ours).all()
    expected = _lstsq_residual(V, X, era)
    assert np.abs(ours - expected).max() < 1e-6 * V.std(axis=0).min()
    if case == "few_rows":  # 12 rows, 26 columns: the fit is exact, the residual vanishes
        assert np.abs(ours[:12]).max() < 1e-8


def test_one_row_era_and_constant_values_stay_finite() -> None:
    """Degenerate eras never produce NaN (neutralize would NaN a constant values column; we return its residual)."""
    rng = np.random.default_rng(7)
    X = rng.integers(0, 5, size=(101, 8)).astype(np.int8)
    era = np.array(["a"] + ["b"] * 100)
    values = np.column_stack([rng.standard_normal(101), np.full(101, 0.25)])
    out = residualize(values, X, era, proportion=0.5)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[:, 1], 0.125, atol=1e-12)  # (1 - proportion) x the constant
    assert abs(out[0, 0] - 0.5 * values[0, 0]) < 1e-12  # a one-row era: the intercept explains it all


def test_proportion_zero_returns_the_input() -> None:
    era, X, V = _world(seed=8)
    out = residualize(V, X, era, proportion=0.0)
    assert out.dtype == np.float64 and out.shape == V.shape
    np.testing.assert_array_equal(out, V)
    assert out is not V


def test_full_residual_is_uncorrelated_with_every_exposure() -> None:
    era, X, V = _world(seed=9)
    before = _per_era_corr(V, X, era)
    after = _per_era_corr(residualize(V, X, era), X, era)
    assert before.max() > 0.3
    assert after.max() < 1e-10


def test_half_proportion_is_halfway() -> None:
    era, X, V = _world(seed=10)
    full = residualize(V, X, era, 1.0)
    half = residualize(V, X, era, 0.5)
    np.testing.assert_allclose(half, (V + full) / 2, rtol=0, atol=1e-10)


def test_shuffled_rows_eraindex_and_row_chunks_give_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Interleaved eras (non-contiguous rows), a prebuilt EraIndex and huge eras split into row chunks agree."""
    era, X, V = _world(seed=11, k=12)
    expected = residualize(V, X, era)
    perm = np.random.default_rng(11).permutation(len(V))
    shuffled = residualize(V[perm], X[perm], EraIndex(era[perm]))
    np.testing.assert_allclose(shuffled, expected[perm], rtol=0, atol=1e-10)
    frame = pd.DataFrame(X)
    frame["bench"] = V[:, 0] * 0.3
    dense = np.hstack([X, V[:, :1] * 0.3])
    whole = residualize(V, dense, era)
    monkeypatch.setattr(lstsq_module, "DESIGN_CHUNK_ELEMENTS", 13 * 37)  # 37-row chunks inside 400-row eras
    np.testing.assert_allclose(residualize(V, X, era), expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(residualize(V[perm], frame.iloc[perm], era[perm]), whole[perm], rtol=0, atol=1e-10)


def test_worker_threads_give_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eras spread over threads (uneven sizes, interleaved rows, a chunked huge era) give bit-identical results."""
    era, X, V = _world(seed=13, eras=7, rows=150, k=20)
    era = era.copy()
    era[:40] = "0000"  # a small era, and the others of unequal size after the shuffle below
    perm = np.random.default_rng(13).permutation(len(V))
    era, X, V = era[perm], X[perm], V[perm]
    alone = residualize(V, X, era, 0.7)
    for n_jobs in (2, 3, -1, 50):
        np.testing.assert_array_equal(residualize(V, X, era, 0.7, n_jobs=n_jobs), alone)
    monkeypatch.setattr(lstsq_module, "DESIGN_CHUNK_ELEMENTS", 21 * 37)  # eras split into 37-row chunks
    np.testing.assert_array_equal(residualize(V, X, era, 0.7, n_jobs=2), residualize(V, X, era, 0.7))


def test_threads_splitting_one_era_give_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fewer eras than threads: the threads split each era's Gram matrix by rows, bit-identical to one syrk call."""
    era, X, V = _world(seed=15, eras=1, rows=700, k=25, m=2)
    dense = np.hstack([X, V[:, :1] * 0.3])  # a float exposure column too (the float64 part is not split)
    alone = residualize(V, X, era, 0.6)
    alone_dense = residualize(V, dense, era, 0.6)
    # patched where the code looks them up: a by-value pickle loaded in this process (test_export) rebinds the
    # module's classes' methods to a copy of its globals (cloudpickle reuses a class it has seen and sets its
    # methods from the pickle), so the design's methods may read another dict than `residualize`
    module = residualize.__globals__
    spaces = [module, module["_Design"].normal_equations.__globals__]
    calls = []
    gram32 = module["_gram32"]
    for space in spaces:
        monkeypatch.setitem(space, "_SPLIT_MIN_WORK", 0)
        monkeypatch.setitem(space, "_SPLIT_MIN_ROWS", 100)
        monkeypatch.setitem(space, "_gram32",
                            lambda d, pool=None, parts=1: calls.append(parts) or gram32(d, pool, parts))
    for n_jobs in (2, 3, 7, 50):
        np.testing.assert_array_equal(residualize(V, X, era, 0.6, n_jobs=n_jobs), alone)
        np.testing.assert_array_equal(residualize(V, dense, era, 0.6, n_jobs=n_jobs), alone_dense)
    assert calls == [2, 2, 3, 3, 7, 7, 50, 50]  # capped inside _gram32 at 700 // 100 = 7 blocks
    for space in spaces:  # a huge era: chunks of 300 rows, each split
        monkeypatch.setitem(space, "DESIGN_CHUNK_ELEMENTS", 26 * 300)
    np.testing.assert_allclose(residualize(V, X, era, 0.6, n_jobs=2), alone, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(residualize(V, X, era, 0.6, n_jobs=2), residualize(V, X, era, 0.6))


@pytest.mark.parametrize("n_jobs", [0, 1.5, "2", True])
def test_bad_n_jobs_raise(n_jobs) -> None:
    era, X, V = _world(seed=14, eras=2, rows=50, k=6)
    with pytest.raises(ValueError, match="n_jobs"):
        residualize(V, X, era, n_jobs=n_jobs)


def test_bad_inputs_raise() -> None:
    era, X, V = _world(seed=12)
    with pytest.raises(ValueError, match="NaN"):
        residualize(V, np.where(X == 4, np.nan, X), era)
    with pytest.raises(ValueError, match="NaN"):
        residualize(np.where(V > 2, np.nan, V), X, era)
    with pytest.raises(ValueError, match="rows"):
        residualize(V[:-1], X, era[:-1])


def test_postprocessor_returns_per_era_ranks_and_lowers_exposure() -> None:
    era, X, V = _world(seed=13)
    predictions = V[:, 0]
    out = residualize_predictions(predictions, X, era, proportion=1.0)
    assert out.shape == predictions.shape and np.isfinite(out).all()
    assert (out > 0).all() and (out <= 1).all()
    for e in np.unique(era):
        ranks = np.sort(out[era == e])
        n = len(ranks)
        np.testing.assert_allclose(ranks, np.arange(1, n + 1) / n)  # a full set of ranks per era (no ties here)
    assert _per_era_corr(out[:, None], X, era).max() < 0.5 * _per_era_corr(predictions[:, None], X, era).max()
    # proportion 0: just the per-era ranks of the predictions
    np.testing.assert_allclose(residualize_predictions(predictions, X, era, 0.0), EraIndex(era).rank(predictions))
    # 2-D predictions and a degenerate era (fewer rows than exposures): ranks, no NaN
    era2 = era.copy()
    era2[:5] = "tiny"
    two = residualize_predictions(V[:, :2], X, era2, 0.75)
    assert two.shape == (len(V), 2) and np.isfinite(two).all() and (two > 0).all() and (two <= 1).all()


def test_residualizer_is_a_plain_component_that_checks_its_settings() -> None:
    from sklearn.base import BaseEstimator

    era, X, V = _world(seed=14)
    r = Residualizer(proportion=0.6)
    assert not isinstance(r, BaseEstimator) and r.proportion == 0.6  # its fit takes eras and exposures, not (X, y)
    index = EraIndex(era)
    with pytest.raises(ValueError, match="`proportion` is 1.5"):
        Residualizer(proportion=1.5).fit(X, V[:, 0], index)
    fitted = Residualizer(proportion=0.3, features="all", gate=False).fit(X, V[:, 0], index)
    assert fitted.parts_ == ("features",)
    np.testing.assert_allclose(fitted.transform(V[:, 0], X, index), residualize_predictions(V[:, 0], X, era, 0.3))


def test_speed_sanity_one_era() -> None:
    """Robust margin only: one 2,000 x 300 era at least 2x less CPU than neutralize (measured ~4x single-threaded).

    Both sides run with one BLAS thread and are timed in process CPU time, best of five, interleaved: other
    processes on a shared machine then slow both alike and thread oversubscription cannot distort the ratio.
    """
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(15)
    X = rng.integers(0, 5, size=(2000, 300)).astype(np.int8)
    v = rng.standard_normal(2000)
    era = np.zeros(2000, dtype=int)
    ours_t, ref_t = [], []
    with threadpool_limits(limits=1, user_api="blas"):
        for _ in range(5):
            start = time.process_time()
            ours = residualize(v, X, era)
            ours_t.append(time.process_time() - start)
            start = time.process_time()
            reference = neutralize(pd.DataFrame({"v": v}), pd.DataFrame(X)).to_numpy()[:, 0]
            ref_t.append(time.process_time() - start)
    assert np.abs(ours - reference).max() < 1e-5 * v.std()
    assert min(ref_t) / min(ours_t) >= 2.0, (min(ref_t), min(ours_t))
