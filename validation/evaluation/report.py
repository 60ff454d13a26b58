"""The training report: PNG plots of the variants' per-era validation scores and one self-contained HTML page
(plots embedded as base64) that a browser opens without any other file."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np
import pandas as pd

from validation.evaluation.scoring import SUMMARY_KEYS

PLOTS = ("cumulative_corr", "per_era_corr", "cumulative_bmc", "feature_exposure", "component_contribution")
_COLORS = {"baseline": "#7f7f7f", "full": "#1f77b4"}


def _pyplot():
    """Matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _color(variant: str, i: int) -> str:
    """A stable colour per variant."""
    return _COLORS.get(variant, f"C{(i % 8) + 2}")


def _png(fig: Any) -> bytes:
    """A figure as PNG bytes; closes it."""
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _era_ticks(ax: Any, eras: list[str]) -> None:
    """Label about ten eras on the x axis."""
    step = max(1, len(eras) // 10)
    ticks = list(range(0, len(eras), step))
    ax.set_xticks(ticks)
    ax.set_xticklabels([eras[i] for i in ticks], rotation=45, ha="right", fontsize=8)


def _pivot(per_era: pd.DataFrame, column: str) -> pd.DataFrame:
    """Era × variant table of one score column (variants in their first-seen order)."""
    variants = list(dict.fromkeys(per_era["variant"]))
    table = per_era.pivot_table(index="era", columns="variant", values=column, aggfunc="first", dropna=False)
    return table.reindex(columns=[v for v in variants if v in table.columns]).sort_index()


def _cumulative(per_era: pd.DataFrame, column: str, title: str, ylabel: str) -> bytes:
    """Cumulative sum of a per-era score, one line per variant."""
    plt = _pyplot()
    table = _pivot(per_era, column)
    fig, ax = plt.subplots(figsize=(9, 4))
    if table.notna().any().any():
        for i, variant in enumerate(table.columns):
            series = table[variant].fillna(0.0).cumsum()
            ax.plot(np.arange(len(series)), series.to_numpy(), label=variant, color=_color(variant, i), lw=2 if variant == "full" else 1.2)
        _era_ticks(ax, list(table.index))
        ax.legend(fontsize=8, ncol=3)
    else:
        ax.text(0.5, 0.5, "no scores (no benchmark in the data)", ha="center", va="center", transform=ax.transAxes)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_title(title)
    ax.set_xlabel("validation era")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return _png(fig)


def _per_era_bars(per_era: pd.DataFrame) -> bytes:
    """Per-era corr as bars, one panel per variant, sharing the y axis."""
    plt = _pyplot()
    table = _pivot(per_era, "corr")
    n = max(1, len(table.columns))
    fig, axes = plt.subplots(n, 1, figsize=(9, 1.9 * n + 0.6), sharex=True, sharey=True, squeeze=False)
    x = np.arange(len(table))
    for i, (ax, variant) in enumerate(zip(axes[:, 0], table.columns)):
        values = table[variant].to_numpy()
        ax.bar(x, values, color=np.where(values >= 0, _color(variant, i), "#d62728"), width=0.9)
        ax.axhline(np.nanmean(values), color="black", lw=0.8, ls="--")
        ax.set_ylabel(variant, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    _era_ticks(axes[-1, 0], list(table.index))
    axes[0, 0].set_title("numerai_corr per validation era (dashed: mean)")
    axes[-1, 0].set_xlabel("validation era")
    return _png(fig)


def _exposure(per_era: pd.DataFrame) -> bytes:
    """Distribution over eras of the per-era max |corr| with any feature, one box per variant."""
    plt = _pyplot()
    table = _pivot(per_era, "feature_exposure")
    fig, ax = plt.subplots(figsize=(9, 3.8))
    data = [table[v].dropna().to_numpy() for v in table.columns]
    if any(len(d) for d in data):
        box = ax.boxplot(data, patch_artist=True)
        ax.set_xticks(range(1, len(table.columns) + 1))
        ax.set_xticklabels(list(table.columns), fontsize=9)
        for i, (patch, variant) in enumerate(zip(box["boxes"], table.columns)):
            patch.set_facecolor(_color(variant, i))
            patch.set_alpha(0.6)
    ax.set_title("feature exposure: per-era max |corr(prediction, feature)|")
    ax.set_ylabel("max |corr|")
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)


def component_gains(models: dict[str, dict[str, Any]]) -> dict[str, float]:
    """What each part adds to corr_mean: `full − baseline` (everything) and `full − no_<c>` per ablated component."""
    full = (models.get("full") or {}).get("corr_mean")
    gains: dict[str, float] = {}
    if full is None:
        return gains
    if (models.get("baseline") or {}).get("corr_mean") is not None:
        gains["all components\n(full − baseline)"] = full - models["baseline"]["corr_mean"]
    for name, scores in models.items():
        if name.startswith("no_") and scores.get("corr_mean") is not None:
            gains[name[3:]] = full - scores["corr_mean"]
    return gains


def _components(models: dict[str, dict[str, Any]]) -> bytes:
    """Bar chart of what each component adds to the validation corr_mean."""
    plt = _pyplot()
    gains = component_gains(models)
    fig, ax = plt.subplots(figsize=(9, 3.8))
    if gains:
        names = list(gains)
        values = np.array([gains[n] for n in names])
        ax.bar(names, values, color=np.where(values >= 0, "#2ca02c", "#d62728"), width=0.6)
        ax.set_xlim(-0.5 - max(0, 3 - len(names)) / 2, len(names) - 0.5 + max(0, 3 - len(names)) / 2)
        ax.margins(y=0.15)
        for i, v in enumerate(values):
            ax.annotate(f"{v:+.4f}", (i, v), ha="center", va="bottom" if v >= 0 else "top", fontsize=8)
        ax.axhline(0, color="black", lw=0.6)
    if not any(n.startswith("no_") for n in models):
        ax.set_xlabel("run `nmu train --ablation` for one bar per component", fontsize=8, color="#555555")
    ax.set_title("what each component adds to validation corr_mean (full minus the variant without it)")
    ax.set_ylabel("Δ corr_mean")
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)


def render_plots(per_era: pd.DataFrame, models: dict[str, dict[str, Any]]) -> dict[str, bytes]:
    """Every plot of the report as PNG bytes, keyed by name (see PLOTS). `per_era`: variant, era, corr, bmc,
    feature_exposure; `models`: the metrics.json "models" entry."""
    return {
        "cumulative_corr": _cumulative(per_era, "corr", "cumulative numerai_corr over validation eras", "cumulative corr"),
        "per_era_corr": _per_era_bars(per_era),
        "cumulative_bmc": _cumulative(per_era, "bmc", "cumulative BMC (contribution against the benchmark)", "cumulative BMC"),
        "feature_exposure": _exposure(per_era),
        "component_contribution": _components(models),
    }


def _fmt(value: Any) -> str:
    """A score cell."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def render_html(
    metrics: dict[str, Any],
    plots: dict[str, bytes],
    cv: pd.DataFrame | None = None,
    notes: dict[str, str] | None = None,
    ship: tuple[pd.DataFrame, str] | None = None,
) -> str:
    """The report as one self-contained HTML page: headline table, data summary, embedded plots, CV table."""
    rows = "".join(
        "<tr><th>" + html.escape(name) + "</th>" + "".join(f"<td>{_fmt(scores.get(k))}</td>" for k in SUMMARY_KEYS) + "</tr>"
        for name, scores in metrics["models"].items()
    )
    head = "".join(f"<th>{k}</th>" for k in SUMMARY_KEYS)
    data = "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in metrics["data"].items())
    data += "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in (notes or {}).items())
    titles = {
        "cumulative_corr": "Cumulative corr per variant",
        "per_era_corr": "Per-era corr",
        "cumulative_bmc": "Cumulative BMC",
        "feature_exposure": "Feature exposure",
        "component_contribution": "What each component adds",
    }
    images = "".join(
        f'<h2>{html.escape(titles.get(name, name))}</h2>'
        f'<img alt="{html.escape(name)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
        for name, png in plots.items()
    )
    ship_html = ""
    if ship is not None:
        table, rule = ship
        ship_html = ("<h2>The shipped model</h2><p>" + html.escape(rule) + ".</p>"
                     + table.to_html(index=False, float_format=lambda v: f"{v:.4f}", border=0, classes="scores", na_rep="–"))
    ensemble_html = ""
    ensemble = metrics.get("ensemble")
    if ensemble:
        shipped = (metrics.get("ship") or {}).get("shipped")
        e = ensemble["variants"].get(shipped) or next(iter(ensemble["variants"].values()))
        members = pd.DataFrame({t: s for t, s in e["members"].items()}).T.reset_index(names="member")
        members["n_eras"] = members["n_eras"].astype("Int64")  # the transpose made every column float
        correlation = pd.DataFrame(e["member_correlation"]).reset_index(names="per-era corr correlation")
        gain = e["gain_over_best_member"]
        ensemble_html = ("<h2>Ensemble members</h2><p>Each member's per-era corr on the main target (refreshed); the "
                         f"ensemble adds {'–' if gain is None else f'{gain:+.4f}'} over its best member, "
                         f"{html.escape(str(e['best_member']))}.</p>"
                         + members.to_html(index=False, float_format=lambda v: f"{v:.4f}", border=0, na_rep="–")
                         + correlation.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0, na_rep="–"))
    cv_html = ""
    if cv is not None and len(cv):
        cv_html = "<h2>Expanding-window cross-validation on the training eras</h2>" + cv.to_html(
            index=False, float_format=lambda v: f"{v:.4f}", border=0, classes="scores"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>nmu train report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; font-variant-numeric: tabular-nums; }}
th {{ background: #f3f3f3; text-align: left; }}
img {{ max-width: 100%; display: block; margin-bottom: 1em; }}
</style></head><body>
<h1>nmu train report</h1>
<p>Scores on the validation eras after the embargo (numerai-tools <code>numerai_corr</code>; BMC is
<code>correlation_contribution</code> against the benchmark model; feature exposure is the per-era max
|corr| of the prediction with any feature, averaged over eras).</p>
<h2>Variants</h2>
<table class="scores"><tr><th>variant</th>{head}</tr>{rows}</table>
{ship_html}
{ensemble_html}
<h2>Data</h2>
<table>{data}</table>
{images}
{cv_html}
</body></html>
"""
