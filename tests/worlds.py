"""Test helper: a synthetic world's training composites, as the components see them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model.eras import EraIndex
from model.factors import Factors


def train_composites(world: Path, files: tuple[str, ...] = ("train.parquet",)
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, EraIndex, list[str], dict[str, Any]]:
    """(z-scored composites, raw composites, target, eras, group names, truth) of the world's train split, or of the
    rows with a target in the given files (train and validation: the eras `nmu train` refits on); the truth of either
    family's world ({} when it has none)."""
    meta = json.loads((world / "features.json").read_text())
    features = meta["feature_sets"]["all"]
    groups = {k: v for k, v in meta["feature_sets"].items() if k not in ("small", "medium", "all")}
    train = pd.concat([pd.read_parquet(world / f, columns=["era", "target"] + features) for f in files])
    train = train[train["target"].notna()]
    eras = EraIndex.from_frame(train)
    raw = train[features].to_numpy()
    factors = Factors(groups).fit(raw, eras, features)
    comp_raw = factors.raw(raw, eras)
    truth_file = next((world / n for n in ("synthetic_truth.json", "drifting_truth.json") if (world / n).exists()), None)
    truth = json.loads(truth_file.read_text()) if truth_file else {}
    return eras.standardize(comp_raw), comp_raw, train["target"].to_numpy(np.float64), eras, factors.names_, truth


def tiny_frame(seed: int = 0, eras: int = 12, rows: int = 120, features: int = 12, interaction: float = 0.5,
               noise: float = 1.5) -> tuple[pd.DataFrame, np.ndarray]:
    """A tiny frame (era + int8 features, ids as index) and a five-valued target with linear signal in the first
    six features and an interaction of features 0 and 6: for fast fits of the estimator."""
    rng = np.random.default_rng(seed)
    n = eras * rows
    x = rng.integers(0, 5, size=(n, features)).astype(np.int8)
    frame = pd.DataFrame(x, columns=[f"feature_{j:02d}" for j in range(features)])
    frame.insert(0, "era", np.repeat([f"{e + 1:04d}" for e in range(eras)], rows))
    frame.index = pd.Index([f"n{i:015x}" for i in range(n)], name="id")
    signal = x[:, :3].mean(axis=1) - x[:, 3:6].mean(axis=1) + interaction * (x[:, 0] - 2) * (x[:, 6] - 2) / 2
    y = np.clip(np.round((signal + rng.normal(scale=noise, size=n)) / 2 + 2) / 4, 0, 1)
    return frame, y.astype(np.float32)
