"""Numerai scores per era and their summary: numerai-tools is the source of truth for CORR and BMC.

Every score is computed era by era (Numerai pays per era) on the rows whose target is resolved; an era with
no resolved target is skipped, never scored as zero.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd
from numerai_tools import scoring as nt

SUMMARY_KEYS = ("corr_mean", "corr_std", "corr_sharpe", "max_drawdown", "bmc_mean", "feature_exposure_max", "n_eras")


def _era_groups(eras: pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Factorize eras once; return (sorted era labels, codes, row positions of each era)."""
    codes, labels = pd.factorize(np.asarray(eras), sort=True)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(labels) + 1))
    return np.asarray(labels), codes, [order[bounds[i]:bounds[i + 1]] for i in range(len(labels))]


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


def per_era_corr(predictions: pd.Series, targets: pd.Series, eras: pd.Series) -> pd.Series:
    """numerai_corr per era, indexed by era; eras without a resolved target are left out."""
    labels, _, groups = _era_groups(eras)
    out = {}
    for label, rows in zip(labels, groups):
        value = era_numerai_corr(predictions.iloc[rows], targets.iloc[rows])
        if not math.isnan(value):
            out[label] = value
    return pd.Series(out, name="corr", dtype=np.float64).rename_axis("era")


def per_era_bmc(predictions: pd.Series, benchmark: pd.Series, targets: pd.Series, eras: pd.Series) -> pd.Series:
    """Benchmark-model contribution per era (numerai-tools correlation_contribution), indexed by era."""
    labels, _, groups = _era_groups(eras)
    out = {}
    for label, rows in zip(labels, groups):
        value = era_bmc(predictions.iloc[rows], benchmark.iloc[rows], targets.iloc[rows])
        if not math.isnan(value):
            out[label] = value
    return pd.Series(out, name="bmc", dtype=np.float64).rename_axis("era")


def per_era_feature_exposure(predictions: pd.Series, features: pd.DataFrame, eras: pd.Series) -> pd.Series:
    """Per era, the largest |Pearson corr| of the predictions with any feature (one matrix product per era).

    A NaN feature value takes the neutral value 2; a feature constant within an era is ignored there.
    """
    labels, _, groups = _era_groups(eras)
    values = features.to_numpy(dtype=np.float32, na_value=2.0) if len(features.columns) else None
    preds = np.asarray(predictions, dtype=np.float64)
    out = np.full(len(labels), np.nan)
    if values is None:
        return pd.Series(out, index=pd.Index(labels, name="era"), name="feature_exposure")
    for i, rows in enumerate(groups):
        x = values[rows].astype(np.float64)
        x -= x.mean(axis=0)
        p = preds[rows] - preds[rows].mean()
        p_norm = np.sqrt(p @ p)
        x_norm = np.sqrt(np.einsum("ij,ij->j", x, x))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = (x.T @ p) / (x_norm * p_norm)
        corr = corr[np.isfinite(corr)]
        if corr.size:
            out[i] = np.abs(corr).max()
    return pd.Series(out, index=pd.Index(labels, name="era"), name="feature_exposure")


def max_drawdown(corr: pd.Series) -> float:
    """Largest fall of the cumulative per-era corr from its running peak (the start, 0, counts as a peak)."""
    if len(corr) == 0:
        return float("nan")
    cumulative = np.concatenate([[0.0], np.cumsum(np.asarray(corr, dtype=np.float64))])
    return float((np.maximum.accumulate(cumulative) - cumulative).max())


def score_eras(
    predictions: pd.Series,
    frame: pd.DataFrame,
    target: str,
    features: list[str],
    benchmark: Optional[pd.Series] = None,
) -> pd.DataFrame:
    """Per-era scores of predictions on `frame` (era, target, features): columns corr, bmc, feature_exposure.

    Rows are the eras with a resolved target; bmc is NaN without a benchmark.
    """
    predictions = pd.Series(np.asarray(predictions, dtype=np.float64), index=frame.index, name="prediction")
    mask = _resolved(frame[target])
    sub = frame.loc[mask]
    preds = predictions[mask]
    eras = sub["era"]
    result = per_era_corr(preds, sub[target], eras).to_frame()
    if benchmark is not None:
        bench = pd.Series(np.asarray(benchmark.reindex(sub.index), dtype=np.float64), index=sub.index)
        result["bmc"] = per_era_bmc(preds, bench, sub[target], eras)
    else:
        result["bmc"] = np.nan
    result["feature_exposure"] = per_era_feature_exposure(preds, sub[features], eras)
    return result


def _clean(value: float) -> Optional[float]:
    """A float for JSON: NaN and inf become None."""
    value = float(value)
    return value if math.isfinite(value) else None


def summarize(per_era: pd.DataFrame) -> dict[str, Optional[float] | int]:
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
