"""Benchmark 3 of issue 6: `model.residualize.residualize` against numerai-tools `neutralize`.

Run: `python tests/benchmarks/bench_residualize.py` (defaults: 6,000 rows x 780 int8 0..4 exposures per era,
1 column of values; 1 era, then 100 eras in one call). Reference: `neutralize` era by era, measured in the same
run twice, with one BLAS thread and with the library's default threads; the faster is the reference. Ours:
`residualize(..., n_jobs=--jobs)` (default -1: one worker per available CPU) with one BLAS thread per worker; on
one era the workers split the era's rows (its Gram matrix), on many eras they take whole eras.
Prints wall and CPU seconds of both, the wall-time ratios (asserted: >= 5x on one era, >= 10x on 100 eras), the
CPU-time ratio (the per-core gain) and the max deviation in units of the values' standard deviation
(asserted <= 1e-5). Run it on an otherwise idle machine: multi-threaded OpenBLAS stalls when cores are busy.
Options: --eras N --rows N --features N --repeats N --jobs N --no-assert.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from contextlib import nullcontext

import numpy as np
import pandas as pd
from numerai_tools.scoring import neutralize
from threadpoolctl import threadpool_info, threadpool_limits

from model.residualize import residualize


def make_data(eras: int, rows: int, features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """int8 0..4 exposures (Numerai's features), string eras, values partly explained by the exposures."""
    rng = np.random.default_rng(seed)
    n = eras * rows
    exposures = rng.integers(0, 5, size=(n, features), dtype=np.int8)
    weights = rng.standard_normal(20) * 0.1
    values = exposures[:, :20].astype(np.float64) @ weights + rng.standard_normal(n)
    era = np.repeat(np.array([f"{i + 1:04d}" for i in range(eras)]), rows)
    return exposures, values, era


def reference(values: np.ndarray, exposures: np.ndarray, era_starts: list[int], rows: int) -> np.ndarray:
    """numerai-tools `neutralize`, era by era (each era handed over as DataFrames, as its users call it)."""
    out = np.empty_like(values)
    for start in era_starts:
        part = slice(start, start + rows)
        neutral = neutralize(pd.DataFrame({"prediction": values[part]}), pd.DataFrame(exposures[part]), proportion=1.0)
        out[part] = neutral["prediction"].to_numpy()
    return out


def timed(fn):
    """(result, wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def median_run(fn, repeats: int, threads: int | None):
    """(result, median wall, median CPU) of `repeats` calls with `threads` BLAS threads (None: library default)."""
    limit = threadpool_limits(limits=threads, user_api="blas") if threads else nullcontext()
    walls, cpus = [], []
    with limit:
        for _ in range(repeats):
            result, wall, cpu = timed(fn)
            walls.append(wall)
            cpus.append(cpu)
    return result, statistics.median(walls), statistics.median(cpus)


def compare(label: str, values, exposures, era, era_starts, rows, repeats: int, ref_repeats: int, jobs: int):
    """Time the reference at 1 and at default BLAS threads and ours; print figures; return (wall ratio, deviation)."""
    ref = {}
    for threads in (1, None):
        expected, wall, cpu = median_run(lambda: reference(values, exposures, era_starts, rows), ref_repeats, threads)
        ref[threads] = (wall, cpu)
    got, ow, oc = median_run(lambda: residualize(values, exposures, era, n_jobs=jobs), repeats, 1)
    threads = min(ref, key=lambda t: ref[t][0])
    rw, rc = ref[threads]
    deviation = float(np.abs(got - expected).max() / values.std())
    print(
        f"{label:<22} neutralize {ref[1][0]:7.3f} s at 1 BLAS thread, {ref[None][0]:7.3f} s at default threads "
        f"-> reference {rw:7.3f} s (cpu {rc:7.3f})   residualize {ow:6.3f} s (cpu {oc:6.3f})   "
        f"ratio {rw / ow:5.1f}x wall, {rc / oc:4.1f}x cpu   max |diff|/std {deviation:.1e}",
        flush=True,
    )
    return rw / ow, deviation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eras", type=int, default=100)
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--features", type=int, default=780)
    parser.add_argument("--repeats", type=int, default=5, help="runs of each side on one era (median reported)")
    parser.add_argument("--jobs", type=int, default=-1, help="residualize's n_jobs (-1: every available CPU)")
    parser.add_argument("--no-assert", action="store_true")
    args = parser.parse_args(argv)

    blas = sorted({(i["internal_api"], i.get("architecture"), i["num_threads"]) for i in threadpool_info()
                   if i["user_api"] == "blas"})
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}, "
        f"numpy {np.__version__}, BLAS {blas}, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    exposures, values, era = make_data(args.eras, args.rows, args.features)
    print(f"data: {args.eras} eras x {args.rows} rows x {args.features} int8 exposures, 1 column of values; "
          f"residualize n_jobs={args.jobs}", flush=True)
    one = slice(0, args.rows)
    ratio_one, dev_one = compare("1 era", values[one], exposures[one], era[one], [0], args.rows,
                                 args.repeats, args.repeats, args.jobs)
    starts = list(range(0, len(values), args.rows))
    ratio_all, dev_all = compare(f"{args.eras} eras in one call", values, exposures, era, starts, args.rows,
                                 2, 1, args.jobs)
    if args.no_assert:
        return 0
    failures = []
    if ratio_one < 5:
        failures.append(f"1 era: {ratio_one:.1f}x < 5x")
    if ratio_all < 10:
        failures.append(f"{args.eras} eras: {ratio_all:.1f}x < 10x")
    if max(dev_one, dev_all) > 1e-5:
        failures.append(f"deviation {max(dev_one, dev_all):.1e} > 1e-5 of the values' std")
    if failures:
        print("FAILED: " + "; ".join(failures))
        return 1
    print("OK: bounds met (>= 5x on 1 era, >= 10x on many eras, wall time; deviation <= 1e-5 std)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
