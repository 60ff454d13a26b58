"""Every Python that a Numerai runtime image serves: build a pickle on a small world and pass `nmu check` against the
replica of the same minor version (the image's pinned packages, scikit-learn 1.6.1), once built with that image's
pins and once with whatever pip resolves today (newer numpy, pandas, scikit-learn and LightGBM: the version skew a
user without the pins brings).

Slow (a virtual environment and a replica per Python, about 2-3 minutes each) and it needs the package index, so it
is not part of the default `pytest` run: CI runs it with `pytest -m pythons`. A Python that is not on the machine is
skipped with a message that says where it was looked for.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from validation.runtime.replica import RUNTIME_PYTHONS

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.pythons, pytest.mark.network, pytest.mark.slow]
SMALL_CONFIG = """
[lightgbm]
n_estimators = 40
"""


def find_python(minor: str) -> str | None:
    """An interpreter of Python `minor` (e.g. "3.12"): python3.12 on PATH, else pyenv's ~/.pyenv/versions/3.12.*."""
    candidates = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{minor}.*/bin/python")), reverse=True)
    on_path = shutil.which(f"python{minor}")
    for candidate in ([on_path] if on_path else []) + candidates:
        out = subprocess.run([candidate, "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
                             capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip() == minor:
            return candidate
    return None


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.parametrize("build", ["pins", "newest"])
@pytest.mark.parametrize("minor", RUNTIME_PYTHONS)
def test_pickle_round_trip_on_every_runtime_python(minor: str, build: str, tmp_path: Path) -> None:
    python = find_python(minor)
    if python is None:
        pytest.skip(f"no Python {minor} on this machine (looked for python{minor} on PATH and ~/.pyenv/versions/{minor}.*)")
    venv = tmp_path / "venv"
    try:
        _round_trip(minor, build, python, venv, tmp_path)
    finally:
        # A venv per case is about 1 GB, 4.8 GB on 3.10's pins (torch); a failed case's tmp_path is kept (pyproject's
        # tmp_path_retention_policy), its venv is not: the last CI run's disk ran out in this lane on 2026-12-05. What
        # failed is in the assertion's message.
        shutil.rmtree(venv, ignore_errors=True)


def _source_copy(target: Path) -> Path:
    """The project's files (git's tracked and untracked-but-not-ignored ones, as they are in the working tree) copied
    to `target`: each case installs from a copy of its own, because an editable install writes the egg-info into the
    source tree and CI runs two cases at once (.ci/run's job 3)."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, text=True)
    if listed.returncode != 0:  # not a git checkout (an unpacked sdist): everything but what builds and runs leave
        shutil.copytree(REPO, target, ignore=shutil.ignore_patterns(".git", "*.egg-info", "__pycache__", "data",
                                                                    "artifacts", ".venv*", "build", "dist"))
        return target
    for name in filter(None, listed.stdout.split("\0")):
        source = REPO / name
        if source.is_file():  # (a file deleted in the working tree is still listed as tracked)
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def _round_trip(minor: str, build: str, python: str, venv: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
    _run([python, "-m", "venv", str(venv)], tmp_path, env, 300)
    bin_dir = venv / "bin"
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    pins = REPO / "validation" / "runtime" / "pins" / f"py{minor}.txt"
    constraints = ["-c", str(pins)] if build == "pins" else []
    source = _source_copy(tmp_path / "source")
    _run([str(bin_dir / "pip"), "install", "-q", *constraints, "-e", str(source)], tmp_path, env, 1200)

    nmu = str(bin_dir / "nmu")
    world, out = tmp_path / "world", tmp_path / "artifacts"
    (tmp_path / "small.toml").write_text(SMALL_CONFIG)
    _run([nmu, "data", "synthetic", "--out", str(world), "--eras", "80", "--stocks", "400", "--features", "30"],
         tmp_path, env, 300)
    _run([nmu, "train", "--data", str(world), "--out", str(out), "--config", "small.toml", "--no-refit"],
         tmp_path, env, 900)
    check = _run([nmu, "check", str(out / "model.pkl"), "--data", str(world)], tmp_path, env, 1200)
    assert "PASS" in check.stdout + check.stderr

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["python"].rsplit(".", 1)[0] == minor
    assert manifest["check"]["passed"] is True and manifest["check"]["python"].startswith(minor)
    installed = subprocess.run([str(bin_dir / "python"), "-c", "import numpy, pandas, sklearn; "
                                "print(numpy.__version__, pandas.__version__, sklearn.__version__)"],
                               capture_output=True, text=True, env=env).stdout.split()
    pinned = dict(line.split("==") for line in pins.read_text().splitlines() if "==" in line and not line.startswith("#"))
    wanted = [pinned["numpy"], pinned["pandas"], pinned["scikit-learn"]]
    if build == "pins":
        assert installed == wanted  # built with exactly the image's versions
    else:
        print(f"Python {minor}, newest: numpy {installed[0]}, pandas {installed[1]}, scikit-learn {installed[2]} "
              f"(runtime: {', '.join(wanted)})")
