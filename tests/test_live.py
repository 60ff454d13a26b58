"""model.live: the function Numerai calls daily, held to the runtime's rules and to its robustness promises."""

from __future__ import annotations

import inspect
import logging
import re
import tracemalloc

import numpy as np
import pandas as pd
import pytest

import model.live as live_module
from model.eras import EraIndex
from model.live import FILL_VALUE, MIN_FEATURE_FRACTION, make_predict
from tests.stand_in import ConstantModel, StandInModel, fit_baseline, fit_stand_in_cached, make_benchmark, make_frame


@pytest.fixture(scope="module")
def baseline(small_world):
    return fit_baseline(small_world)


@pytest.fixture(scope="module")
def live(small_world) -> pd.DataFrame:
    return pd.read_parquet(small_world / "live.parquet")


@pytest.fixture(scope="module")
def live_bench(small_world) -> pd.DataFrame:
    return pd.read_parquet(small_world / "live_benchmark_models.parquet")


def _records(caplog):
    return [r for r in caplog.records if r.name == "model.live"]


def test_exactly_two_parameters(baseline):
    predict = make_predict(baseline)
    assert len(inspect.signature(predict).parameters) == 2
    assert list(inspect.signature(predict).parameters) == ["live_features", "live_benchmark_models"]


def test_output_is_numerais_frame(baseline, live, live_bench):
    out = make_predict(baseline)(live, live_bench)
    assert type(out) is pd.DataFrame
    assert list(out.columns) == ["prediction"]
    assert out.index.name == "id"
    assert out.index.equals(pd.Index(live.index, name="id"))
    values = out["prediction"].to_numpy()
    assert not np.isnan(values).any()
    assert values.min() >= 0 and values.max() <= 1
    assert values.std() > 0
    assert out.to_csv().splitlines()[0] == "id,prediction"


def test_output_is_the_fitted_models_prediction(baseline, live):
    """With every feature present and no NaN the live path passes the model's own prediction through."""
    features = baseline.feature_names_in_
    clean = live.copy()
    clean[features] = clean[features].fillna(FILL_VALUE).astype(np.int8)
    expected = baseline.predict(clean[["era", *features]])
    out = make_predict(baseline)(clean, None)
    np.testing.assert_allclose(out["prediction"].to_numpy(), expected)


def test_extra_columns_are_ignored(baseline, live, live_bench):
    predict = make_predict(baseline)
    extra = live.copy()
    extra["feature_added_in_a_new_version"] = np.int8(3)
    extra["some_text"] = "x"
    extra.insert(3, "another_number", 7.5)
    pd.testing.assert_frame_equal(predict(extra, live_bench), predict(live, live_bench))


def test_missing_feature_and_nan_take_two_with_one_log_line(baseline, live, caplog):
    features = baseline.feature_names_in_
    broken = live.drop(columns=[features[0], features[1]])
    broken[features[2]] = broken[features[2]].astype(np.float32)
    broken.iloc[:7, broken.columns.get_loc(features[2])] = np.nan
    n_nan = int(broken[features[2:]].isna().sum().sum())
    assert n_nan >= 7

    filled = live.copy()
    filled[features[0]] = np.int8(FILL_VALUE)
    filled[features[1]] = np.int8(FILL_VALUE)
    filled[features[2]] = broken[features[2]]
    filled[features] = filled[features].fillna(FILL_VALUE)

    predict = make_predict(baseline)
    with caplog.at_level(logging.WARNING, logger="model.live"):
        out = predict(broken, None)
    records = [r for r in _records(caplog) if "missing trained feature" in r.getMessage()]
    assert len(records) == 1
    message = records[0].getMessage()
    assert f"filled {n_nan} NaN value(s) and 2 missing trained feature(s)" in message
    assert features[0] in message and features[1] in message
    pd.testing.assert_frame_equal(out, predict(filled, None))


def test_no_era_column_is_one_era(baseline, live):
    predict = make_predict(baseline)
    pd.testing.assert_frame_equal(predict(live.drop(columns=["era"]), None), predict(live, None))


def test_int_and_float_features_give_the_same_result(baseline, live):
    features = baseline.feature_names_in_
    predict = make_predict(baseline)
    filled = live.copy()
    filled[features] = filled[features].fillna(FILL_VALUE)
    results = []
    for dtype in (np.int8, np.int64, np.float32, np.float64):
        frame = filled.copy()
        frame[features] = frame[features].astype(dtype)
        results.append(predict(frame, None))
    for other in results[1:]:
        pd.testing.assert_frame_equal(results[0], other)


def test_too_few_features_raise_naming_them(baseline, live):
    features = baseline.feature_names_in_
    n_drop = int(len(features) * (1 - MIN_FEATURE_FRACTION)) + 1
    with pytest.raises(ValueError) as err:
        make_predict(baseline)(live.drop(columns=features[:n_drop]), None)
    message = str(err.value)
    assert f"only {len(features) - n_drop} of the model's {len(features)} trained features" in message
    assert f"{n_drop} missing" in message and features[0] in message
    # Exactly at the threshold it still predicts.
    keep = make_predict(baseline)(live.drop(columns=features[: n_drop - 1]), None)
    assert keep["prediction"].std() > 0


def test_multi_era_input_equals_per_era_predictions(baseline, small_world, monkeypatch):
    validation = pd.read_parquet(small_world / "validation.parquet")
    eras = sorted(validation["era"].unique())[-12:]
    frame = validation[validation["era"].isin(eras)]
    frame = frame.sample(frac=1.0, random_state=0)  # eras interleaved, as no runner promises an order
    predict = make_predict(baseline)
    whole = predict(frame, None)
    per_era = pd.concat([predict(frame[frame["era"] == e], None) for e in eras]).reindex(frame.index)
    assert whole.index.equals(pd.Index(frame.index, name="id"))
    np.testing.assert_allclose(whole["prediction"].to_numpy(), per_era["prediction"].to_numpy())
    # Small chunks (several per era group) give the same answer: chunking is only a memory bound.
    monkeypatch.setattr(live_module, "CHUNK_CELLS", 3 * 600 * len(baseline.feature_names_in_))
    np.testing.assert_allclose(predict(frame, None)["prediction"].to_numpy(), whole["prediction"].to_numpy())


def test_multi_era_memory_is_bounded_by_the_chunk(monkeypatch):
    """A 200-feature, 60-era frame: the traced peak stays far below one float64 copy of the whole frame."""
    frame = make_frame(eras=60, stocks=500, features=200, seed=3)
    features = [c for c in frame.columns if c.startswith("feature_")]
    fitted = StandInModel(n_estimators=5).fit(frame[["era", *features]].iloc[:3000], frame["target"].iloc[:3000])
    predict = make_predict(fitted)
    monkeypatch.setattr(live_module, "CHUNK_CELLS", 500 * 200 * 2)
    float64_copy = len(frame) * len(features) * 8
    tracemalloc.start()
    try:
        out = predict(frame, None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(out) == len(frame)
    assert peak < float64_copy / 4, (peak, float64_copy)


def test_era_chunks_are_whole_eras_and_take_regroups_like_a_fresh_index():
    """The live path's grouping (model.eras.EraIndex): chunks of whole eras within the row bound (one era alone when
    bigger), every row once; take() of a chunk equals an EraIndex built from that chunk's labels."""
    rng = np.random.default_rng(0)
    labels = rng.choice(["0003", "0001", "0002", "0005", "0004"], size=500, p=[0.1, 0.4, 0.2, 0.2, 0.1])
    eras = EraIndex(labels)
    chunks = list(eras.chunks(150))
    assert np.array_equal(np.sort(np.concatenate(chunks)), np.arange(500))
    for rows in chunks:
        sub = eras.take(rows)
        fresh = EraIndex(labels[rows])
        assert len(rows) <= 150 or sub.n_eras == 1
        for name in ("codes", "eras", "counts", "order", "starts"):
            np.testing.assert_array_equal(getattr(sub, name), getattr(fresh, name))
    assert [len(c) for c in eras.chunks(10**6)] == [500]


@pytest.fixture(scope="module")
def bench_user(small_world):
    """A stand-in that adds the v52_lgbm_ender20 benchmark to its score (so its use is visible). It was 'trained' on
    data v5.2 names while the world's frames carry v5.3 names (v53_lgbm_ender20), as after a data release."""
    return fit_stand_in_cached(small_world, StandInModel, benchmark_weight=1.0)


@pytest.mark.parametrize("case", ["none", "empty", "no_column", "missing_ids", "not_a_frame"])
def test_broken_benchmark_frames_predict_without_it(bench_user, live, live_bench, case, caplog):
    predict = make_predict(bench_user)
    with_bench = predict(live, live_bench)
    without = bench_user.predict(live[["era", *bench_user.feature_names_in_]].fillna(FILL_VALUE), None)
    assert not np.allclose(with_bench["prediction"].to_numpy(), without)  # the benchmark matters to this model
    broken = {
        "none": None,
        "empty": live_bench.iloc[0:0],
        "no_column": live_bench.drop(columns=[c for c in live_bench.columns if c.endswith("_lgbm_ender20")]),
        "missing_ids": live_bench.iloc[10:],
        "not_a_frame": live_bench["v53_lgbm_ender20"].to_numpy(),
    }[case]
    with caplog.at_level(logging.WARNING, logger="model.live"):
        out = predict(live, broken)
    np.testing.assert_allclose(out["prediction"].to_numpy(), without)
    lines = [r.getMessage() for r in _records(caplog) if "without benchmark" in r.getMessage()]
    assert len(lines) == 1, lines


def test_a_newer_data_versions_benchmark_stands_in_for_the_trained_one(bench_user, live, live_bench, caplog):
    """A model trained on v5.2's v52_lgbm_ender20 gets v5.3's v53_lgbm_ender20 live: the same model's column is used."""
    predict = make_predict(bench_user)
    as_v52 = live_bench.rename(columns=lambda c: c.replace("v53_", "v52_"))
    with caplog.at_level(logging.INFO, logger="model.live"):
        newer = predict(live, live_bench)
    pd.testing.assert_frame_equal(newer, predict(live, as_v52))
    assert any("v53_lgbm_ender20 stand in for the trained v52_lgbm_ender20" in r.getMessage() for r in _records(caplog))
    assert not any("without benchmark" in r.getMessage() for r in _records(caplog))


def test_benchmark_given_in_another_order_is_aligned_by_id(bench_user, live, live_bench):
    predict = make_predict(bench_user)
    shuffled = live_bench.sample(frac=1.0, random_state=1)
    pd.testing.assert_frame_equal(predict(live, shuffled), predict(live, live_bench))


def test_constant_output_is_broken_deterministically_and_logged(small_world, live, caplog):
    fitted = fit_stand_in_cached(small_world, ConstantModel)
    predict = make_predict(fitted)
    with caplog.at_level(logging.WARNING, logger="model.live"):
        first = predict(live, None)
    second = predict(live.iloc[::-1], None).reindex(first.index)
    values = first["prediction"].to_numpy()
    assert values.std() > 0 and values.min() > 0 and values.max() <= 1
    pd.testing.assert_frame_equal(first, second)  # a stable hash of the ids, not the row order
    assert any("constant" in r.getMessage() for r in _records(caplog))


def test_model_nan_or_out_of_range_output_never_leaves_the_function(small_world):
    class Wild(StandInModel):
        def predict(self, X, benchmark=None):
            values = super().predict(X, benchmark) * 3 - 1
            values[::5] = np.nan
            return values

    fitted = fit_stand_in_cached(small_world, StandInModel)
    wild = Wild()
    wild.__dict__.update(fitted.__dict__)
    frame = make_frame(eras=3, stocks=50, features=len(fitted.feature_names_in_))
    frame.columns = [*frame.columns[:2], *fitted.feature_names_in_, "target"]
    out = make_predict(wild)(frame, make_benchmark(frame))
    values = out["prediction"].to_numpy()
    assert not np.isnan(values).any() and values.min() >= 0 and values.max() <= 1


def test_empty_or_wrong_input_raises_clearly(baseline, live):
    predict = make_predict(baseline)
    with pytest.raises(ValueError, match="no rows"):
        predict(live.iloc[0:0], None)
    with pytest.raises(TypeError, match="DataFrame"):
        predict(live.to_numpy(), None)


def test_trained_columns_fall_back_to_lightgbm_names_but_not_made_up_ones():
    """LightGBM before 4.6 (the Python 3.10 image's 4.0.0) sets only `feature_name_`; names it made up for an
    array ("Column_0", ...) are no names."""
    from types import SimpleNamespace

    from model.live import trained_columns

    assert trained_columns(SimpleNamespace(feature_names_in_=["era", "feature_a"])) == ["era", "feature_a"]
    assert trained_columns(SimpleNamespace(feature_name_=["feature_a", "feature_b"])) == ["feature_a", "feature_b"]
    assert trained_columns(SimpleNamespace(feature_name_=["Column_0", "Column_1"])) == []
    assert trained_columns(SimpleNamespace()) == []


def test_a_repeated_id_is_predicted_once_and_logged(baseline, live, caplog):
    """Numerai's submission takes each id once: a repeated live row is predicted once, from its first row."""
    predict = make_predict(baseline)
    repeated = pd.concat([live, live.iloc[:5]])
    with caplog.at_level(logging.WARNING, logger="model.live"):
        out = predict(repeated, None)
    pd.testing.assert_frame_equal(out, predict(live, None))
    lines = [r.getMessage() for r in _records(caplog) if "repeats" in r.getMessage()]
    assert len(lines) == 1 and "repeats 5 id(s)" in lines[0] and str(live.index[0]) in lines[0], lines


def test_a_repeated_column_name_reads_the_first_column_and_is_logged(bench_user, live, live_bench, caplog):
    predict = make_predict(bench_user)
    feature = bench_user.feature_names_in_[0]
    # the repeats hold other values: the first column of each name is the one read; ids in an `id` column (a plain
    # range index) and the era repeat too
    flat = live.reset_index()
    other = flat[["id", feature, "era"]].assign(id="other", era="9999")
    other[feature] = 0
    repeated = pd.concat([flat, other], axis=1)
    with caplog.at_level(logging.WARNING, logger="model.live"):
        out = predict(repeated, pd.concat([live_bench, live_bench * 0], axis=1))
    pd.testing.assert_frame_equal(out, predict(live, live_bench))
    lines = [r.getMessage() for r in _records(caplog) if "repeats column name" in r.getMessage()]
    assert len(lines) == 2, lines
    assert all(name in lines[0] for name in (feature, "era", "id")) and lines[1].startswith("the benchmark frame repeats")


def test_rows_without_an_era_join_the_live_era_and_are_logged(baseline, live, caplog):
    """A missing era label (NaN or None) neither crashes (pandas 3 keeps it missing) nor becomes an era "nan" (pandas
    2): in a frame of one era, as Numerai's weekly live frame, those rows are predicted with the era of every other
    row, exactly as if it were written there."""
    predict = make_predict(baseline)
    assert live["era"].nunique() == 1
    for missing in (np.nan, None):
        broken = live.copy()
        broken["era"] = broken["era"].astype(object)
        broken.iloc[:3, broken.columns.get_loc("era")] = missing
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="model.live"):
            out = predict(broken, None)
        pd.testing.assert_frame_equal(out, predict(live, None))
        assert any(f"3 of {len(live)} row(s) of live_features have no era label: predicted with the era of every "
                   f"other row, {live['era'].iloc[0]}" in r.getMessage() for r in _records(caplog)), _records(caplog)


def test_rows_without_an_era_among_several_eras_are_an_era_of_their_own(baseline, live, caplog):
    predict = make_predict(baseline)
    two = live.assign(era=np.where(np.arange(len(live)) < len(live) // 2, "0001", "0002")).astype({"era": object})
    broken = two.copy()
    broken.iloc[:3, broken.columns.get_loc("era")] = np.nan
    with caplog.at_level(logging.WARNING, logger="model.live"):
        out = predict(broken, None)
    values = out["prediction"].to_numpy()
    assert out.index.equals(pd.Index(live.index, name="id")) and np.isfinite(values).all()
    np.testing.assert_allclose(np.sort(values[:3]), [1 / 3, 2 / 3, 1.0])  # ranked among themselves
    pd.testing.assert_frame_equal(out.iloc[3:], predict(two.iloc[3:], None))
    assert any("predicted as one era of their own" in r.getMessage() for r in _records(caplog))


def test_an_infinite_benchmark_value_counts_as_missing(bench_user, live, live_bench, caplog):
    """inf is no benchmark value: the era goes without the benchmark, logged, exactly as with a NaN there."""
    predict = make_predict(bench_user)
    with_inf, with_nan = live_bench.copy(), live_bench.copy()
    column = with_inf.columns.get_loc("v53_lgbm_ender20")
    with_inf.iloc[0, column], with_nan.iloc[0, column] = np.inf, np.nan
    with caplog.at_level(logging.WARNING, logger="model.live"):
        out = predict(live, with_inf)
    pd.testing.assert_frame_equal(out, predict(live, with_nan))
    pd.testing.assert_frame_equal(out, predict(live, None))
    assert any("without benchmark" in r.getMessage() and "finite values" in r.getMessage() for r in _records(caplog))


def test_a_benchmark_frame_with_an_id_column_is_matched_by_id(bench_user, live, live_bench):
    """As live_features: a plain range index with an `id` column is matched by that column."""
    predict = make_predict(bench_user)
    pd.testing.assert_frame_equal(predict(live, live_bench.reset_index()), predict(live, live_bench))


def test_a_benchmark_column_of_text_is_named_as_not_numeric(bench_user, live, live_bench, caplog):
    predict = make_predict(bench_user)
    as_text = live_bench.astype({"v53_lgbm_ender20": str})
    with caplog.at_level(logging.WARNING, logger="model.live"):
        out = predict(live, as_text)
    pd.testing.assert_frame_equal(out, predict(live, None))
    lines = [r.getMessage() for r in _records(caplog)]  # the dtype as this pandas names it: object (2), str (3)
    assert any(re.search(r"column\(s\) v53_lgbm_ender20 \((object|str)\) hold no numbers", m) for m in lines), lines


def test_feature_values_off_the_bins_are_predicted_as_given_and_logged(baseline, live, caplog):
    """Data of another scale (0..1) or with values past 4 is not refused (a crash is a missed round) but named."""
    features = list(baseline.feature_names_in_)
    predict = make_predict(baseline)
    clean = live.copy()
    clean[features] = clean[features].fillna(FILL_VALUE)
    with caplog.at_level(logging.WARNING, logger="model.live"):
        predict(clean, None)
    assert not any("bins" in r.getMessage() for r in _records(caplog))
    scaled = clean.copy()
    scaled[features] = scaled[features].astype(np.float32) / 4  # 0, 0.25, ..., 1
    past = clean.copy()
    past.iloc[:3, past.columns.get_loc(features[0])] = 9
    expected = {"scaled": int((clean[features].to_numpy() % 4 != 0).sum()), "past": 3}
    for name, frame in (("scaled", scaled), ("past", past)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="model.live"):
            out = predict(frame, None)
        assert np.isfinite(out["prediction"]).all() and len(out) == len(live)
        lines = [r.getMessage() for r in _records(caplog) if "bins" in r.getMessage()]
        assert len(lines) == 1 and lines[0].startswith(f"{expected[name]} feature value(s)"), (name, lines)


def test_an_estimator_whose_predict_takes_no_benchmark_logs_no_missing_benchmark(live, live_bench, caplog):
    """A plain scikit-learn model exported by the user never gets benchmark models: no "without benchmark" line every
    week."""
    from sklearn.linear_model import LinearRegression

    features = [c for c in live.columns if c.startswith("feature")][:10]
    x = live[features].fillna(FILL_VALUE)
    fitted = LinearRegression().fit(x, np.random.default_rng(0).normal(size=len(x)))
    with caplog.at_level(logging.WARNING, logger="model.live"):
        out = make_predict(fitted)(live, live_bench)
    assert len(out) == len(live)
    assert not any("without benchmark" in r.getMessage() for r in _records(caplog)), _records(caplog)


@pytest.mark.parametrize("dtype", ["object", "string", "category"])
def test_a_feature_column_of_text_is_read_as_numbers_and_named(baseline, live, dtype, caplog):
    """A feature column written as text (a CSV round trip, a bad join) must not cost the round: numbers written as
    text are read as numbers, other values as missing (filled), and the log names the column and an example."""
    features = list(baseline.feature_names_in_)
    predict = make_predict(baseline)
    clean = live.copy()
    clean[features] = clean[features].fillna(FILL_VALUE)
    expected = predict(clean, None)
    as_text = clean.copy()
    as_text[features[0]] = clean[features[0]].astype(int).astype(str).astype(dtype)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="model.live"):
        pd.testing.assert_frame_equal(predict(as_text, None), expected)
    assert not any("not numbers" in r.getMessage() for r in _records(caplog))

    broken = as_text.copy()
    broken[features[0]] = broken[features[0]].astype(object)
    broken.iloc[:3, broken.columns.get_loc(features[0])] = "x"
    broken[features[0]] = broken[features[0]].astype(dtype)
    filled = clean.copy()
    filled.iloc[:3, filled.columns.get_loc(features[0])] = FILL_VALUE
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="model.live"):
        out = predict(broken, None)
    pd.testing.assert_frame_equal(out, predict(filled, None))
    lines = [r.getMessage() for r in _records(caplog)]
    assert any(f"column(s) {features[0]} (3, e.g. 'x') hold values that are not numbers" in m for m in lines), lines


@pytest.mark.parametrize("empty", ["n/a", None, np.nan])
def test_columns_without_a_number_count_as_missing_features(baseline, live, empty):
    """Half the trained features as words, None or NaN in every row: not an honest prediction, refused as if those
    columns were missing (all-NaN float columns had been filled and predicted, constant, where all-None was refused)."""
    features = list(baseline.feature_names_in_)
    words = live.copy()
    for name in features[: len(features) // 2 + 1]:
        words[name] = empty
    with pytest.raises(ValueError, match=r"^only \d+ of the model's \d+ trained features are in live_features with "
                                         r"numbers \(at least 50% needed\); \d+ with no number in any row: feature"):
        make_predict(baseline)(words, None)
