"""MLflow tracking of `nmu train` and `nmu tune`, against real MLflow stores (no mocks): the local SQLite store in
OUT by default, MLFLOW_TRACKING_URI when set, and (slow) a tracking server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from training.cli import app
from training.pipeline import train_command
from training.synthetic import SyntheticConfig, write_synthetic_world

mlflow = pytest.importorskip("mlflow", reason='the tracking extra is not installed: pip install -e ".[tracking]"')
from mlflow.tracking import MlflowClient  # noqa: E402

FAST = """
[lightgbm]
n_estimators = 10
learning_rate = 0.2

[compute]
threads = 1
"""


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny_world")
    write_synthetic_world(out, SyntheticConfig.default(eras=60, stocks=300, features=30, seed=3))
    return out


@pytest.fixture(autouse=True)
def _no_ambient_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(extra + FAST)
    return path


def _runs(uri: str) -> list:
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("nmu")
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"]) if experiment else []


def test_train_track_logs_params_metrics_artifacts_and_tags(tiny_world: Path, tmp_path: Path) -> None:
    out = tmp_path / "artifacts"
    result = CliRunner().invoke(app, ["train", "--data", str(tiny_world), "--out", str(out), "--config",
                                      str(_config(tmp_path)), "--track"])
    assert result.exit_code == 0, result.output
    uri = f"sqlite:///{out / 'mlruns.db'}"
    [run] = _runs(uri)
    metrics = json.loads((out / "metrics.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    tags = run.data.tags
    assert tags["nmu.command"] == "train" and tags["nmu.pickle_sha256"] == manifest["pickle"]["sha256"]
    assert tags["nmu.data_version"] == manifest["data"]["version"] and tags["nmu.data_source"] == "synthetic"
    from importlib.metadata import version

    assert tags["nmu.package_version"] == version("numerai-uploads")
    assert tags["nmu.shipped_variant"] == metrics["ship"]["shipped"]
    assert run.data.params["lightgbm.n_estimators"] == "10" and run.data.params["refresh"] == "never"
    for variant, scores in metrics["models"].items():
        assert run.data.metrics[f"{variant}.corr_mean"] == pytest.approx(scores["corr_mean"])
        assert run.data.metrics[f"refreshed.{variant}.corr_mean"] == pytest.approx(
            metrics["modes"]["refreshed"][variant]["corr_mean"])
    client = MlflowClient(tracking_uri=uri)
    logged = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.html", "metrics.json", "manifest.json", "per_era_scores.csv", "config.toml"} <= logged
    local = Path(client.download_artifacts(run.info.run_id, "per_era_scores.csv", str(tmp_path)))
    assert local.read_text() == (out / "per_era_scores.csv").read_text()
    assert str((out / "mlruns").resolve()) in run.info.artifact_uri  # the local store keeps its artifacts in OUT

    # a second run into the same OUT (its files swapped in anew) adds to the same store
    result = CliRunner().invoke(app, ["train", "--data", str(tiny_world), "--out", str(out), "--config",
                                      str(_config(tmp_path)), "--track", "--no-refit"])
    assert result.exit_code == 0, result.output
    assert [r.data.params["refit"] for r in _runs(uri)] == ["True", "False"]


def test_the_config_switches_tracking_on_and_the_environment_names_the_store(
        tiny_world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    config = _config(tmp_path, '[tracking]\nenabled = true\nexperiment = "nmu"\n')
    train_command(data=tiny_world, out=tmp_path / "out", config_path=config, no_refit=True, console=Console(quiet=True))
    assert not (tmp_path / "out" / "mlruns.db").exists()
    [run] = _runs(uri)
    assert run.data.tags["nmu.command"] == "train"
    assert str((tmp_path / "mlruns").resolve()) in run.info.artifact_uri  # beside the database, not in the cwd
    assert "[tracking]" in (tmp_path / "out" / "config.toml").read_text()  # the written config keeps it


def test_tune_track_logs_the_study_and_one_nested_run_per_trial(tiny_world: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, "[tune]\nfolds = 2\n[tune.lightgbm]\nnum_leaves = [4, 16]\n\n")
    out = tmp_path / "tune"
    result = CliRunner().invoke(app, ["tune", "--data", str(tiny_world), "--out", str(out), "--config", str(config),
                                      "--trials", "3", "--track"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "tune.json").read_text())
    runs = _runs(f"sqlite:///{out / 'mlruns.db'}")
    [study] = [r for r in runs if r.data.tags.get("nmu.command") == "tune"]
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == study.info.run_id]
    assert len(trials) == 3
    assert study.data.metrics["best_value"] == pytest.approx(summary["best_value"])
    assert study.data.metrics["after_choice.tuned.corr_mean"] == pytest.approx(
        summary["after_choice"]["tuned"]["corr_mean"])
    assert study.data.params["best.lightgbm.num_leaves"] == str(summary["best_params"]["lightgbm.num_leaves"])
    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    logged = {a.path for a in client.list_artifacts(study.info.run_id)}
    assert {"tune_report.html", "best_config.toml", "tune_trials.csv", "after_choice_per_era.csv"} <= logged
    complete = [r for r in trials if r.data.tags["nmu.trial_state"] == "COMPLETE"]
    assert complete and all(len(client.get_metric_history(r.info.run_id, "running_corr")) == 2 for r in complete)
    assert [r.data.tags.get("nmu.default") for r in trials].count("true") == 1  # the default config's trial
    assert all(r.data.params["fold1_eras"] < r.data.params["fold2_eras"] for r in complete)
    # a resumed study logs the trials that run finished, not the earlier ones again
    result = CliRunner().invoke(app, ["tune", "--data", str(tiny_world), "--out", str(out), "--config", str(config),
                                      "--trials", "4", "--track"])
    assert result.exit_code == 0, result.output
    runs = _runs(f"sqlite:///{out / 'mlruns.db'}")
    studies = [r for r in runs if r.data.tags.get("nmu.command") == "tune"]
    nested = [[r.info.run_name for r in runs if r.data.tags.get("mlflow.parentRunId") == s.info.run_id]
              for s in studies]
    assert [len(n) for n in nested] == [3, 1] and nested[1] == ["trial 3"]
    # a run without --track, then a tracked one: the tracked one logs the trials the untracked one ran too
    for trials, track in (("5", []), ("6", ["--track"])):
        result = CliRunner().invoke(app, ["tune", "--data", str(tiny_world), "--out", str(out), "--config",
                                          str(config), "--trials", trials, *track])
        assert result.exit_code == 0, result.output
    runs = _runs(f"sqlite:///{out / 'mlruns.db'}")
    last = [r for r in runs if r.data.tags.get("nmu.command") == "tune"][-1]
    assert sorted(r.info.run_name for r in runs if r.data.tags.get("mlflow.parentRunId") == last.info.run_id) == [
        "trial 4", "trial 5"]


@pytest.mark.parametrize("table, phrase", [
    ('[tracking]\nenable = true\n', "`tracking.enable` is not a tracking setting"),
    ('[tracking]\nenabled = "yes"\n', "`tracking.enabled` must be true or false"),
])
def test_a_bad_tracking_table_is_one_sentence_before_any_work(tiny_world: Path, tmp_path: Path, table: str,
                                                              phrase: str) -> None:
    result = CliRunner().invoke(app, ["train", "--data", str(tiny_world), "--out", str(tmp_path / "out"), "--config",
                                      str(_config(tmp_path, table)), "--track"])
    assert result.exit_code == 2 and phrase in result.output and "Traceback" not in result.output, result.output
    assert not (tmp_path / "out").exists()
    for command in ("train", "tune"):  # the message names the config file, as every other config error does
        result = CliRunner().invoke(app, [command, "--data", str(tiny_world), "--out", str(tmp_path / "out"),
                                          "--config", str(tmp_path / "config.toml"), "--track"])
        assert result.exit_code == 2 and "config.toml:`tracking." in "".join(result.output.split()), result.output


def test_a_store_that_cannot_be_reached_fails_in_one_line_after_the_artifacts(
        tiny_world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/a-file/mlflow.db")
    result = CliRunner().invoke(app, ["train", "--data", str(tiny_world), "--out", str(tmp_path / "out"), "--config",
                                      str(_config(tmp_path)), "--track", "--no-refit"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "but logging the run to MLflow at" in " ".join(result.output.split())
    assert (tmp_path / "out" / "model.pkl").is_file()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_train_track_logs_to_a_tracking_server_on_loopback(tiny_world: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    port = _free_port()
    server_bin = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    server = subprocess.Popen([server_bin, "server", "--host", "127.0.0.1", "--port", str(port),
                               "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                               "--artifacts-destination", str(tmp_path / "server-artifacts"), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        uri = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.5)
        time.sleep(2)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        train_command(data=tiny_world, out=tmp_path / "out", config_path=_config(tmp_path), no_refit=True,
                      console=Console(quiet=True), track=True)
        [run] = _runs(uri)
        assert run.data.tags["nmu.command"] == "train"
        assert "report.html" in {a.path for a in MlflowClient(uri).list_artifacts(run.info.run_id)}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
