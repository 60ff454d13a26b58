"""Test helper: a synthetic world's training composites, as the components see them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model.eras import EraIndex
from model.factors import Factors


def train_composites(world: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, EraIndex, list[str], dict[str, Any]]:
    """(z-scored composites, raw composites, target, eras, group names, truth) of the world's train split."""
    meta = json.loads((world / "features.json").read_text())
    features = meta["feature_sets"]["all"]
    groups = {k: v for k, v in meta["feature_sets"].items() if k not in ("small", "medium", "all")}
    train = pd.read_parquet(world / "train.parquet", columns=["era", "target"] + features)
    eras = EraIndex.from_frame(train)
    raw = train[features].to_numpy()
    factors = Factors(groups).fit(raw, eras, features)
    comp_raw = factors.raw(raw, eras)
    truth = json.loads((world / "synthetic_truth.json").read_text())
    return eras.standardize(comp_raw), comp_raw, train["target"].to_numpy(np.float64), eras, factors.names_, truth
