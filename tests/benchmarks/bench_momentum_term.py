"""Pooled momentum given its own term in the blend, on the refreshed pickle: does refresh pay more?

    python tests/benchmarks/bench_momentum_term.py --data DIR --worlds NAME,NAME [--weights 0.1,0.25]

Per world already run by bench_field.py (DIR/NAME/data, DIR/NAME/artifacts/model.pkl, a weekly model whose pooled
momentum test passed: the `timed_momentum` column), the pickle is refreshed weekly on its future eras exactly as
bench_field.py's "refreshed" run does, one live era at a time through the pickle's own live function, and each era's
blend is also taken with one more term before the residualizer:

    rank(trees) + linear_weight x rank(ridge) + structural_weight x rank(structural ridge) + w x rank(timed_momentum)

Why: refreshing the weekly model paid +0.0009 over leaving it alone on the battery, where the reachable oracle's
momentum weighed by one coefficient was worth +0.0015 (docs/benchmarks.md "One coefficient for pooled momentum").
In the model the column is one of about 17 the structural ridge weighs, and the trees see it on a tenth of their
splits; a term of its own would hand its signal to the prediction directly. Left alone under the neutral policy the
column is 0 in every row, its rank a constant, so the term could cost a pickle that is never refreshed nothing.

It prints per world the mean per-era corr at w = 0 (which must equal the refreshed pickle's own output: checked)
and at each w, and pooled over the worlds the difference against w = 0 (bench_worlds.pooled). A diagnostic: nothing
is asserted but the w = 0 check.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from model.booster import Rows, predict_raw
from tests.benchmarks.bench_blend import blended, finished
from tests.benchmarks.bench_field import pickle_with_policy, weekly_eras
from tests.benchmarks.bench_worlds import per_era_corr, pooled


def measure(world: Path, weights: list[float]) -> dict[float, pd.Series] | None:
    """Per-era corr of the refreshed pickle with the momentum term at each weight (0 first); None without the
    pooled column."""
    predict, model = pickle_with_policy(world / "artifacts" / "model.pkl", "hold")  # bench_field's refreshed run
    names = list(model.engineered_names_)
    if "timed_momentum" not in names:
        return None
    column = names.index("timed_momentum")
    per_weight: dict[float, list[np.ndarray]] = {w: [] for w in weights}

    def predict_chunk(chunk, eras, bench, threads, pieces=None):  # NumeraiModel.predict_chunk with the extra term
        engineered, labels = model._engineer(chunk, eras, bench, pieces)
        trees = predict_raw(model.booster_, Rows(chunk, engineered, None), threads)
        values = eras.rank(blended(model, trees, chunk, engineered, eras))
        momentum = eras.rank(engineered[:, column].astype(np.float64))
        for w in weights:
            per_weight[w].append(finished(model, values + w * momentum, chunk, eras, labels, bench))
        return per_weight[weights[0]][-1]

    model.predict_chunk = predict_chunk  # the live function calls the model's predict_eras, which calls this
    future = pd.read_parquet(world / "data" / "future.parquet")
    shipped, index = [], []
    for era, _, rows, bench in weekly_eras(model, future, world / "data"):
        calls = len(per_weight[weights[0]])
        shipped.append(predict(rows, bench)["prediction"])
        if len(per_weight[weights[0]]) != calls + 1:
            raise SystemExit(f"{world.name}: era {era} took {len(per_weight[weights[0]]) - calls} chunks, not one")
        index.append(rows.index)
    rows_index = np.concatenate(index)
    out = {w: per_era_corr(pd.Series(np.concatenate(parts), index=rows_index), future) for w, parts in per_weight.items()}
    gap = float((out[weights[0]] - per_era_corr(pd.concat(shipped), future)).abs().max())
    if gap > 1e-12:
        raise SystemExit(f"{world.name}: w = 0 is not the refreshed pickle (per-era corr apart by {gap:.2e})")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--worlds", required=True, help="comma-separated worlds already run by bench_field.py in DIR")
    parser.add_argument("--weights", default="0.1,0.25,0.5")
    args = parser.parse_args()
    weights = [0.0, *sorted({float(w) for w in args.weights.split(",")} - {0.0})]  # w = 0 is the reference
    rows = []
    for name in args.worlds.split(","):
        scores = measure(args.data.resolve() / name, weights)
        if scores is None:
            print(f"{name}: the pooled momentum test kept nothing (no timed_momentum column): every weight is w = 0")
            continue
        rows.append(scores)
        cells = " ".join(f"w {w:g} {s.mean():.4f}" for w, s in scores.items())
        print(f"{name}: refreshed, {cells}", flush=True)
    if rows:
        print(f"pooled over the {len(rows)} world(s) with the column, minus w = 0 (mean +- se):")
        for w in weights[1:]:
            mean, se, _ = pooled([{"diff": (r[w] - r[0.0]).to_numpy()} for r in rows], "diff")
            print(f"  w {w:g}: {mean:+.4f} +- {se:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
