"""The evidence for factor momentum, per factor and pooled over the factors, at several trailing windows.

    python tests/benchmarks/bench_momentum.py --data DIR [--seed-offset 3000 | --field] [--worlds NAME,NAME]
        [--windows 1,2,4,8,12]

Per world (every shape of both families with the seed + `--seed-offset`, as bench_linear.py's `worlds`, or with
`--field` benchmark 8's worlds, bench_field.py's; written into DIR/NAME/data on first use, about a minute for all
18), on every era with a resolved target (train and
validation, the eras `nmu train` refits on): the model's composites and factor returns (per-era correlations of the
target with each composite), then for each trailing window (lag 5, model.timing.Timing):

- the pooled momentum test (model.timing.pooled_momentum_stat) over all those eras: its Newey-West t, and the
  verdict of Timing's pooled gate (`Timing.momentum_pooled_`: that t above the gates' threshold);
- the same test on the choosing block and on the confirming block of the other gates (model.stats.evidence_blocks),
  which the pooled gate chose by until the whole-sample test replaced it;
- how many factors keep momentum, with the pooled test and by the per-factor gate alone.

No model is fitted; a few seconds a world once written. The window of the pooled test (4, with `refresh = "weekly"`)
was chosen on the seed + 3000 worlds' planted shapes by the first column; see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from model.factors import factor_returns  # noqa: E402
from model.stats import CONFIRM_T, confirm, familywise_threshold, gate_embargo  # noqa: E402
from model.timing import Timing, pooled_momentum_stat  # noqa: E402
from tests.benchmarks.bench_linear import worlds  # noqa: E402
from tests.benchmarks.bench_worlds import ensure_family_world  # noqa: E402
from tests.worlds import train_composites  # noqa: E402

LAG, NW_LAGS, THRESHOLD = 5, 4, 3.0  # NumeraiModel's timing_lag, Newey-West lags and timing_threshold


def momentum_evidence(world: Path, windows: list[int]) -> dict[str, dict[str, float]]:
    """Per window: the pooled t over all resolved eras, on the choosing and the confirming block, the pooled gate's
    verdict, and the factors kept with the pooled test and without it."""
    z, comp_raw, y, eras, names, _ = train_composites(world, ("train.parquet", "validation.parquet"))
    returns = factor_returns(z, y, eras)
    out = {}
    for w in windows:
        timing = Timing(window=w, lag=LAG, threshold=THRESHOLD, nw_lags=NW_LAGS)
        timing.set_history(eras.eras, returns)
        trail = timing.trailing(eras.eras)
        pooled = Timing(window=w, lag=LAG, threshold=THRESHOLD, nw_lags=NW_LAGS, pooled=True).fit(z, comp_raw, returns, eras, names)
        single = Timing(window=w, lag=LAG, threshold=THRESHOLD, nw_lags=NW_LAGS).fit(
            z, comp_raw, returns, eras, names)
        split = confirm(lambda part, trail=trail: pooled_momentum_stat(trail[part], returns[part], NW_LAGS), eras.n_eras,
                        familywise_threshold(1, THRESHOLD * 0.8), gate_embargo(NW_LAGS))
        out[str(w)] = {
            "t": pooled.momentum_pooled_t_, "select_t": float(split.select_t[0]), "confirm_t": float(split.confirm_t[0]),
            "kept": pooled.momentum_pooled_,
            # the rule before (b219f2c): chosen with a positive t, confirmed above CONFIRM_T, no size condition
            "split_kept": bool(split.chosen[0] and split.select_t[0] > 0 and split.confirm_t[0] > CONFIRM_T),
            "factors": len(names), "with_pooled": len(pooled.momentum_factors_),
            "per_factor": len(single.momentum_keep_)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seed-offset", type=int, default=3000)
    parser.add_argument("--field", action="store_true", help="benchmark 8's worlds (bench_field.py's) instead")
    parser.add_argument("--worlds", help="comma-separated names (default: every shape of both families)")
    parser.add_argument("--windows", default="1,2,4,8,12")
    args = parser.parse_args()
    if args.field:  # imported here: bench_field imports bench_worlds, which the seed-offset worlds need alone
        from tests.benchmarks.bench_field import ALL_WORLDS as chosen
    else:
        chosen = worlds("both", True, args.seed_offset)
    names = args.worlds.split(",") if args.worlds else list(chosen)
    windows = [int(w) for w in args.windows.split(",")]
    print(f"{'world':32s} " + " ".join(f"{'window ' + str(w):>24s}" for w in windows))
    for name in names:
        data = args.data.resolve() / name / "data"
        ensure_family_world(data, chosen[name])
        evidence = momentum_evidence(data, windows)
        cells = [f"t {e['t']:5.1f} ({e['select_t']:4.1f}/{e['confirm_t']:4.1f}) {'K' if e['kept'] else '-'}"
                 f"{'k' if e['split_kept'] else '-'} {e['with_pooled']:2d}/{e['per_factor']:<2d}" for e in evidence.values()]
        print(f"{name:32s} " + " ".join(f"{c:>24s}" for c in cells), flush=True)
    print("t: the pooled test over all resolved eras (choosing/confirming blocks); K: the pooled gate keeps momentum, "
          "k: the split rule before it would have (chosen above 2.4 scaled to the choosing eras, confirmed above 1.5); "
          "n/m: factors with momentum with the pooled test / by the per-factor gate alone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
