"""Benchmark 5 (issue 6): training at the medium scale, `full` against `baseline`: wall time and peak memory of each
fit, the ratio full / baseline (bound 1.5) and where full's extra time goes.

Run it by hand (pytest does not collect tests/benchmarks/), under the shared CPU lock:

    flock /tmp/nmu-cpu.lock python tests/benchmarks/bench_training.py [--data DIR] [--eras 150 --stocks 5000
        --features 780] [--trees N] [--refresh weekly] [--no-assert]

It makes the synthetic world once into DIR (reused when DIR/train.parquet exists), then fits `baseline` and `full`
(`training.pipeline.build_model` + `make_variant`: the pipeline's classes, LightGBM parameters and tree budget) on
the same frame, every era with a resolved target (train + validation, as the shipped refit), each in a fresh
process: wall and CPU seconds of `fit`, peak RSS above the loaded frame (VmHWM), and full's stages
(`NumeraiModel.fit_seconds_`, LightGBM split into Dataset construction and boosting). Fails unless full's wall
time is at most 1.5 x the baseline's. `--pipeline` instead times `nmu train` end to end and the scoring step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, for tests.peak_memory
from tests.peak_memory import DATASET_TIMER, PRELUDE  # noqa: E402

BOUND = 1.5  # full's fit wall time / baseline's
STAGES = ("input", "factors", "clusters", "interactions", "timing", "residualizer", "linear", "engineered", "structural",
          "dataset", "booster")

CHILD = PRELUDE + r"""
import lightgbm as lgb
from training.config import TrainConfig
from training.data import feature_groups, load_benchmark, load_feature_metadata, load_frame, resolve_feature_set
from training.experiment import benchmark_for, build_model, make_variant

data, variant, feature_set, trees, refresh = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
metadata = load_feature_metadata(data)
features = resolve_feature_set(metadata, feature_set)
frames = [load_frame(f"{data}/{name}.parquet", features, targets=("target",)) for name in ("train", "validation")]
frame = pd.concat([f.loc[f["target"].notna().to_numpy()] for f in frames])
del frames
benchmarks = [load_benchmark(f"{data}/{name}_benchmark_models.parquet") for name in ("train", "validation")]
bench = benchmark_for(frame, *benchmarks)
del benchmarks
X, y = frame[["era", *features]], frame["target"].to_numpy(dtype=np.float32)
del frame
config = TrainConfig(refresh=refresh)
if trees:
    config.lightgbm["num_iterations"] = trees
model = make_variant(build_model(config, feature_groups(metadata, features)), variant, config)

""" + DATASET_TIMER + r"""

baseline = _reset_peak()
start, cpu = time.perf_counter(), time.process_time()
model.fit(X, y, benchmark=bench)
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
peak = _status("VmHWM") - baseline
stages = dict(model.fit_seconds_)
stages["dataset"] = dataset_seconds[0]
stages["booster"] = stages.pop("lightgbm") - dataset_seconds[0]
print(json.dumps({"variant": variant, "rows": len(X), "eras": int(X["era"].nunique()), "features": len(features),
                  "engineered": list(model.engineered_names_), "trees": model.booster_.num_trees(),
                  "seconds": seconds, "cpu": cpu, "peak": peak, "input_rss": baseline, "stages": stages}))
"""


def ensure_world(data: Path, eras: int, stocks: int, features: int) -> None:
    """Write the synthetic world into `data` unless its train.parquet is already there (the cache)."""
    from training.synthetic import SyntheticConfig, write_synthetic_world

    if (data / "train.parquet").is_file():
        print(f"world: reusing {data}")
        return
    start = time.perf_counter()
    write_synthetic_world(data, SyntheticConfig.default(eras=eras, stocks=stocks, features=features))
    print(f"world: made {data} ({eras} eras x {stocks} stocks x {features} features) in {time.perf_counter() - start:.0f} s")


def fit_in_child(data: Path, variant: str, feature_set: str, trees: int, refresh: str = "never") -> dict:
    """Fit one variant in a fresh process (built for the config's `refresh`); its timings, peak RSS and stages."""
    done = subprocess.run([sys.executable, "-c", CHILD, str(data), variant, feature_set, str(trees), refresh],
                          capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"fitting {variant} failed with exit code {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(results: dict[str, dict]) -> float:
    """Print both fits, the ratio and full's stages beside the baseline's; return the wall-time ratio."""
    base, full = results["baseline"], results["full"]
    print(f"frame: {base['rows']:,} rows x {base['features']} features over {base['eras']} eras; "
          f"{base['trees']} trees each; input RSS {base['input_rss'] / 1e9:.2f} GB")
    print(f"{'variant':9s} {'wall s':>8s} {'cpu s':>8s} {'peak RSS over input':>20s} {'columns':>8s}")
    for name, r in results.items():
        print(f"{name:9s} {r['seconds']:8.1f} {r['cpu']:8.1f} {r['peak'] / 1e9:17.2f} GB "
              f"{r['features'] + len(r['engineered']):8d}")
    ratio = full["seconds"] / base["seconds"]
    print(f"ratio full / baseline: wall {ratio:.2f} (bound {BOUND}), cpu {full['cpu'] / base['cpu']:.2f}, "
          f"peak RSS {full['peak'] / base['peak']:.2f}")
    print(f"{'stage':13s} {'baseline s':>10s} {'full s':>8s} {'extra s':>8s}")
    for stage in STAGES:
        b, f = base["stages"].get(stage, 0.0), full["stages"].get(stage, 0.0)
        print(f"{stage:13s} {b:10.1f} {f:8.1f} {f - b:8.1f}")
    print(f"full's {len(full['engineered'])} engineered columns: {', '.join(full['engineered'])}")
    return ratio


def bench_scoring(eras: int = 200, stocks: int = 5000, features: int = 100, seed: int = 0) -> dict[str, float]:
    """Seconds to score one variant's validation predictions (corr, BMC, feature exposure) per era."""
    from validation.evaluation.scoring import score_eras, summarize

    rng = np.random.default_rng(seed)
    n = eras * stocks
    names = [f"feature_{i}" for i in range(features)]
    frame = pd.DataFrame(rng.integers(0, 5, (n, features), dtype=np.int8), columns=names,
                         index=pd.Index([f"n{i:015x}" for i in range(n)], name="id"))
    frame["era"] = np.repeat([f"{e:04d}" for e in range(1, eras + 1)], stocks)
    frame["target"] = rng.choice(np.float32([0, 0.25, 0.5, 0.75, 1]), n)
    preds = pd.Series(rng.random(n), index=frame.index)
    bench = pd.Series(rng.random(n), index=frame.index)
    start = time.perf_counter()
    summary = summarize(score_eras(preds, frame, "target", names, benchmark=bench))
    return {"rows": n, "eras": eras, "features": features, "seconds": round(time.perf_counter() - start, 2),
            "n_eras_scored": summary["n_eras"]}


def bench_pipeline(data: Path, config: Path | None, ablation: bool) -> dict:
    """Run `nmu train` on the world in `data` (timed per step); returns timings and scores."""
    from training.pipeline import train_command

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        metrics = train_command(data=data, out=Path(tmp) / "artifacts", config_path=config, ablation=ablation)
        trained = time.perf_counter() - start
        manifest = json.loads((Path(tmp) / "artifacts" / "manifest.json").read_text())
    return {"train_seconds": round(trained, 1), "steps": manifest.get("timings", {}), "data": metrics["data"],
            "models": {k: {m: v[m] for m in ("corr_mean", "corr_sharpe", "bmc_mean")} for k, v in metrics["models"].items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="World cache dir (default /tmp/nmu-bench-training/E-S-F).")
    parser.add_argument("--eras", type=int, default=150)
    parser.add_argument("--stocks", type=int, default=5000)
    parser.add_argument("--features", type=int, default=780)
    parser.add_argument("--feature-set", default="all", help="Feature set of features.json to fit on.")
    parser.add_argument("--trees", type=int, default=0, help="Boosting rounds (default: the pipeline's).")
    parser.add_argument("--refresh", choices=("never", "weekly"), default="never",
                        help="the config's refresh: weekly builds the model to be refreshed (more momentum columns)")
    parser.add_argument("--no-assert", action="store_true")
    parser.add_argument("--pipeline", action="store_true", help="Time `nmu train` end to end and the scoring step.")
    parser.add_argument("--config", type=Path, help="With --pipeline: nmu train's config file.")
    parser.add_argument("--ablation", action="store_true", help="With --pipeline: also fit the ablations.")
    args = parser.parse_args()
    data = args.data or Path(f"/tmp/nmu-bench-training/{args.eras}-{args.stocks}-{args.features}")
    ensure_world(data, args.eras, args.stocks, args.features)
    if args.pipeline:
        print(json.dumps({"scoring": bench_scoring(), "train": bench_pipeline(data, args.config, args.ablation)}, indent=2))
        return 0

    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    results = {name: fit_in_child(data, name, args.feature_set, args.trees, args.refresh) for name in ("baseline", "full")}
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    ratio = report(results)
    if ratio > BOUND and not args.no_assert:
        print(f"FAIL: full's fit took {ratio:.2f} x the baseline's (bound {BOUND})")
        return 1
    print(f"{'OK' if ratio <= BOUND else 'NOT MET'}: full / baseline fit wall time {ratio:.2f} (bound {BOUND})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
