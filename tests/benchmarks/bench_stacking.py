"""Issue 23's stacking candidate: a second booster on the engineered columns, grown from the baseline's era-wise
out-of-fold scores, measured in the lab.

    flock /tmp/nmu-cpu.lock python tests/benchmarks/bench_stacking.py --data DIR --seed-offset N --worlds NAME,NAME
                                                                      [--folds 4]

Why: a second booster on the engineered columns alone, started from the baseline's scores, learned back through the
composites the baseline's in-sample residual (docs/benchmarks.md "Which component leaves the most": -0.0058 in
planted-wide against the baseline). Scores the baseline gives eras it never saw cannot be learned back that way. So,
per world (bench_linear's worlds with the seed + N, named NAME-seedN, their data in DIR/NAME/data, written when
missing):

- the baseline and full are fitted on the train eras with nmu train's defaults;
- the baseline is fitted K more times, each without one of K contiguous blocks of the train eras (and the
  resolved-target embargo on both sides of it), and scores the block it left out: an out-of-fold raw score for every
  train row;
- a booster on full's engineered columns alone (full's own `_engineer`, fitted on the train eras) grows from that
  score (LightGBM's `init_score`), at two budgets (STAGE_ROUNDS, feature_fraction 1: a few columns, every one
  in every tree), and, for contrast, from the baseline's in-sample score (the design that failed);
- on the validation eras the stacked prediction is the baseline's raw score plus the second booster's, scored alone
  (per-era ranks) and in full's place inside full's blend with its two ridges and its residualizer.

Printed per world: every variant minus the baseline and minus full (mean per-era corr over every validation era with
a target, paired Newey-West t), and pooled per kind of world (bench_worlds.pooled). Every budget is shown, none is
chosen: this says whether stacking can pay, on the validation eras, left alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402

from model.benchmarks import benchmark_vector, filled_benchmark  # noqa: E402
from model.booster import DEFAULT_LGBM_PARAMS, Rows, predict_raw  # noqa: E402
from model.eras import EraIndex  # noqa: E402
from model.features import chunk_rows, feature_matrix  # noqa: E402
from tests.benchmarks.bench_blend import blended, finished  # noqa: E402
from tests.benchmarks.bench_linear import worlds as fresh_worlds  # noqa: E402
from tests.benchmarks.bench_worlds import ensure_family_world, pooled  # noqa: E402
from training.config import load_config  # noqa: E402
from training.console import Reporter  # noqa: E402
from training.experiment import benchmark_for, build_model, fit_model, load_dataset, make_variant, resolved_rows  # noqa: E402
from validation.evaluation.scoring import score_eras  # noqa: E402
from validation.evaluation.selection import paired_difference  # noqa: E402

STAGE_ROUNDS = (200, 1000)
THREADS = 2


def model_rows(model, frame: pd.DataFrame, features: list[str], bench: pd.DataFrame | None):
    """The model's raw features (int8) and engineered columns of `frame`'s rows, in the frame's order, as its
    predict computes them (chunks of whole eras)."""
    x = frame[["era", *features]]
    eras = EraIndex.from_frame(x)
    bench_all = benchmark_vector(bench, x.index, model.benchmark_columns_)
    raw = feature_matrix(x, features)
    engineered = np.empty((len(x), len(model.engineered_names_)), np.float32)
    for rows in eras.chunks(chunk_rows(len(features))):
        sub_bench = None if bench_all is None else filled_benchmark(bench_all[rows])
        engineered[rows] = model._engineer(raw[rows], eras.take(rows), sub_bench)[0]
    return raw, engineered, eras


def raw_score(model, raw: np.ndarray) -> np.ndarray:
    """A baseline's raw booster score (target units, before any per-era rank)."""
    return predict_raw(model.booster_, Rows(raw, np.zeros((len(raw), 0), np.float32), None), THREADS)


def out_of_fold_scores(ds, config, quiet, folds: int) -> np.ndarray:
    """The baseline's raw score of every train row from a fit that never saw its era block (nor the embargo around
    it)."""
    eras = sorted(ds.train["era"].unique())
    out = np.full(len(ds.train), np.nan)
    era_of_row = ds.train["era"].to_numpy()
    if len(eras) < folds:
        raise SystemExit(f"{len(eras)} train eras cannot make {folds} folds")
    for k, block in enumerate(np.array_split(np.arange(len(eras)), folds)):
        lo, hi = block[0] - config.resolved_embargo, block[-1] + config.resolved_embargo
        kept = [e for i, e in enumerate(eras) if i < lo or i > hi]
        fit_rows = ds.train.loc[ds.train["era"].isin(kept)]
        model = fit_model(make_variant(build_model(config, ds.groups), "baseline", config), fit_rows, ds, quiet,
                          f"fold {k}", benchmark_for(fit_rows, ds.train_benchmark), config.compute)
        left_out = np.isin(era_of_row, [eras[i] for i in block])
        out[left_out] = raw_score(model, feature_matrix(ds.train.loc[left_out], ds.features))
    return out


def second_booster(engineered: np.ndarray, target: np.ndarray, start: np.ndarray, rounds: int, seed: int) -> lgb.Booster:
    params = {**DEFAULT_LGBM_PARAMS, "num_iterations": rounds, "feature_fraction": 1.0, "seed": seed,
              "deterministic": True, "force_col_wise": True, "num_threads": THREADS}
    keep = ~np.isnan(target)
    data = lgb.Dataset(engineered[keep], target[keep], init_score=start[keep], free_raw_data=True)
    return lgb.train(params, data)


def run_world(name: str, config_world: object, data: Path, folds: int) -> tuple[pd.DataFrame, dict]:
    quiet = Reporter(Console(quiet=True))
    ensure_family_world(data, config_world)
    config = load_config(None)
    ds = load_dataset(data, "synthetic", config, quiet)
    val = resolved_rows(ds.validation, ds.target)
    fit_bench, val_bench = benchmark_for(ds.train, ds.train_benchmark), benchmark_for(val, ds.validation_benchmark)
    seconds = {}

    def fit(variant: str):
        started = time.perf_counter()
        model = fit_model(make_variant(build_model(config, ds.groups), variant, config), ds.train, ds, quiet, variant,
                          fit_bench, config.compute)
        seconds[variant] = time.perf_counter() - started
        return model

    baseline, full = fit("baseline"), fit("full")
    started = time.perf_counter()
    oof = out_of_fold_scores(ds, config, quiet, folds)
    seconds["out-of-fold baselines"] = time.perf_counter() - started
    train_raw, train_engineered, _ = model_rows(full, ds.train, ds.features, fit_bench)
    target = ds.train[ds.target].to_numpy(np.float64)
    starts = {"out-of-fold": oof, "in-sample": raw_score(baseline, train_raw)}
    seed = int(full.random_state)
    started = time.perf_counter()
    stages = {f"{how} {rounds}": second_booster(train_engineered, target, start, rounds, seed)
              for how, start in starts.items() for rounds in STAGE_ROUNDS
              if how == "out-of-fold" or rounds == STAGE_ROUNDS[-1]}
    seconds["second boosters"] = time.perf_counter() - started
    del train_raw, train_engineered

    val_raw, val_engineered, eras = model_rows(full, val, ds.features, val_bench)
    labels = full.target_free_.pieces(val_raw, eras).labels if full.target_free_ is not None else None
    base_score = raw_score(baseline, val_raw)

    def corr(values: np.ndarray) -> pd.Series:
        return score_eras(np.asarray(values, np.float64), val, ds.target, ds.features, benchmark=None)["corr"]

    bench = None if val_bench is None else filled_benchmark(benchmark_vector(val_bench, val.index,
                                                                             full.benchmark_columns_))

    def in_full(values: np.ndarray) -> np.ndarray:  # full's predict_chunk with `values` in its trees' place
        return finished(full, blended(full, values, val_raw, val_engineered, eras), val_raw, eras, labels, bench)

    scores = {"baseline": corr(baseline.predict(ds.X(val), benchmark=val_bench)),
              "full": corr(full.predict(ds.X(val), benchmark=val_bench))}
    full_trees = predict_raw(full.booster_, Rows(val_raw, val_engineered, None), THREADS)
    scores["full, checked"] = corr(in_full(full_trees))
    for label, booster in stages.items():
        stacked = base_score + booster.predict(val_engineered, num_threads=THREADS)
        scores[f"stacked {label}"] = corr(eras.rank(stacked))
        scores[f"full with stacked {label}"] = corr(in_full(stacked))
    table = pd.DataFrame(scores)
    gap = float((table["full, checked"] - table["full"]).abs().max())
    if gap > 1e-9:
        raise SystemExit(f"{name}: full's blend rebuilt here is not full's predict (per-era corr apart by {gap:.1e})")
    return table.drop(columns="full, checked"), seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seed-offset", type=int, default=0)
    parser.add_argument("--worlds", required=True, help="comma-separated NAME-seedN of bench_linear's worlds")
    parser.add_argument("--folds", type=int, default=4)
    args = parser.parse_args()
    if args.folds < 2:
        parser.error(f"--folds must be 2 or more, got {args.folds}")
    known = fresh_worlds("both", True, args.seed_offset)
    rows = {"planted": [], "control": []}
    for name in args.worlds.split(","):
        if name not in known:
            parser.error(f"unknown world {name!r}; with --seed-offset {args.seed_offset}: {', '.join(known)}")
        table, seconds = run_world(name, known[name], args.data / name / "data", args.folds)
        print(f"{name}: {len(table)} validation eras; "
              + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()), flush=True)
        for column in table:
            if column == "baseline":
                print(f"  {'baseline':>36}: corr {table[column].mean():.4f}")
                continue
            vs_base = paired_difference(table[column], table["baseline"])
            line = f"  {column:>36}: corr {table[column].mean():.4f}, - baseline {vs_base['gain']:+.4f} (t {vs_base['t']:+.1f})"
            if column != "full":
                vs_full = paired_difference(table[column], table["full"])
                line += f", - full {vs_full['gain']:+.4f} (t {vs_full['t']:+.1f})"
            print(line, flush=True)
        rows["planted" if known[name].planted else "control"].append(table)
    for kind, tables in rows.items():
        if not tables:
            continue
        print(f"pooled over {len(tables)} {kind} world(s) (mean +- se):")
        for column in tables[0].columns.drop(["baseline", "full"]):
            for ref in ("baseline", "full"):
                mean, se, _ = pooled([{"d": (t[column] - t[ref]).to_numpy()} for t in tables], "d")
                print(f"  {column} - {ref}: {mean:+.4f} +- {se:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
