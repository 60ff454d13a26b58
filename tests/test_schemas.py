"""validation.schemas: broken frames are rejected with a table that names column, check and offending rows."""

from __future__ import annotations

import ast
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from validation.errors import DataValidationError
from validation.schemas import (
    FAILURE_COLUMNS,
    TARGET_VALUES,
    validate_benchmark_frame,
    validate_live_frame,
    validate_predictions,
    validate_training_frame,
)

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------- helpers


def ids(n: int, start: int = 0) -> pd.Index:
    return pd.Index([f"n{i:015x}" for i in range(start, start + n)], name="id")


def make_frame(eras: int = 4, per_era: int = 10, features: int = 6, seed: int = 0, row_major: bool = False):
    """A small valid training frame in Numerai's layout: id index, era, data_type, int8 features, float32 target."""
    rng = np.random.default_rng(seed)
    n = eras * per_era
    names = [f"feature_{j:03d}" for j in range(features)]
    values = rng.integers(0, 5, size=(n, features), dtype=np.int8)
    if row_major:  # one 2-D block, rows contiguous (a frame built from an array)
        df = pd.DataFrame(values, columns=names, index=ids(n))
    else:  # columns contiguous (what parquet loading gives)
        df = pd.DataFrame({c: np.ascontiguousarray(values[:, j]) for j, c in enumerate(names)}, index=ids(n))
    df.insert(0, "era", np.repeat([f"{e:04d}" for e in range(1, eras + 1)], per_era))
    df.insert(1, "data_type", "train")
    df["target"] = rng.choice(np.array(TARGET_VALUES, dtype=np.float32), size=n)
    return df, names


def failures_of(call, *args, **kwargs) -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        call(*args, **kwargs)
    exc = info.value
    assert list(exc.failures.columns) == FAILURE_COLUMNS
    return exc


def row(exc: DataValidationError, column: str, check_contains: str) -> pd.Series:
    """The one failure row for `column` whose check mentions `check_contains`."""
    f = exc.failures
    hit = f[(f["column"] == column) & f["check"].str.contains(check_contains, regex=False)]
    assert len(hit) == 1, f"no single row for {column!r}/{check_contains!r} in\n{exc.table()}"
    return hit.iloc[0]


def load_world_frame(data_dir: Path, parquet: str, features: list[str], targets=("target",)) -> pd.DataFrame:
    """A file of a synthetic world loaded as the pipeline loads it (int8 features, float32 targets)."""
    from training.data import load_frame

    return load_frame(data_dir / parquet, features, targets=targets)


# ----------------------------------------------------------------------------------- good frames pass


def test_good_training_frame_passes_and_is_returned_unchanged():
    df, features = make_frame()
    before = df.copy()
    out = validate_training_frame(df, features, "target", "train.parquet")
    assert out is df
    pd.testing.assert_frame_equal(df, before)


def test_good_frames_of_every_kind_pass():
    df, features = make_frame(row_major=True)
    validate_training_frame(df, features, "target", "train")
    live = df.drop(columns=["target"]).assign(era="0005", data_type="live")
    live[features[0]] = live[features[0]].astype(np.float32)
    live.iloc[3, live.columns.get_loc(features[0])] = np.nan  # Numerai's live can hold NaN (float32 there)
    validate_live_frame(live, features, "live.parquet")
    bench = pd.DataFrame(
        {"era": df["era"], "v52_lgbm_ender20": np.linspace(0.01, 1, len(df), dtype=np.float32)}, index=df.index
    )
    validate_benchmark_frame(bench, "bench")
    preds = pd.DataFrame({"prediction": np.linspace(0, 1, len(df))}, index=df.index)
    validate_predictions(preds, df.index, "preds")


def test_synthetic_world_files_pass(small_world: Path):
    import json

    meta = json.loads((small_world / "features.json").read_text())
    features = meta["feature_sets"]["all"]
    train = load_world_frame(small_world, "train.parquet", features)
    validate_training_frame(train, features, "target", "train.parquet")
    validation = load_world_frame(small_world, "validation.parquet", features)
    validate_training_frame(validation, features, "target", "validation.parquet", allow_unresolved=True)
    live = pd.read_parquet(small_world / "live.parquet")
    validate_live_frame(live, features, "live.parquet")
    for name in ("live_benchmark_models.parquet", "validation_benchmark_models.parquet"):
        validate_benchmark_frame(pd.read_parquet(small_world / name), name)
    # the newest validation eras have no target yet: only allow_unresolved accepts them, and the table says where
    exc = failures_of(validate_training_frame, validation, features, "target", "validation.parquet")
    r = row(exc, "target", "NaN")
    nan_eras = validation.groupby("era")["target"].apply(lambda t: t.isna().all())
    unresolved = sorted(nan_eras[nan_eras].index)
    assert unresolved and unresolved[-1] == sorted(nan_eras.index)[-1]  # the world ends with unresolved eras
    assert r["count"] == int(validation["target"].isna().sum())
    assert f"@{unresolved[0]}" in r["examples"]


# ------------------------------------------------------------------------------- training/validation


def test_strings_in_a_feature_are_named_with_id_and_value():
    df, features = make_frame()
    df[features[2]] = df[features[2]].astype(object)
    bad_id = df.index[7]
    df.loc[bad_id, features[2]] = "three"
    exc = failures_of(validate_training_frame, df, features, "target", "train.parquet")
    r = row(exc, features[2], "numeric dtype")
    assert "object" in r["check"]
    assert r["count"] == 1
    assert f"{bad_id}@0001='three'" in r["examples"]
    assert "train.parquet" in str(exc) and features[2] in str(exc)
    assert features[2] in exc.table() and bad_id in exc.table()


@pytest.mark.parametrize("row_major", [False, True])
def test_out_of_range_feature_value_is_named_with_id_era_and_value(row_major: bool):
    df, features = make_frame(row_major=row_major)
    col = df.columns.get_loc(features[4])
    df.iloc[23, col] = 7
    df.iloc[35, col] = -1
    exc = failures_of(validate_training_frame, df, features, "target", "train")
    r = row(exc, features[4], "0..4")
    assert r["count"] == 2
    assert r["examples"] == f"{df.index[23]}@0003=7, {df.index[35]}@0004=-1"
    assert len(exc.failures) == 1  # nothing else is blamed


def test_row_major_block_with_features_in_any_order_and_gaps():
    """Features asked in another order than stored, with unchecked columns between them, in one 2-D block."""
    df, features = make_frame(features=30, row_major=True)
    asked = [features[j] for j in (29, 28, 20, 25, 3, 4, 5, 6, 12, 0)]  # out of order, gaps, a run
    df.iloc[17, df.columns.get_loc(features[28])] = 6
    df.iloc[18, df.columns.get_loc(features[3])] = 8
    df.iloc[19, df.columns.get_loc(features[1])] = 9  # not asked: not blamed
    exc = failures_of(validate_training_frame, df, asked, "target", "train")
    assert list(exc.failures["column"]) == [features[28], features[3]]
    assert list(exc.failures["examples"]) == [f"{df.index[17]}@0002=6", f"{df.index[18]}@0002=8"]


def test_float_features_may_hold_nan_but_not_values_outside_0_4():
    df, features = make_frame()
    df[features[1]] = df[features[1]].astype(np.float32)
    df.iloc[0, df.columns.get_loc(features[1])] = np.nan
    validate_training_frame(df, features, "target", "train")
    df.iloc[5, df.columns.get_loc(features[1])] = 4.5
    exc = failures_of(validate_training_frame, df, features, "target", "train")
    assert row(exc, features[1], "0..4")["examples"] == f"{df.index[5]}@0001=4.5"


def test_bool_feature_is_not_numeric_enough():
    df, features = make_frame()
    df[features[0]] = df[features[0]] > 2
    exc = failures_of(validate_training_frame, df, features, "target", "train")
    assert "bool" in row(exc, features[0], "numeric dtype")["check"]


def test_duplicate_id_is_named():
    df, features = make_frame()
    dup = df.index[3]
    df.index = pd.Index([dup if i == 14 else x for i, x in enumerate(df.index)], name="id")
    exc = failures_of(validate_training_frame, df, features, "target", "train")
    r = row(exc, "id", "unique")
    assert r["count"] == 2  # both rows carrying the id
    assert dup in r["examples"] and "@0001" in r["examples"]


def test_missing_era_and_missing_target_and_missing_feature_are_named():
    df, features = make_frame()
    exc = failures_of(validate_training_frame, df.drop(columns=["era", "target", features[5]]), features, "target", "train")
    assert row(exc, "era", "present")["count"] == 1
    assert row(exc, "target", "present")["count"] == 1
    assert row(exc, features[5], "present")["count"] == 1


def test_repeated_column_name_is_named():
    df, features = make_frame()
    df = pd.concat([df, df[[features[1]]]], axis=1)
    exc = failures_of(validate_training_frame, df, features, "target", "train")
    r = row(exc, features[1], "unique column names")
    assert r["count"] == 2


def test_index_must_be_named_id_and_hold_strings():
    df, features = make_frame()
    exc = failures_of(validate_training_frame, df.reset_index(drop=True), features, "target", "train")
    assert "None" in row(exc, "id", "index named id")["examples"]
    assert row(exc, "id", "string ids")["count"] == len(df)


def test_era_must_be_strings():
    df, features = make_frame()
    df["era"] = df["era"].astype(int)
    exc = failures_of(validate_training_frame, df, features, "target", "train")
    assert "string eras" in set(exc.failures["check"])


def test_target_value_outside_the_five_values_is_named():
    df, features = make_frame()
    bad_id = df.index[12]
    df.loc[bad_id, "target"] = 0.3
    exc = failures_of(validate_training_frame, df, features, "target", "train")
    r = row(exc, "target", "0.25")
    assert r["count"] == 1
    assert r["examples"] == f"{bad_id}@0002=0.3"


def test_nan_target_without_allow_unresolved_is_an_error():
    df, features = make_frame()
    df.iloc[-3:, df.columns.get_loc("target")] = np.nan
    exc = failures_of(validate_training_frame, df, features, "target", "train")
    r = row(exc, "target", "NaN")
    assert r["count"] == 3 and "@0004" in r["examples"]


def test_unresolved_trailing_eras_pass_only_with_allow_unresolved():
    df, features = make_frame(eras=6)
    df.loc[df["era"].isin(["0005", "0006"]), "target"] = np.nan
    validate_training_frame(df, features, "target", "validation", allow_unresolved=True)
    failures_of(validate_training_frame, df, features, "target", "validation", allow_unresolved=False)


def test_nan_target_inside_a_resolved_era_names_that_era():
    df, features = make_frame(eras=6)
    df.loc[df["era"].isin(["0006"]), "target"] = np.nan  # unresolved: fine
    bad_id = df.index[df["era"].eq("0003")][4]
    df.loc[bad_id, "target"] = np.nan  # a hole in a resolved era: not fine
    exc = failures_of(validate_training_frame, df, features, "target", "validation", allow_unresolved=True)
    r = row(exc, "target", "NaN")
    assert r["count"] == 1
    assert r["examples"] == f"{bad_id}@0003"


def test_auxiliary_target_gaps_pass_anywhere_but_values_are_still_checked():
    df, features = make_frame(eras=6)
    df = df.rename(columns={"target": "target_teager_60"})
    holes = df.index[df["era"].eq("0003")][:4]
    df.loc[holes, "target_teager_60"] = np.nan  # gaps inside resolved eras, as Numerai's auxiliary targets have
    validate_training_frame(df, features, "target_teager_60", "train", allow_unresolved="anywhere")
    failures_of(validate_training_frame, df, features, "target_teager_60", "train", allow_unresolved=True)
    bad_id = df.index[df["era"].eq("0005")][0]
    df.loc[bad_id, "target_teager_60"] = 0.3
    exc = failures_of(validate_training_frame, df, features, "target_teager_60", "train", allow_unresolved="anywhere")
    assert row(exc, "target_teager_60", "0.25")["examples"] == f"{bad_id}@0005=0.3"


def test_unresolved_era_followed_by_a_resolved_era_is_an_error():
    df, features = make_frame(eras=6)
    df.loc[df["era"].eq("0004"), "target"] = np.nan  # a whole era, but resolved eras come after it
    exc = failures_of(validate_training_frame, df, features, "target", "validation", allow_unresolved=True)
    r = row(exc, "target", "NaN")
    assert r["count"] == 10 and "@0004" in r["examples"]


def test_partly_resolved_last_era_is_an_error():
    df, features = make_frame(eras=6)
    last = df.index[df["era"].eq("0006")]
    df.loc[last[:4], "target"] = np.nan
    exc = failures_of(validate_training_frame, df, features, "target", "validation", allow_unresolved=True)
    assert row(exc, "target", "NaN")["examples"].startswith(f"{last[0]}@0006")


def test_every_failure_is_reported_at_once():
    df, features = make_frame(eras=6)
    df[features[0]] = df[features[0]].astype(object)
    df.iloc[1, df.columns.get_loc(features[0])] = "x"  # wrong dtype
    df.iloc[2, df.columns.get_loc(features[1])] = 9  # out of range
    df.iloc[3, df.columns.get_loc("target")] = 0.3  # not one of the five values
    df.iloc[4, df.columns.get_loc("target")] = np.nan  # NaN in a resolved era
    df.index = pd.Index([df.index[0] if i == 5 else x for i, x in enumerate(df.index)], name="id")  # duplicate id
    df = df.drop(columns=[features[3]])  # missing feature
    exc = failures_of(validate_training_frame, df, features, "target", "train.parquet", allow_unresolved=True)
    found = set(zip(exc.failures["column"], exc.failures["check"]))
    assert ("id", "unique") in found
    assert (features[3], "present") in found
    assert (features[0], "numeric dtype (found object)") in found
    assert (features[1], "in 0..4 or NaN") in found
    assert ("target", "in {0, 0.25, 0.5, 0.75, 1}") in found
    assert ("target", "NaN only in trailing unresolved eras") in found
    assert len(exc.failures) == 6
    assert (exc.failures["examples"].str.len() <= 60).all()  # the table's cells are cut at 60 characters


def test_many_failing_columns_fold_into_a_short_table():
    df, features = make_frame(features=40)
    exc = failures_of(validate_training_frame, df, features + [f"feature_x{j}" for j in range(30)], "target", "train")
    present = exc.failures[exc.failures["check"] == "present"]
    assert len(present) == 13  # 12 named, the rest in one row
    assert present.iloc[-1]["column"] == "(+18 more columns)" and present.iloc[-1]["count"] == 18


def test_not_a_frame_and_empty_frame_are_rejected():
    exc = failures_of(validate_predictions, None, ["n0"], "preds")
    assert row(exc, "(frame)", "DataFrame")["examples"] == "found NoneType"
    df, features = make_frame()
    exc = failures_of(validate_training_frame, df.iloc[:0], features, "target", "train")
    assert "non-empty" in set(exc.failures["check"])


# --------------------------------------------------------------------------------------- live frame


def test_live_frame_rules():
    df, features = make_frame(eras=1)
    live = df.drop(columns=["target"]).assign(data_type="live")
    validate_live_frame(live, features + [], "live.parquet")
    live.iloc[2, live.columns.get_loc(features[3])] = 5
    exc = failures_of(validate_live_frame, live.drop(columns=["era"]), features, "live.parquet")
    assert row(exc, "era", "present")["count"] == 1
    assert row(exc, features[3], "0..4")["examples"] == f"{live.index[2]}=5"  # no era to cite
    exc = failures_of(validate_live_frame, live.assign(data_type="train"), features, "live.parquet")
    assert row(exc, "data_type", "live")["count"] == len(live)


# ---------------------------------------------------------------------------------- benchmark frame


def test_benchmark_frame_rules():
    df, _ = make_frame()
    bench = pd.DataFrame(
        {"era": df["era"], "v52_lgbm_ender20": np.linspace(0.01, 1, len(df), dtype=np.float32)}, index=df.index
    )
    bench.iloc[0, 1] = np.nan
    bench.iloc[1, 1] = 1.5
    exc = failures_of(validate_benchmark_frame, bench.assign(v52_lgbm_ender60=1), "live_benchmark_models.parquet")
    assert row(exc, "v52_lgbm_ender20", "NaN")["examples"] == f"{df.index[0]}@0001"
    assert row(exc, "v52_lgbm_ender20", "[0, 1]")["examples"] == f"{df.index[1]}@0001=1.5"
    assert "int64" in row(exc, "v52_lgbm_ender60", "float dtype")["check"]
    exc = failures_of(validate_benchmark_frame, bench[["era"]], "bench")
    assert row(exc, "(frame)", "benchmark column")["count"] == 1


# ------------------------------------------------------------------------------------- predictions


def preds_for(n: int = 20) -> tuple[pd.DataFrame, pd.Index]:
    live_ids = ids(n)
    return pd.DataFrame({"prediction": np.linspace(0.0, 1.0, n)}, index=live_ids), live_ids


def test_prediction_nan_is_named():
    preds, live_ids = preds_for()
    preds.iloc[4, 0] = np.nan
    exc = failures_of(validate_predictions, preds, live_ids, "predictions")
    r = row(exc, "prediction", "NaN")
    assert r["count"] == 1 and r["examples"] == live_ids[4]


def test_prediction_outside_0_1_is_named():
    preds, live_ids = preds_for()
    preds.iloc[6, 0] = 1.2
    preds.iloc[7, 0] = -0.1
    exc = failures_of(validate_predictions, preds, live_ids, "predictions")
    r = row(exc, "prediction", "in [0, 1]")
    assert r["count"] == 2 and r["examples"] == f"{live_ids[6]}=1.2, {live_ids[7]}=-0.1"


def test_constant_predictions_are_rejected():
    preds, live_ids = preds_for()
    exc = failures_of(validate_predictions, preds.assign(prediction=0.5), live_ids, "predictions")
    assert row(exc, "prediction", "non-zero std")["examples"] == "every value is 0.5"


def test_missing_and_extra_ids_are_listed():
    preds, live_ids = preds_for()
    preds = preds.iloc[2:]
    preds.index = pd.Index(list(preds.index[:-1]) + ["nfffffffffffffff"], name="id")
    exc = failures_of(validate_predictions, preds, live_ids, "predictions")
    missing = row(exc, "id", "every live id present")
    assert missing["count"] == 3
    assert missing["examples"].startswith(f"{live_ids[0]}, {live_ids[1]}")
    extra = row(exc, "id", "only live ids")
    assert extra["count"] == 1 and extra["examples"] == "nfffffffffffffff"


def test_predictions_need_exactly_one_prediction_column_and_numbers():
    preds, live_ids = preds_for()
    exc = failures_of(validate_predictions, preds.assign(extra=1.0), live_ids, "predictions")
    assert row(exc, "extra", "expected")["count"] == 1
    exc = failures_of(validate_predictions, preds.rename(columns={"prediction": "pred"}), live_ids, "predictions")
    assert row(exc, "prediction", "present")["count"] == 1
    exc = failures_of(validate_predictions, preds.assign(prediction="a"), live_ids, "predictions")
    assert row(exc, "prediction", "numeric dtype")["examples"].startswith(f"{live_ids[0]}='a'")


def test_predictions_accept_live_frame_or_list_of_ids():
    preds, live_ids = preds_for()
    validate_predictions(preds, list(live_ids), "predictions")
    validate_predictions(preds, pd.DataFrame({"era": "0001"}, index=live_ids), "predictions")


# ------------------------------------------------------------------------------- speed and memory


def test_wide_int8_frame_is_fast_and_copies_nothing_big():
    """200k rows x 780 int8 features: no float64 detour, no boolean frame, well under a few seconds."""
    n, f = 200_000, 780
    rng = np.random.default_rng(0)
    names = [f"feature_{j:04d}" for j in range(f)]
    block = rng.integers(0, 5, size=(f, n), dtype=np.int8)  # each column contiguous, like parquet loading
    df = pd.DataFrame(block.T, columns=names, index=ids(n), copy=False)
    assert np.shares_memory(df[names[0]].to_numpy(), block)
    df.insert(0, "era", np.repeat([f"{e:04d}" for e in range(1, 101)], n // 100))
    df["target"] = rng.choice(np.array(TARGET_VALUES, dtype=np.float32), size=n)
    validate_training_frame(df.iloc[:100], names, "target", "warm-up")
    frame_bytes = n * f
    tracemalloc.start()
    start = time.perf_counter()
    validate_training_frame(df, names, "target", "train")
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"validate {n} x {f} int8: {seconds:.2f} s, peak allocation {peak / 1e6:.1f} MB")
    assert peak < 0.15 * frame_bytes, f"validation allocated {peak / 1e6:.0f} MB for a {frame_bytes / 1e6:.0f} MB block"
    assert seconds < 5.0, f"{seconds:.1f} s"
    df.iloc[n - 1, df.columns.get_loc(names[-1])] = 5
    exc = failures_of(validate_training_frame, df, names, "target", "train")
    assert row(exc, names[-1], "0..4")["examples"] == f"{df.index[n - 1]}@0100=5"


# ------------------------------------------------------------------------------ dependency rule


def test_model_package_does_not_import_pandera_or_schemas():
    for path in sorted((REPO / "model").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert not name.startswith(("pandera", "validation")), f"{path} imports {name}"
