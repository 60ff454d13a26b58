"""Issue 23's candidate "better style estimates than equal-weight means", measured before anything is built.

    python tests/benchmarks/bench_styles.py [--worlds NAME,NAME] [--fit-eras 80] [--test-eras 40] [--json FILE]

The model's composites are equal-weight means of a feature group's bins (model.factors). Per planted world of the
battery (bench_worlds.WORLDS, generated era by era in memory; nothing is written), three linear estimates of each
stock's style are compared on eras after the train eras, each z-scored within the era:

- "equal": the group's mean, as the model builds it;
- "pc1": the first principal component of the group's era-centred bins, fitted on the first train eras: target-free
  weights that a model could learn;
- "ls": the least squares fit of the true style on the group's bins over the same eras, the reachable oracle's
  estimate (training.synthetic.reachable_predictions). It needs the true styles, which no model sees: a bound for
  every linear estimate from the group's features.

Printed per world: the mean per-era correlation of each estimate with the true style (over every group), and of the
product of the interaction pair's estimates with the product of their true styles (what the interactions component's
column carries of the planted interaction). A few seconds a world; no fit, no target.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks.bench_worlds import WORLDS  # noqa: E402
from training.synthetic import SyntheticConfig, _data_type, _era_latents, _era_size, _make_era, _make_world  # noqa: E402

ESTIMATES = ("equal", "pc1", "ls")


def _standardised(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=0)
    sd = x.std(axis=0)
    return x / np.where(sd > 0, sd, 1.0)


def _eras(world, config: SyntheticConfig, eras: range):
    """(era-centred bins (n, F) float64, true styles (n, G)) of each era, generated as the world writes them."""
    row = 0
    for t in range(eras.stop):
        kind = _data_type(config, t)
        n = _era_size(config, t, kind)
        if t >= eras.start:
            era = _make_era(world, t, n, row, kind)
            _, _, styles, _ = _era_latents(world, t, n)
            x = era.features.T.astype(np.float64)
            yield x - x.mean(axis=0), styles
        row += n


def style_estimates(config: SyntheticConfig, fit_eras: int, test_eras: int) -> dict[str, dict[str, float]]:
    """Per estimate, the mean per-era corr with the true styles ("style_corr") and of the interaction pair's
    product with the true product ("product_corr"), on `test_eras` eras after the train eras."""
    world = _make_world(config)
    groups, features = len(world.groups), config.features
    of_group = np.asarray(world.group_of_feature)
    gram, cross, rows = np.zeros((features, features)), np.zeros((features, groups)), 0
    for x, styles in _eras(world, config, range(0, min(fit_eras, config.train_eras))):
        gram += x.T @ x
        cross += x.T @ (styles - styles.mean(axis=0))
        rows += len(x)
    weights = {name: np.zeros((features, groups)) for name in ESTIMATES}
    for g in range(groups):
        cols = np.flatnonzero(of_group == g)
        cov = gram[np.ix_(cols, cols)] / rows
        axis = np.linalg.eigh(cov)[1][:, -1]
        weights["equal"][cols, g] = 1.0
        weights["pc1"][cols, g] = axis * np.sign(axis.sum())
        weights["ls"][cols, g] = np.linalg.solve(cov, cross[cols, g] / rows)
    a, b = world.interaction
    style_corr = {name: [] for name in ESTIMATES}
    product_corr = {name: [] for name in ESTIMATES}
    start = config.train_eras
    for x, styles in _eras(world, config, range(start, start + test_eras)):
        truth = styles[:, a] * styles[:, b]
        for name in ESTIMATES:
            estimate = _standardised(x @ weights[name])
            style_corr[name].append([np.corrcoef(estimate[:, g], styles[:, g])[0, 1] for g in range(groups)])
            product_corr[name].append(np.corrcoef(estimate[:, a] * estimate[:, b], truth)[0, 1])
    return {name: {"style_corr": float(np.mean(style_corr[name])), "product_corr": float(np.mean(product_corr[name]))}
            for name in ESTIMATES}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", default=",".join(n for n, c in WORLDS.items() if c.planted),
                        help="comma-separated planted worlds of bench_worlds.WORLDS")
    parser.add_argument("--fit-eras", type=int, default=80, help="the first train eras that fit pc1 and ls")
    parser.add_argument("--test-eras", type=int, default=40, help="eras after the train eras that score them")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    names = [n for n in args.worlds.split(",") if n]
    unknown = [n for n in names if n not in WORLDS or not WORLDS[n].planted]
    if unknown:
        parser.error(f"not a planted world of the battery: {', '.join(unknown)}; "
                     f"known: {', '.join(n for n, c in WORLDS.items() if c.planted)}")
    out = {}
    print(f"{'world':<20} " + "  ".join(f"{e + ' style / product':>22}" for e in ESTIMATES))
    for name in names:
        out[name] = style_estimates(WORLDS[name], args.fit_eras, args.test_eras)
        print(f"{name:<20} " + "  ".join(
            f"{out[name][e]['style_corr']:>10.3f} / {out[name][e]['product_corr']:<9.3f}" for e in ESTIMATES), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
