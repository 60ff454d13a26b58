"""Issue 23's measurements of where the engine leaves gain: two candidates, on both world families, in the lab.

    python tests/benchmarks/bench_engine.py [--data DIR] [--family built-in|drifting|both] [--worlds NAME,NAME]
                                            [--per-node] [--ablation] [--out-of-fold]

Per world (the battery's of bench_worlds.py, written to DIR/NAME/data when missing, the drifting family's too), the
baseline and full are fitted on the train eras with nmu train's defaults and scored left alone on every validation
era with a target (mean per-era corr; t: the paired Newey-West t of the per-era differences with the baseline, as
the ship rule's). Printed per world:

- where the engineered columns sit in full's trees: their share of the columns, of the splits and of the gain
  (LightGBM's feature_importance), to test whether colsample_bytree 0.1 keeps them out of the trees;
- with --per-node, full with per-node instead of per-tree column sampling (feature_fraction 1.0,
  feature_fraction_bynode 0.1);
- with --ablation, what the gates kept in full (interaction pairs of how many candidates, the engineered columns)
  and full minus each no_interactions, no_timing and no_residualizer variant;
- with --out-of-fold, the blend's weight chosen without the validation eras: full and the ridge fitted on the
  first two thirds of the train eras, w of (0, 0.25, 0.5, 1, 2) chosen by mean corr on the last third (after an
  embargo), then that w applied to the fits on every train era ("full+oof ridge");
- the ship rule on these fits: full - baseline on the choosing half of the embargoed validation eras and on all of
  them (paired Newey-West t, validation.evaluation.selection), whether the veto fires and which variant ships;
- a linear layer: ridge regression of the era-centred target on the era-centred raw features (alpha 1 per 1,000
  rows), fitted on the train eras, alone and blended with the trees by per-era rank, rank(trees) + w x rank(ridge)
  (since the model holds this layer itself, `linear`, full's blends here add a second ridge over its own),
  for w in 0.25, 0.5, 1, 2, with full's trees and with the baseline's. Every w is shown, none chosen: this says
  whether a blend can pay, not which weight would be chosen out of fold.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402

from model.eras import EraIndex  # noqa: E402
from tests.benchmarks.bench_worlds import DRIFTING_WORLDS, WORLDS, ensure_family_world  # noqa: E402
from training.config import load_config  # noqa: E402
from training.console import Reporter  # noqa: E402
from training.experiment import (  # noqa: E402
    benchmark_for,
    build_model,
    fit_model,
    load_dataset,
    make_variant,
    resolved_rows,
)
from validation.evaluation.scoring import score_eras  # noqa: E402
from validation.evaluation.selection import SHIP_T, VETO_T, paired_difference, split_eras  # noqa: E402

WEIGHTS = (0.25, 0.5, 1.0, 2.0)
RIDGE_ALPHA_PER_1000_ROWS = 1.0


def era_centred(values: np.ndarray, eras: np.ndarray) -> np.ndarray:
    """`values` (rows x columns, or rows) minus their era's mean."""
    frame = pd.DataFrame(np.asarray(values, dtype=np.float64))
    out = (frame - frame.groupby(eras).transform("mean")).to_numpy()
    return out[:, 0] if np.ndim(values) == 1 else out


def ridge_weights(frame: pd.DataFrame, features: list[str], target: str) -> np.ndarray:
    """The linear layer: ridge of the era-centred target on the era-centred features, by the normal equations."""
    eras = frame["era"].to_numpy()
    x = era_centred(frame[features].to_numpy(np.float32), eras)
    y = era_centred(frame[target].to_numpy(np.float64), eras)
    gram = x.T @ x
    gram[np.diag_indices_from(gram)] += RIDGE_ALPHA_PER_1000_ROWS * len(x) / 1000
    return np.linalg.solve(gram, x.T @ y)


def out_of_fold_weight(ds, config, quiet) -> float:
    """The blend weight chosen on the train eras alone: fits on their first two thirds, w scored on the last third
    after the embargo."""
    train_eras = sorted(ds.train["era"].unique())
    cut = 2 * len(train_eras) // 3
    fit_rows = ds.train.loc[ds.train["era"].isin(train_eras[:cut])]
    test_rows = ds.train.loc[ds.train["era"].isin(train_eras[cut + config.resolved_embargo:])]
    model = fit_model(make_variant(build_model(config, ds.groups), "full", config), fit_rows, ds, quiet, "oof",
                      benchmark_for(fit_rows, ds.train_benchmark), config.compute)
    trees = np.asarray(model.predict(ds.X(test_rows), benchmark=benchmark_for(test_rows, ds.train_benchmark)),
                       np.float64)
    eras = test_rows["era"].to_numpy()
    linear = era_centred(test_rows[ds.features].to_numpy(np.float32), eras) @ ridge_weights(fit_rows, ds.features,
                                                                                            ds.target)
    index = EraIndex(eras)
    means = {w: score_eras(index.rank(trees) + w * index.rank(linear), test_rows, ds.target, ds.features,
                           benchmark=None)["corr"].mean() for w in (0.0, *WEIGHTS)}
    return max(means, key=means.get)


def run_world(name: str, data: Path, per_node: bool, ablation: bool = False,
              out_of_fold: bool = False) -> tuple[pd.DataFrame, dict]:
    quiet = Reporter(Console(quiet=True))
    ensure_family_world(data, {**WORLDS, **DRIFTING_WORLDS}[name])
    config = load_config(None)
    ds = load_dataset(data, "synthetic", config, quiet)
    val = resolved_rows(ds.validation, ds.target)
    fit_bench, val_bench = benchmark_for(ds.train, ds.train_benchmark), benchmark_for(val, ds.validation_benchmark)
    eras = val["era"].to_numpy()

    def corr(predictions: np.ndarray) -> pd.Series:
        return score_eras(np.asarray(predictions, np.float64), val, ds.target, ds.features, benchmark=None)["corr"]

    variants = {"baseline": ("baseline", {}), "full": ("full", {})}
    if ablation:
        variants.update({v: (v, {}) for v in ("no_interactions", "no_timing", "no_residualizer")})
    if per_node:
        variants["full_per_node"] = ("full", {"feature_fraction": 1.0, "feature_fraction_bynode": 0.1})
    predictions, info = {}, {}
    for label, (variant, extra) in variants.items():
        base = build_model(config, ds.groups)
        if extra:
            base = base.set_params(lgbm_params={**(base.lgbm_params or {}), **extra})
        started = time.perf_counter()
        model = fit_model(make_variant(base, variant, config), ds.train, ds, quiet, label, fit_bench, config.compute)
        info[f"{label}_seconds"] = time.perf_counter() - started
        predictions[label] = np.asarray(model.predict(ds.X(val), benchmark=val_bench), np.float64)
        if label == "full":
            booster, engineered = model.booster_, set(model.engineered_names_)
            names = booster.feature_name()
            mine = [n for n in names if n in engineered]
            for kind in ("split", "gain"):
                importance = pd.Series(booster.feature_importance(kind), index=names)
                info[f"engineered_{kind}_share"] = float(importance[mine].sum() / importance.sum())
            info["engineered_column_share"] = len(mine) / len(names)
            pairs = model.interactions_
            info["gates"] = (f"interactions kept {len(pairs.names_) if pairs else 0} of "
                             f"{len(pairs.candidates_) if pairs else 0} candidate pairs; engineered columns: "
                             f"{', '.join(model.engineered_names_)}")
    linear = (era_centred(val[ds.features].to_numpy(np.float32), eras)
              @ ridge_weights(ds.train, ds.features, ds.target))
    scores = {label: corr(p) for label, p in predictions.items()}
    for label in [k for k in scores if k.startswith("no_")]:  # shown as full minus the variant
        info[f"full - {label}"] = paired_difference(scores["full"], scores.pop(label))
    scores["ridge"] = corr(linear)
    index = EraIndex(eras)  # per-era percentile ranks, the blend's scale in the model
    for w in WEIGHTS:
        for trees in ("full", "baseline"):
            scores[f"{trees}+{w:g}ridge"] = corr(index.rank(predictions[trees]) + w * index.rank(linear))
    if out_of_fold:
        info["oof_weight"] = w = out_of_fold_weight(ds, config, quiet)
        scores["full+oof ridge"] = corr(index.rank(predictions["full"]) + w * index.rank(linear))
    table = pd.DataFrame(scores)
    embargoed = sorted(table.index)[config.resolved_embargo:]
    choosing, _ = split_eras(embargoed)
    info["choosing"] = paired_difference(table.loc[choosing, "full"], table.loc[choosing, "baseline"])
    info["all"] = paired_difference(table.loc[embargoed, "full"], table.loc[embargoed, "baseline"])
    info["ships"] = "baseline" if info["choosing"]["t"] < SHIP_T or info["all"]["t"] < VETO_T else "full"
    return table, info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/worlds"))
    parser.add_argument("--family", choices=("built-in", "drifting", "both"), default="both")
    parser.add_argument("--worlds", default=None, help="comma-separated names (default: every world of the family)")
    parser.add_argument("--per-node", action="store_true", help="also full with per-node column sampling")
    parser.add_argument("--ablation", action="store_true", help="also full without each gated component")
    parser.add_argument("--out-of-fold", action="store_true", help="also the blend with w chosen on the train eras")
    args = parser.parse_args()
    known = {**(WORLDS if args.family != "drifting" else {}), **(DRIFTING_WORLDS if args.family != "built-in" else {})}
    names = args.worlds.split(",") if args.worlds else list(known)
    unknown = [n for n in names if n not in {**WORLDS, **DRIFTING_WORLDS}]
    if unknown:
        parser.error(f"unknown world(s) {unknown}")
    pooled = []
    for name in names:
        scores, info = run_world(name, args.data / name / "data", args.per_node, args.ablation, args.out_of_fold)
        if args.out_of_fold:
            print(f"{name}: the out-of-fold blend weight is {info['oof_weight']:g}")
        diff = scores.sub(scores["baseline"], axis=0)
        shares = (f"engineered columns {info['engineered_column_share']:.0%} of the columns, "
                  f"{info['engineered_split_share']:.0%} of the splits, {info['engineered_gain_share']:.0%} of the gain")
        print(f"{name}: {len(scores)} validation eras; {shares}; fits "
              + ", ".join(f"{k.removesuffix('_seconds')} {v:.0f} s" for k, v in info.items() if k.endswith("seconds")))
        if args.ablation:
            print(f"  gates: {info['gates']}")
            for key in [k for k in info if k.startswith("full - no_")]:
                print(f"  {key}: {info[key]['gain']:+.4f} (t {info[key]['t']:+.2f})")
        ch, al = info["choosing"], info["all"]
        print(f"  ship rule: choosing eras {ch['gain']:+.4f} (t {ch['t']:+.2f}), all embargoed eras {al['gain']:+.4f} "
              f"(t {al['t']:+.2f}; veto {'fires' if al['t'] < VETO_T else 'silent'}): ships {info['ships']}")
        for column in scores:
            print(f"  {column:>18}: corr {scores[column].mean():.4f}, - baseline {diff[column].mean():+.4f} "
                  f"(t {paired_difference(scores[column], scores['baseline'])['t']:+.1f})")
        pooled.append(diff.mean().rename(name))
    table = pd.DataFrame(pooled)
    print("\nper world, minus the baseline (mean per-era corr):")
    print(table.round(4).to_string())
    print("\nmean over the worlds run:")
    print(table.mean().round(4).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
