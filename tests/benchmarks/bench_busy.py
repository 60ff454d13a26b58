"""Benchmark 6: `nmu train` on a busy machine.

    python tests/benchmarks/bench_busy.py [--data DIR] [--no-assert]

Times `nmu train --no-refit` on the default synthetic world (made in DIR if absent) in three situations, each with
the default compute settings (a fit takes the cores free when it starts; nmu fits on one machine take turns:
training.compute) and with the reference settings of before (every core, fits overlap: `[compute] threads = <all>`,
`one_fit_at_a_time = false`), measured in the same run:

1. alone on an idle machine, the median of --repeat runs each (bound: the default within 5 % of the reference);
2. two runs started at once, against the same two one after the other;
3. beside a CPU-bound process (one core kept busy).

Run it on an otherwise idle machine; it takes about half an hour on 2 cores. Prints one table; exits 1 when a bound
fails (unless --no-assert).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from model.params import available_cpus

IDLE_BOUND = 1.05


def _config(path: Path, reference: bool) -> Path:
    compute = (f"[compute]\nthreads = {available_cpus()}\none_fit_at_a_time = false\n" if reference
               else "[compute]\nthreads = \"auto\"\none_fit_at_a_time = true\n")
    path.write_text(compute)
    return path


def _start(data: Path, out: Path, config: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "training.cli", "train", "--data", str(data), "--out", str(out),
                             "--config", str(config), "--no-refit"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _wait(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"nmu train failed:\n{err[-2000:]}")


def timed(data: Path, work: Path, config: Path, runs: int, tag: str) -> float:
    """Wall seconds of `runs` nmu train started at once."""
    start = time.perf_counter()
    _wait([_start(data, work / f"{tag}-{i}", config) for i in range(runs)])
    return time.perf_counter() - start


def timed_alone(data: Path, work: Path, configs: dict[str, Path], repeat: int) -> dict[str, float]:
    """The median wall seconds of one nmu train alone per config, the configs alternating `repeat` times (so a slow
    spell of the machine hits both)."""
    times: dict[str, list[float]] = {name: [] for name in configs}
    for i in range(repeat):
        for name, cfg in configs.items():
            times[name].append(timed(data, work, cfg, 1, f"alone-{name}-{i}"))
    for name, values in times.items():
        print(f"  alone, {name}: {', '.join(f'{v:.0f}' for v in values)} s", flush=True)
    return {name: float(np.median(values)) for name, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/synthetic"))
    parser.add_argument("--no-assert", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="runs of situation 1 per config (the median is used)")
    parser.add_argument("--situations", default="1,2,3", help="which situations to time (1: alone, 2: two at once, "
                                                                 "3: beside a CPU-bound process)")
    args = parser.parse_args()
    wanted = set(args.situations.split(","))
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if not (args.data / "live.parquet").exists():
        subprocess.run([sys.executable, "-m", "training.cli", "data", "synthetic", "--out", str(args.data)],
                       cwd=ROOT, check=True)
    data = args.data.resolve()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-busy-") as tmp:
        work = Path(tmp)
        configs = {"default": _config(work / "default.toml", False), "reference": _config(work / "reference.toml", True)}
        alone = timed_alone(data, work, configs, args.repeat)
        rows.append(("1. alone, idle machine", alone["default"], alone["reference"]))
        if "2" in wanted:
            both = {name: timed(data, work, cfg, 2, f"two-{name}") for name, cfg in configs.items()}
            rows.append(("2. two runs at once (one after the other: reference alone x 2 = "
                         f"{2 * alone['reference']:.0f} s)", both["default"], both["reference"]))
        if "3" in wanted:
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                busy = {name: timed(data, work, cfg, 1, f"busy-{name}") for name, cfg in configs.items()}
            finally:
                hog.kill()
            rows.append(("3. beside a CPU-bound process", busy["default"], busy["reference"]))
    print(f"nmu train --no-refit on {data} ({available_cpus()} CPUs): wall seconds")
    print(f"{'situation':<72} {'default':>8} {'reference':>10} {'ratio':>6}")
    for name, default, reference in rows:
        print(f"{name:<72} {default:8.0f} {reference:10.0f} {default / reference:6.2f}")
    ratio = alone["default"] / alone["reference"]
    print(f"idle: default / reference = {ratio:.3f} (bound {IDLE_BOUND})")
    return 0 if args.no_assert or ratio <= IDLE_BOUND else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
