"""Shipping by evidence: the variant that ships is chosen on the first half of the embargoed validation eras and
reported on the second; on a control world it is not behind the baseline beyond noise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from training.config import config_from_dict
from training.console import Reporter
from training.experiment import load_dataset, not_ahead_reason, run_experiment
from validation.evaluation.selection import SHIP_T, VETO_T, choose_variant, gain_table, split_eras


def _per_era(gain: float, noise: float = 0.01, eras: int = 80, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    names = [f"{e:04d}" for e in range(100, 100 + eras)]
    base = rng.normal(0.03, 0.02, eras)
    full = base + gain + rng.normal(0, noise, eras)
    return pd.concat([pd.DataFrame({"variant": v, "era": names, "corr": c}) for v, c in (("baseline", base), ("full", full))])


@pytest.mark.parametrize("gain,shipped", [(0.01, "full"), (0.0, "full"), (-0.01, "baseline")])
def test_the_rule_ships_unless_the_choosing_eras_show_harm(gain, shipped):
    decision = choose_variant(_per_era(gain), ["baseline", "full"])
    assert decision["shipped"] == shipped
    evidence = decision["evidence"]["full"]
    assert (evidence["t"] >= SHIP_T) == (shipped == "full") and SHIP_T < 0
    choose, report = split_eras(sorted(_per_era(gain)["era"].unique()))
    assert decision["choose_eras"] == [choose[0], choose[-1]] and decision["report_eras"] == [report[0], report[-1]]
    assert decision["report"]["full"]["n_eras"] == len(report)  # reported on the eras that did not choose


def test_of_the_variants_not_behind_the_largest_gain_ships_and_too_few_eras_ship_the_baseline():
    better, worse = _per_era(0.01, seed=1), _per_era(-0.01, seed=1)
    per_era = pd.concat([better, worse[worse["variant"] == "full"].assign(variant="no_timing"),
                         better[better["variant"] == "full"].assign(variant="no_clusters",
                                                                    corr=lambda f: f["corr"] - 0.005)])
    assert choose_variant(per_era, ["baseline", "full", "no_timing", "no_clusters"])["shipped"] == "full"
    few = _per_era(0.01, eras=4)  # two choosing eras: no t, so nothing shows it is not behind
    assert choose_variant(few, ["baseline", "full"])["shipped"] == "baseline"


def test_the_veto_a_variant_the_whole_validation_shows_behind_does_not_ship():
    """Issue 26's planted C in small: the choosing half cannot show the harm (t above SHIP_T), all the validation
    eras can (t below VETO_T); the baseline ships, and the decision says what the veto saw."""
    rng = np.random.default_rng(7)
    eras = [f"{e:04d}" for e in range(100, 192)]
    base = rng.normal(0.03, 0.02, len(eras))
    gain = np.where(np.arange(len(eras)) < 46, 0.001, -0.01) + rng.normal(0, 0.01, len(eras))
    per_era = pd.concat([pd.DataFrame({"variant": "baseline", "era": eras, "corr": base}),
                         pd.DataFrame({"variant": "full", "era": eras, "corr": base + gain})])
    decision = choose_variant(per_era, ["baseline", "full"])
    assert decision["evidence"]["full"]["t"] >= SHIP_T, decision["evidence"]  # the choosing half alone would ship it
    veto = decision["veto"]
    assert veto["evidence"]["full"]["t"] < VETO_T and veto["vetoed"] == ["full"] and veto["eras"] == [eras[0], eras[-1]]
    assert decision["shipped"] == "baseline" and "the veto" in decision["rule"]
    line = not_ahead_reason(decision)
    assert "the validation eras as a whole showed full behind it beyond noise" in line and 'ship = "full"' in line
    table = gain_table(decision)
    assert table.set_index("variant").loc["full", "paired t (all validation eras)"] < VETO_T
    # a variant the whole validation does not show behind beyond noise is not vetoed
    assert choose_variant(_per_era(0.0), ["baseline", "full"])["veto"]["vetoed"] == []


def test_the_warning_says_why_a_model_not_ahead_shipped_and_what_ships_otherwise():
    behind = choose_variant(_per_era(-0.002, seed=3), ["baseline", "full"])
    assert behind["shipped"] == "full" and not behind["ahead_of_baseline"], behind["evidence"]
    line = not_ahead_reason(behind)
    t = behind["evidence"]["full"]["t"]
    assert f"(t {t:.2f}; the rule refuses t < {SHIP_T:g})" in line and 'ship = "baseline"' in line
    assert (f"baseline {behind['report']['baseline']['corr_mean']:+.4f}, full {behind['report']['full']['corr_mean']:+.4f}"
            in line)
    refused = choose_variant(_per_era(-0.01), ["baseline", "full"])
    assert refused["shipped"] == "baseline" and 'ship = "full"' in not_ahead_reason(refused)
    as_set = choose_variant(_per_era(-0.01), ["baseline", "full"], ship="full")
    assert "set in the config" in not_ahead_reason(as_set) and "the rule refuses" not in not_ahead_reason(as_set)


def test_a_named_variant_ships_as_set():
    decision = choose_variant(_per_era(-0.02), ["baseline", "full"], ship="full")
    assert decision["shipped"] == "full" and "set in the config" in decision["rule"]


@pytest.mark.slow
def test_on_a_control_world_the_shipped_model_is_not_behind_the_baseline_beyond_noise(null_world):
    config = config_from_dict({"lightgbm": {"n_estimators": 300, "learning_rate": 0.04}, "refit": False})
    ds = load_dataset(null_world, "synthetic", config, Reporter(Console(quiet=True)))
    result = run_experiment(config, ds)
    decision = result.metrics["ship"]
    per_era = result.per_era[result.per_era["mode"] == decision["mode"]]
    report = per_era[per_era["era"] >= decision["report_eras"][0]].pivot(index="era", columns="variant", values="corr")
    diff = report[decision["shipped"]] - report["baseline"]
    # the tolerance is two standard errors of the paired per-era difference (a one-sided 2.5 % test), not a fixed number
    tolerance = 2 * diff.std(ddof=1) / np.sqrt(len(diff)) if decision["shipped"] != "baseline" else 0.0
    assert diff.mean() >= -tolerance, (decision["shipped"], diff.mean(), tolerance)


def _forced_residualizer(monkeypatch: pytest.MonkeyPatch, parts: tuple[str, ...]) -> None:
    """The residualizer's gate made to keep `parts` whatever its proxy says (the class every fit path uses)."""
    from model.residualizer import Residualizer

    monkeypatch.setattr(Residualizer, "_gated", lambda self, *args, **kwargs: parts)


@pytest.mark.slow  # a whole experiment, then two variants fitted again on their own to compare (12 s); the
# default lane keeps the case where nothing is derived, and the ship rule's own tests
def test_full_without_its_residualizer_is_judged_on_the_validation_eras(small_world, monkeypatch):
    from model.timing import Timing
    from training.experiment import Job, build_model, make_variant, run_job, without_residualizer

    _forced_residualizer(monkeypatch, ("features",))
    fit_timing = Timing.fit

    def keeping_momentum(self, *args, **kwargs):  # every factor's momentum, so refreshed scores read the new history
        fit_timing(self, *args, **kwargs)
        self.momentum_keep_ = np.arange(len(self.names_))
        return self

    monkeypatch.setattr(Timing, "fit", keeping_momentum)
    config = config_from_dict({"lightgbm": {"n_estimators": 20, "learning_rate": 0.1}, "refit": False})
    ds = load_dataset(small_world, "synthetic", config, Reporter(Console(quiet=True)))
    result = run_experiment(config, ds)
    decision = result.metrics["ship"]
    assert "no_residualizer" in result.metrics["models"] and "no_residualizer" in decision["evidence"]
    assert "features" in decision["derived"]["no_residualizer"]
    # scored from full's fit, it scores exactly as no_residualizer fitted on its own
    _, own = run_job(Job("variant", "no_residualizer"), ds, config, Reporter(Console(quiet=True)), config.compute)
    derived = result.per_era[(result.per_era["variant"] == "no_residualizer")]
    for mode in ("left_alone", "refreshed"):
        scores = derived[derived["mode"] == mode].set_index("era")["corr"]
        np.testing.assert_allclose(scores.to_numpy(), own[mode]["corr"].reindex(scores.index).to_numpy(), atol=1e-12)
    full = result.per_era[result.per_era["variant"] == "full"]
    left_alone, refreshed = (full[full["mode"] == m]["corr"].to_numpy() for m in ("left_alone", "refreshed"))
    assert not np.allclose(left_alone, derived[derived["mode"] == "left_alone"]["corr"].to_numpy())
    assert not np.allclose(left_alone, refreshed)  # the history matters: the refreshed check above means something
    # the derived model is the variant of its name: its settings, no residualizer (what ships without a refit)
    model, scores = run_job(Job("variant", "full", derive=True), ds, config, Reporter(Console(quiet=True)),
                            config.compute)
    plain = without_residualizer(model)
    assert plain.residualizer_ is None and model.residualizer_ is not None and "no_residualizer" in scores
    assert plain.get_params() == make_variant(build_model(config, ds.groups), "no_residualizer", config).get_params()


def test_no_candidate_is_derived_when_the_residualizer_keeps_nothing(small_world, monkeypatch):
    _forced_residualizer(monkeypatch, ())
    config = config_from_dict({"lightgbm": {"n_estimators": 20, "learning_rate": 0.1}, "refit": False})
    ds = load_dataset(small_world, "synthetic", config, Reporter(Console(quiet=True)))
    result = run_experiment(config, ds)
    assert set(result.metrics["models"]) == {"baseline", "full"} and "derived" not in result.metrics["ship"]
