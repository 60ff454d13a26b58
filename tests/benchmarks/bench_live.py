"""Benchmark of the live path in the runtime replica: a Numerai-sized live era and a multi-era diagnostics call.

Run it by hand (pytest does not collect tests/benchmarks/):

    python tests/benchmarks/bench_live.py [--eras 20 --rows 6600 --features 2748 --trees 300] [--no-assert]

It writes a validation-like frame (int8 features 0..4 with 1 % NaN in a tenth of the columns, so those are
float32 as in Numerai's files) and its benchmark-model frame, fits the real `model.NumeraiModel` baseline on a
sample of it, exports model.pkl by value, and runs the pickle in the replica of Numerai's runtime (1 CPU, 4 GB
watched, 10 minutes): once on one era as the daily live run, once on all eras in one call as Numerai's
diagnostics may. Prints load/predict seconds and peak resident memory of each, the frame's in-memory size and
what a float64 copy of it would take, and (unless --no-assert) fails when either run fails or the multi-era
run peaks above 4 GB.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from model import NumeraiModel  # noqa: E402
from training.export import export_pickle  # noqa: E402
from validation.runtime import ensure_runtime, run_pickle  # noqa: E402


def make_frames(eras: int, rows: int, features: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A validation-like frame (index id, era, data_type, features, target) and its benchmark frame."""
    rng = np.random.default_rng(seed)
    n = eras * rows
    names = [f"feature_{i:04d}" for i in range(features)]
    block = rng.integers(0, 5, size=(n, features), dtype=np.int8)
    ids = pd.Index([f"n{x:015x}" for x in rng.choice(16 ** 12, size=n, replace=False)], name="id")
    frame = pd.DataFrame(block, columns=names, index=ids)
    for c in names[: max(1, features // 10)]:
        col = frame[c].astype(np.float32)
        col[rng.random(n) < 0.01] = np.nan
        frame[c] = col
    era = np.repeat([f"{1000 + e:04d}" for e in range(eras)], rows)
    frame.insert(0, "era", era)
    frame.insert(1, "data_type", "validation")
    signal = block[:, 0].astype(np.float32) - block[:, 1] + rng.normal(0, 3, n).astype(np.float32)
    frame["target"] = (pd.Series(signal).groupby(era).rank(pct=True).to_numpy() * 4).round().astype(np.float32) / 4
    bench = pd.DataFrame(index=ids)
    bench["era"] = era
    for col in ("v52_lgbm_ender20", "v52_lgbm_ender60"):
        bench[col] = pd.Series(rng.random(n)).groupby(era).rank(pct=True).to_numpy().astype(np.float32)
    return frame, bench


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eras", type=int, default=20)
    parser.add_argument("--rows", type=int, default=6600)
    parser.add_argument("--features", type=int, default=2748)
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--no-assert", action="store_true")
    args = parser.parse_args()

    python = ensure_runtime()
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        frame, bench = make_frames(args.eras, args.rows, args.features)
        features = [c for c in frame.columns if c.startswith("feature_")]
        frame.to_parquet(work / "validation.parquet")
        bench.to_parquet(work / "validation_benchmark_models.parquet")
        first = frame["era"] == frame["era"].iloc[0]
        frame[first].drop(columns="target").to_parquet(work / "live.parquet")
        bench[first].to_parquet(work / "live_benchmark_models.parquet")
        numeric = sum(frame[c].nbytes for c in features)
        float64_copy = len(frame) * len(features) * 8
        print(f"data: {args.eras} eras x {args.rows} rows x {args.features} features, features {numeric / 2**20:.0f} MB "
              f"in memory (a float64 copy: {float64_copy / 2**20:.0f} MB); made in {time.perf_counter() - start:.0f} s")

        sample = frame.sample(n=min(len(frame), 20_000), random_state=0)
        del frame
        start = time.perf_counter()
        model = NumeraiModel(lgbm_params={"n_estimators": args.trees}).variant("baseline")
        model.fit(sample[["era", *features]], sample["target"])
        info = export_pickle(model, work / "model.pkl")
        print(f"model: baseline, {args.trees} trees, fitted and exported in {time.perf_counter() - start:.0f} s, "
              f"pickle {info['size_bytes'] / 2**20:.1f} MB")

        live = run_pickle(python, work / "model.pkl", work / "live.parquet", work / "live_benchmark_models.parquet")
        multi = run_pickle(python, work / "model.pkl", work / "validation.parquet",
                           work / "validation_benchmark_models.parquet", all_eras_at_once=True)
    for name, r in (("live (1 era)", live), (f"diagnostics ({args.eras} eras in one call)", multi)):
        print(f"{name}: {r['status'].upper()} {r.get('reason') or ''}| rows {r.get('rows')} | load {r.get('load_seconds')} s | "
              f"predict {r.get('predict_seconds')} s | peak {r['peak_rss_mb']:.0f} MB | wall {r['wall_seconds']:.1f} s")
    if args.no_assert:
        return 0
    ok = live["status"] == "pass" and multi["status"] == "pass" and multi["peak_rss_mb"] < 4096
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
