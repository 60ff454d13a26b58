"""Lean loading: only requested columns, Numerai's dtypes, every k-th era, clear errors, bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.benchmarks import choose_benchmark_column, match_benchmark_column
from tests.peak_memory import FRAME_SIZE, PRELUDE
from training.data import (
    benchmark_column,
    feature_groups,
    load_benchmark,
    load_feature_metadata,
    load_frame,
    resolve_feature_set,
)
from validation.errors import NmuError


@pytest.fixture(scope="module")
def metadata(small_world: Path) -> dict:
    return load_feature_metadata(small_world)


def test_feature_sets_and_groups(small_world: Path, metadata: dict) -> None:
    medium = resolve_feature_set(metadata, "medium")
    assert medium == metadata["feature_sets"]["medium"]
    assert resolve_feature_set(metadata, "intelligence") == metadata["feature_sets"]["intelligence"]
    groups = feature_groups(metadata, medium)
    assert "small" not in groups and "medium" not in groups and "all" not in groups
    assert len(groups) >= 8 and {"intelligence", "charisma", "serenity"} <= set(groups)
    assert sorted(f for members in groups.values() for f in members) == sorted(medium)
    only = feature_groups(metadata, metadata["feature_sets"]["intelligence"])
    assert list(only) == ["intelligence"]


def test_unknown_feature_set_lists_choices(metadata: dict) -> None:
    with pytest.raises(NmuError, match=r"unknown feature set 'huge'.*small, medium, all"):
        resolve_feature_set(metadata, "huge")


def test_missing_or_bad_metadata(tmp_path: Path) -> None:
    with pytest.raises(NmuError, match=r"features\.json does not exist.*nmu data synthetic.*nmu data download"):
        load_feature_metadata(tmp_path)
    (tmp_path / "features.json").write_text("{not json")
    with pytest.raises(NmuError, match=r"features\.json is not valid JSON"):
        load_feature_metadata(tmp_path)
    (tmp_path / "features.json").write_text(json.dumps({"targets": ["target"]}))
    with pytest.raises(NmuError, match="feature_sets"):
        load_feature_metadata(tmp_path)


def test_reads_requested_columns_with_numerai_dtypes(small_world: Path, metadata: dict) -> None:
    features = resolve_feature_set(metadata, "small")
    frame = load_frame(small_world / "train.parquet", features, targets=("target", "target_teager_60"))
    assert frame.index.name == "id" and frame.index.is_unique
    assert list(frame.columns) == ["era", "data_type", *features, "target", "target_teager_60"]
    assert (frame[features].dtypes == np.int8).all()
    assert (frame[["target", "target_teager_60"]].dtypes == np.float32).all()
    assert frame["era"].map(type).eq(str).all()
    reference = pd.read_parquet(small_world / "train.parquet", columns=list(frame.columns))
    # ids and eras are object columns here; pandas 3 reads them as its string dtype: same values
    pd.testing.assert_frame_equal(frame, reference, check_dtype=False, check_index_type=False)
    frame.loc[frame.index[0], features[0]] = 4  # an ordinary, writable frame
    frame["extra"] = 1.0
    assert frame[features[0]].iloc[0] == 4


def test_era_step_keeps_every_kth_era(small_world: Path, metadata: dict) -> None:
    features = resolve_feature_set(metadata, "small")
    everything = pd.read_parquet(small_world / "train.parquet", columns=["era"])
    eras = sorted(everything.era.unique())
    frame = load_frame(small_world / "train.parquet", features, era_step=4)
    assert sorted(frame.era.unique()) == eras[::4]
    assert len(frame) == everything.era.isin(eras[::4]).sum()
    chosen = load_frame(small_world / "train.parquet", features, eras=eras[10:20], era_step=3)
    assert sorted(chosen.era.unique()) == eras[10:20][::3]


def test_live_nan_columns_stay_float32(small_world: Path, metadata: dict) -> None:
    features = resolve_feature_set(metadata, "all")
    live = load_frame(small_world / "live.parquet", features, targets=None)
    raw = pd.read_parquet(small_world / "live.parquet")
    assert list(live.columns) == ["era", "data_type", *features]
    for column in features:
        if raw[column].isna().any():
            assert live[column].dtype == np.float32 and live[column].isna().sum() == raw[column].isna().sum()
        else:
            assert live[column].dtype == np.int8
    pd.testing.assert_frame_equal(live, raw[live.columns], check_dtype=False, check_index_type=False)


def test_integer_columns_with_nulls_become_float32(tmp_path: Path) -> None:
    table = pa.table({
        "id": ["n000000000000001", "n000000000000002", "n000000000000003"],
        "era": ["0001", "0001", "0002"],
        "feature_a": pa.array([1, None, 3], type=pa.int8()),
        "feature_b": pa.array([0, 4, 2], type=pa.int64()),
        "target": pa.array([0.5, 0.25, None], type=pa.float64()),
    })
    pq.write_table(table, tmp_path / "f.parquet")
    frame = load_frame(tmp_path / "f.parquet", ["feature_a", "feature_b"])
    assert frame["feature_a"].dtype == np.float32 and np.isnan(frame["feature_a"].iloc[1])
    assert frame["feature_b"].dtype == np.int8 and frame["feature_b"].tolist() == [0, 4, 2]
    assert frame["target"].dtype == np.float32 and np.isnan(frame["target"].iloc[2])
    assert "data_type" not in frame.columns and list(frame.index) == table.column("id").to_pylist()


def test_missing_file_names_it_and_how_to_get_data(tmp_path: Path) -> None:
    with pytest.raises(NmuError, match=r"train\.parquet does not exist.*nmu data synthetic.*nmu data download"):
        load_frame(tmp_path / "train.parquet", ["feature_x"])


def test_missing_column_names_column_and_file(small_world: Path, metadata: dict) -> None:
    features = resolve_feature_set(metadata, "small")
    with pytest.raises(NmuError, match=r"live_benchmark_models\.parquet has no column feature_nope"):
        load_frame(small_world / "live_benchmark_models.parquet", ["feature_nope"], targets=None)
    with pytest.raises(NmuError, match=r"train\.parquet has no column target_missing_20"):
        load_frame(small_world / "train.parquet", features, targets=("target_missing_20",))


def test_no_eras_left(small_world: Path, metadata: dict) -> None:
    features = resolve_feature_set(metadata, "small")
    with pytest.raises(NmuError, match=r"no eras of .*train\.parquet are left"):
        load_frame(small_world / "train.parquet", features, eras=["9999"])
    with pytest.raises(NmuError, match="era_step must be a positive integer"):
        load_frame(small_world / "train.parquet", features, era_step=0)


def test_load_benchmark(small_world: Path) -> None:
    bench = load_benchmark(small_world / "validation_benchmark_models.parquet", eras=["0080", "0081"])
    assert bench.index.name == "id" and sorted(bench.era.unique()) == ["0080", "0081"]
    assert list(bench.columns) == ["era", "v53_lgbm_ender20", "v53_lgbm_ender60", "v53_lgbm_teager2b20"]
    assert (bench.drop(columns="era").dtypes == np.float32).all()
    assert benchmark_column(bench) == "v53_lgbm_ender20"
    assert benchmark_column(bench[["era", "v53_lgbm_teager2b20"]]) == "v53_lgbm_teager2b20"
    with pytest.raises(NmuError, match="no numeric column"):
        benchmark_column(bench[["era"]])


def test_benchmark_column_of_any_data_version(small_world: Path) -> None:
    """v5.2 and v5.3 names are handled alike: the newest ender20 is compared against, and a model's trained column
    that a newer data version renamed is found as the same model there."""
    bench = load_benchmark(small_world / "validation_benchmark_models.parquet", eras=["0080"])
    v52 = bench.rename(columns=lambda c: c.replace("v53_", "v52_"))
    assert benchmark_column(v52) == "v52_lgbm_ender20"
    both = pd.concat([v52.drop(columns="era"), bench], axis=1)
    assert benchmark_column(both) == "v53_lgbm_ender20"
    assert choose_benchmark_column(bench, ["v52_lgbm_ender60"]) == "v53_lgbm_ender60"
    assert choose_benchmark_column(both, ["v52_lgbm_ender60"]) == "v52_lgbm_ender60"
    assert match_benchmark_column(bench, "v52_lgbm_teager2b20") == "v53_lgbm_teager2b20"
    assert match_benchmark_column(bench, "v52_something_else") is None


# ------------------------------------------------------------------------------------------- peak memory

ROWS, ERAS, FEATURES = 400_000, 100, 500


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~200 MB of int8 features (as in memory) in Numerai's layout, a row group per 5 eras."""
    from training.synthetic import _ids

    path = tmp_path_factory.mktemp("big") / "train.parquet"
    rng = np.random.default_rng(0)
    per_era = ROWS // ERAS
    names = [f"feature_{j:04d}" for j in range(FEATURES)]
    with pq.ParquetWriter(path, pa.schema(
        [("era", pa.string()), ("data_type", pa.string())] + [(f, pa.int8()) for f in names]
        + [("target", pa.float32()), ("id", pa.string())]
    ), compression="none") as writer:
        for start in range(0, ERAS, 5):
            n = per_era * 5
            block = rng.integers(0, 5, size=(FEATURES, n), dtype=np.int8)
            arrays = [
                pa.array(np.repeat([f"{e + 1:04d}" for e in range(start, start + 5)], per_era)),
                pa.array(np.full(n, "train")),
                *[pa.array(row) for row in block],
                pa.array((rng.integers(0, 5, n) / 4).astype(np.float32)),
                pa.array(_ids(start * per_era, n, 12345)),
            ]
            writer.write_table(pa.Table.from_arrays(arrays, schema=writer.schema))
    return path


def _peak_memory(path: Path, code: str) -> dict:
    script = (
        PRELUDE
        + "from training.data import load_frame\n"
        + "path = sys.argv[1]\n"
        + f"features = [f'feature_{{j:04d}}' for j in range({FEATURES})]\n"
        + "baseline = _reset_peak()\n"
        + textwrap.dedent(code)
        + "peak = _status('VmHWM')\n"
        + FRAME_SIZE
        + 'print(json.dumps({"peak": peak - baseline, "size": size, "rows": len(frame)}))\n'
    )
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # a measurement at size: writes and loads ~200 MB twice in subprocesses (7.5 s)
def test_peak_memory_near_result_size(big_file: Path) -> None:
    """Loading ~200 MB of int8 features peaks at most ~1.5x the frame's size above the baseline."""
    lean = _peak_memory(big_file, "frame = load_frame(path, features)\n")
    assert lean["rows"] == ROWS
    assert lean["size"] > 190e6
    assert lean["peak"] <= 1.5 * lean["size"], lean
    stepped = _peak_memory(big_file, "frame = load_frame(path, features, era_step=4)\n")
    assert stepped["rows"] == ROWS // 4
    # + one row-group batch: 40 MB with pyarrow 21 (Python 3.11's runtime), 47 MB with pyarrow 14 (3.10's: a 136.5 MB
    # peak for a 59.3 MB frame)
    assert stepped["peak"] <= 1.5 * stepped["size"] + 64e6, stepped


def test_corrupt_pages_behind_a_sound_footer_are_one_sentence(small_world: Path, tmp_path: Path) -> None:
    """A file whose footer reads but whose pages do not (a disk or copy error) fails when a row group is read; that
    is one sentence naming the file, as an unreadable footer is, for the training frames, the benchmark and live."""
    for name in ("validation.parquet", "validation_benchmark_models.parquet"):
        data = bytearray((small_world / name).read_bytes())
        data[4:4004] = bytes(4000)  # the first column chunk's page headers; the footer at the end is intact
        broken = tmp_path / name
        broken.write_bytes(bytes(data))
        pq.ParquetFile(broken)  # opens
        features = [c for c in pq.ParquetFile(small_world / "validation.parquet").schema_arrow.names
                    if c.startswith("feature")][:5]
        read = load_benchmark if "benchmark" in name else (lambda p, f=features: load_frame(p, f, targets="target"))
        with pytest.raises(NmuError, match=rf"{name} is not a readable parquet file \(.+\); download or generate"):
            read(broken)
