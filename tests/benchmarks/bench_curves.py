"""Benchmark 10b (issue 25): how the cost of a fit grows. Fit time and peak memory against rows (eras x stocks),
features and trees, each varied alone around a base point; predict time of one live era against trees and
ensemble members. Fits the curves and writes them into the package (training/scale_model.json, what
`nmu train --plan` estimates from) and the figures into docs/img/.

Run it by hand (pytest does not collect tests/benchmarks/), alone, under the shared CPU lock:

    flock /tmp/nmu-cpu.lock python tests/benchmarks/bench_curves.py [--quick] [--no-write] [--no-assert]

What is measured. Each fit runs in a fresh process on a frame made in memory as the synthetic world looks (the
`era` column, int8 features 0..4, a float32 target in quintiles 0, 0.25, .., 1 with a weak signal in a few
features), `stocks` rows per era. The fit is `NumeraiModel.variant("baseline")` with the standard recipe's LightGBM
parameters (README / docs/training.md: depth 5, 31 leaves, colsample_bytree 0.1, learning rate 0.01; max_bin 15
and the rest from model/booster.py) and `n_estimators` = trees, on every core. LightGBM gets the features through
the project's int8 `Rows` sequence at every size (what it does at Numerai's size, beyond 40M cells): the dense
shortcut of small fits is switched off so the curves do not change regime inside the sweep. Time is the fit's wall
time; memory is the process's resident high-water mark (VmHWM, reset after the frame is built) above the resident
size with the frame in memory: what the fit adds over its input, not the input.

The components' extra (the full model against the baseline) is measured at the base point, at twice its rows
and at twice its features. The linear layer (model.linear, on in full by default) is timed on its own at up to
2,748 features (Numerai's widest set): its Gram matrix grows with rows x features squared, a term the components' three points around 200
features cannot see (0.3 s there, 18 s at benchmark 5's 714,499 rows x 780 features). Its chunk buffers also lift
full's peak at the base point to about 2.2 x the baseline's, a factor the plan would apply at every size (the run at
v5.3's shape measured 1.14 x): the shipped curves keep e9e14b2's memory figures (docs/scale.md). Predict: one era of
`stocks` rows through `model.predict` of a baseline fitted with the most trees, cut to fewer trees (each cut from
the full booster), and of a TargetEnsemble of 1, 2 and 4 baseline members.

Fitted models (least squares in log-log space): a fit's time = LightGBM's Dataset (a * rows^r * features^f: it bins
a sample of 100,000 rows, then pushes every row) + the boosting rounds and the rest (b * rows^r * features^f *
trees^t); one power law over all three is printed beside them (it misses the Dataset's fixed cost). The components'
extra time = a * rows^r * features^f from the three pairs. Memory = c0 + c_sample * features * min(rows, 100,000) +
c_cells * rows * features (LightGBM holds the bin sample of 100,000 rows as float64 twice while it builds the
Dataset, then 4-bit bins), and its plain power-law exponents for the figure. The linear layer's time =
c + a * rows * features (its per-era centring) + b * rows * features^2 (its Gram matrix), from its own points. The
probe that calibrates the curves on another machine (`training.plan.probe_seconds`) is timed here too. `--table`
prints, from the written curves, the plan's estimate of the standard recipe at Numerai v5.3's shape. Fails unless
the time model is within 35 % of every measured fit.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the repository, for tests.peak_memory and training
from tests.peak_memory import DATASET_TIMER, PRELUDE

SCALE_MODEL = ROOT / "training" / "scale_model.json"
IMAGES = ROOT / "docs" / "img"
BOUND = 0.35  # largest relative error of the fitted time power law on a measured point

BASE = {"eras": 40, "stocks": 5000, "features": 200, "trees": 200}
SWEEPS = {"eras": [20, 40, 80, 160], "features": [100, 200, 400, 800], "trees": [100, 200, 400, 800]}
QUICK_SWEEPS = {"eras": [20, 40, 80], "features": [100, 200, 400], "trees": [100, 200, 400]}
LINEAR_POINTS = [(40, 400), (40, 800), (40, 1600), (40, 2748), (80, 800), (80, 2748)]
"""(eras, features) of the linear layer's own timings, `BASE["stocks"]` rows an era."""
PREDICT_TREES = [250, 500, 1000, 2000]
PREDICT_MEMBERS = [1, 2, 4]

FRAME = r"""
def make_frame(eras, stocks, features, targets=1, seed=0):
    # the synthetic world's look: era labels, int8 features 0..4, float32 targets in quintiles
    import pandas as pd
    rng = np.random.default_rng(seed)
    n = eras * stocks
    names = [f"feature_{i:04d}" for i in range(features)]
    raw = rng.integers(0, 5, (n, features), dtype=np.int8)
    frame = pd.DataFrame(raw, columns=names, copy=False)
    frame.insert(0, "era", np.repeat(np.array([f"{e:04d}" for e in range(1, eras + 1)], dtype=object), stocks))
    signal = raw[:, : min(8, features)].sum(axis=1, dtype=np.float32)
    Y = {}
    for k in range(targets):
        score = signal + rng.normal(0.0, 6.0, n).astype(np.float32)
        Y[f"target_{k}"] = (np.searchsorted(np.quantile(score, [0.2, 0.4, 0.6, 0.8]), score) / 4).astype(np.float32)
    del raw
    return frame, names, pd.DataFrame(Y)

def recipe(trees):
    return {"n_estimators": trees, "learning_rate": 0.01, "max_depth": 5, "num_leaves": 31, "colsample_bytree": 0.1}
"""

FIT_CHILD = PRELUDE + FRAME + r"""
import lightgbm as lgb
import model.estimator as estimator
from model import NumeraiModel

""" + DATASET_TIMER + r"""

eras, stocks, features, trees = (int(a) for a in sys.argv[1:5])
variant = sys.argv[5]
estimator.CHUNK_CELLS = 0  # LightGBM takes the int8 Rows sequence at every size, as at Numerai's size
frame, names, Y = make_frame(eras, stocks, features)
y = Y["target_0"].to_numpy()
del Y
groups = {f"group_{g}": names[g::8] for g in range(8)}
model = NumeraiModel(feature_groups=groups, lgbm_params=recipe(trees)).variant(variant)
baseline = _reset_peak()
start = time.perf_counter()
model.fit(frame, y)
seconds = time.perf_counter() - start
peak = _status("VmHWM") - baseline
print(json.dumps({"eras": eras, "stocks": stocks, "rows": len(frame), "features": features, "trees": trees,
                  "variant": variant, "seconds": seconds, "dataset": dataset_seconds[0],
                  "boosting": seconds - dataset_seconds[0], "peak": peak, "input_rss": baseline,
                  "stages": model.fit_seconds_}))
"""

LINEAR_CHILD = PRELUDE + FRAME + r"""
from model import NumeraiModel
from model.eras import EraIndex
from model.estimator import LINEAR_T
from model.features import chunk_rows, feature_matrix
from model.linear import LinearLayer

eras, stocks, features = (int(a) for a in sys.argv[1:4])
frame, names, Y = make_frame(eras, stocks, features)
raw = feature_matrix(frame, names)
index = EraIndex.from_frame(frame)
y = Y["target_0"].to_numpy()
defaults = NumeraiModel()  # the gate's lags and embargo as NumeraiModel.fit passes them
start = time.perf_counter()
LinearLayer(LINEAR_T, defaults._nw_lags, defaults.gate_embargo).fit(raw, y, index, chunk_rows(features))
print(json.dumps({"eras": eras, "stocks": stocks, "rows": len(frame), "features": features,
                  "seconds": time.perf_counter() - start}))
"""

PREDICT_CHILD = PRELUDE + FRAME + r"""
import lightgbm as lgb
from model import NumeraiModel, TargetEnsemble

stocks, features = int(sys.argv[1]), int(sys.argv[2])
trees_list = json.loads(sys.argv[3])
members_list = json.loads(sys.argv[4])
member_trees = int(sys.argv[5])
frame, names, Y = make_frame(8, stocks, features, targets=max(members_list))
live = frame[frame["era"] == "0008"]
train = frame[frame["era"] != "0008"]
Ytrain = Y[(frame["era"] != "0008").to_numpy()]

def timed(model, repeats=3):
    model.predict(live)  # warm
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(live)
        times.append(time.perf_counter() - start)
    return float(np.median(times))

out = {"stocks": stocks, "features": features, "trees": {}, "members": {}, "member_trees": member_trees}
big = NumeraiModel(lgbm_params=recipe(max(trees_list))).variant("baseline").fit(train, Ytrain["target_0"].to_numpy())
full = big.booster_
for trees in trees_list:  # each cut from the full booster (cutting the previous cut left every cut at the first)
    big.booster_ = lgb.Booster(model_str=full.model_to_string(num_iteration=trees))
    assert big.booster_.num_trees() == trees, (big.booster_.num_trees(), trees)
    out["trees"][trees] = timed(big)
template = NumeraiModel(lgbm_params=recipe(member_trees)).variant("baseline")
for members in members_list:
    targets = [f"target_{k}" for k in range(members)]
    ensemble = TargetEnsemble(template, targets).fit(train, Ytrain[targets])
    out["members"][members] = timed(ensemble)
print(json.dumps(out))
"""


def run_child(source: str, *args: object) -> dict:
    """Run one measurement in a fresh process; its JSON line."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", source, *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=ROOT)
    if done.returncode:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"a measurement failed with exit code {done.returncode}: {args}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def fit_point(eras: int, features: int, trees: int, variant: str = "baseline") -> dict:
    r = run_child(FIT_CHILD, eras, BASE["stocks"], features, trees, variant)
    print(f"  {variant:8s} {r['rows']:>9,} rows x {features:>4} features x {trees:>4} trees: "
          f"{r['seconds']:6.2f} s, peak {r['peak'] / 1e6:7.0f} MB above the {r['input_rss'] / 1e6:.0f} MB input",
          flush=True)
    return r


def power_law(points: list[dict], keys: tuple[str, ...], value: str) -> dict:
    """value = coefficient * prod(point[k] ** exponent_k), least squares in log-log space."""
    A = np.column_stack([np.ones(len(points))] + [np.log([p[k] for p in points]) for k in keys])
    b = np.log([p[value] for p in points])
    coef, *_ = np.linalg.lstsq(A, b, rcond=None)
    fitted = np.exp(A @ coef)
    worst = float(np.max(np.abs(fitted / np.exp(b) - 1)))
    return {"coefficient": float(np.exp(coef[0])), "exponents": {k: float(c) for k, c in zip(keys, coef[1:])},
            "max_relative_error": worst}


def nonnegative_terms(columns: dict[str, np.ndarray], values: np.ndarray) -> dict:
    """values = sum of coefficient x column, least squares with no negative coefficient (a negative term is dropped
    and the rest refitted), and the worst relative miss."""
    names = list(columns)
    while True:
        coef, *_ = np.linalg.lstsq(np.column_stack([columns[n] for n in names]), values, rcond=None)
        if (coef >= 0).all() or len(names) == 1:
            break
        names.pop(int(np.argmin(coef)))
    out = {n: 0.0 for n in columns} | {n: float(c) for n, c in zip(names, coef)}
    fitted = sum(out[n] * columns[n] for n in columns)
    return out | {"max_relative_error": float(np.max(np.abs(fitted / values - 1)))}


def memory_model(points: list[dict], sample_rows: int) -> dict:
    """peak = c0 + c_sample * features * min(rows, sample_rows) + c_cells * rows * features."""
    rows = np.array([p["rows"] for p in points], float)
    feats = np.array([p["features"] for p in points], float)
    columns = {"c0": np.ones_like(rows), "c_sample": feats * np.minimum(rows, sample_rows), "c_cells": rows * feats}
    return nonnegative_terms(columns, np.array([p["peak"] for p in points], float)) | {"sample_rows": sample_rows}


def linear_layer_model(points: list[dict]) -> dict:
    """seconds = per_fit + per_cell * rows * features (centring every era's rows, in float64) + per_gram_cell *
    rows * features^2 (the Gram matrix): the terms of model.linear.LinearLayer.fit, measured up to Numerai's widest
    feature set so that no term is extrapolated in the features."""
    rows = np.array([p["rows"] for p in points], float)
    feats = np.array([p["features"] for p in points], float)
    columns = {"per_fit": np.ones_like(rows), "per_cell": rows * feats, "per_gram_cell": rows * feats * feats}
    return nonnegative_terms(columns, np.array([p["seconds"] for p in points], float))


def machine() -> dict:
    import lightgbm

    cpu = platform.processor() or ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import psutil

    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1), "python": platform.python_version(),
            "numpy": np.__version__, "lightgbm": lightgbm.__version__}


def commit() -> str:
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def figures(fits: list[dict], model: dict, predict: dict) -> list[Path]:
    """Log-log plots of the sweeps with the fitted curves, and the predict curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from training.plan import ScaleModel

    scale = ScaleModel(model)
    IMAGES.mkdir(parents=True, exist_ok=True)
    base_rows = BASE["eras"] * BASE["stocks"]
    fig, axes = plt.subplots(2, 3, figsize=(12, 7))
    for col, (key, label) in enumerate((("rows", "rows (eras x 5,000 stocks)"), ("features", "features"),
                                        ("trees", "trees"))):
        others = {"rows": base_rows, "features": BASE["features"], "trees": BASE["trees"]}
        sweep = "eras" if key == "rows" else key
        points = sorted((p for p in fits if p["variant"] == "baseline" and p["sweep"] in (sweep, "base")),
                        key=lambda p: p[key])
        xs = np.array([p[key] for p in points], float)
        grid = np.geomspace(xs.min(), xs.max(), 50)
        shape = [{**others, key: x} for x in grid]
        ax = axes[0, col]
        ax.loglog(xs, [p["seconds"] for p in points], "o", label="measured")
        law = (f"Dataset ^{model['dataset_seconds']['exponents'][key]:.2f} + " if key != "trees" else "") + \
            f"boosting ^{model['boosting_seconds']['exponents'][key]:.2f}"
        ax.loglog(grid, [scale.fit_seconds(s["rows"], s["features"], s["trees"]) for s in shape], "-",
                  label=f"model: {law}")
        ax.set_xlabel(label)
        ax.set_ylabel("fit wall time (s)")
        ax.legend(fontsize=8)
        ax = axes[1, col]
        ax.loglog(xs, [p["peak"] / 1e6 for p in points], "o", label="measured")
        ax.loglog(grid, [scale.fit_peak_bytes(s["rows"], s["features"]) / 1e6 for s in shape], "-",
                  label=f"model (power-law exponent {model['fit_peak_power_law']['exponents'][key]:.2f})")
        low, high = min(p["peak"] for p in points) / 1e6, max(p["peak"] for p in points) / 1e6
        ax.set_ylim(low / 2, high * 2)
        ax.set_xlabel(label)
        ax.set_ylabel("peak memory above input (MB)")
        ax.legend(fontsize=8)
    fig.suptitle(f"LightGBM fit (standard recipe, baseline) around {base_rows:,} rows x {BASE['features']} features "
                 f"x {BASE['trees']} trees", fontsize=10)
    fig.tight_layout()
    fit_png = IMAGES / "scale-fit.png"
    fig.savefig(fit_png, dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    trees = sorted(int(t) for t in predict["trees"])
    axes[0].loglog(trees, [predict["trees"][str(t)] if str(t) in predict["trees"] else predict["trees"][t]
                           for t in trees], "o", label="measured")
    grid = np.geomspace(min(trees), max(trees), 50)
    axes[0].loglog(grid, [scale.predict_era_seconds(t, 1) for t in grid], "-",
                   label=f"exponent {model['predict_era_seconds']['exponents']['trees']:.2f}")
    axes[0].set_xlabel("trees")
    axes[0].set_ylabel(f"predict one era of {predict['stocks']:,} rows (s)")
    axes[0].legend(fontsize=8)
    members = sorted(int(m) for m in predict["members"])
    axes[1].plot(members, [predict["members"][str(m)] if str(m) in predict["members"] else predict["members"][m]
                           for m in members], "o", label=f"measured ({predict['member_trees']} trees each)")
    axes[1].plot(members, [scale.predict_era_seconds(predict["member_trees"], m) for m in members], "-",
                 label=f"exponent {model['predict_era_seconds']['exponents']['members']:.2f}")
    axes[1].set_xlabel("ensemble members")
    axes[1].set_ylabel("predict one era (s)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    predict_png = IMAGES / "scale-predict.png"
    fig.savefig(predict_png, dpi=90)
    plt.close(fig)
    return [fit_png, predict_png]


V53 = {"train_rows": 2_700_000, "train_eras": 574, "validation_rows": 3_300_000, "validation_eras": 600,
       "unresolved_eras": 4, "benchmark_columns": 20}
"""Numerai v5.3's files as the table assumes them (approximate: train 574 eras, validation ~600 eras and growing)."""


def numerai_table(model_path: Path = SCALE_MODEL) -> list[str]:
    """Markdown rows: the plan's estimate of `nmu train` with the standard recipe on v5.3's shape, by feature set and
    era step, and whether it fits in 16, 32 and 64 GB (the curves' machine's times)."""
    from training.plan import Fit, Plan, duration, gb, load_scale_model

    model = load_scale_model(model_path)
    v = V53
    per_train_era = v["train_rows"] / v["train_eras"]
    per_val_era = v["validation_rows"] / v["validation_eras"]
    rows = ["| features | era step | train rows | peak memory | 16 GB | 32 GB | 64 GB | time (2 cores) |",
            "|---|---|---|---|---|---|---|---|"]
    for name, features in (("small", 42), ("medium", 780), ("all", 2748)):
        for step in (4, 1):
            train_eras = -(-v["train_eras"] // step)
            train_rows = int(train_eras * per_train_era)
            scored_eras = v["validation_eras"] - v["unresolved_eras"] - 4
            resolved = v["validation_eras"] - v["unresolved_eras"]
            refit_rows = train_rows + int(-(-resolved // step) * per_val_era)
            plan = Plan(
                data_dir=Path("v5.3"), feature_set=name, features=features, targets=1, era_step=step,
                train_eras=train_eras, train_eras_in_file=v["train_eras"], train_rows=train_rows,
                validation_rows=v["validation_rows"], validation_eras=v["validation_eras"], scored_eras=scored_eras,
                scored_rows=int(scored_eras * per_val_era), refit_rows=refit_rows,
                benchmark_columns=v["benchmark_columns"], trees=2000, members=1,
                fits=[Fit("baseline", train_rows, False), Fit("full", train_rows, True, linear=True),
                      Fit("refit of the shipped variant", refit_rows, True, linear=True)],
                variants=["baseline", "full"], cv=0, refit=True, model=model)
            peak = plan.peak_bytes
            fits = ["yes" if peak <= gb_ * 2**30 * 0.9 else "no" for gb_ in (16, 32, 64)]
            rows.append(f"| {name} ({features:,}) | {step} | {train_rows:,} | {gb(peak)} | {' | '.join(fits)} | "
                        f"{duration(plan.seconds)} |")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Three points per sweep (about half the time).")
    parser.add_argument("--no-write", action="store_true", help="Print the fitted model; write neither JSON nor figures.")
    parser.add_argument("--no-assert", action="store_true")
    parser.add_argument("--table", action="store_true",
                        help="Measure nothing: print the table of what fits in 16, 32 and 64 GB from the curves.")
    args = parser.parse_args()
    if args.table:
        print("\n".join(numerai_table()))
        return 0
    started = time.perf_counter()
    sweeps = QUICK_SWEEPS if args.quick else SWEEPS
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")

    from training.plan import probe_seconds

    probe = probe_seconds(repeats=5)
    print(f"probe: {probe:.3f} s on one thread (training.plan.probe_seconds)")

    fits: list[dict] = []
    print("fit sweeps (baseline):")
    fits.append(fit_point(BASE["eras"], BASE["features"], BASE["trees"]) | {"sweep": "base"})
    for key, values in sweeps.items():
        for v in values:
            point = dict(BASE) | {key: v}
            if point == BASE:
                continue
            fits.append(fit_point(point["eras"], point["features"], point["trees"]) | {"sweep": key})
    print("the components (full against baseline):")
    pairs = []
    for eras, feats in ((BASE["eras"], BASE["features"]), (2 * BASE["eras"], BASE["features"]),
                        (BASE["eras"], 2 * BASE["features"])):
        full = fit_point(eras, feats, BASE["trees"], "full") | {"sweep": "full"}
        base = next(p for p in fits if p["eras"] == eras and p["features"] == feats and p["trees"] == BASE["trees"])
        fits.append(full)
        pairs.append({"rows": full["rows"], "features": feats, "extra": max(full["seconds"] - base["seconds"], 1e-3),
                      "peak_ratio": full["peak"] / base["peak"]})
    print("the linear layer alone:")
    linear_points = []
    for eras, feats in LINEAR_POINTS:
        point = run_child(LINEAR_CHILD, eras, BASE["stocks"], feats)
        print(f"  {point['rows']:,} rows x {feats} features: {point['seconds']:.2f} s")
        linear_points.append(point)
    print("predict one era:")
    predict = run_child(PREDICT_CHILD, BASE["stocks"], BASE["features"], json.dumps(PREDICT_TREES),
                        json.dumps(PREDICT_MEMBERS), 500)
    print(f"  trees {predict['trees']}; members ({predict['member_trees']} trees each) {predict['members']}")

    from model.booster import BIN_SAMPLE_ROWS

    baseline_fits = [p for p in fits if p["variant"] == "baseline"]
    dataset_law = power_law(baseline_fits, ("rows", "features"), "dataset")
    boosting_law = power_law(baseline_fits, ("rows", "features", "trees"), "boosting")
    time_law = power_law(baseline_fits, ("rows", "features", "trees"), "seconds")  # for comparison only
    memory = memory_model(baseline_fits, BIN_SAMPLE_ROWS)
    memory_law = power_law(baseline_fits, ("rows", "features", "trees"), "peak")
    components = power_law(pairs, ("rows", "features"), "extra")
    linear_law = linear_layer_model(linear_points)
    predict_points = ([{"trees": int(t), "members": 1, "seconds": s} for t, s in predict["trees"].items()]
                      + [{"trees": predict["member_trees"], "members": int(m), "seconds": s}
                         for m, s in predict["members"].items() if int(m) > 1])
    predict_law = power_law(predict_points, ("trees", "members"), "seconds")
    model = {
        "about": "Fitted by tests/benchmarks/bench_curves.py (docs/scale.md); read by training.plan.",
        "measured": {"commit": commit(), "date": _dt.date.today().isoformat(), "machine": machine(),
                     "seconds": round(time.perf_counter() - started, 1)},
        "base": BASE | {"rows": BASE["eras"] * BASE["stocks"]},
        "probe_seconds": probe,
        "dataset_seconds": dataset_law,
        "boosting_seconds": boosting_law,
        "fit_seconds_power_law": time_law,
        "fit_peak_bytes": memory,
        "fit_peak_power_law": memory_law,
        "components_seconds": components,
        "components_peak_factor": max(p["peak_ratio"] for p in pairs),
        "linear_layer_seconds": linear_law,
        "predict_era_seconds": predict_law | {"stocks": predict["stocks"], "features": predict["features"]},
        "points": {"fits": fits, "components": pairs, "linear_layer": linear_points, "predict": predict},
    }
    from training.plan import ScaleModel

    scale = ScaleModel(model)
    misses = [abs(scale.fit_seconds(p["rows"], p["features"], p["trees"]) / p["seconds"] - 1) for p in baseline_fits]
    model["fit_seconds_max_relative_error"] = worst = float(max(misses))
    print(f"fit time  = Dataset {dataset_law['coefficient']:.3g} x rows^{dataset_law['exponents']['rows']:.2f} x "
          f"features^{dataset_law['exponents']['features']:.2f} + boosting {boosting_law['coefficient']:.3g} x "
          f"rows^{boosting_law['exponents']['rows']:.2f} x features^{boosting_law['exponents']['features']:.2f} x "
          f"trees^{boosting_law['exponents']['trees']:.2f} s (worst point off by {worst:.0%}); one power law: "
          f"rows^{time_law['exponents']['rows']:.2f} features^{time_law['exponents']['features']:.2f} "
          f"trees^{time_law['exponents']['trees']:.2f} (worst {time_law['max_relative_error']:.0%})")
    print(f"fit peak  = {memory['c0'] / 1e6:.0f} MB + {memory['c_sample']:.2f} B x features x min(rows, "
          f"{BIN_SAMPLE_ROWS:,}) + {memory['c_cells']:.2f} B x rows x features (worst {memory['max_relative_error']:.0%});"
          f" power law: rows^{memory_law['exponents']['rows']:.2f} features^{memory_law['exponents']['features']:.2f} "
          f"trees^{memory_law['exponents']['trees']:.2f}")
    print(f"components: + {components['coefficient']:.3g} x rows^{components['exponents']['rows']:.2f} x "
          f"features^{components['exponents']['features']:.2f} s; peak x {model['components_peak_factor']:.2f}")
    print(f"linear layer: + {linear_law['per_fit']:.3g} + {linear_law['per_cell']:.3g} x rows x features + "
          f"{linear_law['per_gram_cell']:.3g} x rows x features^2 s (worst point off by "
          f"{linear_law['max_relative_error']:.0%})")
    print(f"predict one era of {predict['stocks']:,} rows = {predict_law['coefficient']:.3g} x "
          f"trees^{predict_law['exponents']['trees']:.2f} x members^{predict_law['exponents']['members']:.2f} s")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"{time.perf_counter() - started:.0f} s in all")
    if not args.no_write:
        SCALE_MODEL.write_text(json.dumps(model, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {SCALE_MODEL.relative_to(ROOT)}")
        for path in figures(fits, model, predict):
            print(f"wrote {path.relative_to(ROOT)}")
    ok = worst <= BOUND
    if not ok and not args.no_assert:
        print(f"FAIL: the fit-time model misses a point by {worst:.0%} (bound {BOUND:.0%})")
        return 1
    print(f"{'OK' if ok else 'NOT MET'}: the fit-time model within {worst:.0%} of every "
          f"point (bound {BOUND:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
