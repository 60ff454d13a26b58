"""Issue 23: the linear layers judged in the field, on worlds and eras that took no part in choosing them.

    flock /tmp/nmu-cpu.lock python tests/benchmarks/bench_linear.py [--data DIR] [--family built-in|drifting|both]
                                                                    [--layer linear|structural] [--fresh]
                                                                    [--worlds NAME,NAME] [--json FILE]

The layer's weight (NumeraiModel's linear_weight, 0.5) was chosen on the validation eras of the 17 worlds of
bench_engine.py's table. Here each world's baseline and full model (nmu train's defaults, the layer on) are fitted on
every resolved era, train and validation, as `nmu train` refits the shipped model, and run left alone over the
world's future eras, which no choice saw. The layer's weight is a predict-time setting, so one fit of full gives full
without the layer (w = 0) and with it at every weight: the differences are the layer's own, on the same trees.

`--fresh` uses new seeds of every shape (the seed + 1000), worlds that took no part in any choice. Every prediction is
made per era (trees, ranks, residualization, the layer), so predicting the future eras in one call gives what one live
era at a time gives; the first future era is checked against `model.live.make_predict` on that era alone.

`--layer structural` judges the structural layer (the ridge over the engineered columns, NumeraiModel's
structural_weight, chosen in the lab on the validation eras of the 18 worlds of both families) the same way, the raw
layer left at its default weight.

Printed per world: the layer's gate (its t on the later training eras), full - baseline at w = 0 and at the default
weight, and the layer's own gain (w minus w = 0) at 0.25, 0.5 and 1, with the paired Newey-West t; then the same
pooled per family and kind (world means weighted equally, bench_worlds.pooled).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402

from model.estimator import NumeraiModel  # noqa: E402
from model.live import make_predict  # noqa: E402
from tests.benchmarks.bench_worlds import DRIFTING_WORLDS, WORLDS, ensure_family_world, per_era_corr, pooled  # noqa: E402
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
from validation.evaluation.selection import paired_difference  # noqa: E402

WEIGHTS = (0.25, 0.5, 1.0, 2.0)
FRESH_SEED = 1000


def worlds(family: str, fresh: bool, seed_offset: int = FRESH_SEED) -> dict[str, object]:
    """The family's worlds; `fresh`: new seeds (the seed + `seed_offset`), named NAME-fresh for the first set of
    fresh seeds (+1000) and NAME-seedN for any other."""
    chosen = {**(WORLDS if family in ("built-in", "both") else {}),
              **(DRIFTING_WORLDS if family in ("drifting", "both") else {})}
    if not fresh:
        return chosen
    suffix = "fresh" if seed_offset == FRESH_SEED else f"seed{seed_offset}"
    return {f"{name}-{suffix}": dataclasses.replace(config, seed=config.seed + seed_offset)
            for name, config in chosen.items()}


@dataclasses.dataclass
class FieldWorld:
    """A world written (on first use) and loaded for a field run: every resolved era to fit on, as `nmu train`
    refits, and the future eras to run left alone."""

    train_config: object
    ds: object
    everything: pd.DataFrame
    bench: pd.DataFrame | None
    future: pd.DataFrame
    future_bench: pd.DataFrame | None
    live: pd.DataFrame
    quiet: Reporter

    @classmethod
    def load(cls, config: object, data: Path) -> FieldWorld:
        quiet = Reporter(Console(quiet=True))
        ensure_family_world(data, config)
        train_config = load_config(None)
        ds = load_dataset(data, "synthetic", train_config, quiet)
        everything = pd.concat([ds.train, resolved_rows(ds.validation, ds.target)])
        bench = benchmark_for(everything, ds.train_benchmark, ds.validation_benchmark)
        future = pd.read_parquet(data / "future.parquet")
        future_bench = pd.read_parquet(data / "future_benchmark_models.parquet") if bench is not None else None
        live = future.drop(columns=[c for c in future.columns if c.startswith("target")])
        return cls(train_config, ds, everything, bench, future, future_bench, live, quiet)

    def fit(self, variant: str) -> NumeraiModel:
        """The variant fitted on every resolved era."""
        return fit_model(make_variant(build_model(self.train_config, self.ds.groups), variant, self.train_config),
                         self.everything, self.ds, self.quiet, variant, self.bench, self.train_config.compute)

    def scores(self, model: NumeraiModel) -> pd.Series:
        """Per-era corr of the model's predictions of the future eras (every prediction is made per era)."""
        predictions = pd.Series(model.predict(self.live, benchmark=self.future_bench), index=self.live.index)
        return per_era_corr(predictions, self.future)


def family_groups(rows: list[dict]) -> list[tuple[str, list[dict]]]:
    """The rows per family and kind ("built-in, planted", ..., "drifting, null"), the empty groups left out."""
    out = []
    for family in ("built-in", "drifting"):
        for planted in (True, False):
            group = [r for r in rows if r["planted"] == planted
                     and (r["world"].startswith("drift-") == (family == "drifting"))]
            if group:
                out.append((f"{family}, {'planted' if planted else 'null'} ({len(group)})", group))
    return out


def run_world(name: str, config: object, data: Path, layer: str = "linear") -> dict:
    world = FieldWorld.load(config, data)
    live, future_bench = world.live, world.future_bench
    scores, info = {}, {"world": name, "planted": bool(config.planted), "layer": layer}
    weight = f"{layer}_weight"
    for variant in ("baseline", "full"):
        started = time.perf_counter()
        model = world.fit(variant)
        info[f"{variant}_seconds"] = time.perf_counter() - started
        weights = (0.0, *WEIGHTS) if variant == "full" else (None,)
        for w in weights:
            if w is not None:
                model.set_params(**{weight: w})
            scores[variant if w is None else f"full w={w:g}"] = world.scores(model)
        if variant == "full":
            fitted = getattr(model, f"{layer}_")
            info["gate_t"] = fitted.confirm_t_ if fitted is not None else float("nan")
            info["kept"] = fitted is not None and fitted.coef_ is not None
            model.set_params(**{weight: NumeraiModel().get_params()[weight]})
            first = live[live["era"] == live["era"].iloc[0]]
            one = make_predict(model)(first, None if future_bench is None else future_bench.loc[first.index])
            together = model.predict(live, benchmark=future_bench)[: len(first)]
            info["live_matches"] = bool(np.allclose(one["prediction"].to_numpy(), together, atol=1e-12))
    info["scores"] = {k: v.to_dict() for k, v in scores.items()}
    return info


def comparisons(row: dict) -> dict[str, tuple[pd.Series, pd.Series]]:
    """Each printed comparison as (scores, reference): per-era corr of the two predictions."""
    s = {k: pd.Series(v) for k, v in row["scores"].items()}
    default = NumeraiModel().get_params()[f"{row.get('layer', 'linear')}_weight"]
    out = {"full(w=0) - baseline": (s["full w=0"], s["baseline"]),
           f"full(w={default:g}) - baseline": (s[f"full w={default:g}"], s["baseline"])}
    out.update({f"layer at w={w:g}": (s[f"full w={w:g}"], s["full w=0"]) for w in WEIGHTS})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/linear"))
    parser.add_argument("--family", choices=("built-in", "drifting", "both"), default="both")
    parser.add_argument("--layer", choices=("linear", "structural"), default="linear",
                        help="which layer's weight to vary: the raw features' or the engineered columns'")
    parser.add_argument("--fresh", action="store_true", help="new seeds of every shape (seed + 1000)")
    parser.add_argument("--worlds", help="comma-separated names (default: every world of the family)")
    parser.add_argument("--json", type=Path, help="also write every world's per-era scores here")
    args = parser.parse_args()
    chosen = worlds(args.family, args.fresh)
    names = args.worlds.split(",") if args.worlds else list(chosen)
    rows = []
    for name in names:
        row = run_world(name, chosen[name], args.data.resolve() / name / "data", args.layer)
        rows.append(row)
        if args.json:
            args.json.write_text(json.dumps(rows, default=str))
        parts = [f"{k} {d['gain']:+.4f} (t {d['t']:+.2f})"
                 for k, pair in comparisons(row).items() for d in [paired_difference(*pair)]]
        print(f"{name}: gate t {row['gate_t']:+.2f} ({'kept' if row['kept'] else 'off'}); " + "; ".join(parts)
              + f"; live era check {'ok' if row['live_matches'] else 'MISMATCH'}; fits "
              f"{row['baseline_seconds']:.0f} s / {row['full_seconds']:.0f} s", flush=True)
    print("pooled (world means weighted equally; mean +- standard error, t):")
    for label, group in family_groups(rows):
        parts = []
        for key in comparisons(group[0]):
            per_world = [comparisons(r)[key] for r in group]
            mean, se, t = pooled([{"d": (a - b).to_numpy()} for a, b in per_world], "d")
            parts.append(f"{key} {mean:+.4f} +- {se:.4f} (t {t:+.1f})")
        print(f"  {label}: " + "; ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
