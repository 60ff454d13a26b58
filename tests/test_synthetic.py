"""The synthetic world looks like Numerai's data, is deterministic, and carries the effects it documents."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from numerai_tools.scoring import numerai_corr

from training.synthetic import BENCHMARKS, GROUP_NAMES, TARGETS, SyntheticConfig, write_synthetic_world
from validation.errors import NmuError

FILES = (
    "features.json", "train.parquet", "validation.parquet", "live.parquet", "live_benchmark_models.parquet",
    "validation_benchmark_models.parquet", "train_benchmark_models.parquet", "synthetic_truth.json",
    "synthetic_industries.parquet",
)


@pytest.fixture(scope="module")
def frames(small_world: Path) -> dict[str, pd.DataFrame]:
    """The small world's frames as pandas reads them (what Numerai's own examples do)."""
    return {
        name: pd.read_parquet(small_world / f"{name}.parquet")
        for name in ("train", "validation", "live", "train_benchmark_models", "validation_benchmark_models",
                     "live_benchmark_models", "synthetic_industries")
    }


@pytest.fixture(scope="module")
def metadata(small_world: Path) -> dict:
    return json.loads((small_world / "features.json").read_text())


@pytest.fixture(scope="module")
def truth(small_world: Path) -> dict:
    return json.loads((small_world / "synthetic_truth.json").read_text())


def test_all_files_exist(small_world: Path) -> None:
    for name in FILES:
        assert (small_world / name).is_file(), name
    assert not list(small_world.glob(".*.tmp")), "temporary files left behind"


def test_ids_unique_and_numerai_shaped(frames: dict[str, pd.DataFrame]) -> None:
    ids = pd.concat([frames[n].index.to_series() for n in ("train", "validation", "live")])
    assert ids.index.name == "id"
    assert ids.is_unique
    assert ids.str.fullmatch(r"n[0-9a-f]{15}").all()
    for bench in ("train", "validation", "live"):
        assert frames[f"{bench}_benchmark_models"].index.equals(frames[bench].index)
    assert set(frames["synthetic_industries"].index) == set(ids)


def test_eras_and_data_types(frames: dict[str, pd.DataFrame]) -> None:
    train, validation, live = frames["train"], frames["validation"], frames["live"]
    eras = list(pd.unique(pd.concat([train.era, validation.era, live.era])))
    assert eras == [f"{i:04d}" for i in range(1, 122)]  # 120 eras + live
    assert train.era.nunique() == 72 and validation.era.nunique() == 48 and live.era.nunique() == 1
    assert set(train.data_type) == {"train"} and set(validation.data_type) == {"validation"}
    assert set(live.data_type) == {"live"} and len(live) == 600
    assert train.groupby("era").size().between(576, 600).all()


def test_feature_sets(metadata: dict, frames: dict[str, pd.DataFrame]) -> None:
    sets = metadata["feature_sets"]
    features = [c for c in frames["train"].columns if c.startswith("feature_")]
    assert sets["all"] == features and len(features) == 60
    for group in GROUP_NAMES[:8]:
        assert sets[group], group
    assert sorted(f for g in GROUP_NAMES if g in sets for f in sets[g]) == sorted(features)
    assert 15 <= len(sets["small"]) <= 25 and 35 <= len(sets["medium"]) <= 45
    assert set(sets["small"]) < set(sets["medium"]) < set(sets["all"])
    assert metadata["targets"] == list(TARGETS)


def test_features_int8_in_equal_per_era_bins(frames: dict[str, pd.DataFrame], metadata: dict) -> None:
    features = metadata["feature_sets"]["all"]
    train = frames["train"]
    assert (train[features].dtypes == np.int8).all()
    counts = train[features[:10]].melt().join(pd.Series(np.tile(train.era.to_numpy(), 10), name="era"))
    per_bin = counts.groupby(["era", "variable", "value"]).size().unstack("value")
    assert list(per_bin.columns) == [0, 1, 2, 3, 4]
    sizes = train.groupby("era").size()
    expected = per_bin.index.get_level_values("era").map(sizes) / 5
    assert (per_bin.sub(expected, axis=0).abs() <= 1).all().all()


def test_targets_five_values_with_numerai_frequencies(frames: dict[str, pd.DataFrame], truth: dict) -> None:
    train, validation = frames["train"], frames["validation"]
    for name in TARGETS:
        assert train[name].dtype == np.float32
        values = train[name].dropna()
        assert set(values.unique()) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    share = train["target"].value_counts(normalize=True).sort_index()
    assert np.allclose(share.to_numpy(), [0.05, 0.2, 0.5, 0.2, 0.05], atol=0.005)
    assert train["target"].equals(train["target_ender_20"])
    assert not train["target"].equals(train["target_jasper_20"])
    eras = sorted(validation.era.unique())
    unresolved = validation[validation.era.isin(eras[-4:])]
    resolved = validation[~validation.era.isin(eras[-4:])]
    assert unresolved["target"].isna().all() and resolved["target"].notna().all()
    assert validation[validation.era.isin(eras[-12:])]["target_teager_60"].isna().all()
    assert validation[~validation.era.isin(eras[-12:])]["target_teager_60"].notna().all()
    assert train[list(TARGETS)].notna().all().all()


def test_live_is_one_era_with_a_few_nan(frames: dict[str, pd.DataFrame], metadata: dict) -> None:
    live = frames["live"]
    features = metadata["feature_sets"]["all"]
    share = live[features].isna().to_numpy().mean()
    assert 0.001 < share < 0.02
    for column in features:
        expected = np.float32 if live[column].isna().any() else np.int8
        assert live[column].dtype == expected
    values = live[features].to_numpy(dtype=np.float32)
    assert np.isin(values[~np.isnan(values)], [0, 1, 2, 3, 4]).all()  # (stack() keeps NaN in pandas 3)
    assert live[list(TARGETS)].isna().all().all()


def test_benchmarks_ranked_per_era(frames: dict[str, pd.DataFrame]) -> None:
    for name in ("train", "validation", "live"):
        bench = frames[f"{name}_benchmark_models"]
        assert list(bench.columns) == ["era", *BENCHMARKS]
        for column in BENCHMARKS:
            assert bench[column].dtype == np.float32
            assert (bench[column] > 0).all() and (bench[column] <= 1).all()
            assert (bench.groupby("era")[column].max() == 1).all()
            assert bench.groupby("era")[column].apply(lambda s: s.is_unique).all()


def test_benchmark_predicts_target_a_little(frames: dict[str, pd.DataFrame]) -> None:
    validation = frames["validation"].dropna(subset=["target"])
    bench = frames["validation_benchmark_models"].reindex(validation.index)
    score = _per_era_corr(bench["v53_lgbm_ender20"].to_numpy(), validation).mean()
    assert 0.005 < score < 0.08


def test_deterministic_by_seed(tmp_path: Path, small_world: Path) -> None:
    config = SyntheticConfig.default(eras=120, stocks=600, features=60, seed=1)
    again = write_synthetic_world(tmp_path / "again", config)
    for name in ("train.parquet", "live.parquet", "features.json", "synthetic_truth.json"):
        assert _sha(again / name) == _sha(small_world / name), name
    other = write_synthetic_world(tmp_path / "other", SyntheticConfig.default(eras=120, stocks=600, features=60, seed=2))
    assert _sha(other / "train.parquet") != _sha(small_world / "train.parquet")
    a, b = pd.read_parquet(small_world / "live.parquet"), pd.read_parquet(other / "live.parquet")
    assert not a.index.equals(b.index)


def test_bad_sizes_raise_user_errors() -> None:
    with pytest.raises(NmuError, match="--features"):
        SyntheticConfig.default(features=5)
    with pytest.raises(NmuError, match="--eras"):
        SyntheticConfig.default(eras=8)
    with pytest.raises(NmuError, match="--stocks"):
        SyntheticConfig.default(stocks=10)


def test_truth_files_consistent(truth: dict, frames: dict[str, pd.DataFrame], metadata: dict) -> None:
    groups = truth["groups"]
    assert len(groups) >= 8 and set(groups) <= set(metadata["feature_sets"])
    named = [*truth["interaction"], truth["regime_group"], *truth["regime_pair"], truth["relative_group"]]
    assert set(named) <= set(groups) and len(set(named)) == 6
    assert truth["horizon"] == 4 and truth["planted"] is True
    assert sorted(truth["eras"]) == [f"{i:04d}" for i in range(1, 122)]
    for era in truth["eras"].values():
        assert era["regime"] in (0, 1) and set(era["factor_returns"]) == set(groups)
    regimes = [truth["eras"][e]["regime"] for e in sorted(truth["eras"])]
    assert 0 < sum(regimes) < len(regimes), "both regimes occur"
    industries = frames["synthetic_industries"]["industry"]
    assert industries.between(0, 7).all() and industries.nunique() == 8


def test_factor_returns_have_momentum(truth: dict) -> None:
    """Era t's payoff is largely known from the payoff of era t - H (factor momentum)."""
    eras = sorted(truth["eras"])
    groups = [g for g in truth["groups"] if g != truth["regime_group"]]
    payoff = pd.DataFrame([truth["eras"][e]["payoff"] for e in eras])[groups]
    deviation = payoff - payoff.mean()
    lagged = deviation.shift(truth["horizon"])
    assert deviation.stack().corr(lagged.stack()) > 0.4


def test_null_world_is_static(null_world: Path) -> None:
    truth = json.loads((null_world / "synthetic_truth.json").read_text())
    assert truth["planted"] is False
    returns = pd.DataFrame([truth["eras"][e]["factor_returns"] for e in sorted(truth["eras"])])
    assert np.allclose(returns.std(), 0.0)
    assert all(truth["eras"][e]["regime"] == 0 for e in truth["eras"])


def test_regime_visible_in_cross_section(small_world: Path, frames: dict[str, pd.DataFrame], metadata: dict, truth: dict) -> None:
    data = pd.concat([frames["train"], frames["validation"]])
    a, b = truth["regime_pair"]
    sets = metadata["feature_sets"]
    composite = pd.DataFrame({"a": data[sets[a]].mean(axis=1), "b": data[sets[b]].mean(axis=1), "era": data.era})
    corr = composite.groupby("era")[["a", "b"]].corr().xs("a", level=1)["b"]
    regime = pd.Series({e: truth["eras"][e]["regime"] for e in corr.index})
    assert corr[regime == 1].mean() - corr[regime == 0].mean() > 0.25


def test_industries_recoverable_by_pca_kmeans(frames: dict[str, pd.DataFrame], metadata: dict) -> None:
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.metrics import adjusted_rand_score

    train = frames["train"]
    era = train[train.era == "0010"]
    x = era[metadata["feature_sets"]["all"]].to_numpy(np.float64)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    labels = KMeans(8, n_init=5, random_state=0).fit_predict(PCA(8, random_state=0).fit_transform(x))
    truth = frames["synthetic_industries"]["industry"].reindex(era.index)
    assert adjusted_rand_score(truth, labels) > 0.3


def _per_era_corr(predictions: np.ndarray, frame: pd.DataFrame, target: str = "target") -> pd.Series:
    scored = pd.DataFrame({"prediction": predictions, "target": frame[target].to_numpy(), "era": frame.era.to_numpy()})
    return scored.groupby("era").apply(
        lambda d: numerai_corr(d[["prediction"]], d["target"]).iloc[0], include_groups=False
    )


@functools.lru_cache(maxsize=4)
def _plain_lightgbm_corr(world: Path) -> tuple[pd.Series, pd.DataFrame]:
    features = json.loads((world / "features.json").read_text())["feature_sets"]["all"]
    train = pd.read_parquet(world / "train.parquet")
    validation = pd.read_parquet(world / "validation.parquet").dropna(subset=["target"])
    model = lgb.LGBMRegressor(
        n_estimators=300, learning_rate=0.02, num_leaves=15, colsample_bytree=0.5, min_child_samples=200,
        n_jobs=1, verbose=-1, random_state=0,  # one thread: LightGBM's threads spin badly on a busy machine
    )
    model.fit(train[features], train["target"])
    return _per_era_corr(model.predict(validation[features]), validation), validation


@pytest.mark.parametrize("world", ["small_world", "null_world"])
def test_plain_lightgbm_has_realistic_signal(world: str, request: pytest.FixtureRequest) -> None:
    """The issue's bar: a plain LightGBM reaches a validation corr of order 0.01-0.05, not 0.2."""
    corr, _ = _plain_lightgbm_corr(request.getfixturevalue(world))
    assert 0.01 <= corr.mean() <= 0.05, corr.mean()


def test_planted_effects_are_worth_exploiting(small_world: Path, metadata: dict, truth: dict) -> None:
    """A predictor given the truth (lagged payoffs, regime, interaction, industries) beats the plain model."""
    plain, validation = _plain_lightgbm_corr(small_world)
    sets = metadata["feature_sets"]
    groups = truth["groups"]
    composite = pd.DataFrame({g: validation[sets[g]].mean(axis=1) for g in groups})
    composite = composite.groupby(validation.era).transform(lambda s: (s - s.mean()) / s.std())
    industry = pd.read_parquet(small_world / "synthetic_industries.parquet")["industry"].reindex(validation.index)
    relative = truth["relative_group"]
    composite[relative] -= composite[relative].groupby([validation.era, industry]).transform("mean")
    eras = sorted(truth["eras"])
    horizon = truth["horizon"]
    known = {e: truth["eras"][eras[i - horizon]]["payoff"] for i, e in enumerate(eras) if i >= horizon}
    weights = pd.DataFrame([known[e] for e in validation.era], index=validation.index)[groups]
    # the regime group's payoff flips with the regime that the cross-section shows today
    flip = np.array([
        1.0 if truth["eras"][e]["regime"] == truth["eras"][eras[eras.index(e) - horizon]]["regime"] else -1.0
        for e in validation.era
    ])
    weights[truth["regime_group"]] *= flip
    a, b = truth["interaction"]
    oracle = (composite[groups] * weights).sum(axis=1) + 0.03 * composite[a] * composite[b]
    informed = _per_era_corr(oracle.to_numpy(), validation)
    assert informed.mean() > plain.mean() + 0.015, (informed.mean(), plain.mean())


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_oracle_told_less_knows_less(small_world: Path, frames: dict[str, pd.DataFrame]) -> None:
    # the oracle's partial versions measure what each planted effect is worth (bench_worlds --ablation)
    from training.synthetic import ORACLE_EFFECTS, oracle_predictions

    config = SyntheticConfig.default(eras=120, stocks=600, features=60, seed=1)
    validation = frames["validation"]
    validation = validation[validation["target"].notna()]
    eras = sorted(int(e) for e in validation["era"].unique())
    full = oracle_predictions(config, eras)
    assert full.equals(oracle_predictions(config, eras, ORACLE_EFFECTS))

    def corr(prediction: pd.Series) -> float:
        joined = validation[["era", "target"]].join(prediction.rename("p"), how="inner")
        assert len(joined) == len(validation)
        return float(np.mean([numerai_corr(g[["p"]], g["target"]).iloc[0] for _, g in joined.groupby("era")]))

    told_all = corr(full["prediction"])
    for effect in ORACLE_EFFECTS:
        partial = oracle_predictions(config, eras, [e for e in ORACLE_EFFECTS if e != effect])
        assert partial.index.equals(full.index) and not np.allclose(partial["prediction"], full["prediction"]), effect
    # momentum (the last resolved factor returns) is the effect a model left alone never sees: worth the most here
    assert told_all > corr(oracle_predictions(config, eras, ["regime", "relative", "interaction"])["prediction"]) + 0.005
    # a control world has no planted effect: telling the oracle less changes nothing
    control = dataclasses.replace(config, planted=False)
    assert oracle_predictions(control, eras[:3], []).equals(oracle_predictions(control, eras[:3]))
    with pytest.raises(ValueError, match="unknown effect"):
        oracle_predictions(config, eras[:3], ["momentum", "luck"])


def test_the_built_in_world_is_pinned() -> None:
    """The Quick start's world (`nmu train` without --data) stays exactly as it is: the engine must earn its place on
    it by the model's doing, not by a world tuned to the model (issue 23)."""
    assert dataclasses.asdict(SyntheticConfig.default()) == {
        "eras": 400, "stocks": 2000, "features": 120, "seed": 0, "planted": True, "industries": 8, "horizon": 4,
        "long_horizon": 12, "train_fraction": 0.6, "unresolved_eras": 4, "momentum": 0.9, "regime_stay": 0.95,
        "regime_correlation": 0.6, "static_strength": 0.038, "regime_strength": 0.03, "relative_strength": 0.022,
        "timing_strength": 0.014, "interaction_strength": 0.03, "industry_return_sd": 0.1,
        "industry_signature_sd": 0.5, "industry_style_sd": 0.5, "relative_industry_style_sd": 1.0,
        "benchmark_noise": 0.6, "live_nan_fraction": 0.005, "future_eras": 0,
    }


def test_a_write_that_fails_at_the_end_puts_no_file_in_place(tmp_path, monkeypatch):
    """The disk fills while the last row group is written: the file is dropped, not renamed into place truncated
    (a full disk had left a validation.parquet without its footer under the real name), and no temporary is left."""
    import errno

    import pyarrow as pa

    from training.synthetic import _EraWriter

    schema = pa.schema([("era", pa.string()), ("feature", pa.int8())])
    writer = _EraWriter(tmp_path / "validation.parquet", schema, rows_per_group=10**9)
    writer.add({"era": np.array(["0001"] * 5, dtype=object), "feature": np.arange(5, dtype=np.int8)})

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "validation.parquet"))

    monkeypatch.setattr(writer._writer, "write_table", disk_full)
    with pytest.raises(OSError, match="No space left"):
        writer.close(ok=True)
    assert list(tmp_path.iterdir()) == []


def _tiny_world(seed: int) -> SyntheticConfig:
    return SyntheticConfig.default(eras=12, stocks=50, features=8, seed=seed)


@pytest.mark.parametrize("fails_in", ["_make_era", "_truth", "write_data_info"])
def test_a_world_that_fails_part_way_leaves_the_old_world_whole(tmp_path, monkeypatch, fails_in):
    """Over an existing world, a failure while drawing the eras, while writing the JSON files or while putting the
    files in place leaves every old file as it was (not some new and some old) and no temporary file."""
    import training.synthetic as synthetic

    out = write_synthetic_world(tmp_path / "world", _tiny_world(seed=1))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = getattr(synthetic, fails_in)
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if fails_in != "_make_era" or len(calls) == 6:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, fails_in, failing)
    with pytest.raises(OSError, match="No space left"):
        write_synthetic_world(out, _tiny_world(seed=2))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_failed_world_in_a_new_directory_leaves_no_directory(tmp_path, monkeypatch):
    import training.synthetic as synthetic

    monkeypatch.setattr(synthetic, "_truth", lambda world: (_ for _ in ()).throw(OSError(28, "No space left")))
    with pytest.raises(OSError):
        write_synthetic_world(tmp_path / "new" / "world", _tiny_world(seed=1))
    assert list(tmp_path.iterdir()) == []


def test_a_world_too_big_for_this_machine_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    """Memory for one era, disk for the files: refused in one sentence naming the sizes, no directory made (a
    MemoryError after minutes, or hours of writing until the disk was full, before)."""
    import shutil as shutil_module

    monkeypatch.setenv("NMU_MEMORY_LIMIT", "500M")  # 300 MiB + 32 x 100000 x 120 values + 1200 x 100000 stocks: 781 MiB
    with pytest.raises(NmuError, match=r"--stocks 100000 x --features 120: drawing one era .* needs about 781 MB of "
                                       r"memory and 500 MB are \$NMU_MEMORY_LIMIT; use fewer stocks or features"):
        write_synthetic_world(tmp_path / "big", SyntheticConfig.default(eras=12, stocks=100_000))
    monkeypatch.delenv("NMU_MEMORY_LIMIT")
    usage = shutil_module.disk_usage(tmp_path)
    monkeypatch.setattr("training.synthetic.shutil.disk_usage", lambda path: usage._replace(free=2**20))
    with pytest.raises(NmuError, match=r"needs at least 2 MB on disk and 1 MB are free under .*; use fewer "
                                       r"eras, stocks or features, or another --out"):
        write_synthetic_world(tmp_path / "big", SyntheticConfig.default(eras=12))  # 13 x 2000 rows: 1.9 MB
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(NmuError, match="more than the 62400 names"):
        SyntheticConfig.default(features=70_000)
