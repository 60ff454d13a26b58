"""Why refreshing collects less than momentum is worth to the reachable oracle: the column, or what it is added to?

    python tests/benchmarks/bench_momentum_overlap.py --data DIR [--seed-offset N] --worlds NAME,NAME

Per world already run by bench_field.py (DIR/NAME/data, DIR/NAME/artifacts/model.pkl: a weekly model whose pooled
momentum test passed, so it has the `timed_momentum` column) of the built-in generator, on its future eras:

- the pickle refreshed weekly, one live era at a time through its own live function (bench_field.py's "refreshed"
  run), with the `timed_momentum` column it computed for each era captured, and the pickle left alone (neutral);
- the reachable oracle's pooled momentum term on the same rows (bench_momentum_coefficients.oracle_momentum: the
  sum over factors of estimated style x trailing deviation of its factor return), and the oracle told everything
  but momentum; twice: "oracle", its estimators and payoffs fitted on the train eras (the oracle of the docs' tables),
  and "oracle refit", fitted like the pickle on every era resolved when the world was written (train and
  validation).

It prints per world the mean per-era numerai_corr with the target of the model's column and of each oracle's term,
their correlation with each other, the correlation of each with what it is added to (the left-alone prediction's
rank; the oracle without momentum), and the gain of adding either by hand at a few weights: rank(left alone) + w x
rank(column) against the oracle without momentum + w x its term, each side standardised. Pooled over the worlds, the
gains at each weight and refreshing's own gain. A diagnostic: it asserts only that the rows are the oracle's.

Why: on the battery refreshing paid +0.0009 over leaving the pickle alone, where the oracle's momentum weighed by one
coefficient was worth +0.0015 (docs/benchmarks.md, "One coefficient for pooled momentum"). If the model's column
carried less of the target than the oracle's, a better column would be the lever; if the column is as good, but the
left-alone prediction already carries part of it, there is little to collect.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks.bench_field import ALL_WORLDS, pickle_with_policy, weekly_eras  # noqa: E402
from tests.benchmarks.bench_linear import worlds as fresh_worlds  # noqa: E402
from tests.benchmarks.bench_momentum_coefficients import _corr, oracle_momentum  # noqa: E402
from tests.benchmarks.bench_worlds import pooled  # noqa: E402
from training.synthetic import SyntheticConfig  # noqa: E402

WEIGHTS = (0.1, 0.2, 0.3, 0.5)
ORACLES = ("oracle", "oracle refit")


def _standardised(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    sd = values.std()
    return (values - values.mean()) / sd if sd > 0 else values * 0.0


def _rank(values: np.ndarray) -> np.ndarray:
    return _standardised(pd.Series(np.asarray(values, dtype=np.float64)).rank().to_numpy())


def measure(world: Path, config: SyntheticConfig) -> pd.DataFrame | None:
    """One row per future era of the figures in the module doc; None without the pooled column."""
    refreshed, model = pickle_with_policy(world / "artifacts" / "model.pkl", "hold")  # bench_field's refreshed run
    left_alone, _ = pickle_with_policy(world / "artifacts" / "model.pkl", "neutral")
    names = list(model.engineered_names_)
    if "timed_momentum" not in names:
        return None
    column, captured, predict_chunk = names.index("timed_momentum"), [], model.predict_chunk

    def capturing(chunk, eras, bench, threads, pieces=None):
        engineered, _ = model._engineer(chunk, eras, bench, pieces)
        captured.append(engineered[:, column].astype(np.float64))
        return predict_chunk(chunk, eras, bench, threads, pieces)

    model.predict_chunk = capturing  # the live function calls the model's predict_eras, which calls this
    # the oracle as documented (its estimators and payoffs fitted on the train eras) and fitted, as the pickle is, on
    # every era resolved when the world was written: its estimators on the eras' features, its payoffs on the targets
    # that era `eras` sees (all but the newest unresolved ones)
    oracles = {"oracle": oracle_momentum(config, model.timing_.window),
               "oracle refit": oracle_momentum(config, model.timing_.window, config.eras)}
    rows = []
    for era, part, live, bench in weekly_eras(model, pd.read_parquet(world / "data" / "future.parquet"), world / "data"):
        calls = len(captured)
        now = refreshed(live, bench)["prediction"].to_numpy()
        if len(captured) != calls + 1:
            raise SystemExit(f"{world.name}: era {era} took {len(captured) - calls} chunks, not one")
        left = left_alone(live, bench)["prediction"].to_numpy()
        t = int(era) - 1  # era labels count from 1, the generator's era index from 0
        target, ours = part["target"].to_numpy(), captured[-1]
        row = {"refreshed": _corr(now, target), "left alone": _corr(left, target), "column": _corr(ours, target),
               "column vs left alone": float(np.corrcoef(_rank(ours), _rank(left))[0, 1])}
        base = _corr(left, target)
        for w in WEIGHTS:
            row[f"model {w:g}"] = _corr(_rank(left) + w * _rank(ours), target) - base
        for key, oracle in oracles.items():
            if t not in oracle.targets or not np.allclose(oracle.targets[t], target, atol=1e-3):
                raise SystemExit(f"{world.name}: era {era}'s rows are not the oracle's era {t} (another world or order?)")
            theirs, without = oracle.timed[t].sum(axis=1), oracle.without[t]
            row[f"{key} term"] = _corr(theirs, target)
            row[f"column vs {key} term"] = float(np.corrcoef(_rank(ours), _rank(theirs))[0, 1])
            row[f"{key} term vs without"] = float(np.corrcoef(_standardised(theirs), _standardised(without))[0, 1])
            oracle_base = _corr(without, target)
            for w in WEIGHTS:
                row[f"{key} {w:g}"] = _corr(_standardised(without) + w * _standardised(theirs), target) - oracle_base
        rows.append(row)
    return pd.DataFrame(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seed-offset", type=int, default=None,
                        help="the worlds of that seed set (bench_field.py's option); without it benchmark 8's")
    parser.add_argument("--worlds", required=True, help="comma-separated worlds already run by bench_field.py in DIR")
    args = parser.parse_args()
    chosen = ALL_WORLDS if args.seed_offset is None else fresh_worlds("both", True, args.seed_offset)
    names = args.worlds.split(",")
    unknown = [n for n in names if not isinstance(chosen.get(n), SyntheticConfig)]
    if unknown:
        parser.error(f"{unknown}: not a world of the built-in generator in this set (the oracle is of that generator)")
    frames = []
    for name in names:
        frame = measure(args.data.resolve() / name, chosen[name])
        if frame is None:
            print(f"{name}: the pooled momentum test kept nothing (no timed_momentum column)")
            continue
        frames.append(frame)
        m = frame.mean()
        print(f"{name}: refresh pays {m['refreshed'] - m['left alone']:+.4f}; column: corr with the target "
              f"{m['column']:.4f}, with the left-alone prediction {m['column vs left alone']:+.3f}; added at w " +
              ", ".join(f"{w:g} {m[f'model {w:g}']:+.4f}" for w in WEIGHTS), flush=True)
        for key in ORACLES:
            print(f"  {key}: term's corr with the target {m[f'{key} term']:.4f}, with the column "
                  f"{m[f'column vs {key} term']:.2f}, with the oracle without momentum {m[f'{key} term vs without']:+.3f}; "
                  "added at w " + ", ".join(f"{w:g} {m[f'{key} {w:g}']:+.4f}" for w in WEIGHTS), flush=True)
    if frames:
        print(f"pooled over {len(frames)} world(s) (mean +- se):")
        refresh = [{"diff": (f["refreshed"] - f["left alone"]).to_numpy()} for f in frames]
        print("  refresh pays {:+.4f} +- {:.4f}".format(*pooled(refresh, "diff")[:2]))
        def line(key: str, digits: int) -> str:
            mean, se, _ = pooled([{"d": f[key].to_numpy()} for f in frames], "d")
            return f"{mean:+.{digits}f} +- {se:.{digits}f}"

        print(f"  the column: corr with the left-alone prediction {line('column vs left alone', 3)}")
        for key in ORACLES:
            print(f"  {key}: its term's corr with the oracle without momentum {line(f'{key} term vs without', 3)}")
        for w in WEIGHTS:
            print(f"  added at w {w:g}: to the left-alone pickle {line(f'model {w:g}', 4)}, " + ", ".join(
                f"to the {key} without momentum {line(f'{key} {w:g}', 4)}" for key in ORACLES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
