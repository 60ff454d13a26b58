"""Factor momentum on the reachable oracle: one coefficient over the factors against one per factor (no model fit).

    python tests/benchmarks/bench_momentum_coefficients.py [--seed-offset 4000] [--worlds NAME,NAME] [--window 4]

Per planted world of the built-in generator (bench_linear.py's `worlds` with the seed + `--seed-offset`; 0 gives the
battery's own configs), generated in memory (no files; a few seconds to a minute a world), on the reachable oracle's
estimated styles (training.synthetic.reachable_predictions' construction, told everything but momentum):

- each era's factor returns as the model measures them: per group, the slope of the target on the estimated style
  alone (a per-era correlation up to scale: model.factors.factor_returns), the regime group's unflipped by the
  estimated regime;
- their deviation from the train eras' mean, trailing over `--window` resolved eras lagged as the data lags targets;
- the timed exposures, style_k x trailing deviation_k, weighed by coefficients fitted by least squares on the train
  eras' targets (those resolved by the first era after them): one coefficient for their sum over the factors, or one
  per factor.

It prints, per world and pooled, the mean per-era numerai_corr on the future eras of the oracle with either form of
momentum minus the oracle without momentum: what momentum is worth when it is weighed as one pooled term, and what
is left of it when each factor's weight is fitted on its own. The pooled form is what `Timing(pooled=True)` builds
(one `timed_momentum` column); docs/benchmarks.md, "Momentum pooled over the factors".
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numerai_tools.scoring import numerai_corr

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks.bench_linear import worlds  # noqa: E402
from tests.benchmarks.bench_worlds import pooled  # noqa: E402
from training.synthetic import ORACLE_EFFECTS, SyntheticConfig, _reachable_coefficients, _reachable_state  # noqa: E402

FORMS = ("one coefficient", "one per factor")


def _corr(prediction: np.ndarray, target: np.ndarray) -> float:
    return float(numerai_corr(pd.DataFrame({"p": prediction}), pd.Series(target, name="target"))["p"])


@dataclass
class OracleMomentum:
    """The reachable oracle's pooled momentum on a world's future eras, each a dict keyed by era index."""

    without: dict[int, np.ndarray]  # the oracle told everything but momentum
    timed: dict[int, np.ndarray]  # (n, factors): estimated style x trailing deviation of its factor return
    targets: dict[int, np.ndarray]
    one: float  # one coefficient for the sum of `timed` over the factors, least squares on the train eras
    per_factor: np.ndarray  # one coefficient per factor, likewise


def oracle_momentum(config: SyntheticConfig, window: int, train_eras: int | None = None) -> OracleMomentum:
    """The reachable oracle's timed momentum exposures on the future eras and their coefficients (module doc), its
    estimators and payoffs fitted on the first `train_eras` eras (default: the world's train eras)."""
    state = _reachable_state(config, config.train_eras if train_eras is None else train_eras, None)
    designs, coefficients = _reachable_coefficients(state, tuple(e for e in ORACLE_EFFECTS if e != "momentum"))
    groups, total = len(state.world.groups), len(designs)
    sign = np.ones((total, groups))
    sign[state.regime == 1, state.world.regime_group] = -1.0
    returns = np.full((total, groups), np.nan)
    for t, (design, target) in enumerate(zip(designs, state.targets)):
        if np.isfinite(target).all():
            style = design[:, :groups]
            returns[t] = style.T @ (target - target.mean()) / (style * style).sum(axis=0)
    returns *= sign
    fit_end = max(1, state.train - state.lag + 1)  # train eras resolved by the first era after them
    deviation = np.nan_to_num(returns - np.nanmean(returns[:fit_end], axis=0))
    cumulative = np.vstack([np.zeros((1, groups)), np.cumsum(deviation, axis=0)])
    cut = np.clip(np.arange(total) - state.lag + 1, 0, total)  # eras < cut are resolved at era t
    trailing = (cumulative[cut] - cumulative[np.clip(cut - window, 0, total)]) / window

    def timed(t: int) -> np.ndarray:
        return designs[t][:, :groups] * (sign[t] * trailing[t])

    fit_eras = range(state.lag + window - 1, fit_end)
    x = np.vstack([timed(t) for t in fit_eras])
    y = np.concatenate([state.targets[t] - state.targets[t].mean() for t in fit_eras])
    total_x = x.sum(axis=1)
    future = range(config.eras, config.eras + config.future_eras)
    return OracleMomentum(
        without={t: designs[t] @ coefficients[t] for t in future}, timed={t: timed(t) for t in future},
        targets={t: state.targets[t] for t in future}, one=float(total_x @ y / (total_x @ total_x)),
        per_factor=np.linalg.lstsq(x, y, rcond=None)[0])


def momentum_worth(config: SyntheticConfig, window: int) -> dict[str, np.ndarray]:
    """Per future era, the oracle's corr with each form of momentum minus its corr without momentum."""
    oracle = oracle_momentum(config, window)
    out: dict[str, list[float]] = {form: [] for form in FORMS}
    for t, without in oracle.without.items():
        target, timed = oracle.targets[t], oracle.timed[t]
        base = _corr(without, target)
        out["one coefficient"].append(_corr(without + oracle.one * timed.sum(axis=1), target) - base)
        out["one per factor"].append(_corr(without + timed @ oracle.per_factor, target) - base)
    return {form: np.array(v) for form, v in out.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed-offset", type=int, default=4000)
    parser.add_argument("--worlds", help="comma-separated planted worlds (default: every planted shape)")
    parser.add_argument("--window", type=int, default=4, help="trailing eras (the weekly model's timing_window)")
    args = parser.parse_args()
    chosen = {n: c for n, c in worlds("built-in", True, args.seed_offset).items()
              if isinstance(c, SyntheticConfig) and c.planted}
    names = args.worlds.split(",") if args.worlds else list(chosen)
    unknown = [n for n in names if n not in chosen]
    if unknown:
        parser.error(f"unknown or unplanted world(s) {unknown}; planted worlds: {', '.join(chosen)}")
    rows = []
    for name in names:
        worth = momentum_worth(chosen[name], args.window)
        rows.append(worth)
        print(f"{name}: momentum worth on the future eras: " + ", ".join(
            f"{form} {v.mean():+.4f}" for form, v in worth.items()), flush=True)
    for form in FORMS:
        mean, se, _ = pooled([{"diff": r[form]} for r in rows], "diff")
        print(f"pooled, {form}: {mean:+.4f} +- {se:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
