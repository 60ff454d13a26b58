"""How many cores a LightGBM fit of this machine may use, and one multi-threaded fit at a time.

LightGBM's OpenMP threads spin while they wait for each other: a 2-thread fit beside one busy core took 19.3 s for
200 rounds instead of 4.7 s (tests/benchmarks/bench_busy.py), and two 2-thread fits on 2 cores slow each other far
more than running one after the other. Making the threads sleep instead (OMP_WAIT_POLICY=PASSIVE) rescues the busy
case (11.8 s) but costs the idle one 33 % (6.3 s), so `nmu` does neither. Instead:

- `fit_slot()` lets one `nmu` fit at a time run on the machine (an exclusive lock file in the user cache
  directory); a second `nmu train` waits for the slot, saying so, instead of fighting over the cores;
- inside the slot, the fit takes the cores that are free right now (`free_cores`): all of them on an idle machine,
  one fewer per core that another program keeps busy.

`[compute] threads = N` in the config fixes the thread count instead; `one_fit_at_a_time = false` lets fits overlap.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import platformdirs
import psutil

from model.params import available_cpus

LOCK_NAME = "lightgbm-fit.lock"
BUSY_MARGIN = 0.25
SAMPLE_SECONDS = 0.5
"""How long the CPU use of the other programs is sampled before a fit."""


def lock_path() -> Path:
    """The machine-wide lock of `nmu` fits: $NMU_RUNTIME_DIR's parent or the user cache directory."""
    base = Path(os.environ["NMU_RUNTIME_DIR"]).parent if os.environ.get("NMU_RUNTIME_DIR") else \
        Path(platformdirs.user_cache_dir("numerai-uploads"))
    base.mkdir(parents=True, exist_ok=True)
    return base / LOCK_NAME


def free_cores(sample_seconds: float = SAMPLE_SECONDS) -> int:
    """The cores of this process's CPU set that other programs leave idle now (at least 1), from the CPU use
    sampled over `sample_seconds` while this process waits (so its own work does not count)."""
    cpus = available_cpus()
    busy_percent = psutil.cpu_percent(interval=sample_seconds, percpu=True)
    mine = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(len(busy_percent)))
    busy = sum(busy_percent[c] for c in mine if c < len(busy_percent)) / 100.0
    # a core counts as taken only when another program keeps it at least 3/4 busy: a short burst (an editor, a
    # shell) must not halve an idle machine's fit (measured: 1.18 x slower when it did)
    return max(1, min(cpus, cpus - int(np.floor(busy + BUSY_MARGIN))))


@contextlib.contextmanager
def fit_slot(threads: int | str = "auto", say: Callable[[str], None] | None = None,
             exclusive: bool = True) -> Iterator[int]:
    """Hold the machine's fit slot for the duration of one LightGBM fit (unless not `exclusive`); yields the number
    of threads to use."""
    if not exclusive:
        yield free_cores() if threads == "auto" else int(threads)
        return
    path = lock_path()
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if say is not None:
                say("  waiting for another nmu fit on this machine to finish (LightGBM's threads would fight over "
                    "the cores)")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield free_cores() if threads == "auto" else int(threads)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
