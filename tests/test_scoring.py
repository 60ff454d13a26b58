"""validation.evaluation.scoring equals numerai-tools on a toy frame, skips unresolved eras, and summarises correctly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numerai_tools import scoring as nt

from validation.evaluation import scoring


@pytest.fixture(scope="module")
def toy() -> pd.DataFrame:
    """Four eras of 300 stocks: five features, a target, a prediction and a benchmark, ids in random order."""
    rng = np.random.default_rng(7)
    n_eras, n = 4, 300
    ids = [f"n{i:015x}" for i in rng.permutation(n_eras * n)]
    frame = pd.DataFrame(
        rng.integers(0, 5, (n_eras * n, 5)).astype(np.int8), index=pd.Index(ids, name="id"),
        columns=[f"feature_{i}" for i in range(5)],
    )
    frame["era"] = np.repeat([f"{e:04d}" for e in range(10, 10 + n_eras)], n)
    signal = frame["feature_0"].to_numpy() + rng.normal(0, 2, len(frame))
    frame["target"] = (pd.Series(signal).groupby(frame["era"].to_numpy()).rank(pct=True).to_numpy() * 4.999 // 1 / 4).astype(np.float32)
    frame["prediction"] = frame["feature_0"] + rng.normal(0, 1, len(frame))
    frame["benchmark"] = frame["feature_0"] + rng.normal(0, 1.5, len(frame))
    return frame


def test_per_era_corr_and_bmc_equal_numerai_tools(toy: pd.DataFrame) -> None:
    features = [c for c in toy if c.startswith("feature_")]
    per_era = scoring.score_eras(toy["prediction"], toy, "target", features, benchmark=toy["benchmark"])
    assert list(per_era.index) == sorted(toy["era"].unique())
    for era, rows in toy.groupby("era"):
        expected_corr = nt.numerai_corr(rows[["prediction"]], rows["target"].astype(float)).iloc[0]
        expected_bmc = nt.correlation_contribution(rows[["prediction"]], rows["benchmark"], rows["target"].astype(float)).iloc[0]
        assert per_era.loc[era, "corr"] == pytest.approx(expected_corr, abs=1e-12)
        assert per_era.loc[era, "bmc"] == pytest.approx(expected_bmc, abs=1e-12)
        _, expected_exposure = nt.max_feature_correlation(rows["prediction"].sort_index(), rows[features].sort_index().astype(float))
        assert per_era.loc[era, "feature_exposure"] == pytest.approx(expected_exposure, abs=1e-9)
    assert per_era["corr"].mean() > 0.05  # the prediction does carry the planted signal


def test_unresolved_targets_are_skipped(toy: pd.DataFrame) -> None:
    frame = toy.copy()
    last = frame["era"].max()
    frame.loc[frame["era"] == last, "target"] = np.nan
    first = frame.index[frame["era"] == frame["era"].min()][:20]
    frame.loc[first, "target"] = np.nan
    per_era = scoring.score_eras(frame["prediction"], frame, "target", ["feature_0"], benchmark=frame["benchmark"])
    assert last not in per_era.index and len(per_era) == 3
    rows = frame[(frame["era"] == frame["era"].min()) & frame["target"].notna()]
    assert per_era["corr"].iloc[0] == pytest.approx(nt.numerai_corr(rows[["prediction"]], rows["target"].astype(float)).iloc[0])
    assert scoring.summarize(per_era)["n_eras"] == 3


def test_summary_values() -> None:
    per_era = pd.DataFrame({"corr": [0.02, -0.01, -0.02, 0.03], "bmc": [0.01, np.nan, 0.0, 0.02], "feature_exposure": [0.1, 0.2, 0.3, 0.4]})
    summary = scoring.summarize(per_era)
    assert set(summary) == set(scoring.SUMMARY_KEYS)
    assert summary["corr_mean"] == pytest.approx(0.005)
    assert summary["corr_std"] == pytest.approx(np.std([0.02, -0.01, -0.02, 0.03]))
    assert summary["corr_sharpe"] == pytest.approx(0.005 / np.std([0.02, -0.01, -0.02, 0.03]))
    assert summary["max_drawdown"] == pytest.approx(0.03)  # peak 0.02 → trough -0.01
    assert summary["bmc_mean"] == pytest.approx(0.01)
    assert summary["feature_exposure_max"] == pytest.approx(0.25)
    assert summary["n_eras"] == 4
    assert scoring.max_drawdown(pd.Series([-0.01, 0.02])) == pytest.approx(0.01)  # the start counts as a peak


def test_summary_without_benchmark_or_eras_is_json_safe() -> None:
    summary = scoring.summarize(pd.DataFrame({"corr": [0.01], "bmc": [np.nan], "feature_exposure": [0.1]}))
    assert summary["bmc_mean"] is None and summary["corr_sharpe"] is None and summary["n_eras"] == 1
