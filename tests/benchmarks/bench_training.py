"""Timed benchmark of `nmu train` and of the scoring it runs: end-to-end wall time per step on a synthetic world.

Run: `python tests/benchmarks/bench_training.py [--eras N --stocks N --features N] [--config FILE] [--ablation]`.
Not collected by pytest (tests/benchmarks is excluded); prints one JSON object with the timings and scores.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def bench_scoring(eras: int = 200, stocks: int = 5000, features: int = 100, seed: int = 0) -> dict[str, float]:
    """Seconds to score one variant's validation predictions (corr, BMC, feature exposure) per era."""
    from validation.scoring import score_eras, summarize

    rng = np.random.default_rng(seed)
    n = eras * stocks
    names = [f"feature_{i}" for i in range(features)]
    frame = pd.DataFrame(rng.integers(0, 5, (n, features), dtype=np.int8), columns=names,
                         index=pd.Index([f"n{i:015x}" for i in range(n)], name="id"))
    frame["era"] = np.repeat([f"{e:04d}" for e in range(1, eras + 1)], stocks)
    frame["target"] = rng.choice(np.float32([0, 0.25, 0.5, 0.75, 1]), n)
    preds = pd.Series(rng.random(n), index=frame.index)
    bench = pd.Series(rng.random(n), index=frame.index)
    start = time.perf_counter()
    summary = summarize(score_eras(preds, frame, "target", names, benchmark=bench))
    return {"rows": n, "eras": eras, "features": features, "seconds": round(time.perf_counter() - start, 2),
            "n_eras_scored": summary["n_eras"]}


def bench_train(eras: int | None, stocks: int | None, features: int | None, config: Path | None, ablation: bool) -> dict:
    """Make a synthetic world (timed), then run `nmu train` on it (timed per step); returns timings and scores."""
    from training.pipeline import train_command
    from training.synthetic import SyntheticConfig, write_synthetic_world

    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "world"
        start = time.perf_counter()
        write_synthetic_world(world, SyntheticConfig.default(eras=eras, stocks=stocks, features=features))
        made = time.perf_counter() - start
        start = time.perf_counter()
        metrics = train_command(data=world, out=Path(tmp) / "artifacts", config_path=config, ablation=ablation)
        trained = time.perf_counter() - start
        manifest = json.loads((Path(tmp) / "artifacts" / "manifest.json").read_text())
    return {"world_seconds": round(made, 1), "train_seconds": round(trained, 1), "steps": manifest.get("timings", {}),
            "data": metrics["data"], "models": {k: {m: v[m] for m in ("corr_mean", "corr_sharpe", "bmc_mean")}
                                                 for k, v in metrics["models"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--eras", type=int)
    parser.add_argument("--stocks", type=int)
    parser.add_argument("--features", type=int)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--ablation", action="store_true")
    parser.add_argument("--scoring-only", action="store_true")
    args = parser.parse_args()
    result = {"scoring": bench_scoring()}
    if not args.scoring_only:
        result["train"] = bench_train(args.eras, args.stocks, args.features, args.config, args.ablation)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
