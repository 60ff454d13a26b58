"""Numerai scores per era and their summary: numerai-tools is the source of truth for CORR and BMC.

Every score is computed era by era (Numerai pays per era) on the rows whose target is resolved; an era with
no resolved target is skipped, never scored as zero.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from numerai_tools import scoring as nt

from model.eras import EraIndex
from model.features import FILL_VALUE

SUMMARY_KEYS = ("corr_mean", "corr_std", "corr_sharpe", "max_drawdown", "bmc_mean", "feature_exposure_max", "n_eras")


def _resolved(target: pd.Series) -> np.ndarray:
    """Boolean mask of rows whose target is known."""
    return np.isfinite(np.asarray(target, dtype=np.float64))


def era_numerai_corr(predictions: pd.Series | np.ndarray, targets: pd.Series | np.ndarray) -> float:
    """numerai-tools `numerai_corr` of one era's predictions with its targets (NaN targets dropped first).

    Inputs are aligned by position; a RangeIndex keeps numerai-tools' index sorting cheap.
    """
    mask = _resolved(targets)
    if mask.sum() < 2:
        return float("nan")
    preds = pd.DataFrame({"prediction": np.asarray(predictions, dtype=np.float64)[mask]})
    tgt = pd.Series(np.asarray(targets, dtype=np.float64)[mask], name="target")
    return float(nt.numerai_corr(preds, tgt).iloc[0])


def era_bmc(
    predictions: pd.Series | np.ndarray, benchmark: pd.Series | np.ndarray, targets: pd.Series | np.ndarray
) -> float:
    """numerai-tools `correlation_contribution` of one era's predictions against a benchmark (BMC), by position."""
    mask = _resolved(targets) & np.isfinite(np.asarray(benchmark, dtype=np.float64))
    if mask.sum() < 2:
        return float("nan")
    preds = pd.DataFrame({"prediction": np.asarray(predictions, dtype=np.float64)[mask]})
    bench = pd.Series(np.asarray(benchmark, dtype=np.float64)[mask], name="benchmark")
    tgt = pd.Series(np.asarray(targets, dtype=np.float64)[mask], name="target")
    return float(nt.correlation_contribution(preds, bench, tgt).iloc[0])


def max_abs_feature_corr(predictions: np.ndarray, features: np.ndarray) -> float:
    """The largest |Pearson corr| of one era's predictions with any feature column (one matrix product).

    A NaN feature value takes the neutral value (FILL_VALUE); a feature constant within the era is ignored.
    """
    x = np.nan_to_num(np.asarray(features, dtype=np.float64), nan=FILL_VALUE)
    x -= x.mean(axis=0)
    p = np.asarray(predictions, dtype=np.float64)
    p = p - p.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (x.T @ p) / (np.sqrt(np.einsum("ij,ij->j", x, x)) * np.sqrt(p @ p))
    corr = corr[np.isfinite(corr)]
    return float(np.abs(corr).max()) if corr.size else float("nan")


def max_drawdown(corr: pd.Series) -> float:
    """Largest fall of the cumulative per-era corr from its running peak (the start, 0, counts as a peak)."""
    if len(corr) == 0:
        return float("nan")
    cumulative = np.concatenate([[0.0], np.cumsum(np.asarray(corr, dtype=np.float64))])
    return float((np.maximum.accumulate(cumulative) - cumulative).max())


def score_eras(
    predictions: pd.Series | np.ndarray,
    frame: pd.DataFrame,
    target: str,
    features: list[str],
    benchmark: pd.Series | None = None,
) -> pd.DataFrame:
    """Per-era scores of predictions (aligned with `frame`'s rows) on `frame` (era, target, features):
    columns corr, bmc (NaN without a benchmark), feature_exposure; one row per era with a resolved target.

    Works one era at a time on row positions: no copy of the whole frame is made.
    """
    preds = np.asarray(predictions, dtype=np.float64)
    if preds.shape != (len(frame),):
        raise ValueError(f"{preds.shape[0]} predictions for {len(frame)} rows")
    targets = frame[target].to_numpy(dtype=np.float64)
    positions = np.flatnonzero(np.isfinite(targets))
    index = EraIndex(frame["era"].to_numpy()[positions])
    bench = None if benchmark is None else benchmark.reindex(frame.index).to_numpy(dtype=np.float64)
    columns = frame.columns.get_indexer(features)
    rows_out = []
    for label, group in index.rows():
        rows = positions[group]
        corr = era_numerai_corr(preds[rows], targets[rows])
        if math.isnan(corr):
            continue
        bmc = era_bmc(preds[rows], bench[rows], targets[rows]) if bench is not None else float("nan")
        block = frame.iloc[rows, columns].to_numpy(dtype=np.float32, na_value=np.nan) if len(columns) else None
        exposure = max_abs_feature_corr(preds[rows], block) if block is not None else float("nan")
        rows_out.append((label, corr, bmc, exposure))
    result = pd.DataFrame(rows_out, columns=["era", "corr", "bmc", "feature_exposure"]).set_index("era")
    return result.astype(np.float64)


def era_corrs(predictions: np.ndarray | pd.Series, targets: np.ndarray | pd.Series, eras: np.ndarray | pd.Series) -> pd.Series:
    """numerai_corr per era (index: era labels in era order) of predictions with targets, all aligned by position;
    eras without two resolved targets are left out."""
    preds = np.asarray(predictions, dtype=np.float64)
    tgt = np.asarray(targets, dtype=np.float64)
    scores = {era: era_numerai_corr(preds[rows], tgt[rows]) for era, rows in EraIndex(np.asarray(eras)).rows()}
    return pd.Series(list(scores.values()), index=pd.Index(list(scores), name="era"), dtype=np.float64).dropna()


class EraScorer:
    """A scikit-learn scorer (`scoring=`) of per-era numerai_corr: their mean, or their sharpe (mean / std).

    Called as scorer(estimator, X, y): predicts X and scores each era of X's `era` column (no column: one era).

    Parameters
    ----------
    statistic : {"mean", "sharpe"}
    """

    def __init__(self, statistic: str = "mean"):
        if statistic not in ("mean", "sharpe"):
            raise ValueError(f"EraScorer: statistic is {statistic!r}; it must be 'mean' or 'sharpe'")
        self.statistic = statistic

    def __repr__(self) -> str:
        return f"EraScorer({self.statistic!r})"

    def __call__(self, estimator: Any, X: pd.DataFrame, y: Any, sample_weight: Any = None) -> float:
        """The statistic of the per-era numerai_corr of estimator.predict(X) with y."""
        eras = X["era"].to_numpy() if isinstance(X, pd.DataFrame) and "era" in X.columns else np.zeros(len(X))
        corr = era_corrs(estimator.predict(X), y, eras)
        if len(corr) == 0:
            return float("nan")
        if self.statistic == "mean":
            return float(corr.mean())
        std = float(np.std(corr))
        return float(corr.mean() / std) if std > 0 else float("nan")


era_corr_scorer = EraScorer("mean")
"""Mean per-era numerai_corr, as `scoring=` in cross_validate or GridSearchCV."""
era_sharpe_scorer = EraScorer("sharpe")
"""Sharpe of the per-era numerai_corr (mean / std), as `scoring=`."""


def _clean(value: float) -> float | None:
    """A float for JSON: NaN and inf become None."""
    value = float(value)
    return value if math.isfinite(value) else None


def summarize(per_era: pd.DataFrame) -> dict[str, float | None | int]:
    """The headline scores of per-era scores (columns corr, bmc, feature_exposure): the metrics.json entry."""
    corr = per_era["corr"].dropna()
    std = float(np.std(corr)) if len(corr) else float("nan")
    mean = float(np.mean(corr)) if len(corr) else float("nan")
    sharpe = float(nt.sharpe_ratio(corr)) if len(corr) > 1 and std > 0 else float("nan")
    bmc = per_era["bmc"].dropna() if "bmc" in per_era else pd.Series(dtype=float)
    exposure = per_era["feature_exposure"].dropna() if "feature_exposure" in per_era else pd.Series(dtype=float)
    return {
        "corr_mean": _clean(mean),
        "corr_std": _clean(std),
        "corr_sharpe": _clean(sharpe),
        "max_drawdown": _clean(max_drawdown(corr)),
        "bmc_mean": _clean(bmc.mean()) if len(bmc) else None,
        "feature_exposure_max": _clean(exposure.mean()) if len(exposure) else None,
        "n_eras": int(len(corr)),
    }


def ensemble_summary(members: dict[str, pd.DataFrame], ensemble: pd.DataFrame) -> dict[str, Any]:
    """What an ensemble's members score (per-era scores on the main target, by target), how their per-era corr
    series correlate with each other, and what the ensemble adds over its best member."""
    summaries = {t: summarize(per_era) for t, per_era in members.items()}
    series = pd.DataFrame({t: per_era["corr"] for t, per_era in members.items()})
    best = max(summaries, key=lambda t: summaries[t]["corr_mean"] if summaries[t]["corr_mean"] is not None else -1.0)
    ens = summarize(ensemble)
    gain = (ens["corr_mean"] - summaries[best]["corr_mean"]
            if ens["corr_mean"] is not None and summaries[best]["corr_mean"] is not None else None)
    correlation = series.corr().round(4)
    return {"members": summaries, "ensemble": ens, "best_member": best, "gain_over_best_member": gain,
            "member_correlation": {a: {b: _clean(correlation.loc[a, b]) for b in correlation.columns}
                                   for a in correlation.index}}
