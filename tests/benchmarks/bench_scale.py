"""Benchmark 10 (issue 25): `nmu train` end to end with the standard recipe, beside Numerai's example recipe on the same
data in the same run: each stage's wall time, each fit's, the run's peak memory, and the plan's estimate of them.

Run it by hand (pytest does not collect tests/benchmarks/), alone, under the shared CPU lock:

    flock /tmp/nmu-cpu.lock python tests/benchmarks/bench_scale.py [--data DIR] [--eras 200 --stocks 3000
        --features 900] [--feature-set medium] [--fit-features N] [--era-step 4] [--trees 2000]
        [--learning-rate 0.01] [--v53] [--no-assert]

The default shape runs in about 10 minutes on a 2-core machine. `--v53` is Numerai v5.3's shape: 900 eras x 5,000
stocks (about 2.7 million train rows at every era, 1.8 million validation rows), 2,748 features of which the run fits
780 (`--fit-features 780`: the synthetic world's "medium" set holds two thirds of the features, Numerai's 780 of
2,748), every 4th era, 2,000 trees at learning rate 0.01: on two cores 11 minutes to make the world (4.7 GB on
disk) and 25 minutes to run (docs/scale.md).

It makes the synthetic world once into DIR (reused when DIR/train.parquet exists), then in fresh processes, one
after the other:

- **nmu**: `training.pipeline.train_command` with the standard recipe (README, docs/training.md: the feature set,
  `era_step`, n_estimators, learning_rate 0.01, max_depth 5, num_leaves 31, colsample_bytree 0.1), every stage's
  time (the manifest's timings), every LightGBM fit's wall time (`training.experiment.fit_model`), the process's
  peak resident memory (VmHWM) and `nmu train --plan`'s estimate of both, made before the run;
- **example**: Numerai's example recipe on the same files: `pandas.read_parquet` of the era, the features and the
  target, every `era_step`-th era kept, `lightgbm.LGBMRegressor(n_estimators, learning_rate, max_depth=5,
  num_leaves=31, colsample_bytree=0.1).fit`, `cloudpickle.dumps` of the model; each step's time and the peak.

Ratios: peak memory nmu / example (bound <= 1), the time of nmu's fit of `full` on the train eras / the example's
fit (bound <= 1.5), and the whole run against the example's fit times the number of fits nmu made. Beside them, for
reading the ratios: each fit's thread count and the process's peak while it ran (the peak during `full`'s fit is on
the example's rows; the run's peak usually comes at the refit, on the train rows plus every `era_step`-th
validation era, which the example recipe never fits), and each variant's scoring time (the example does not score).
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

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the repository, for tests.peak_memory and training
from tests.benchmarks.bench_training import ensure_world
from tests.peak_memory import PRELUDE

MEMORY_BOUND = 1.0  # nmu's peak / the example's
FIT_BOUND = 1.5  # nmu's full fit / the example's fit

NMU_CHILD = PRELUDE + r"""
from pathlib import Path
import training.experiment as experiment
from training.config import load_config
from training.pipeline import train_command
from training.plan import make_plan

data, out, config_path = sys.argv[1], sys.argv[2], sys.argv[3]
start = time.perf_counter()
plan = make_plan(load_config(Path(config_path)), Path(data))
plan_seconds = time.perf_counter() - start
fits, run_peak, threads = [], [0], []
real_fit, real_slot = experiment.fit_model, experiment.fit_slot
def timed_fit(model, frame, ds, reporter, title, *args, **kwargs):
    # each fit's own peak (VmHWM reset at its start), the run's peak kept as the largest of the stretches between
    run_peak[0] = max(run_peak[0], _status("VmHWM"))
    _reset_peak()
    start = time.perf_counter()
    try:
        return real_fit(model, frame, ds, reporter, title, *args, **kwargs)
    finally:
        peak = _status("VmHWM")
        run_peak[0] = max(run_peak[0], peak)
        fits.append({"title": title, "rows": len(frame), "seconds": time.perf_counter() - start, "peak": peak,
                     "threads": threads.pop() if threads else None})
        _reset_peak()
def counted_slot(*args, **kwargs):  # the threads each fit got (training.compute: the cores free when it starts)
    slot = real_slot(*args, **kwargs)
    class Slot:
        def __enter__(self):
            threads.append(slot.__enter__())
            return threads[-1]
        def __exit__(self, *exc):
            return slot.__exit__(*exc)
    return Slot()
experiment.fit_model, experiment.fit_slot = timed_fit, counted_slot
_reset_peak()
start = time.perf_counter()
metrics = train_command(data=Path(data), out=Path(out), config_path=Path(config_path))
seconds = time.perf_counter() - start
run_peak[0] = max(run_peak[0], _status("VmHWM"))
manifest = json.loads((Path(out) / "manifest.json").read_text())
print(json.dumps({"seconds": seconds, "peak": run_peak[0], "fits": fits, "steps": manifest.get("timings", {}),
                  "plan": {"seconds": plan.seconds, "fit_seconds": plan.fit_seconds(), "peak": plan.peak_bytes,
                           "peak_step": plan.peak_step, "n_fits": plan.n_fits, "speed": plan.speed,
                           "plan_seconds": plan_seconds, "lines": plan.lines()},
                  "rows": {"train": plan.train_rows, "validation": plan.validation_rows, "refit": plan.refit_rows},
                  "features": plan.features, "shipped": metrics["ship"]["shipped"],
                  "corr": {k: v["corr_mean"] for k, v in metrics["models"].items()}}))
"""

EXAMPLE_CHILD = PRELUDE + r"""
import cloudpickle
import lightgbm as lgb

data, feature_set, era_step, trees, learning_rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), \
    float(sys.argv[5])
_reset_peak()
steps = {}
start = time.perf_counter()
features = json.load(open(f"{data}/features.json"))["feature_sets"][feature_set]
train = pd.read_parquet(f"{data}/train.parquet", columns=["era", *features, "target"])
train = train[train["era"].isin(train["era"].unique()[::era_step])]
steps["load"] = time.perf_counter() - start
start = time.perf_counter()
model = lgb.LGBMRegressor(n_estimators=trees, learning_rate=learning_rate, max_depth=5, num_leaves=2**5 - 1,
                          colsample_bytree=0.1, verbosity=-1)
model.fit(train[features], train["target"])
steps["fit"] = time.perf_counter() - start
start = time.perf_counter()
blob = cloudpickle.dumps(model)
steps["pickle"] = time.perf_counter() - start
print(json.dumps({"steps": steps, "seconds": sum(steps.values()), "peak": _status("VmHWM"), "rows": len(train),
                  "features": len(features), "pickle_bytes": len(blob)}))
"""


def run_child(source: str, *args: object) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", source, *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=ROOT)
    if done.returncode:
        sys.stderr.write(done.stderr[-5000:])
        raise SystemExit(f"a run failed with exit code {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def fit_feature_set(data: Path, feature_set: str, count: int) -> str:
    """A feature set of `count` features taken evenly from `feature_set` (every group keeps its share), added to the
    world's features.json as `fit_<count>`; its name."""
    path = data / "features.json"
    metadata = json.loads(path.read_text())
    source = metadata["feature_sets"][feature_set]
    if count >= len(source):
        return feature_set
    step = len(source) / count
    metadata["feature_sets"][f"fit_{count}"] = [source[int(i * step)] for i in range(count)]
    path.write_text(json.dumps(metadata))
    return f"fit_{count}"


def write_config(path: Path, feature_set: str, era_step: int, trees: int, learning_rate: float) -> Path:
    """The standard recipe (docs/training.md) as nmu train's config."""
    path.write_text(f'feature_set = "{feature_set}"\nera_step = {era_step}\n\n[lightgbm]\nn_estimators = {trees}\n'
                    f"learning_rate = {learning_rate}\nmax_depth = 5\nnum_leaves = 31\ncolsample_bytree = 0.1\n")
    return path


def commit() -> str:
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="World cache dir (default /tmp/nmu-bench-scale/E-S-F).")
    parser.add_argument("--eras", type=int, default=200)
    parser.add_argument("--stocks", type=int, default=3000)
    parser.add_argument("--features", type=int, default=900)
    parser.add_argument("--feature-set", default="medium")
    parser.add_argument("--fit-features", type=int, default=0,
                        help="Fit on this many features of the feature set (a set fit_N added to features.json).")
    parser.add_argument("--era-step", type=int, default=4)
    parser.add_argument("--trees", type=int, default=2000)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--v53", action="store_true", help="Numerai v5.3's shape (about 36 minutes on 2 cores; see the docstring).")
    parser.add_argument("--no-assert", action="store_true")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args()
    if args.v53:
        args.eras, args.stocks, args.features, args.fit_features = 900, 5000, 2748, 780
    data = args.data or Path(f"/tmp/nmu-bench-scale/{args.eras}-{args.stocks}-{args.features}")
    ensure_world(data, args.eras, args.stocks, args.features)
    feature_set = fit_feature_set(data, args.feature_set, args.fit_features) if args.fit_features else args.feature_set
    print(f"commit {commit()}; load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} cores)", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp) / "standard.toml", feature_set, args.era_step, args.trees, args.learning_rate)
        start = time.perf_counter()
        nmu = run_child(NMU_CHILD, data, Path(tmp) / "artifacts", config)
        print(f"nmu train: {time.perf_counter() - start:.0f} s", flush=True)
    example = run_child(EXAMPLE_CHILD, data, feature_set, args.era_step, args.trees, args.learning_rate)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    print(f"shape: train {nmu['rows']['train']:,} rows (every {args.era_step}th era) x {nmu['features']} features "
          f"({feature_set}), validation {nmu['rows']['validation']:,} rows, refit {nmu['rows']['refit']:,} rows; "
          f"{args.trees} trees at learning rate {args.learning_rate}")
    print("nmu train's steps:")
    for step, seconds in nmu["steps"].items():
        print(f"  {seconds:8.1f} s  {step}")
    print("nmu's fits (each with the threads it got and the process's peak while it ran):")
    for fit in nmu["fits"]:
        print(f"  {fit['seconds']:8.1f} s  {fit['title']} ({fit['rows']:,} rows, {fit['threads']} thread(s), peak "
              f"{fit['peak'] / 2**30:.2f} GB)")
    for fit in nmu["fits"]:
        variant = fit["title"].split(":")[0]
        step = nmu["steps"].get(f"Fitting and scoring {variant}")
        if step is not None:
            print(f"  {step - fit['seconds']:8.1f} s  scoring {variant} (its step less its fit)")
    print(f"example recipe: load {example['steps']['load']:.1f} s, fit {example['steps']['fit']:.1f} s "
          f"({example['rows']:,} rows x {example['features']}), pickle {example['steps']['pickle']:.2f} s "
          f"({example['pickle_bytes'] / 1e6:.1f} MB)")
    full = next((f for f in nmu["fits"] if f["title"].startswith("full")), nmu["fits"][0])
    same_rows = full["peak"] / example["peak"]
    n_fits = len(nmu["fits"])
    memory_ratio = nmu["peak"] / example["peak"]
    fit_ratio = full["seconds"] / example["steps"]["fit"]
    run_ratio = nmu["seconds"] / (example["steps"]["fit"] * n_fits)
    plan = nmu["plan"]
    print(f"{'':34s} {'nmu':>10s} {'example':>10s} {'ratio':>7s} {'bound':>6s}")
    print(f"{'peak memory (GB)':34s} {nmu['peak'] / 2**30:10.2f} {example['peak'] / 2**30:10.2f} "
          f"{memory_ratio:7.2f} {MEMORY_BOUND:6.1f}")
    print(f"{'  peak in the fit of full':34s} {full['peak'] / 2**30:10.2f} {example['peak'] / 2**30:10.2f} "
          f"{same_rows:7.2f}")
    print(f"{'time of a fit (s): full / example':34s} {full['seconds']:10.1f} {example['steps']['fit']:10.1f} "
          f"{fit_ratio:7.2f} {FIT_BOUND:6.1f}")
    print(f"{'whole run / (example fit x fits)':34s} {nmu['seconds']:10.1f} {example['steps']['fit'] * n_fits:10.1f} "
          f"{run_ratio:7.2f}   ({n_fits} fits)")
    print(f"the plan (made in {plan['plan_seconds']:.1f} s): peak {plan['peak'] / 2**30:.2f} GB at {plan['peak_step']} "
          f"(measured {nmu['peak'] / 2**30:.2f} GB, {plan['peak'] / nmu['peak']:.2f} x), time {plan['seconds']:.0f} s "
          f"(measured {nmu['seconds']:.0f} s, {plan['seconds'] / nmu['seconds']:.2f} x; fits {plan['fit_seconds']:.0f} s "
          f"against {sum(f['seconds'] for f in nmu['fits']):.0f} s), {plan['n_fits']} fits (made {n_fits})")
    print("\n".join("  " + line for line in plan["lines"]))
    print(f"shipped {nmu['shipped']}; corr {nmu['corr']}")
    if args.json:
        args.json.write_text(json.dumps({"nmu": nmu, "example": example, "commit": commit(), "args": vars(args)},
                                        indent=1, default=str))
    ok = memory_ratio <= MEMORY_BOUND and fit_ratio <= FIT_BOUND
    if not ok and not args.no_assert:
        print(f"FAIL: peak memory ratio {memory_ratio:.2f} (bound {MEMORY_BOUND}), fit ratio {fit_ratio:.2f} "
              f"(bound {FIT_BOUND})")
        return 1
    print(f"{'OK' if ok else 'NOT MET'}: peak memory {memory_ratio:.2f} x the example's (bound {MEMORY_BOUND}), "
          f"full's fit {fit_ratio:.2f} x the example's fit (bound {FIT_BOUND})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
