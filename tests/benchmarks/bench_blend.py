"""Issue 23: how the trees and the two ridges are best put together, measured on the fresh-seed worlds' future eras.

    flock /tmp/nmu-cpu.lock python tests/benchmarks/bench_blend.py --data DIR [--family built-in|drifting|both]
                                                                   [--worlds NAME,NAME] [--seed-offset N]
                                                                   [--no-started] [--json FILE]

Two questions, on every shape of both families with a new seed (seed + 1000, bench_linear.py `--fresh`), baseline and
full fitted on every resolved era as `nmu train` refits, run left alone over the future eras:

1. **The weights.** `linear_weight` and `structural_weight` are predict-time settings, so one fit of full gives every
   pair of the grid LINEAR_WEIGHTS x STRUCTURAL_WEIGHTS on the same trees (above 1 the structural weight was never
   measured before).
2. **The trees started from the structural ridge.** Rather than rank-blending two predictions that each see part of
   the signal, grow the trees on what the structural ridge leaves: LightGBM's `init_score` set to the ridge's
   era-centred prediction (plus the target's mean), so no tree spends itself approximating the line. At predict the
   trees' raw score plus the ridge's is the prediction, then blended with the raw ridge (and the structural ridge
   again, at the grid's weights) and residualized as full is. Its fit is a second booster of full's size here (in a
   model it would replace the first, at full's cost).

Printed per world and pooled per family and kind (world means weighted equally, bench_worlds.pooled): each variant
minus the baseline (mean per-era corr on the future eras, paired Newey-West t). This measures; it chooses nothing by
itself: whatever these worlds choose is judged on the battery's and the held-out worlds' future eras.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import model.estimator as estimator_module  # noqa: E402
from model.booster import Rows, predict_raw, safe_name  # noqa: E402
from model.eras import EraIndex  # noqa: E402
from model.linear import blend  # noqa: E402
from tests.benchmarks.bench_linear import FRESH_SEED, FieldWorld, family_groups, worlds  # noqa: E402
from tests.benchmarks.bench_worlds import pooled  # noqa: E402
from validation.evaluation.selection import paired_difference  # noqa: E402

LINEAR_WEIGHTS = (0.0, 0.25, 0.5)
STRUCTURAL_WEIGHTS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0)
STARTED_STRUCTURAL_WEIGHTS = (0.0, 0.5, 1.0)


def started_booster(model, captured: dict, eras: EraIndex, threads: int):
    """A booster of full's parameters grown from the structural ridge's in-sample prediction (init_score)."""
    raw, engineered, target = captured["raw"], captured["engineered"], captured["target"]
    columns = model._structural_columns(engineered)
    start = model.structural_.scores(columns, eras)
    start = start - eras.broadcast(eras.means(start)) + np.nanmean(target)
    return estimator_module.train_booster(raw, engineered, target, model.lgbm_params, captured["names"],
                                          captured["categorical"], int(model.random_state), threads,
                                          estimator_module.CHUNK_CELLS, init_score=start)


def blended(model, values: np.ndarray, chunk: np.ndarray, engineered: np.ndarray, eras) -> np.ndarray:
    """NumeraiModel.predict_chunk's blend of tree values with the model's two ridges, for values other than its own
    trees'. Only the model's attributes and methods are used, so it also runs a model loaded from a pickle of
    another process, whose classes (and `eras`' EraIndex) are the pickle's own."""
    columns = None if model.structural_ is None else model._structural_columns(engineered)
    return blend(values, eras, [(model.linear_, chunk, float(model.linear_weight)),
                                (model.structural_, columns, float(model.structural_weight))])


def finished(model, values: np.ndarray, chunk: np.ndarray, eras, labels, bench) -> np.ndarray:
    """NumeraiModel.predict_chunk's last step on blended values: per-era ranks, residualized when the model is."""
    return eras.rank(values) if model.residualizer_ is None else model.residualizer_.transform(
        values, chunk, eras, labels, bench)


def started_chunk(model, booster):
    """predict_chunk of full with the started booster: trees' raw score + the structural ridge, then as full."""

    def predict_chunk(chunk, eras, bench, threads, pieces=None):
        engineered, labels = model._engineer(chunk, eras, bench, pieces)
        values = predict_raw(booster, Rows(chunk, engineered, None), threads) + model.structural_.scores(
            model._structural_columns(engineered), eras)
        return finished(model, blended(model, values, chunk, engineered, eras), chunk, eras, labels, bench)

    return predict_chunk


def run_world(name: str, config: object, data: Path, from_ridge: bool = True) -> dict:
    world = FieldWorld.load(config, data)
    scores, info = {}, {"world": name, "planted": bool(config.planted)}
    started = time.perf_counter()
    baseline = world.fit("baseline")
    info["baseline_seconds"] = time.perf_counter() - started
    scores["baseline"] = world.scores(baseline)
    captured: dict = {}
    original = estimator_module.train_booster

    def capturing(raw, engineered, target, user_params, names, categorical, *args, **kwargs):
        captured.update(raw=raw, engineered=engineered, target=target, names=[safe_name(n) for n in names],
                        categorical=[safe_name(c) for c in categorical])
        return original(raw, engineered, target, user_params, names, categorical, *args, **kwargs)

    estimator_module.train_booster = capturing  # full's own training matrix, for the second booster
    try:
        started = time.perf_counter()
        full = world.fit("full")
        info["full_seconds"] = time.perf_counter() - started
    finally:
        estimator_module.train_booster = original
    defaults = full.get_params()
    for wl in LINEAR_WEIGHTS:
        for ws in STRUCTURAL_WEIGHTS:
            full.set_params(linear_weight=wl, structural_weight=ws)
            scores[f"full l={wl:g} s={ws:g}"] = world.scores(full)
    kept = full.structural_ is not None and full.structural_.coef_ is not None
    info["structural_kept"] = kept
    if kept and from_ridge:
        eras = EraIndex.from_frame(world.ds.X(world.everything))
        started = time.perf_counter()
        booster = started_booster(full, captured, eras, estimator_module.lgbm_threads(-1))
        info["started_seconds"] = time.perf_counter() - started
        full.predict_chunk = started_chunk(full, booster)
        for wl in LINEAR_WEIGHTS:
            for ws in STARTED_STRUCTURAL_WEIGHTS:
                full.set_params(linear_weight=wl, structural_weight=ws)
                scores[f"started l={wl:g} s={ws:g}"] = world.scores(full)
        del full.predict_chunk
    full.set_params(linear_weight=defaults["linear_weight"], structural_weight=defaults["structural_weight"])
    info["scores"] = {k: v.to_dict() for k, v in scores.items()}
    return info


def variants(row: dict) -> list[str]:
    return [k for k in row["scores"] if k != "baseline"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/linear"))
    parser.add_argument("--family", choices=("built-in", "drifting", "both"), default="both")
    parser.add_argument("--worlds", help="comma-separated names (default: every fresh world of the family)")
    parser.add_argument("--seed-offset", type=int, default=FRESH_SEED,
                        help="the worlds' seeds + N (1000: the fresh seeds that chose the weights; another N: worlds "
                             "that chose nothing)")
    parser.add_argument("--no-started", action="store_true", help="only the weights, not the trees grown from the ridge")
    parser.add_argument("--json", type=Path, help="also write every world's per-era scores here")
    args = parser.parse_args()
    chosen = worlds(args.family, True, args.seed_offset)
    names = args.worlds.split(",") if args.worlds else list(chosen)
    rows = []
    for name in names:
        row = run_world(name, chosen[name], args.data.resolve() / name / "data", from_ridge=not args.no_started)
        rows.append(row)
        if args.json:
            args.json.write_text(json.dumps(rows, default=str))
        s = {k: pd.Series(v) for k, v in row["scores"].items()}
        parts = [f"{k} {paired_difference(s[k], s['baseline'])['gain']:+.4f}" for k in variants(row)]
        print(f"{name}: " + "; ".join(parts) + f"; fits {row['baseline_seconds']:.0f} / {row['full_seconds']:.0f} / "
              f"{row.get('started_seconds', float('nan')):.0f} s", flush=True)
    print("pooled minus the baseline (world means weighted equally; mean +- standard error, t):")
    for label, group in family_groups(rows):
        print(f"  {label}:")
        for key in dict.fromkeys(k for r in group for k in variants(r)):
            # a world whose structural layer the gate refused predicts as full: its started rows are full's
            per_world = [{"d": (pd.Series(r["scores"].get(key, r["scores"][key.replace("started", "full")]))
                                - pd.Series(r["scores"]["baseline"])).to_numpy()} for r in group]
            mean, se, t = pooled(per_world, "d")
            print(f"    {key}: {mean:+.4f} +- {se:.4f} (t {t:+.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
