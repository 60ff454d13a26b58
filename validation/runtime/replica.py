"""The replica of Numerai's model-upload runtime (`nmu check`), and the check that a build uses its versions.

The replica is a virtual environment of the running Python's minor version holding exactly the runtime's
pinned packages (validation/runtime/pins/py3.X.txt; not torch, which 3.10's file pins for a build's sake) and NOT
this project. It is built once into the user cache
directory (or $NMU_RUNTIME_DIR) and rebuilt when the pins change. The pickle runs there in a subprocess that
cannot import this project (`python -I`, a temporary working directory, a clean environment), driven by the
standalone `runner.py` (what Numerai's numerai-predict runner does), limited to one CPU, 4 GB of
resident memory (watched, the child killed above it) and 10 minutes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from model.eras import era_number, sort_eras
from validation.artifacts import file_sha256
from validation.errors import NmuError
from validation.runtime.runner import status_bytes

_log = logging.getLogger(__name__)

CHECKED_PACKAGES = ("numpy", "pandas", "scikit-learn", "lightgbm")
"""Packages whose objects a pickle may hold: building with other versions than the runtime's is warned."""
MEMORY_LIMIT_MB = 4096
TIME_LIMIT_S = 600.0
POLL_S = 0.05
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "LIGHTGBM_NUM_THREADS")
STAMP = "nmu-runtime.json"
NOT_IN_REPLICA = frozenset({"torch"})
"""Pins that a build needs and no pickle touches (py3.10.txt pins torch only because numerai-tools 0.3.3 declares
it): the replica leaves them out."""
REPLICA_IMPORTS = {"numpy": "numpy", "pandas": "pandas", "pyarrow": "pyarrow", "scipy": "scipy",
                   "scikit-learn": "sklearn", "lightgbm": "lightgbm", "cloudpickle": "cloudpickle"}
"""{pinned package: module}: what the runner and a pickle built here import inside the replica, each imported once
after the build where the pins name it."""


# ----------------------------------------------------------------------------------------------- the pins

RUNTIME_PYTHONS = ("3.10", "3.11", "3.12", "3.13")
"""The Python versions of Numerai's model-upload images (one pins file each in validation/runtime/pins)."""


def python_tag(version: tuple[int, int] | None = None) -> str:
    """"py3.11" for the running Python (or `version`)."""
    major, minor = version or sys.version_info[:2]
    return f"py{major}.{minor}"


def pins_file(version: tuple[int, int] | None = None) -> Path:
    """The runtime's pip constraints file for this Python's minor version (validation/runtime/pins/py3.X.txt)."""
    tag = python_tag(version)
    path = Path(str(resources.files("validation.runtime") / "pins" / f"{tag}.txt"))
    if not path.is_file():
        raise NmuError(
            f"Numerai has no model-upload runtime for Python {tag[2:]} (images exist for {', '.join(RUNTIME_PYTHONS)}); "
            "build the pickle with one of those."
        )
    return path


def read_pins(path: Path) -> dict[str, str]:
    """`name==version` lines of a constraints file as {normalised name: version}."""
    pins: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[_norm(name)] = version.split(";")[0].strip()
    return pins


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


def version_mismatches(pins: Path | None = None, packages: tuple[str, ...] = CHECKED_PACKAGES) -> dict[str, tuple[str, str]]:
    """{package: (installed, runtime pin)} for each checked package whose installed version differs."""
    pinned = read_pins(pins or pins_file())
    out: dict[str, tuple[str, str]] = {}
    for name in packages:
        want = pinned.get(_norm(name))
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            have = "not installed"
        if want is not None and have != want:
            out[name] = (have, want)
    return out


_NOTED: set[str] = set()  # version notes already printed by this process


def version_mismatch_note(pins: Path | None = None) -> str | None:
    """One readable line naming each pickled library whose version differs from Numerai's runtime for this Python,
    and the command that builds with the runtime's versions; None when they match."""
    try:
        path = pins or pins_file()
    except NmuError as exc:
        return str(exc)
    diff = version_mismatches(path)
    if not diff:
        return None
    names = ", ".join(f"{n} {have} (runtime: {want})" for n, (have, want) in diff.items())
    return (f"built with other versions than Numerai's Python {python_tag()[2:]} runtime: {names}. The runtime check "
            f"(`nmu check`) shows whether the pickle still loads there; to build with the runtime's own versions: "
            f"pip install -e . -c {_display(path)}")


PICKLE_FORMATS = {"cloudpickle": "any", "numpy": "newer"}
"""Packages whose major version fixes how the pickle is written, and which mismatch the image cannot read: a
pickle from cloudpickle 3 names `cloudpickle.cloudpickle._function_setstate`, absent from cloudpickle 2.2.1, and
numpy 2 writes arrays through `numpy._core.numeric._frombuffer`, absent from numpy 1.26 (both are the Python 3.10
image's; measured: its `nmu check` fails with "Can't get attribute '_function_setstate'" and "No module named
'numpy._core.numeric'"). numpy 2 reads numpy 1's arrays, so only a newer numpy is refused."""


def pickle_format_mismatch(pins: Path | None = None) -> str | None:
    """Why the runtime's own packages could not read a pickle this environment writes, or None when they can.

    Unlike `version_mismatch_note`, this is not a warning: such a pickle is a missed submission, so export refuses
    it (PICKLE_FORMATS says which major versions the image cannot read)."""
    try:
        path = pins or pins_file()
    except NmuError as exc:
        return str(exc)
    unreadable = []
    for name, (have, want) in version_mismatches(path, tuple(PICKLE_FORMATS)).items():
        if have == "not installed":
            continue
        have_major, want_major = int(have.split(".")[0]), int(want.split(".")[0])
        if have_major > want_major or (PICKLE_FORMATS[name] == "any" and have_major != want_major):
            unreadable.append((name, have, want))
    if not unreadable:
        return None
    names = ", ".join(f"{n} {have} (runtime: {want})" for n, have, want in unreadable)
    wanted = " ".join(f"'{n}=={want}'" for n, _, want in unreadable)
    return (f"Numerai's Python {python_tag()[2:]} runtime cannot read a pickle written with {names}; install its "
            f"versions first: pip install {wanted} (or build with all of the runtime's versions: "
            f"pip install -e . -c {_display(path)})")


def note_version_mismatch(pins: Path | None = None) -> str | None:
    """Log `version_mismatch_note` as one `warning:` line (logger validation.runtime.replica), once per process;
    returns the note."""
    note = version_mismatch_note(pins)
    if note and note not in _NOTED:
        _NOTED.add(note)
        _log.warning("warning: %s", note)
    return note


def _display(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# ------------------------------------------------------------------------------------ the replica's venv

def runtime_root() -> Path:
    """Where replica venvs live: $NMU_RUNTIME_DIR, else the user cache dir of numerai-uploads."""
    env = os.environ.get("NMU_RUNTIME_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("numerai-uploads")) / "runtime"


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _stamp_for(pins: Path) -> dict[str, str]:
    return {"pins_sha256": file_sha256(pins), "python": platform.python_version(),
            "base_executable": _base_python()}


def _base_python() -> str:
    """The interpreter the replica is made from, symlinks resolved: on Python 3.10, `sys._base_executable` inside a
    venv is that venv's own python, so a replica made from it pointed into the user's (or a test's) venv and broke
    when that venv was removed (seen: 3.10's replica rebuilt for the second pythons-lane case)."""
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def _stamp_ok(venv: Path, want: dict[str, str]) -> bool:
    try:
        have = json.loads((venv / STAMP).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return have == want and _venv_python(venv).exists()


def _clean_env() -> dict[str, str]:
    """The user's environment (pip's index settings and cache) without Python path settings or an active venv."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}


def ensure_runtime(pins: Path | None = None, root: Path | None = None,
                   log: Callable[[str], None] | None = None) -> Path:
    """The replica's Python: builds the venv (atomically: temp dir, then rename) unless a current one exists; says so
    through `log` (default: the logger validation.runtime.replica). To run pickles there, hold it with `runtime`."""
    log = log or _log.info
    pins = pins or pins_file()
    root = root or runtime_root()
    venv = root / python_tag()
    want = _stamp_for(pins)
    if _stamp_ok(venv, want):
        return _venv_python(venv)
    root.mkdir(parents=True, exist_ok=True)
    with _replica_lock(venv, fcntl.LOCK_EX, "to finish with the runtime replica (building it, or running a pickle "
                       "there)", log):
        if _stamp_ok(venv, want):  # another nmu check built it while this one waited
            return _venv_python(venv)
        return _build(venv, pins, want, log)


@contextlib.contextmanager
def runtime(pins: Path | None = None, root: Path | None = None,
            log: Callable[[str], None] | None = None) -> Iterator[Path]:
    """`ensure_runtime`'s Python, held while the caller runs pickles in it: the checks of one replica share it, and a
    rebuild (for changed pins) waits until they are done instead of moving the venv away under a running pickle."""
    log = log or _log.info
    pins = pins or pins_file()
    root = root or runtime_root()
    venv = root / python_tag()
    while True:
        python = ensure_runtime(pins, root, log)
        with _replica_lock(venv, fcntl.LOCK_SH, "to finish building the runtime replica", log):
            if _stamp_ok(venv, _stamp_for(pins)):
                yield python
                return
        # rebuilt for other pins between the two steps: build ours again, then hold it


@contextlib.contextmanager
def _replica_lock(venv: Path, mode: int, waiting_for: str, log: Callable[[str], None]) -> Iterator[None]:
    """The replica's lock file (beside it): held exclusively to build it, shared to run pickles in it. One build at a
    time: a second `nmu check` of the same Python (two CI lanes, two terminals) waits for the first's build and uses it;
    building twice cost a minute, and the later rename moved the first one's venv away while its pickle could run."""
    path = venv.parent / f".{venv.name}.lock"
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another nmu check {waiting_for} ({venv})...")
            fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(venv: Path, pins: Path, want: dict[str, str], log: Callable[[str], None]) -> Path:
    """Build the replica into `venv` (a temporary directory beside it, renamed into place)."""
    root = venv.parent
    log(f"building the runtime replica for Python {python_tag()[2:]} in {venv} (once; about a minute)...")
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{python_tag()}-", dir=root))
    try:
        _run_build([_base_python(), "-m", "venv", str(tmp)], tmp, "create the virtual environment")
        # Exactly the pinned packages, --no-deps: the pins are the runtime lock's closure of what a pickle may touch.
        # Resolving dependencies instead would pull in torch for 3.10 (numerai-tools 0.3.3 declares it; the image has
        # it, no pickle built here imports it), a CUDA build of several GB.
        pinned = read_pins(pins)
        wanted = [f"{name}=={version}" for name, version in pinned.items() if name not in NOT_IN_REPLICA]
        if wanted:
            _run_build([str(_venv_python(tmp)), "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
                        "-q", "--no-deps", *wanted], tmp, f"install the runtime's packages from {pins.name}")
        # A pin whose own dependency is missing from the file fails here, at the build, not in the first check.
        modules = [module for name, module in REPLICA_IMPORTS.items() if name in pinned]
        if modules:
            _run_build([str(_venv_python(tmp)), "-c", f"import {', '.join(modules)}"], tmp,
                       f"import {', '.join(modules)} from the packages of {pins.name}")
        (tmp / STAMP).write_text(json.dumps(want, indent=2))
        old = None
        if venv.exists():
            old = root / f".old-{venv.name}-{os.getpid()}-{time.time_ns()}"
            os.replace(venv, old)
        try:
            os.replace(tmp, venv)
        except OSError:
            if not _stamp_ok(venv, want):  # nobody else built a good one meanwhile
                raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log(f"runtime replica ready in {time.perf_counter() - start:.0f} s")
    return _venv_python(venv)


def _run_build(cmd: list[str], home: Path, what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_clean_env(), cwd=str(home))
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise NmuError(f"could not build the runtime replica: {what} failed ({tail}); the first build needs the "
                       "package index (PyPI) to be reachable.")


# ------------------------------------------------------------------------------------ running the pickle

def _runner_source() -> Path:
    return Path(__file__).with_name("runner.py")


def _tree_memory(proc: Any) -> float:
    """Resident bytes of a psutil process and its children: the larger of the current total and the sum of the
    high-water marks (VmHWM, read by the runner's own `status_bytes`) so a spike between two polls is not missed."""
    import psutil

    procs = [proc]
    try:
        procs += proc.children(recursive=True)
    except psutil.Error:
        pass
    rss = hwm = 0
    for p in procs:
        try:
            rss += p.memory_info().rss
            hwm += status_bytes("VmHWM", p.pid)
        except psutil.Error:
            continue
    return max(rss, hwm)


def _one_cpu() -> Callable[[], None] | None:
    if not hasattr(os, "sched_setaffinity"):
        return None
    core = min(os.sched_getaffinity(0))
    return lambda: os.sched_setaffinity(0, {core})


def run_pickle(python: Path, pickle_path: Path, live: Path, benchmarks: Path | None, *,
               memory_limit_mb: float = MEMORY_LIMIT_MB, time_limit_s: float = TIME_LIMIT_S,
               all_eras_at_once: bool = False, predictions: Path | None = None) -> dict[str, Any]:
    """Run `pickle_path` on `live` with the replica's `python` under the runtime's limits; the runner's JSON
    result plus peak_rss_mb and wall_seconds (status "fail" with the reason on any failure)."""
    import psutil

    limit = memory_limit_mb * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="nmu-runtime-") as work:
        work_dir = Path(work)
        runner = work_dir / "runner.py"
        shutil.copyfile(_runner_source(), runner)
        result_path = work_dir / "result.json"
        cmd = [str(python), "-I", str(runner), "--pickle", str(Path(pickle_path).resolve()),
               "--live", str(Path(live).resolve()), "--result", str(result_path)]
        if benchmarks is not None:
            cmd += ["--benchmarks", str(Path(benchmarks).resolve())]
        if all_eras_at_once:
            cmd.append("--all-eras-at-once")
        if predictions is not None:
            cmd += ["--predictions", str(Path(predictions).resolve())]
        env = {"PATH": f"{Path(python).parent}{os.pathsep}/usr/bin{os.pathsep}/bin", "HOME": work,
               "TMPDIR": work, "LANG": "C.UTF-8", **{v: "1" for v in THREAD_VARS}}
        log_path = work_dir / "runner.log"
        killed = ""
        peak = 0.0
        start = time.perf_counter()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    preexec_fn=_one_cpu(), start_new_session=True)
            ps = psutil.Process(proc.pid)
            execd = False  # before exec the child is a copy of this process: its memory is not the runner's
            while True:
                pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    break
                try:
                    execd = execd or ps.cmdline()[1:3] == cmd[1:3]
                    if execd:
                        peak = max(peak, _tree_memory(ps))
                except psutil.Error:
                    pass
                if peak > limit and not killed:
                    killed = "exceeded memory limit"
                elif time.perf_counter() - start > time_limit_s and not killed:
                    killed = "exceeded time limit"
                if killed:
                    _kill_tree(proc.pid)
                time.sleep(POLL_S)
        wall = time.perf_counter() - start
        try:
            result = json.loads(result_path.read_text())
        except (OSError, json.JSONDecodeError):
            result = {"status": "fail", "reason": ""}
        log_tail = log_path.read_text(errors="replace").strip().splitlines()[-20:]
    if killed:
        limit_text = f"{memory_limit_mb:.0f} MB" if killed.startswith("exceeded memory") else f"{time_limit_s:g} s"
        result.update(status="fail", reason=f"{killed} ({limit_text})")
    elif result.get("status") != "pass" and not result.get("reason"):
        last = log_tail[-1] if log_tail else "no output"
        result.update(status="fail", reason=f"the runner died (exit code {proc.returncode}): {last}")
    peak = max(peak, float(result.get("peak_rss_bytes") or 0))  # the runner's own last word on its peak
    result["peak_rss_mb"] = round(peak / 2**20, 1)
    result["wall_seconds"] = round(wall, 3)
    result["log_tail"] = log_tail
    return result


def _kill_tree(pid: int) -> None:
    """Kill the runner and everything it started (it leads its own session)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# --------------------------------------------------------------------------------- validation slice

def _rows_of_eras(path: Path, labels: list[str]) -> Any:
    """The rows of a parquet file whose era is one of `labels`, read with the filter pushed down to the file. The era
    column may be text or numbers ("0481", 481, 481.0): the filter takes the file's own values of those eras (a text
    filter on a numeric column is an error in pyarrow), matched by label or by era number."""
    import pandas as pd

    column = pd.read_parquet(path, columns=["era"])["era"]
    numbers = {era_number(label) for label in labels} - {float("inf")}
    values = [v for v in column.dropna().unique() if str(v) in labels or era_number(str(v)) in numbers]
    if not values:  # none of those eras in the file (an `in` filter on no value is a type error in pyarrow)
        return pd.read_parquet(path).iloc[:0]
    return pd.read_parquet(path, filters=[("era", "in", values)])


def write_validation_slice(data_dir: Path, eras: int, out_dir: Path) -> tuple[Path, Path, int, int]:
    """The newest `eras` eras of validation (all columns) and their benchmark rows as parquet in `out_dir`."""
    import pandas as pd

    features_path = data_dir / "validation.parquet"
    bench_path = data_dir / "validation_benchmark_models.parquet"
    all_eras = pd.read_parquet(features_path, columns=["era"])["era"].astype(str)
    chosen = sort_eras(all_eras.unique())[-eras:]
    frame = _rows_of_eras(features_path, chosen)
    bench = _rows_of_eras(bench_path, chosen)
    live_out, bench_out = out_dir / "validation_slice.parquet", out_dir / "validation_slice_benchmarks.parquet"
    frame.to_parquet(live_out)
    bench.to_parquet(bench_out)
    return live_out, bench_out, len(chosen), len(frame)
