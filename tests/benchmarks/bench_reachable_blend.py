"""The reachable ceiling in the field beside the shipped pickle, and what the ceiling's estimates would add to it.

    python tests/benchmarks/bench_reachable_blend.py --data DIR [--seed-offset N] [--worlds NAME,NAME]

Per planted world of the built-in generator, on its future eras (bench_field.py's layout: DIR/NAME/data, the world,
and DIR/NAME/artifacts/model.pkl, the pickle `nmu train` shipped there; run bench_field.py on DIR first):

- the shipped pickle, left alone, one live era at a time (bench_worlds.run_live);
- the plain baseline refit on every resolved era (bench_field.fit_baseline);
- the reachable oracle (training.synthetic.reachable_predictions: every latent estimated from what a model can know
  at each era, its payoffs fed every resolved target as a weekly refresh would), told every effect, and told all but
  momentum (what a pickle left alone can use: momentum needs the targets after upload);
- per era, rank(pickle) + w x rank(reachable oracle without momentum), for a few w.

It prints per world the mean per-era corr of each minus the baseline's, and pooled over the worlds (bench_worlds.
pooled: world means weighted equally, with their standard error). A diagnostic of issue 23's first target (planted,
left alone: +0.0086 over the baseline): whether the reachable estimates, added to what the model already has, get
there. No bound is asserted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from model.eras import EraIndex
from model.live import make_predict
from tests.benchmarks.bench_field import WORLDS as FIELD_WORLDS
from tests.benchmarks.bench_field import fit_baseline
from tests.benchmarks.bench_linear import worlds as fresh_worlds
from tests.benchmarks.bench_worlds import per_era_corr, pooled, run_live
from training.synthetic import ORACLE_EFFECTS, SyntheticConfig, reachable_predictions

WEIGHTS = (0.25, 0.5, 1.0)
LEFT_ALONE_EFFECTS = tuple(e for e in ORACLE_EFFECTS if e != "momentum")


def measure(name: str, config: SyntheticConfig, root: Path) -> dict[str, pd.Series]:
    """Per-era corr on the future eras of the pickle, the baseline, both reachable oracles and the blends."""
    data, pickle = root / name / "data", root / name / "artifacts" / "model.pkl"
    if not pickle.is_file():
        raise SystemExit(f"{pickle} not found: run bench_field.py --data {root} on {name} first")
    future = pd.read_parquet(data / "future.parquet")
    bench = pd.read_parquet(data / "future_benchmark_models.parquet")
    eras = [int(e) for e in sorted(future["era"].unique())]
    shipped = run_live(pickle, future, bench)
    plain = make_predict(fit_baseline(data))
    live = future.drop(columns=[c for c in future.columns if c.startswith("target")])
    baseline = pd.concat([plain(rows, bench.loc[rows.index])["prediction"] for _, rows in live.groupby("era")])
    reachable = reachable_predictions(config, eras)["prediction"]
    left_alone = reachable_predictions(config, eras, LEFT_ALONE_EFFECTS)["prediction"]
    scores = {"baseline": baseline, "shipped": shipped, "reachable": reachable, "reachable, no momentum": left_alone}
    out = {k: per_era_corr(v, future) for k, v in scores.items()}
    # per-era percentile ranks, the scale the blend adds on
    ranks = EraIndex(future["era"].to_numpy()).rank(
        np.column_stack([shipped.reindex(future.index), left_alone.reindex(future.index)]))
    for w in WEIGHTS:
        out[f"shipped + {w:g} reachable"] = per_era_corr(
            pd.Series(ranks[:, 0] + w * ranks[:, 1], index=future.index), future)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seed-offset", type=int,
                        help="bench_linear's worlds with the seed + N (named NAME-seedN), as bench_field.py's option")
    parser.add_argument("--worlds", required=True, help="comma-separated planted worlds already run by bench_field.py")
    args = parser.parse_args()
    chosen = FIELD_WORLDS if args.seed_offset is None else fresh_worlds("built-in", True, args.seed_offset)
    rows = []
    for name in args.worlds.split(","):
        config = chosen[name]
        if not isinstance(config, SyntheticConfig) or not config.planted:
            parser.error(f"{name}: a planted world of the built-in generator is needed (the reachable oracle's)")
        scores = measure(name, config, args.data.resolve())
        rows.append({"world": name, "scores": scores})
        cells = ", ".join(f"{k} {(v - scores['baseline']).mean():+.4f}" for k, v in scores.items() if k != "baseline")
        print(f"{name}: baseline {scores['baseline'].mean():.4f}; minus the baseline: {cells}", flush=True)
    print("pooled over the worlds, minus the baseline (mean +- se):")
    for key in rows[0]["scores"]:
        if key == "baseline":
            continue
        diffs = [{"diff": (r["scores"][key] - r["scores"]["baseline"]).to_numpy()} for r in rows]
        mean, se, _ = pooled(diffs, "diff")
        print(f"  {key:32s} {mean:+.4f} +- {se:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
