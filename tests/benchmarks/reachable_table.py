"""The reachable ceiling beside the oracle: per planted world, each planted effect's worth to the oracle and to the
reachable oracle (training.synthetic.reachable_predictions), mean per-era corr on the validation eras with a target.

    python tests/benchmarks/reachable_table.py [--data DIR] [--worlds NAME,NAME]

No model is fitted: a few minutes on a 2-core machine, most of it writing the worlds (kept in --data, shared with
bench_worlds.py). Worlds: "built-in" (SyntheticConfig(), the world `nmu train` makes) and the battery's planted worlds
(bench_worlds.WORLDS, default: planted-default, planted-wide, planted-weak). Per world it also prints how well the
reachable oracle's estimates match the truth (reachable_diagnostics) and both ceilings on the future eras.
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

from tests.benchmarks.bench_worlds import WORLDS, per_era_corr
from training.synthetic import (
    ORACLE_EFFECTS,
    SyntheticConfig,
    oracle_predictions,
    reachable_diagnostics,
    reachable_predictions,
    write_synthetic_world,
)

DEFAULT_WORLDS = ("built-in", "planted-default", "planted-wide", "planted-weak")


def measure(name: str, config: SyntheticConfig, data: Path) -> dict:
    """One world's row: both oracles' corr and each effect's worth to each, on the validation eras with a target."""
    if not (data / "validation.parquet").exists():
        write_synthetic_world(data, config)
    started = time.perf_counter()
    validation = pd.read_parquet(data / "validation.parquet", columns=["era", "target"]).dropna(subset=["target"])
    eras = sorted(int(e) for e in validation["era"].unique())
    row: dict = {"world": name, "shape": f"{config.eras}x{config.stocks}x{config.features}"}
    for label, predict in (("oracle", oracle_predictions), ("reachable", reachable_predictions)):
        full = per_era_corr(predict(config, eras)["prediction"], validation)
        row[label] = float(full.mean())
        for effect in ORACLE_EFFECTS:
            told = per_era_corr(predict(config, eras, [e for e in ORACLE_EFFECTS if e != effect])["prediction"],
                                validation)
            diff = full - told.reindex(full.index)
            row[f"{label}_worth_{effect}"] = float(diff.mean())
            row[f"{label}_worth_{effect}_se"] = float(diff.std(ddof=1) / np.sqrt(len(diff)))
    if config.future_eras:
        future = pd.read_parquet(data / "future.parquet", columns=["era", "target"])
        future_eras = sorted(int(e) for e in future["era"].unique())
        for label, predict in (("oracle", oracle_predictions), ("reachable", reachable_predictions)):
            row[f"future_{label}"] = float(per_era_corr(predict(config, future_eras)["prediction"], future).mean())
    diagnostics = reachable_diagnostics(config)
    row["style_corr"] = float(np.mean(list(diagnostics["style_corr"].values())))
    row["relative_corr"] = diagnostics["relative_corr"]
    row["industry_ari"] = diagnostics["industry_ari"]
    row["regime_accuracy"] = diagnostics["regime_accuracy"]
    row["seconds"] = round(time.perf_counter() - started)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/worlds"))
    parser.add_argument("--worlds", default=",".join(DEFAULT_WORLDS),
                        help="comma-separated: built-in and/or planted worlds of bench_worlds.WORLDS")
    args = parser.parse_args()
    worlds = {"built-in": SyntheticConfig(), **{k: v for k, v in WORLDS.items() if v.planted}}
    names = args.worlds.split(",")
    unknown = [n for n in names if n not in worlds]
    if unknown:
        parser.error(f"unknown world(s) {', '.join(unknown)}; known: {', '.join(worlds)}")
    rows = []
    for name in names:
        rows.append(measure(name, worlds[name], args.data.resolve() / name / "data"))
        print(f"{name}: oracle {rows[-1]['oracle']:.4f}, reachable {rows[-1]['reachable']:.4f} "
              f"({rows[-1]['seconds']} s)", flush=True)
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 250, "display.max_columns", 40, "display.float_format", "{:.4f}".format):
        print(table[[c for c in table.columns if not c.endswith("_se") and "_worth_" not in c]].to_string(index=False))
    print("per effect, worth (corr minus the corr of the oracle not told the effect; validation eras, +- se):")
    for effect in ORACLE_EFFECTS:
        cells = [f"{r['world']} {r[f'oracle_worth_{effect}']:+.4f} / {r[f'reachable_worth_{effect}']:+.4f} "
                 f"(+-{r[f'reachable_worth_{effect}_se']:.4f})" for r in rows]
        print(f"  {effect}: oracle / reachable: {'; '.join(cells)}; mean {table[f'oracle_worth_{effect}'].mean():+.4f}"
              f" / {table[f'reachable_worth_{effect}'].mean():+.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
