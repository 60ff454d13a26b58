"""Benchmark: building LightGBM's Dataset from int8 features through `model.estimator._Rows` (a lightgbm.Sequence
serving float32 batches) versus from a float64 copy of the whole matrix: time and peak extra memory.

Run: python tests/benchmarks/bench_lgbm_dataset.py [rows] [features]
"""

from __future__ import annotations

import sys
import time
import tracemalloc

import lightgbm as lgb
import numpy as np

from model.estimator import _Rows


def _build(data, label: np.ndarray) -> float:
    start = time.perf_counter()
    ds = lgb.Dataset(data, label=label, params={"max_bin": 15, "verbosity": -1}, free_raw_data=True)
    ds.construct()
    return time.perf_counter() - start


def main(rows: int = 500_000, features: int = 300) -> None:
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 5, size=(rows, features), dtype=np.int8)
    engineered = rng.normal(size=(rows, 16)).astype(np.float32)
    label = rng.random(rows).astype(np.float32)
    print(f"{rows} rows x {features} int8 features + 16 float32 engineered columns "
          f"({raw.nbytes / 1e6:.0f} MB int8; a float64 copy would be {rows * (features + 16) * 8 / 1e6:.0f} MB)")

    tracemalloc.start()
    seconds = _build([_Rows(raw, engineered, None)], label)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"Sequence (float32 batches): {seconds:6.1f} s, peak extra numpy memory {peak / 1e6:7.0f} MB")

    tracemalloc.start()
    dense = np.hstack([raw.astype(np.float64), engineered.astype(np.float64)])
    seconds = _build(dense, label)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"float64 matrix:             {seconds:6.1f} s, peak extra numpy memory {peak / 1e6:7.0f} MB")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
