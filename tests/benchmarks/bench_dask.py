"""Benchmark 9: many fits on a Dask cluster.

    python tests/benchmarks/bench_dask.py [--data DIR] [--workers 2] [--no-assert]

Times `nmu train --ablation --cv 3 --no-refit` (baseline, full, four ablations, and 3 folds x 2 variants: 12
independent fits) on a mid-size synthetic world in-process (each fit with every free core, one after another) and
on a local Dask cluster of `--workers` worker processes (each fit with its worker's share of the cores, side by
side), and prints the wall-time ratio and each worker's peak memory. Both runs must write the same metrics.json
(the bound); the ratio is reported, not bounded: on one machine the in-process fits already use every core, so a
cluster gains only what LightGBM's threads do not (its real use is several machines). A third run, in process with
one thread per fit (`[compute] threads = 1`), is the reference for fits that use one core each: against it the
cluster's ratio shows how close the executor comes to running independent fits side by side (0.5 on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from distributed import Client, LocalCluster

from model.params import available_cpus
from validation.runtime.runner import status_bytes

CONFIG = "[lightgbm]\nn_estimators = 300\n"


def _train(data: Path, out: Path, config: Path, scheduler: str | None) -> float:
    cmd = [sys.executable, "-m", "training.cli", "train", "--data", str(data), "--out", str(out), "--config",
           str(config), "--ablation", "--cv", "3", "--no-refit"]
    if scheduler:
        cmd += ["--scheduler", scheduler]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/dask-bench"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-assert", action="store_true")
    args = parser.parse_args()
    if not (args.data / "live.parquet").exists():
        subprocess.run([sys.executable, "-m", "training.cli", "data", "synthetic", "--out", str(args.data),
                        "--eras", "300", "--stocks", "1500", "--features", "80"], cwd=ROOT, check=True)
    data = args.data.resolve()
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp:
        work = Path(tmp)
        config = work / "config.toml"
        config.write_text(CONFIG)
        here = _train(data, work / "here", config, None)
        one_thread = work / "one-thread.toml"
        one_thread.write_text(CONFIG + "\n[compute]\nthreads = 1\n")
        here_one = _train(data, work / "here-one", one_thread, None)
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=max(1, available_cpus() // args.workers),
                               processes=True, dashboard_address=None)
        client = Client(cluster)
        try:
            there = _train(data, work / "there", config, cluster.scheduler_address)
            peaks = client.run(lambda: status_bytes("VmHWM"))
        finally:
            client.close()
            cluster.close()
        same = json.loads((work / "here" / "metrics.json").read_text()) == json.loads(
            (work / "there" / "metrics.json").read_text())
    print(f"nmu train --ablation --cv 3 --no-refit on {data} (12 fits, {available_cpus()} CPUs)")
    print(f"  in-process: {here:.0f} s; Dask, {args.workers} local workers: {there:.0f} s; ratio {there / here:.2f}")
    print(f"  in-process, one thread per fit: {here_one:.0f} s; the cluster against it: ratio {there / here_one:.2f}")
    for address, peak in sorted(peaks.items()):
        print(f"  worker {address}: peak memory {peak / 2**30:.2f} GB")
    print(f"  metrics.json identical: {same}")
    return 0 if same or args.no_assert else 1


if __name__ == "__main__":
    sys.exit(main())
