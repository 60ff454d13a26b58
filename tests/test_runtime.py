"""validation.runtime.replica: the replica of Numerai's runtime passes a good pickle and names each failure as Numerai's
runner would, under the 1 CPU / memory / time limits."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from packaging.utils import canonicalize_name

from model.live import make_predict
from tests.stand_in import fit_baseline, fit_full, fit_stand_in_cached, replica_python
from training.check import check_command
from training.export import dumps_by_value, export_pickle
from validation.artifacts import file_sha256, read_manifest
from validation.errors import NmuError
from validation.runtime.replica import (
    NOT_IN_REPLICA,
    THREAD_VARS,
    ensure_runtime,
    pins_file,
    read_pins,
    run_pickle,
    runtime,
    runtime_root,
    write_validation_slice,
)

# ---- broken predict functions (pickled by value with the tests package) -------------------------------


def returns_nan(live_features, live_benchmark_models):
    return pd.DataFrame({"prediction": np.nan}, index=live_features.index)


def returns_series(live_features, live_benchmark_models):
    return pd.Series(0.5, index=live_features.index, name="prediction")


def three_parameters(live_features, live_benchmark_models, extra):
    return pd.DataFrame({"prediction": 0.5}, index=live_features.index)


def eats_memory(live_features, live_benchmark_models):
    block = np.ones((1024, 1024, 160))  # 1.25 GB, touched
    return pd.DataFrame({"prediction": block[0, 0, 0] / 2}, index=live_features.index)


def holds_400_mb(live_features, live_benchmark_models):
    block = np.ones(50 * 2**20)  # 400 MB of float64, touched, alive until the result is built
    values = np.linspace(0.1, 0.9, len(live_features)) * block[-1]
    return pd.DataFrame({"prediction": values}, index=live_features.index)


def sleeps(live_features, live_benchmark_models):
    time.sleep(60)
    return pd.DataFrame({"prediction": 0.5}, index=live_features.index)


def constant(live_features, live_benchmark_models):
    return pd.DataFrame({"prediction": 0.5}, index=live_features.index)


def drops_rows(live_features, live_benchmark_models):
    return pd.DataFrame({"prediction": 0.5}, index=live_features.index[1:])


def other_header(live_features, live_benchmark_models):
    return pd.DataFrame({"score": np.linspace(0.1, 0.9, len(live_features))}, index=live_features.index.rename("row"))


def unnamed_index(live_features, live_benchmark_models):
    return pd.DataFrame({"prediction": np.linspace(0.1, 0.9, len(live_features))},
                        index=live_features.index.rename(None))


def counts_cpus(live_features, live_benchmark_models):
    import os

    ok = len(os.sched_getaffinity(0)) == 1 and os.environ.get("OMP_NUM_THREADS") == "1"
    values = np.linspace(0.1, 0.9, len(live_features)) if ok else np.full(len(live_features), np.nan)
    return pd.DataFrame({"prediction": values}, index=live_features.index)


def single_era_only(live_features, live_benchmark_models):
    if live_features["era"].nunique() > 1:
        raise RuntimeError("this predict handles one era only")
    return pd.DataFrame({"prediction": np.linspace(0.1, 0.9, len(live_features))}, index=live_features.index)


def _write(tmp_path, func, name="model.pkl"):
    path = tmp_path / name
    path.write_bytes(dumps_by_value(func, ["tests"])[0])
    return path


@pytest.fixture(scope="session")
def python():
    return replica_python()


@pytest.fixture(scope="module")
def live_files(small_world):
    return small_world / "live.parquet", small_world / "live_benchmark_models.parquet"


def _run(python, path, live_files, **limits):
    return run_pickle(python, path, *live_files, **limits)


# ---- the replica's venv --------------------------------------------------------------------------------


@pytest.mark.network
def test_replica_has_the_pins_and_not_the_project(python):
    pins = read_pins(pins_file())
    code = ("import importlib.metadata as m, importlib.util as u, json; "
            "print(json.dumps({'installed': {d.metadata['Name']: d.version for d in m.distributions()}, "
            "'project': [n for n in ['model', 'training', 'validation', 'pandera'] if u.find_spec(n)]}))")
    proc = subprocess.run([str(python), "-I", "-c", code], capture_output=True, text=True, cwd="/", timeout=120)
    found = json.loads(proc.stdout)
    assert found["project"] == []
    installed = {canonicalize_name(name): version for name, version in found["installed"].items()}
    versions = {p: installed[p] for p in ["numpy", "pandas", "lightgbm", "scikit-learn", "cloudpickle"]}
    assert versions == {p: pins[p] for p in versions}
    # exactly the pins (--no-deps), torch left out: nothing pip resolved on its own, no multi-GB CUDA build
    installed = {name: v for name, v in installed.items() if name not in ("pip", "setuptools", "wheel")}
    assert installed == {name: v for name, v in pins.items() if name not in NOT_IN_REPLICA}
    assert str(python).startswith(str(runtime_root()))
    assert ensure_runtime(log=lambda m: pytest.fail(f"rebuilt: {m}")) == python  # reused, not rebuilt


@pytest.mark.network
def test_changed_pins_rebuild_the_replica_atomically(tmp_path, monkeypatch):
    """A new pins file → a new venv (built in a temp dir, then renamed); a current one is reused."""
    monkeypatch.setenv("NMU_RUNTIME_DIR", str(tmp_path / "cache"))
    pins = tmp_path / "pins.txt"
    pins.write_text("# no packages: this test is about the venv's life cycle, not its contents\n")
    messages: list[str] = []
    first = ensure_runtime(pins=pins, log=messages.append)
    assert first.exists() and any("building" in m for m in messages)
    messages.clear()
    assert ensure_runtime(pins=pins, log=messages.append) == first and messages == []
    pins.write_text("# changed pins\n")
    second = ensure_runtime(pins=pins, log=messages.append)
    assert second == first and any("building" in m for m in messages)
    stamp = json.loads((first.parent.parent / "nmu-runtime.json").read_text())
    assert stamp["pins_sha256"] == file_sha256(pins)
    tag = f"py{sys.version_info[0]}.{sys.version_info[1]}"
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [f".{tag}.lock", tag]  # no temporary left


@pytest.mark.network
def test_two_checks_at_once_build_the_replica_once(tmp_path, monkeypatch):
    """A second `nmu check` of the same Python that starts while the first builds the replica waits for that build
    and uses it: it neither builds a second one nor renames the first's venv away while a pickle may run there."""
    monkeypatch.setenv("NMU_RUNTIME_DIR", str(tmp_path / "cache"))
    pins = tmp_path / "pins.txt"
    pins.write_text("# no packages: this test is about who builds, not what\n")
    building, first_log, second_log, built = threading.Event(), [], [], []

    def first() -> None:
        built.append(ensure_runtime(pins=pins, log=lambda m: (first_log.append(m), building.set())))

    thread = threading.Thread(target=first)
    thread.start()
    assert building.wait(60)
    second = ensure_runtime(pins=pins, log=second_log.append)  # starts while the first builds
    thread.join(120)
    assert built == [second] and second.exists()
    assert sum("building the runtime replica" in m for m in first_log) == 1
    assert len(second_log) == 1 and second_log[0].startswith("waiting for another nmu check"), second_log


@pytest.mark.network
def test_a_rebuild_waits_for_the_pickles_running_in_the_replica(tmp_path, monkeypatch):
    """A check holds the replica while its pickles run (`runtime`); a rebuild for changed pins waits until it lets go,
    rather than renaming the venv away under a running pickle."""
    monkeypatch.setenv("NMU_RUNTIME_DIR", str(tmp_path / "cache"))
    pins = tmp_path / "pins.txt"
    pins.write_text("# no packages\n")
    other = tmp_path / "other-pins.txt"
    other.write_text("# other pins\n")
    events: list[str] = []
    waiting = threading.Event()

    def rebuild() -> None:
        ensure_runtime(pins=other, log=lambda m: (events.append(m), waiting.set() if m.startswith("waiting") else None))
        events.append("rebuilt")

    with runtime(pins=pins, log=events.append) as python:
        thread = threading.Thread(target=rebuild)
        thread.start()
        assert waiting.wait(60), events
        time.sleep(0.5)  # the rebuild stays waiting while the runs go on
        assert python.exists() and "rebuilt" not in events
        events.append("runs done")
    thread.join(120)
    assert events.index("runs done") < events.index("rebuilt")
    assert json.loads((python.parent.parent / "nmu-runtime.json").read_text())["pins_sha256"] == file_sha256(other)


# ---- nmu check ------------------------------------------------------------------------------------------


@pytest.mark.network
def test_good_pickle_passes_and_is_recorded(small_world, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="training")
    path = tmp_path / "model.pkl"
    export_pickle(fit_baseline(small_world), path)
    result = check_command(path, small_world, validation_eras=20)
    assert result.passed is True
    out = caplog.text + "\n".join(result.lines())
    assert "PASS" in out and "peak memory" in out and "validation diagnostics (20 newest eras" in out
    check = read_manifest(path)["check"]
    assert check["passed"] is True and check["sha256"] == file_sha256(path) and check["reason"] == ""
    files = check["data"]["files"]  # bound to what was checked: the data's files and their hashes
    assert files["live.parquet"] == file_sha256(small_world / "live.parquet") and "validation.parquet" in files
    assert check["fill_share"] < 0.05 and check["warning"] == ""
    assert 50 < check["peak_rss_mb"] < 4096
    assert check["predict_seconds"] >= 0 and check["python"].startswith(f"{sys.version_info[0]}.{sys.version_info[1]}")
    assert check["validation"]["eras"] == 20 and check["validation"]["status"] == "pass"


@pytest.mark.network
def test_full_model_with_every_component_runs_in_the_replica(python, small_world, tmp_path, live_files):
    """What `nmu train` ships: all four components and the benchmark residualizer, on live and 20 eras at once."""

    path = tmp_path / "full.pkl"
    export_pickle(fit_full(small_world), path)
    live = _run(python, path, live_files)
    assert live["status"] == "pass", live["reason"]
    v_live, v_bench, n_eras, rows = write_validation_slice(small_world, 20, tmp_path)
    diagnostics = run_pickle(python, path, v_live, v_bench, all_eras_at_once=True)
    assert diagnostics["status"] == "pass", diagnostics["reason"]
    assert diagnostics["rows"] == rows and diagnostics["eras"] == n_eras == 20


@pytest.mark.network
def test_failing_pickle_is_recorded_as_failed(small_world, tmp_path):
    path = _write(tmp_path, returns_nan)
    record = tmp_path / "record.json"
    result = check_command(path, small_world, validation_eras=0, record=record)
    assert result.passed is False and result.lines()[1].startswith("FAIL: live run: ")
    check = json.loads(record.read_text())["check"]
    assert check["passed"] is False and check["sha256"] == file_sha256(path)
    assert check["reason"] == "live run: Pickle function returned at least 1 NaN prediction"


@pytest.mark.network
def test_diagnostics_run_failure_is_named(small_world, tmp_path):
    path = _write(tmp_path, single_era_only)
    record = tmp_path / "record.json"
    assert check_command(path, small_world, validation_eras=5, record=record).passed is False
    reason = json.loads(record.read_text())["check"]["reason"]
    assert reason.startswith("validation diagnostics run (5 eras in one call): Pickle function raised RuntimeError")


def test_missing_pickle_or_data_is_a_clear_error(small_world, tmp_path):
    with pytest.raises(NmuError, match="model.pkl does not exist"):
        check_command(tmp_path / "model.pkl", small_world)
    path = _write(tmp_path, constant)
    with pytest.raises(NmuError, match="live.parquet does not exist.*nmu data"):
        check_command(path, tmp_path / "nodata")


# ---- each failure with its own reason -------------------------------------------------------------------


@pytest.mark.network
def test_runs_with_one_cpu_and_thread_vars(python, tmp_path, live_files):
    result = _run(python, _write(tmp_path, counts_cpus), live_files)
    assert result["status"] == "pass", result


def test_runner_loads_frames_as_read_parquet_does(small_world, tmp_path):
    """The runner's lean loader (one row group at a time) gives pandas.read_parquet's frame: index, columns, dtypes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from validation.runtime.runner import _read_frame

    for name in ("validation.parquet", "live.parquet", "validation_benchmark_models.parquet"):
        path = tmp_path / name  # rewritten in row groups of 1,000 rows, so several are stitched together
        pq.write_table(pq.read_table(small_world / name), path, row_group_size=1000)
        pd.testing.assert_frame_equal(_read_frame(str(path)), pd.read_parquet(small_world / name))
    # no stored index; an int8 column with a null only in its second row group (float64 in the whole); a nullable
    # pandas dtype
    table = pa.table({"era": ["0001"] * 4, "feature_a": pa.array([1, 2, 3, None], pa.int8())})
    for name, data in (("plain", table), ("nullable", pa.Table.from_pandas(table.to_pandas(types_mapper=pd.ArrowDtype)))):
        path = tmp_path / f"{name}.parquet"
        pq.write_table(data, path, row_group_size=2)
        pd.testing.assert_frame_equal(_read_frame(str(path)), pd.read_parquet(path))


@pytest.mark.network
def test_memory_report_tells_the_frames_from_the_predict(python, tmp_path, live_files):
    """The runner reports the frames' own size and the predict's peak apart: a predict holding 400 MB adds ~400 MB."""
    result = _run(python, _write(tmp_path, holds_400_mb), live_files)
    assert result["status"] == "pass", result
    # the frames' size as the replica's own pandas holds them (pandas 3 here stores strings differently)
    # os._exit after the print: the replica's pyarrow 21 sometimes aborts in its teardown at interpreter exit
    # ("terminate called without an active exception": 2 of 5 runs on a busy machine), after the answer is out
    measure = ("import os, sys, pandas as pd; print(sum(int(pd.read_parquet(p).memory_usage(deep=True, index=True)"
               ".sum()) for p in sys.argv[1:]), flush=True); os._exit(0)")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8", **{v: "1" for v in THREAD_VARS}}
    frames = int(subprocess.run([str(python), "-I", "-c", measure, *map(str, live_files)], capture_output=True,
                                text=True, check=True, env=env, cwd=tmp_path).stdout)
    assert result["frame_bytes"] == frames
    added = result["predict_peak_bytes"] - result["rss_before_predict_bytes"]
    assert 390 * 2**20 < added < 520 * 2**20, added
    assert result["peak_rss_mb"] >= round(result["predict_peak_bytes"] / 2**20, 1)  # peak_rss_mb is rounded to 0.1 MB


@pytest.mark.network
def test_pickled_by_reference_is_module_not_found(python, tmp_path, live_files, small_world):
    path = tmp_path / "by_reference.pkl"
    path.write_bytes(cloudpickle.dumps(make_predict(fit_stand_in_cached(small_world))))  # nothing registered
    result = _run(python, path, live_files)
    assert result["status"] == "fail"
    assert result["reason"].startswith("Import error reading pickle - ModuleNotFoundError: No module named")


@pytest.mark.network
def test_garbage_is_an_invalid_pickle(python, tmp_path, live_files):
    path = tmp_path / "garbage.pkl"
    path.write_bytes(b"this is not a pickle")
    result = _run(python, path, live_files)
    assert result["status"] == "fail" and result["reason"].startswith("Invalid pickle")


@pytest.mark.network
@pytest.mark.parametrize("func, reason", [
    (returns_nan, "Pickle function returned at least 1 NaN prediction"),
    (returns_series, "returned <class 'pandas.core.series.Series'> instead of pd.DataFrame"),
    (three_parameters, "it must have 1 or 2 arguments, it has 3"),
    (constant, "zero standard deviation"),
    (drops_rows, "predictions, expected"),
    # Numerai's submission check takes only the header id,prediction or id,probability (numerai-tools)
    (other_header, "Submission CSV header would be ['row', 'score']"),
    (unnamed_index, "Submission CSV header would be [None, 'prediction']"),
])
def test_bad_results_are_named(python, tmp_path, live_files, func, reason):
    result = _run(python, _write(tmp_path, func), live_files)
    assert result["status"] == "fail"
    assert reason in result["reason"], result["reason"]


@pytest.mark.network
def test_memory_limit_kills_the_run(python, tmp_path, live_files):
    result = _run(python, _write(tmp_path, eats_memory), live_files, memory_limit_mb=600)
    assert result["status"] == "fail" and result["reason"] == "exceeded memory limit (600 MB)"
    assert result["peak_rss_mb"] > 600


@pytest.mark.network
def test_time_limit_kills_the_run(python, tmp_path, live_files):
    start = time.perf_counter()
    result = _run(python, _write(tmp_path, sleeps), live_files, time_limit_s=6)
    assert result["status"] == "fail" and result["reason"] == "exceeded time limit (6 s)"
    assert time.perf_counter() - start < 20


@pytest.mark.parametrize("eras", [[479, 480, 481], [479.0, 480.0, 481.0], ["0479", "0480", "0481"]])
def test_the_validation_slice_reads_eras_of_any_label_type(tmp_path, eras) -> None:
    """`nmu train` takes an era column of numbers; the runtime check's slice of the newest eras must too (a text
    filter on a numeric era column was an error in pyarrow, so such a model could never pass `nmu check`)."""
    frame = pd.DataFrame({"era": np.repeat(eras, 2), "feature_a": np.arange(6, dtype=np.int8)})
    frame.to_parquet(tmp_path / "validation.parquet")
    frame[["era"]].assign(v53_lgbm_ender20=0.5).to_parquet(tmp_path / "validation_benchmark_models.parquet")
    features, bench, n_eras, rows = write_validation_slice(tmp_path, 2, tmp_path)
    assert (n_eras, rows) == (2, 4)
    assert pd.read_parquet(features)["era"].tolist() == list(np.repeat(eras[1:], 2))
    assert len(pd.read_parquet(bench)) == 4
    # the benchmark file's eras written as text match numeric eras by era number; a file lacking them reads empty
    pd.DataFrame({"era": [f"{int(float(e)):04d}" for e in frame["era"]], "v53_lgbm_ender20": 0.5}).to_parquet(
        tmp_path / "validation_benchmark_models.parquet")
    _, bench, _, _ = write_validation_slice(tmp_path, 2, tmp_path)
    assert len(pd.read_parquet(bench)) == 4
    frame[["era"]].iloc[:2].assign(v53_lgbm_ender20=0.5).to_parquet(tmp_path / "validation_benchmark_models.parquet")
    _, bench, _, _ = write_validation_slice(tmp_path, 2, tmp_path)
    assert len(pd.read_parquet(bench)) == 0
