"""Every independent fit on a real Dask cluster: a scheduler and two workers as separate processes on 127.0.0.1.
The models fitted there grow the same trees as in-process ones and metrics.json is identical; a worker killed
mid-run ends the run cleanly, the previous artifacts intact."""

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

from training.pipeline import train_command
from training.refresh import fitted_model

distributed = pytest.importorskip("distributed", reason='the Dask extra is not installed: pip install -e ".[dask]"')
pytestmark = pytest.mark.slow
CONFIG = "[lightgbm]\nn_estimators = 60\nlearning_rate = 0.1\n"
SLOW_CONFIG = "[lightgbm]\nn_estimators = 3000\nlearning_rate = 0.01\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _dask() -> str:
    found = shutil.which("dask") or str(Path(sys.executable).with_name("dask"))
    return found


class Cluster:
    """A scheduler and `workers` single-thread worker processes on 127.0.0.1, each its own process group."""

    def __init__(self, workers: int, allowed_failures: int | None = None):
        self.port = _free_port()
        env = {**os.environ}
        if allowed_failures is not None:
            env["DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES"] = str(allowed_failures)
        self.address = f"tcp://127.0.0.1:{self.port}"
        common = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env, "start_new_session": True}
        self.scheduler = subprocess.Popen([_dask(), "scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                                           "--no-dashboard"], **common)
        self.workers = [subprocess.Popen([_dask(), "worker", self.address, "--nthreads", "1", "--nworkers", "1",
                                          "--no-dashboard", "--host", "127.0.0.1"], **common) for _ in range(workers)]
        client = distributed.Client(self.address, timeout="30s")
        try:
            client.wait_for_workers(workers, timeout=60)
        finally:
            client.close()

    def kill_worker(self, i: int) -> None:
        os.killpg(self.workers[i].pid, signal.SIGKILL)

    def close(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def _train(small_world: Path, out: Path, config: Path, scheduler: str | None = None) -> dict:
    return train_command(data=small_world, out=out, config_path=config, ablation=True, console=Console(quiet=True),
                         scheduler=scheduler)


def test_fits_on_the_cluster_equal_the_in_process_fits(small_world, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    here = _train(small_world, tmp_path / "here", config)
    cluster = Cluster(workers=2)
    try:
        there = _train(small_world, tmp_path / "there", config, scheduler=cluster.address)
    finally:
        cluster.close()
    assert json.loads((tmp_path / "there" / "metrics.json").read_text()) == json.loads(
        (tmp_path / "here" / "metrics.json").read_text())
    assert there == here
    trees = [fitted_model(tmp_path / d / "model.pkl").booster_.model_to_string() for d in ("here", "there")]
    strip = [t[: t.find("parameters:")] for t in trees]  # (the parameters block records the thread count)
    assert strip[0] == strip[1]


def test_ensemble_members_fit_on_the_cluster_as_in_process(small_world, tmp_path):
    # each member of each variant is a job of its own on the cluster; the ensembles assembled from them are the
    # in-process ones, tree for tree
    config = tmp_path / "config.toml"
    config.write_text('[ensemble]\ntargets = ["target", "target_jasper_20"]\n\n' + CONFIG)
    here = train_command(data=small_world, out=tmp_path / "here", config_path=config, console=Console(quiet=True))
    cluster = Cluster(workers=2)
    try:
        there = train_command(data=small_world, out=tmp_path / "there", config_path=config,
                              console=Console(quiet=True), scheduler=cluster.address)
    finally:
        cluster.close()
    assert there == here
    fitted = [fitted_model(tmp_path / d / "model.pkl") for d in ("here", "there")]
    assert [len(f.members_) for f in fitted] == [2, 2]
    for a, b in zip(fitted[0].members_, fitted[1].members_):
        strip = [m.booster_.model_to_string() for m in (a, b)]
        assert strip[0][: strip[0].find("parameters:")] == strip[1][: strip[1].find("parameters:")]


def test_a_killed_worker_ends_the_run_cleanly_with_the_previous_artifacts(small_world, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    out = tmp_path / "artifacts"
    # the previous artifacts the failed run must leave: any run's will do (one variant, no refit: the cheapest)
    train_command(data=small_world, out=out, config_path=config, no_baseline=True, no_refit=True,
                  console=Console(quiet=True))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    slow = tmp_path / "slow.toml"
    slow.write_text(SLOW_CONFIG)
    cluster = Cluster(workers=2, allowed_failures=0)
    try:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        run = subprocess.Popen([sys.executable, "-m", "training.cli", "train", "--data", str(small_world), "--out",
                                str(out), "--config", str(slow), "--ablation", "--scheduler", cluster.address],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        # once the run says its fits went to the cluster, and a moment for the workers to take them (a fixed 12 s
        # before, most of it the run's start), one worker dies
        seen = []
        for line in run.stdout:
            seen.append(line)
            if "on the Dask cluster" in line:
                break
        assert "on the Dask cluster" in seen[-1], "".join(seen)
        time.sleep(3)
        cluster.kill_worker(0)
        rest, _ = run.communicate(timeout=600)
        output = "".join(seen) + rest
    finally:
        cluster.close()
    assert run.returncode == 2, output
    assert "lost the worker" in output and "Traceback" not in output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".artifacts.")]
