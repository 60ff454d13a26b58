"""Every command keeps the promise "one sentence, exit 2, never a traceback" for bad input, checked before the work
starts where it can be; era labels of every style order as eras; a run's artifacts move as one."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import training.pipeline as pipeline
from training.cli import app

CHEAP = """
[lightgbm]
n_estimators = 10
learning_rate = 0.2

[components]
clusters = false
interactions = false
timing = false
residualizer = false
"""


def _invoke(*argv: str):
    return CliRunner().invoke(app, list(argv))


def _one_sentence(result, phrase: str) -> None:
    assert result.exit_code == 2, result.output
    assert phrase in result.output, result.output
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


@pytest.fixture
def world_copy(small_world: Path, tmp_path: Path):
    """A writable copy of the small world, for breaking."""
    def make(name: str = "world") -> Path:
        out = tmp_path / name
        shutil.copytree(small_world, out)
        return out
    return make


# ---- settings: checked before any data is read -------------------------------------------------------------
@pytest.mark.parametrize("table,phrase", [
    ("[lightgbm]\nn_estimators = 0\n", "`lightgbm.n_estimators` must be >= 1, got 0"),
    ('[lightgbm]\nlearning_rate = "fast"\n', "`lightgbm.learning_rate` must be a number, got 'fast'"),
    ("[lightgbm]\nn_estimatorz = 5\n", "`lightgbm.n_estimatorz` is not a LightGBM parameter (did you mean `n_estimators`?)"),
    ("[lightgbm]\nfeature_fraction = 1.5\n", "`lightgbm.feature_fraction` must be"),
    ("[components]\nresidualize_features = \"Riskiest\"\n", "`residualize_features` is 'Riskiest'; it must be one of"),
    ("[components]\ntiming_windw = 3\n", "`components.timing_windw` is not a NumeraiModel setting (did you mean `timing_window`?)"),
])
def test_bad_settings_stop_before_any_data_is_read(tmp_path, table, phrase):
    config = tmp_path / "bad.toml"
    config.write_text(table)
    started = time.perf_counter()
    result = _invoke("train", "--data", str(tmp_path / "no_such_dir"), "--config", str(config), "--out", str(tmp_path / "o"))
    _one_sentence(result, phrase)  # the data directory does not even exist: the settings were checked first
    assert f"{config}: " in result.output.replace("\n", ""), result.output  # the message names the file
    assert time.perf_counter() - started < 5
    assert not (tmp_path / "o").exists()


def test_out_that_is_a_file_or_not_writable_stops_first(tmp_path, monkeypatch):
    file = tmp_path / "artifacts"
    file.write_text("not a directory")
    _one_sentence(_invoke("train", "--data", str(tmp_path / "none"), "--out", str(file)), "is a file; give a directory")
    _one_sentence(_invoke("train", "--data", str(tmp_path / "none"), "--out", str(file / "sub")), "is a file")
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(pipeline.os, "access", lambda p, mode: False if Path(p) == locked else real(p, mode))
    _one_sentence(_invoke("train", "--data", str(tmp_path / "none"), "--out", str(locked / "out")), "is not writable")


# ---- data ---------------------------------------------------------------------------------------------------------
def _train(world: Path, tmp_path: Path, *extra: str):
    config = tmp_path / "cheap.toml"
    config.write_text(CHEAP)
    return _invoke("train", "--data", str(world), "--config", str(config), "--out", str(tmp_path / "out"),
                   "--no-baseline", "--no-refit", *extra)


def test_a_feature_without_any_value_loads_with_a_warning_naming_it(world_copy):
    """A feature column NaN in every train row is legal (LightGBM trains around it) but the user is told which."""
    from training.config import load_config
    from training.console import Silent
    from training.experiment import load_dataset

    world = world_copy()
    train = pd.read_parquet(world / "train.parquet")
    name = [c for c in train.columns if c.startswith("feature")][3]
    train[name] = np.float32("nan")
    train.to_parquet(world / "train.parquet")
    said: list[str] = []
    reporter = Silent()
    reporter.say = said.append
    load_dataset(world, "dir", load_config(None), reporter)
    warnings = [line for line in said if line.startswith("warning:")]
    assert warnings == [f"warning: 1 feature(s) have no value in {world / 'train.parquet'} (NaN in every row): {name}; "
                        "the model cannot use them there (the pickle fills them with 2)."], said


def test_a_fractional_feature_value_is_rejected(world_copy, tmp_path):
    world = world_copy()
    train = pd.read_parquet(world / "train.parquet")
    feature = [c for c in train.columns if c.startswith("feature")][2]
    train[feature] = train[feature].astype("float32")
    train.loc[train.index[7], feature] = 2.5
    train.to_parquet(world / "train.parquet")
    result = _train(world, tmp_path)
    _one_sentence(result, "failed validation")
    assert "whole number" in result.output and feature in result.output and "2.5" in result.output


def test_an_auxiliary_target_without_any_value_is_one_sentence(world_copy, tmp_path):
    """An ensemble's auxiliary target that is NaN in every train row: its member has nothing to fit on."""
    world = world_copy()
    train = pd.read_parquet(world / "train.parquet")
    train["target_jasper_20"] = np.nan
    train.to_parquet(world / "train.parquet")
    config = tmp_path / "ensemble.toml"
    config.write_text(CHEAP + '\n[ensemble]\ntargets = ["target", "target_jasper_20"]\n')
    result = _invoke("train", "--data", str(world), "--config", str(config), "--out", str(tmp_path / "out"),
                     "--no-baseline", "--no-refit")
    _one_sentence(result, "has no value of the auxiliary target 'target_jasper_20' (NaN in every row)")


@pytest.mark.parametrize("scheduler, phrase", [
    ("tcp://127.0.0.1", "is neither a Dask scheduler address"), ("tcp://127.0.0.1:99999", "a port from 1 to 65535"),
    ("inproc://x", "is neither a Dask scheduler address"), ("ucx://127.0.0.1:8786", "is neither a Dask scheduler"),
])
def test_a_scheduler_that_cannot_work_is_one_sentence_before_the_data(tmp_path, scheduler, phrase):
    result = _invoke("train", "--data", str(tmp_path / "no-data"), "--out", str(tmp_path / "out"),
                     "--scheduler", scheduler)
    _one_sentence(result, phrase)


def test_a_scheduler_from_the_config_file_is_named_there(tmp_path):
    """The error points at the setting the user wrote: the config file's [compute] scheduler, not --scheduler."""
    config = tmp_path / "cluster.toml"
    config.write_text('[compute]\nscheduler = "tcp://127.0.0.1"\n')
    for command in ("train", "tune"):
        result = _invoke(command, "--data", str(tmp_path / "no-data"), "--out", str(tmp_path / "out"),
                         "--config", str(config))
        _one_sentence(result, "cluster.toml: `compute.scheduler` 'tcp://127.0.0.1' is neither a Dask scheduler")
        assert "--scheduler" not in result.output


def test_scheduler_addresses_dask_takes_pass_the_check() -> None:
    pytest.importorskip("distributed")
    from training.executor import check_scheduler  # noqa: PLC0415

    for address in ("tcp://127.0.0.1:8786", "tls://scheduler.example:8786", "tcp://[::1]:8786", "local:64"):
        check_scheduler(address)  # local:N above the cores is allowed: the plan counts each worker's memory


def test_ids_shared_by_train_and_validation_are_reported(world_copy, tmp_path):
    world = world_copy()
    train = pd.read_parquet(world / "train.parquet")
    validation = pd.read_parquet(world / "validation.parquet")
    validation.index = list(train.index[:3]) + list(validation.index[3:])
    validation.index.name = "id"
    validation.to_parquet(world / "validation.parquet")
    _one_sentence(_train(world, tmp_path), "3 id(s) appear in both")


def _restyle(world: Path, style) -> None:
    """Rewrite every file's era labels ("0042") in another style: int 42, or "42"."""
    for name in ("train.parquet", "validation.parquet", "live.parquet", "validation_benchmark_models.parquet",
                 "live_benchmark_models.parquet", "train_benchmark_models.parquet"):
        path = world / name
        if not path.exists():
            continue
        frame = pd.read_parquet(path)
        frame["era"] = [style(e) if str(e).isdigit() else e for e in frame["era"]]
        frame.to_parquet(path)


@pytest.mark.parametrize("style", ["padded", "int", "unpadded"])
def test_the_embargo_drops_exactly_the_configured_eras_whatever_the_label_style(world_copy, tmp_path, style):
    world = world_copy()
    if style != "padded":
        _restyle(world, int if style == "int" else (lambda e: str(int(e))))
    result = _train(world, tmp_path)
    assert result.exit_code == 0, result.output
    eras = json.loads((tmp_path / "out" / "manifest.json").read_text())["eras"]
    last = int(eras["train"][-1])
    assert [int(e) for e in eras["embargoed"]] == list(range(last + 1, last + 5))  # exactly 4 eras
    assert int(eras["validation"][0]) == last + 5
    assert [int(e) for e in eras["train"]] == sorted(int(e) for e in eras["train"])  # ordered as eras, not as text


def test_one_era_written_two_ways_is_rejected_naming_the_labels(world_copy, tmp_path):
    world = world_copy()
    validation = pd.read_parquet(world / "validation.parquet")
    first = validation["era"].iloc[0]
    validation.loc[validation.index[:5], "era"] = str(int(first))  # "0081" and "81" in one file
    validation.to_parquet(world / "validation.parquet")
    _one_sentence(_train(world, tmp_path), f"writes the same era in two ways ('{first}' and '{int(first)}')")


def _break_train_eras(world: Path, how: str) -> str:
    """Rewrite train.parquet's era column badly (one row group); the phrase the error must carry."""
    train = pd.read_parquet(world / "train.parquet")
    if how == "bool":
        train["era"] = train["era"].astype(int) % 2 == 0
        phrase = "train.parquet column era has type bool; eras are labels"
    elif how == "missing":
        train["era"] = train["era"].where(train["era"] != train["era"].iloc[-1], None)
        n = int(train["era"].isna().sum())
        phrase = f"train.parquet has {n} row(s) without an era in row group 0 (the first: id {train.index[-n]})"
    elif how == "float NaN":  # a NaN that is not a null (pandas writes NaN as null; other writers need not)
        import pyarrow as pa
        import pyarrow.parquet as pq

        era = train["era"].astype(float).to_numpy().copy()
        era[-7:] = np.nan
        table = pa.Table.from_pandas(train.drop(columns="era"))
        table = table.add_column(0, "era", pa.array(era, type=pa.float64(), from_pandas=False))
        pq.write_table(table, world / "train.parquet", row_group_size=len(train))
        return f"train.parquet has 7 row(s) without an era in row group 0 (the first: id {train.index[-7]})"
    else:
        train["era"] = "era" + train["era"]  # "era0001" beside validation's "0081": ordered after it as text
        phrase = "the era column mixes labels with a whole number ('0"
    train.to_parquet(world / "train.parquet", row_group_size=len(train))
    return phrase


@pytest.mark.parametrize("how", ["bool", "missing", "float NaN", "unnumbered"])
@pytest.mark.parametrize("plan", [False, True])
def test_an_era_column_that_is_not_labels_is_named_not_blamed_on_the_embargo(world_copy, tmp_path, how, plan):
    """A bool era, rows without one, or labels without a number beside numbered ones: each read as labels had left no
    validation era after "the last training era True/nan/era0036" and was reported as the embargo's fault."""
    world = world_copy()
    phrase = _break_train_eras(world, how)
    result = _invoke("train", "--data", str(world), "--out", str(tmp_path / "out"), *(["--plan"] if plan else []))
    _one_sentence(result, phrase)
    assert "embargo" not in result.output, result.output


# ---- other commands -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pickle_path(small_world, tmp_path_factory):
    from tests.stand_in import fit_baseline
    from training.export import export_pickle

    path = tmp_path_factory.mktemp("pkl") / "model.pkl"
    export_pickle(fit_baseline(small_world), path)
    return path


def test_predict_on_an_empty_live_file(pickle_path, world_copy, tmp_path):
    world = world_copy()
    pd.read_parquet(world / "live.parquet").iloc[0:0].to_parquet(world / "live.parquet")
    _one_sentence(_invoke("predict", str(pickle_path), "--data", str(world), "--out", str(tmp_path / "p.csv")),
                  "has no rows")


def test_check_on_an_empty_live_file_keeps_the_record_without_a_manifest(pickle_path, world_copy, tmp_path):
    """A pickle with no manifest (so no list of trained features): an empty live file is still a data problem, exit
    2, and the check record written before stays as it was (the pickle's run had failed on it, overwriting it)."""
    world = world_copy()
    pd.read_parquet(world / "live.parquet").iloc[0:0].to_parquet(world / "live.parquet")
    bare = tmp_path / "bare" / "model.pkl"
    bare.parent.mkdir()
    shutil.copy(pickle_path, bare)
    record = tmp_path / "record.json"
    record.write_text('{"check": {"passed": true}}')
    result = _invoke("check", str(bare), "--data", str(world), "--record", str(record))
    _one_sentence(result, "has no rows")
    assert record.read_text() == '{"check": {"passed": true}}'


def test_predict_with_most_features_missing(pickle_path, world_copy, tmp_path):
    world = world_copy()
    live = pd.read_parquet(world / "live.parquet")
    features = [c for c in live.columns if c.startswith("feature")]
    live.drop(columns=features[: len(features) // 2 + 1]).to_parquet(world / "live.parquet")
    _one_sentence(_invoke("predict", str(pickle_path), "--data", str(world), "--out", str(tmp_path / "p.csv")),
                  "could not predict")


class _UnsayableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("its own __str__ fails")


class _PicklesOwnBase(BaseException):
    pass


_RAISED = {  # what the pickle's code raises -> the exception's name and message in the sentence
    "key": (KeyError("feature_gone"), "KeyError", "'feature_gone'"),
    "exit 0": (SystemExit(0), "SystemExit", "exited with code 0"),  # had looked like success (exit 0, no CSV)
    "own base": (_PicklesOwnBase("gone"), "_PicklesOwnBase", "gone"),
    "unsayable": (_UnsayableError(), "_UnsayableError", "no message"),
    "long": (RuntimeError("first line " + "x" * 5000 + "\nTraceback (fake)\n  more"), "RuntimeError", "first line xx"),
}


def _raising_predict(live_features: pd.DataFrame, live_benchmark_models: pd.DataFrame) -> pd.DataFrame:
    raise _RAISED[live_features.attrs.get("case", "key")][0]


@pytest.mark.parametrize("case", list(_RAISED))
def test_predict_with_a_pickle_whose_code_raises(small_world, tmp_path, monkeypatch, case):
    """The pickle's own code fails (any exception, an exit, a class of its own whose message cannot be read): one
    sentence naming the pickle, the exception, its first line (cut to 300 characters) and where it was raised, exit
    1 (a failed run, as Numerai's would be), no traceback and no CSV."""
    import pickle

    import training.predict as predict_module

    real_read = predict_module.pd.read_parquet

    def tagged(path, *args, **kwargs):
        frame = real_read(path, *args, **kwargs)
        frame.attrs["case"] = case
        return frame

    monkeypatch.setattr(predict_module.pd, "read_parquet", tagged)
    model_path = tmp_path / "model.pkl"
    model_path.write_bytes(pickle.dumps(_raising_predict))
    out = tmp_path / "p.csv"
    result = _invoke("predict", str(model_path), "--data", str(small_world), "--out", str(out))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and len(result.output) < 1000, result.output
    text = " ".join(result.output.split())
    name, message = _RAISED[case][1:]
    assert f"model.pkl raised {name} while predicting" in text and message in text, text
    assert "in _raising_predict" in text and "test_errors.py line" in text, text
    assert not out.exists()


def test_predict_with_a_broken_benchmark_file_is_a_data_problem(pickle_path, world_copy, tmp_path):
    """The benchmark file is read before the pickle runs: a broken one is the data's fault (exit 2), not "the pickle
    raised NmuError ... fix the code that built it" (exit 1)."""
    world = world_copy()
    (world / "live_benchmark_models.parquet").write_bytes(b"not parquet")
    _one_sentence(_invoke("predict", str(pickle_path), "--data", str(world), "--out", str(tmp_path / "p.csv")),
                  "live_benchmark_models.parquet is not a readable parquet file")


def test_predict_out_that_is_a_directory(pickle_path, small_world, tmp_path):
    _one_sentence(_invoke("predict", str(pickle_path), "--data", str(small_world), "--out", str(tmp_path)),
                  "is a directory")


def test_synthetic_out_that_is_a_file(tmp_path):
    file = tmp_path / "world"
    file.write_text("x")
    _one_sentence(_invoke("data", "synthetic", "--out", str(file), "--eras", "40"), "is a file")


# ---- artifacts move as one ----------------------------------------------------------------------------------------
@pytest.mark.slow  # three whole nmu train runs (7 s); test_pipeline's failure-while-writing one stays in the default
def test_a_swap_broken_halfway_leaves_the_previous_directory(small_world, tmp_path, monkeypatch):
    first = _train(small_world, tmp_path)
    assert first.exit_code == 0, first.output
    out = tmp_path / "out"
    (out / "my_notes.txt").write_text("the user's own file")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_rename = os.rename
    calls = []

    def rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # OUT was moved aside; putting the new directory in its place fails
            raise OSError(28, "No space left on device")
        return real_rename(src, dst)

    monkeypatch.setattr(pipeline.os, "rename", rename)
    broken = _train(small_world, tmp_path)
    assert broken.exit_code != 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # put back, byte for byte
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no staging or previous left over
    monkeypatch.undo()
    again = _train(small_world, tmp_path)
    assert again.exit_code == 0
    assert (out / "my_notes.txt").read_text() == "the user's own file"  # a file the run does not own is kept
    assert (out / "model.pkl").read_bytes() != b""


# ---- settings refused before any work (a user's break-test, 2026-12-07) ------------------------------------------
@pytest.mark.parametrize("text, phrase", [
    ('[lightgbm]\nobjective = "bogus"\n', "`lightgbm.objective` 'bogus' is refused by LightGBM"),
    ("seed = -1\n", "`seed` must be 0 or more, got -1"),
    ("[lightgbm]\nlearning_rate = 0\n", "`lightgbm.learning_rate` must be > 0"),
])
def test_print_config_refuses_what_train_refuses(tmp_path, text, phrase):
    """`--print-config` does not print, exit 0, a config `nmu train` would refuse (a negative seed and an unknown
    objective had passed every check and failed at the first fit)."""
    config = tmp_path / "bad.toml"
    config.write_text(text)
    _one_sentence(_invoke("train", "--config", str(config), "--print-config"), phrase)
    _one_sentence(_invoke("train", "--data", str(tmp_path / "no-data"), "--config", str(config)), phrase)


def test_an_unknown_objective_is_said_once_not_also_by_lightgbm_itself(tmp_path, capfd):
    """LightGBM's C++ side writes "[LightGBM] [Fatal] ..." to the process's stderr before raising; the probe keeps it
    from the terminal (our sentence carries the same text), and stderr works again afterwards."""
    config = tmp_path / "bad.toml"
    config.write_text('[lightgbm]\nobjective = "bogus"\n')
    _one_sentence(_invoke("train", "--config", str(config), "--print-config"), "refused by LightGBM")
    os.write(2, b"stderr is back\n")
    captured = capfd.readouterr()
    assert "[LightGBM]" not in captured.err + captured.out and "stderr is back" in captured.err, captured


def test_an_objective_is_probed_also_without_a_stderr(tmp_path):
    """`2>&-` (no file descriptor 2): the probe's redirect has nothing to save and must not fail the run (os.dup
    raised EBADF, exit 1, and nothing said)."""
    import subprocess
    import sys

    config = tmp_path / "huber.toml"
    config.write_text('[lightgbm]\nobjective = "huber"\n')
    done = subprocess.run([sys.executable, "-c", "from training.cli import app; app()", "train", "--config",
                           str(config), "--print-config"], stdout=subprocess.PIPE, text=True,
                          preexec_fn=lambda: os.close(2), timeout=120)
    assert done.returncode == 0 and 'objective = "huber"' in done.stdout, done


def test_a_config_path_that_is_a_directory_says_so(tmp_path):
    _one_sentence(_invoke("train", "--config", str(tmp_path), "--print-config"), "is a directory, not a file")


def test_out_that_is_the_working_directory_is_refused_before_the_fits(small_world, tmp_path, monkeypatch):
    """The finished artifacts' directory is renamed over --out: "." cannot be, and the run failed after its fits."""
    monkeypatch.chdir(tmp_path)
    result = _invoke("train", "--data", str(small_world), "--out", ".")
    _one_sentence(result, "--out . is the current directory")
    assert list(tmp_path.iterdir()) == []


def test_a_cv_the_training_eras_cannot_take_fails_before_the_fits(small_world, tmp_path):
    result = _train(small_world, tmp_path, "--cv", "1000")
    _one_sentence(result, "--cv 1000 needs at least 1001 training eras")
    assert "Fitting" not in result.output


def test_a_storage_password_is_not_printed(tmp_path):
    pytest.importorskip("optuna")
    from training.tune import open_storage, shown_url  # noqa: PLC0415
    from validation.errors import NmuError  # noqa: PLC0415

    assert shown_url("postgresql://me:s3cret@db.example:5432/tune") == "postgresql://me:***@db.example:5432/tune"
    assert shown_url(f"sqlite:///{tmp_path}/tune.db") == f"sqlite:///{tmp_path}/tune.db"
    with pytest.raises(NmuError) as info:
        open_storage("postgresql://me:s3cret@127.0.0.1:1/tune")
    assert "s3cret" not in str(info.value) and "me:***@127.0.0.1:1" in str(info.value)


def test_a_tune_timeout_of_nan_is_refused(tmp_path):
    pytest.importorskip("optuna")
    _one_sentence(_invoke("tune", "--data", str(tmp_path / "no-data"), "--out", str(tmp_path / "out"), "--timeout",
                          "nan"), "--timeout must be a positive number of seconds")
