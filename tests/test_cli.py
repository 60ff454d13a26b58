"""The `nmu` command line: help and version, user errors as a table with exit code 2, `nmu data synthetic`."""

from __future__ import annotations

import json
import pickle
import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from training.cli import app, user_errors
from validation.errors import DataValidationError, NmuError
from validation.schemas import (
    validate_benchmark_frame,
    validate_live_frame,
    validate_predictions,
    validate_training_frame,
)

runner = CliRunner()
NARROW = {"COLUMNS": "80", "TERMINAL_WIDTH": "80"}  # the narrowest usual terminal


def invoke(*args: str):
    return runner.invoke(app, list(args), prog_name="nmu", env=NARROW)


def panel_rows(output: str, title: str) -> list[str]:
    """The text rows of a rich help panel ("Commands", "Options"), borders stripped."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("╭─") and f" {title} " in line)
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("╰"):
            break
        rows.append(line.strip("│ ").rstrip())
    return rows


def assert_no_traceback(result) -> None:
    text = result.output + (result.stderr or "")
    assert "Traceback" not in text
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


# ------------------------------------------------------------------------------------ help, version


def test_help_lists_every_command_on_one_line_each():
    result = invoke("--help")
    assert result.exit_code == 0
    rows = panel_rows(result.output, "Commands")
    names = [row.split()[0] for row in rows]
    assert sorted(names) == ["check", "data", "predict", "refresh", "status", "train", "tune", "upload"]  # one line each
    for row in rows:
        name, description = row.split(None, 1)
        assert len(description) > 15, row  # a real sentence, not a stub


def test_version_prints_the_installed_version():
    result = invoke("--version")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"nmu (numerai-uploads) {version('numerai-uploads')}"


def test_console_script_runs():
    nmu = shutil.which("nmu")
    command = [nmu] if nmu else [sys.executable, "-m", "training.cli"]
    done = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"nmu \(numerai-uploads\) \S+", done.stdout.strip())


def test_data_help_lists_synthetic_and_download():
    result = invoke("data", "--help")
    assert result.exit_code == 0
    rows = panel_rows(result.output, "Commands")
    assert sorted(row.split()[0] for row in rows) == ["download", "synthetic"]
    assert all(len(row.split(None, 1)[1]) > 15 for row in rows)


def test_no_arguments_shows_help_not_an_error():
    result = invoke()
    assert "Usage: nmu" in result.output
    assert "Traceback" not in result.output


# ------------------------------------------------------------------------------------- user errors


def test_user_errors_prints_the_failure_table_and_exits_2():
    """A DataValidationError raised inside a command: sentence + table on stderr, exit 2, no traceback."""
    frame = pd.DataFrame(
        {"era": ["0001", "0001"], "feature_a": np.array([1, 7], dtype=np.int8), "target": [0.5, 0.3]},
        index=pd.Index(["n000000000000001", "n000000000000002"], name="id"),
    )
    cli = typer.Typer()

    @cli.command()
    @user_errors
    def validate() -> None:
        validate_training_frame(frame, ["feature_a"], "target", source="train.parquet")

    result = runner.invoke(cli, [], env=NARROW)
    assert result.exit_code == 2
    assert_no_traceback(result)
    err = result.stderr
    assert "train.parquet failed validation" in err
    assert re.search(r"feature_a\s+in 0\.\.4 or NaN\s+1\s+n000000000000002@0001=7", err), err
    assert re.search(r"target\s+in \{0, 0\.25, 0\.5, 0\.75, 1\}\s+1\s+n000000000000002@0001=0\.3", err), err
    assert "column" in err and "check" in err and "count" in err and "examples" in err  # the table's header


def test_user_errors_plain_nmu_error_is_one_sentence():
    cli = typer.Typer()

    @cli.command()
    @user_errors
    def fail() -> None:
        raise NmuError("data/train.parquet is missing; run `nmu data synthetic --out data`.")

    result = runner.invoke(cli, [], env=NARROW)
    assert result.exit_code == 2
    assert_no_traceback(result)
    assert result.stderr.strip() == "error: data/train.parquet is missing; run `nmu data synthetic --out data`."


def test_bad_cli_value_is_an_error_message():
    result = invoke("data", "synthetic", "--out", "unused", "--eras", "5")
    assert result.exit_code == 2
    assert_no_traceback(result)
    assert "--eras 5" in result.stderr


def nan_predict(live_features: pd.DataFrame, live_benchmark_models: pd.DataFrame) -> pd.DataFrame:
    """A broken model: NaN for the first stock, constant elsewhere (pickled by reference for the test)."""
    values = np.full(len(live_features), 0.5)
    values[0] = np.nan
    return pd.DataFrame({"prediction": values}, index=live_features.index)


def test_predict_with_bad_predictions_prints_table_and_exits_2(small_world: Path, tmp_path: Path):
    """`nmu predict` validates the pickle's output: NaN and a constant are both reported, no CSV written."""
    model_path = tmp_path / "model.pkl"
    model_path.write_bytes(pickle.dumps(nan_predict))
    out = tmp_path / "predictions.csv"
    result = invoke("predict", str(model_path), "--data", str(small_world), "--out", str(out))
    assert result.exit_code == 2, result.output
    assert_no_traceback(result)
    first_id = pd.read_parquet(small_world / "live.parquet", columns=["era"]).index[0]
    assert re.search(rf"prediction\s+not NaN\s+1\s+{first_id}", result.stderr), result.stderr
    assert re.search(r"prediction\s+non-zero std", result.stderr), result.stderr
    assert not out.exists()


def test_train_on_a_broken_file_prints_table_and_exits_2(small_world: Path, tmp_path: Path):
    """`nmu train` validates what it loads: a target of 0.3 in train.parquet stops it before fitting."""
    data = tmp_path / "data"
    shutil.copytree(small_world, data)
    train = pd.read_parquet(data / "train.parquet")
    first_rows = ~train["era"].duplicated()  # the first row of every era, so any era subsample sees one
    train.loc[first_rows, "target"] = np.float32(0.3)
    train.to_parquet(data / "train.parquet")
    result = invoke("train", "--data", str(data), "--out", str(tmp_path / "out"), "--no-baseline")
    assert result.exit_code == 2, result.output
    assert_no_traceback(result)
    assert "train.parquet failed validation" in result.stderr
    match = re.search(r"target\s+in \{0, 0\.25, 0\.5, 0\.75, 1\}\s+\d+\s+(n[0-9a-f]{15})@(\d{4})=0\.3", result.stderr)
    assert match, result.stderr
    assert match.group(1) in set(train.index[first_rows])
    assert not (tmp_path / "out" / "model.pkl").exists()


# ------------------------------------------------------------------------------- nmu data synthetic


def load(path: Path, features: list[str], targets: tuple[str, ...]) -> pd.DataFrame:
    """A data file loaded as the pipeline loads it (training.data.load_frame)."""
    from training.data import load_frame

    return load_frame(path, features, targets=targets)


def test_data_synthetic_writes_every_file_and_they_pass_the_schemas(tmp_path: Path):
    out = tmp_path / "world"
    result = invoke("data", "synthetic", "--out", str(out), "--eras", "30", "--stocks", "200", "--features", "24")
    assert result.exit_code == 0, result.output
    for name in (
        "features.json", "train.parquet", "validation.parquet", "live.parquet", "live_benchmark_models.parquet",
        "validation_benchmark_models.parquet", "synthetic_truth.json", "synthetic_industries.parquet",
    ):
        assert (out / name).is_file(), name
    meta = json.loads((out / "features.json").read_text())
    features = meta["feature_sets"]["all"]
    assert len(features) == 24 and "target" in meta["targets"]
    train = load(out / "train.parquet", features, ("target",))
    validation = load(out / "validation.parquet", features, ("target",))
    assert validate_training_frame(train, features, "target", "train.parquet") is train
    validate_training_frame(validation, features, "target", "validation.parquet", allow_unresolved=True)
    assert train["era"].nunique() + validation["era"].nunique() == 30
    assert validation["target"].isna().any()  # the newest eras are unresolved ...
    with pytest.raises(DataValidationError):  # ... which only allow_unresolved accepts
        validate_training_frame(validation, features, "target", "validation.parquet")
    live = pd.read_parquet(out / "live.parquet")
    validate_live_frame(live, features, "live.parquet")
    assert live["era"].nunique() == 1 and len(live) > 0
    for name in ("live_benchmark_models.parquet", "validation_benchmark_models.parquet", "train_benchmark_models.parquet"):
        if (out / name).is_file():
            validate_benchmark_frame(pd.read_parquet(out / name), name)
    ids = pd.concat([train.index.to_series(), validation.index.to_series(), live.index.to_series()])
    assert ids.is_unique and ids.str.fullmatch(r"n[0-9a-f]{15}").all()
    # a prediction frame of Numerai's shape for these live ids passes too
    preds = pd.DataFrame({"prediction": np.linspace(0.0, 1.0, len(live))}, index=live.index)
    validate_predictions(preds, live.index, "predictions")


def good_predict(live_features: pd.DataFrame, live_benchmark_models: pd.DataFrame) -> pd.DataFrame:
    """A working model: the rank of the first feature (pickled by reference for the test)."""
    first = live_features.filter(like="feature").iloc[:, 0]
    return pd.DataFrame({"prediction": first.rank(pct=True).fillna(0.5).to_numpy()}, index=live_features.index)


def test_a_path_the_file_system_refuses_is_one_sentence(small_world: Path, tmp_path: Path):
    """A file where the output's directory should be, a full disk or a read-only mount: the path and the cause in
    one sentence, exit 2, never a traceback (here: `nmu predict --out` under a file)."""
    model_path = tmp_path / "model.pkl"
    model_path.write_bytes(pickle.dumps(good_predict))
    (tmp_path / "afile").write_text("not a directory")
    result = invoke("predict", str(model_path), "--data", str(small_world), "--out", str(tmp_path / "afile" / "p.csv"))
    assert result.exit_code == 2, result.output
    assert_no_traceback(result)
    assert f"the file system refused {tmp_path / 'afile'}" in result.stderr
    assert "a file stands where a directory is needed" in result.stderr
    assert (tmp_path / "afile").read_text() == "not a directory"


def test_only_file_system_refusals_become_one_sentence() -> None:
    import errno  # noqa: PLC0415

    from training.cli import file_system_refusal  # noqa: PLC0415

    full = file_system_refusal(OSError(errno.ENOSPC, "No space left on device", "/data/validation.parquet"))
    assert full is not None and str(full) == ("the file system refused /data/validation.parquet: the disk is full "
                                              "(No space left on device).")
    assert file_system_refusal(OSError(errno.EROFS, "Read-only file system", "/mnt/x")) is not None
    assert file_system_refusal(OSError(errno.ECONNREFUSED, "Connection refused")) is None  # not a file's
    assert file_system_refusal(OSError(errno.ENOSPC, "No space left on device")) is None  # no path to name
