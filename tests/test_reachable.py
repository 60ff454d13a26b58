"""The reachable oracle: the oracle's construction from only what a model can know at each era."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numerai_tools.scoring import numerai_corr

from training.synthetic import (
    ORACLE_EFFECTS,
    SyntheticConfig,
    oracle_predictions,
    reachable_diagnostics,
    reachable_predictions,
)

CONFIG = SyntheticConfig.default(eras=120, stocks=600, features=60, seed=1)  # the small_world fixture's world


@pytest.fixture(scope="module")
def validation(small_world: Path) -> pd.DataFrame:
    return pd.read_parquet(small_world / "validation.parquet", columns=["era", "target"]).dropna(subset=["target"])


def _per_era_corr(prediction: pd.Series, frame: pd.DataFrame) -> pd.Series:
    joined = frame.join(prediction.rename("p"), how="inner")
    assert len(joined) == len(frame)
    return joined.groupby("era").apply(lambda g: numerai_corr(g[["p"]], g["target"]).iloc[0], include_groups=False)


def test_reachable_below_the_oracle_above_zero(validation: pd.DataFrame) -> None:
    eras = sorted(int(e) for e in validation["era"].unique())
    reachable = reachable_predictions(CONFIG, eras)
    oracle = oracle_predictions(CONFIG, eras)
    assert reachable.index.equals(oracle.index) and reachable["era"].equals(oracle["era"])
    reached, ceiling = _per_era_corr(reachable["prediction"], validation), _per_era_corr(oracle["prediction"], validation)
    # measured (44 validation eras, seeds 1 / 2 / 3): oracle 0.072 / 0.066 / 0.070, reachable 0.052 / 0.038 / 0.055,
    # the difference's standard error 0.006 to 0.008
    assert 0.02 < reached.mean() < ceiling.mean() - 0.01, (reached.mean(), ceiling.mean())
    # every effect it is told changes what it predicts
    for effect in ORACLE_EFFECTS:
        told = reachable_predictions(CONFIG, eras, [e for e in ORACLE_EFFECTS if e != effect])
        assert told.index.equals(reachable.index), effect
        assert not np.allclose(told["prediction"], reachable["prediction"]), effect


def test_estimated_styles_clusters_and_regime_match_the_truth() -> None:
    diagnostics = reachable_diagnostics(CONFIG)
    styles = np.array(list(diagnostics["style_corr"].values()))
    # measured on this world (about 7 features per group): per group 0.74 to 0.92, industries' adjusted Rand 0.79,
    # within-industry part 0.67, regime right in every era after the train eras
    assert styles.mean() > 0.8 and styles.min() > 0.65, styles
    assert diagnostics["industry_ari"] > 0.6
    assert diagnostics["relative_corr"] > 0.55
    assert diagnostics["regime_accuracy"] > 0.9


def _random_targets(eras: range, sizes: dict[int, int], seed: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    values = np.array([0.0, 0.25, 0.5, 0.75, 1.0], dtype=np.float32)
    return {u: rng.choice(values, size=sizes[u]) for u in eras}


LEAK = SyntheticConfig.default(eras=60, stocks=200, features=24, seed=3)  # small: each replaced target rebuilds it


@pytest.mark.parametrize("offset", [0, 10])
def test_no_target_of_an_unresolved_era(offset: int) -> None:
    """Era t's predictions see era t - lag's target but none of a later era's: replacing every target from era
    t - lag + 1 on leaves them as they were, replacing era t - lag's target alone changes them. offset 0 is the first
    era after the train eras, whose unresolved eras are the last train eras (what the fit must leave out)."""
    everything = reachable_predictions(LEAK, list(range(1, LEAK.eras + 2)))
    sizes = {int(e): int(n) for e, n in everything.groupby("era").size().items()}
    lag = LEAK.unresolved_eras + 1
    era = LEAK.train_eras + 1 + offset
    base = everything.loc[everything["era"] == f"{era:04d}", "prediction"].to_numpy()
    unresolved = reachable_predictions(LEAK, [era], targets=_random_targets(
        range(era - lag + 1, LEAK.eras + 1), sizes, seed=offset))["prediction"].to_numpy()
    assert np.array_equal(base, unresolved)
    resolved = reachable_predictions(LEAK, [era], targets=_random_targets(
        range(era - lag, era - lag + 1), sizes, seed=offset))["prediction"].to_numpy()
    assert not np.allclose(base, resolved)
    # told no momentum, only the train eras' targets count, resolved by the first era after them
    told = ["regime", "relative", "interaction"]
    static = reachable_predictions(LEAK, [era], told)["prediction"].to_numpy()
    replaced = reachable_predictions(LEAK, [era], told, targets=_random_targets(
        range(LEAK.train_eras - lag + 2, LEAK.eras + 1), sizes, seed=offset + 1))["prediction"].to_numpy()
    assert np.array_equal(static, replaced)
    replaced = reachable_predictions(LEAK, [era], told, targets=_random_targets(
        range(LEAK.train_eras - lag + 1, LEAK.train_eras - lag + 2), sizes, seed=offset + 1))["prediction"].to_numpy()
    assert not np.allclose(static, replaced)


def test_unknown_effects_and_eras_raise() -> None:
    with pytest.raises(ValueError, match="unknown effect"):
        reachable_predictions(CONFIG, [100], ["momentum", "luck"])
    with pytest.raises(ValueError, match="era numbers"):
        reachable_predictions(CONFIG, [CONFIG.eras + 2])
    # a control world has no planted effect: telling it less changes nothing
    control = SyntheticConfig.default(eras=120, stocks=600, features=60, seed=1, planted=False)
    assert reachable_predictions(control, [100], []).equals(reachable_predictions(control, [100]))
