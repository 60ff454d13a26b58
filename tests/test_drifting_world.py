"""The second world family (training.drifting_world): Numerai's layout, loadable by the pipeline, deterministic,
and the planted effects where the description puts them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.config import config_from_dict
from training.console import Silent
from training.drifting_world import DriftingWorldConfig, write_drifting_world
from training.experiment import load_dataset
from training.synthetic import BENCHMARKS
from validation.errors import NmuError

TINY = DriftingWorldConfig(eras=30, train_eras=18, stocks=160, styles=4, paying=3, groups=5, features_per_group=4,
                           industries=4, future_eras=6, seed=5)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_drifting_world(tmp_path_factory.mktemp("drifting"), TINY)


def test_the_layout_loads_through_the_pipeline_and_its_schemas(world: Path) -> None:
    ds = load_dataset(world, "synthetic", config_from_dict({}), Silent())
    assert ds.version == "v5.3" and len(ds.features) == 20 and set(ds.groups) == {
        "intelligence", "charisma", "strength", "dexterity", "constitution"}
    assert ds.train["era"].nunique() == 18 and ds.validation["era"].nunique() == 12
    assert ds.validation["target"].isna().groupby(ds.validation["era"]).all().sum() == TINY.unresolved_eras
    assert list(ds.validation_benchmark.columns[-3:]) == list(BENCHMARKS)
    future = pd.read_parquet(world / "future.parquet")
    live = pd.read_parquet(world / "live.parquet")
    assert future["era"].nunique() == 6 and future["target"].notna().all()
    assert live["era"].nunique() == 1 and live["target"].isna().all()
    ids = pd.concat([ds.train, ds.validation, future, live]).index
    assert ids.is_unique and ids.str.fullmatch(r"n[0-9a-f]{15}").all()


def test_features_are_per_era_quintiles_and_targets_numerai_values(world: Path) -> None:
    train = pd.read_parquet(world / "train.parquet")
    features = json.loads((world / "features.json").read_text())["feature_sets"]["all"]
    assert (train[features].dtypes == np.int8).all()
    shares = train.groupby("era")[features[0]].value_counts(normalize=True)
    assert shares.between(0.19, 0.21).all()
    assert train["target"].value_counts(normalize=True).sort_index().round(2).tolist() == [0.05, 0.2, 0.5, 0.2, 0.05]


def test_stocks_persist_so_the_universe_changes_slowly(world: Path) -> None:
    sizes = pd.read_parquet(world / "train.parquet", columns=["era"]).groupby("era").size()
    assert sizes.between(0.7 * TINY.stocks, 1.3 * TINY.stocks).all()


def test_deterministic_by_seed_and_null_is_another_world(world: Path, tmp_path: Path) -> None:
    again = write_drifting_world(tmp_path / "again", TINY)
    for name in ("train.parquet", "live_benchmark_models.parquet", "features.json"):
        if name.endswith(".json"):
            assert (again / name).read_text() == (world / name).read_text()
        else:
            pd.testing.assert_frame_equal(pd.read_parquet(again / name), pd.read_parquet(world / name))
    null = write_drifting_world(tmp_path / "null", dataclasses.replace(TINY, planted=False))
    truth = json.loads((null / "drifting_truth.json").read_text())
    assert truth["regime"] == {} and truth["config"]["planted"] is False
    planted = json.loads((world / "drifting_truth.json").read_text())
    assert sum(planted["regime"].values()) > 0 and sum(np.abs(planted["mean_payoffs"]) > 0) == TINY.paying


def test_bad_sizes_are_one_sentence() -> None:
    with pytest.raises(NmuError, match="paying"):
        dataclasses.replace(TINY, paying=7).check()
    with pytest.raises(NmuError, match="groups"):
        dataclasses.replace(TINY, groups=3).check()
