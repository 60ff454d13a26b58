"""Benchmark 8: the field. A pickle left to auto-submit for months, never refreshed or refreshed every week.

    python tests/benchmarks/bench_field.py [--data DIR] [--worlds NAME,NAME] [--seed-offset N] [--refresh never]
        [--reuse] [--no-assert]

Per world (planted and control, made with FUTURE_ERAS eras after their validation eras), `nmu train` builds the
full model (ship = "full"; refresh = "weekly", the model built to be refreshed, unless --refresh never) on every
resolved era, and a plain baseline is refit on the same eras. The future eras
then arrive one week at a time, each run as Numerai runs the pickle, one era through
`predict(live_features, live_benchmark_models)`:

- frozen, under each staleness policy of the timing features ("hold", "neutral", "decay"): nothing is fed after
  upload;
- refreshed: before each era, the eras whose targets have resolved by then (UNRESOLVED eras behind) are fed to the
  timing history, as the weekly `nmu refresh` does (same trees);
- the baseline, frozen (it has no timing).

It prints per world the mean per-era corr of each over the future eras and over blocks of them (1-10, 11-40, 41-80),
and pooled per-era differences against the baseline with their t. The default staleness policy of NumeraiModel is
the one that measures best here. Bounds (exit 1 when one fails, unless --no-assert): pooled over the planted
worlds, refreshed >= frozen with the default policy; pooled over the control worlds, refreshed not worse than
frozen by more than 2 standard errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from rich.console import Console

from model.estimator import NumeraiModel
from model.live import make_predict
from model.timing import STALENESS_POLICIES
from tests.benchmarks.bench_linear import worlds as fresh_worlds
from tests.benchmarks.bench_worlds import DRIFTING_WORLDS, ensure_family_world, per_era_corr, pooled
from training.config import config_from_dict
from training.console import Reporter
from training.drifting_world import DriftingWorldConfig
from training.experiment import benchmark_for, build_model, fit_model, load_dataset, make_variant, resolved_rows
from training.pipeline import train_command
from training.refresh import pickled_model
from training.synthetic import SyntheticConfig

FUTURE_ERAS = 80
UNRESOLVED = 5  # a target resolves about 5 eras after its era (the synthetic world leaves the newest 4 unresolved)
BLOCKS = ((0, 10), (10, 40), (40, 80))


def _world(planted: bool, eras: int, stocks: int, features: int, seed: int) -> SyntheticConfig:
    base = SyntheticConfig.default(eras=eras, stocks=stocks, features=features, seed=seed, planted=planted)
    return dataclasses.replace(base, future_eras=FUTURE_ERAS)


WORLDS = {
    "planted-a": _world(True, 400, 2000, 120, 31),
    "planted-b": _world(True, 350, 1500, 80, 32),
    "planted-c": _world(True, 300, 2000, 60, 33),
    "control-a": _world(False, 400, 2000, 120, 41),
    "control-b": _world(False, 350, 1500, 80, 42),
}
# with the second family (training.drifting_world), the same worlds as bench_worlds.py --family drifting, on request
ALL_WORLDS = {**WORLDS, **DRIFTING_WORLDS}


def run_world(name: str, config: SyntheticConfig | DriftingWorldConfig, root: Path, refresh: str = "weekly",
              reuse: bool = False) -> dict:
    data, out = root / name / "data", root / name / "artifacts"
    ensure_family_world(data, config)
    if not (reuse and (out / "model.pkl").exists()):
        (root / name / "full.toml").write_text(f'ship = "full"\nrefresh = "{refresh}"\n')
        train_command(data=data, out=out, config_path=root / name / "full.toml", console=Console(quiet=True))
    # each run is the pickle's own live function (its code is the pickle's: see training.refresh.pickled_model)
    frozen = {policy: pickle_with_policy(out / "model.pkl", policy)[0] for policy in STALENESS_POLICIES}
    refreshed, refreshed_model = pickle_with_policy(out / "model.pkl", "hold")
    timing = getattr(refreshed_model, "timing_", None)
    if timing is not None:
        print(f"{name}: momentum in its own columns for {len(timing.momentum_keep_)} factor(s), in the pooled column "
              f"for {len(timing.momentum_pooled_keep_)}", flush=True)

    baseline = fit_baseline(data)
    future = pd.read_parquet(data / "future.parquet")
    plain = make_predict(baseline)
    preds: dict[str, list[pd.Series]] = {k: [] for k in [*frozen, "refreshed", "baseline"]}
    for _era, _, rows, bench_rows in weekly_eras(refreshed_model, future, data):
        for policy, predict in frozen.items():
            preds[policy].append(predict(rows, bench_rows)["prediction"])
        preds["refreshed"].append(refreshed(rows, bench_rows)["prediction"])
        preds["baseline"].append(plain(rows, bench_rows)["prediction"])
    scores = {k: per_era_corr(pd.concat(v), future) for k, v in preds.items()}
    return {"world": name, "planted": config.planted, "scores": scores}


def feed_resolved(model, future: pd.DataFrame, features: list[str], era: str, fed: set[str]) -> None:
    """The weekly refresh before `era` goes live: the future eras whose targets have resolved by then (UNRESOLVED
    eras behind) and are not in `fed` yet go to the model's timing history (same trees); `fed` gains them."""
    known = future[(future["era"].astype(int) <= int(era) - UNRESOLVED) & ~future["era"].isin(fed)]
    if len(known):
        model.update_factor_returns(known[["era", *features]], known["target"].to_numpy())
        fed.update(known["era"].unique())


def weekly_eras(model, future: pd.DataFrame, data: Path) -> Iterator[tuple[str, pd.DataFrame, pd.DataFrame,
                                                                           pd.DataFrame]]:
    """The future eras of a written world (DATA/future*.parquet) as the weekly refresh meets them, one at a time:
    before each is yielded, the eras resolved by then go to `model`'s timing history (feed_resolved). Yields the
    era, its rows with their targets, the live rows (targets dropped) and their benchmark rows."""
    future_bench = pd.read_parquet(data / "future_benchmark_models.parquet")
    features, fed = list(model.feature_names_in_), set()
    for era in sorted(future["era"].unique()):
        feed_resolved(model, future, features, era, fed)
        part = future[future["era"] == era]
        yield era, part, part.drop(columns=[c for c in future.columns if c.startswith("target")]), \
            future_bench.loc[part.index]


def fit_baseline(data: Path):
    """The plain baseline refit on every resolved era of a written world, as `nmu train` refits (the config's refresh
    mode builds only the timing component, which the baseline leaves out)."""
    quiet = Console(quiet=True)
    train_config = config_from_dict({"ship": "full"})
    ds = load_dataset(data, "synthetic", train_config, Reporter(quiet))
    everything = pd.concat([ds.train, resolved_rows(ds.validation, ds.target)])
    bench = benchmark_for(everything, ds.train_benchmark, ds.validation_benchmark)
    return fit_model(make_variant(build_model(train_config, ds.groups), "baseline", train_config), everything, ds,
                     Reporter(quiet), "baseline", bench, train_config.compute)


def pickle_with_policy(path: Path, policy: str):
    """The pickle's live function and model, loaded afresh, with another staleness policy (a predict-time setting)."""
    predict, model = pickled_model(path)
    model.set_params(timing_staleness=policy)
    return predict, model


def pooled_diff(rows: list[dict], a: str, b: str) -> tuple[float, float]:
    """bench_worlds.pooled of the per-era differences a - b: the mean over worlds and its standard error."""
    mean, se, _ = pooled([{"diff": (r["scores"][a] - r["scores"][b]).to_numpy()} for r in rows], "diff")
    return mean, se


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/field"))
    parser.add_argument("--worlds", default=",".join(WORLDS),
                        help="comma-separated names; the drifting family's (drift-*) on request")
    parser.add_argument("--seed-offset", type=int,
                        help="instead: the battery's and the drifting family's shapes with the seed + N (bench_linear's "
                             "worlds, named NAME-seedN; 3000: the worlds that chose the pooled momentum test's window)")
    parser.add_argument("--refresh", choices=("weekly", "never"), default="weekly",
                        help="the config's refresh, which builds the model (weekly: momentum also kept on the pooled "
                             "test, training.experiment.WEEKLY_TIMING; never: the model as a pickle left alone gets it)")
    parser.add_argument("--reuse", action="store_true",
                        help="run the model.pkl an earlier run left in DIR/NAME/artifacts instead of training again (to "
                             "pool worlds of several runs; the pickle must come from the same code and --refresh)")
    parser.add_argument("--no-assert", action="store_true")
    args = parser.parse_args()
    chosen = ALL_WORLDS if args.seed_offset is None else fresh_worlds("both", True, args.seed_offset)
    rows = [run_world(name, chosen[name], args.data.resolve(), args.refresh, args.reuse) for name in args.worlds.split(",")]
    names = [*STALENESS_POLICIES, "refreshed", "baseline"]
    table = []
    for r in rows:
        line = {"world": r["world"]}
        for k in names:
            s = r["scores"][k]
            line[k] = s.mean()
            for lo, hi in BLOCKS:
                line[f"{k} {lo + 1}-{hi}"] = s.iloc[lo:hi].mean()
        table.append(line)
    frame = pd.DataFrame(table)
    with pd.option_context("display.width", 250, "display.max_columns", 40, "display.float_format", "{:.4f}".format):
        print(frame[["world", *names]].to_string(index=False))
        print(frame[["world", *[c for c in frame.columns if " " in c]]].to_string(index=False))
    ok = True
    default = NumeraiModel().timing_staleness
    for kind, group in (("planted", [r for r in rows if r["planted"]]), ("control", [r for r in rows if not r["planted"]])):
        if not group:
            continue
        for k in [*STALENESS_POLICIES, "refreshed"]:
            mean, se = pooled_diff(group, k, "baseline")
            print(f"{kind} worlds: {k} - baseline = {mean:+.4f} +- {se:.4f}")
        mean, se = pooled_diff(group, "refreshed", default)
        passed = mean >= 0 if kind == "planted" else mean >= -2 * se
        ok &= passed
        print(f"{kind} worlds: refreshed - frozen ({default}) = {mean:+.4f} +- {se:.4f}: {'ok' if passed else 'FAILED'}")
    return 0 if ok or args.no_assert else 1


if __name__ == "__main__":
    sys.exit(main())
