"""TrainConfig: defaults, TOML override, flag override, unknown keys, printing."""

from __future__ import annotations

from pathlib import Path

import pytest

from model import NumeraiModel
from training.config import (
    DEFAULT_LIGHTGBM,
    TrainConfig,
    apply_flags,
    check_config,
    config_from_dict,
    config_to_toml,
    load_config,
    resolve_feature_set_name,
    tomllib,  # guarded: Python 3.10 has only tomli
)
from training.experiment import WEEKLY_TIMING, build_model, make_variant
from validation.errors import NmuError


def test_defaults() -> None:
    config = load_config(None)
    assert config == TrainConfig()
    assert config.target == "target" and config.era_step == 1 and config.baseline and config.refit
    assert config.resolved_embargo == 4 and config.lightgbm == DEFAULT_LIGHTGBM
    assert config.feature_set == "auto"


def test_auto_feature_set() -> None:
    small = {"feature_sets": {"all": [f"f{i}" for i in range(120)], "medium": ["f1"]}}
    big = {"feature_sets": {"all": [f"f{i}" for i in range(2748)], "medium": ["f1"]}}
    assert resolve_feature_set_name("auto", small) == "all"
    assert resolve_feature_set_name("auto", big) == "medium"
    assert resolve_feature_set_name("small", big) == "small"


def test_toml_overrides_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('target = "target_ender_60"\nera_step = 4\nablation = true\n'
                    '[lightgbm]\nn_estimators = 50\n[components]\ntiming = false\n')
    config = load_config(path)
    assert config.target == "target_ender_60" and config.era_step == 4 and config.ablation
    assert config.resolved_embargo == 13
    assert config.lightgbm == {**DEFAULT_LIGHTGBM, "n_estimators": 50}
    assert config.components == {"timing": False}


def test_flags_override_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("cv = 2\nbaseline = true\nrefit = true\n")
    config = apply_flags(load_config(path), ablation=True, cv=3, no_baseline=True, no_refit=True)
    assert (config.ablation, config.cv, config.baseline, config.refit) == (True, 3, False, False)
    unchanged = apply_flags(load_config(path))
    assert (unchanged.cv, unchanged.baseline) == (2, True)


@pytest.mark.parametrize(
    "text, match",
    [("feature_sett = 'small'\n", "feature_sett"), ("era_step = 0\n", "era_step"), ("embargo = 'x'\n", "embargo"),
     ("lightgbm = 3\n", "lightgbm"), ("target = \n", "not valid TOML")],
)
def test_bad_keys_name_the_key(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(NmuError, match=match):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NmuError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_printed_config_round_trips(tmp_path: Path) -> None:
    config = apply_flags(TrainConfig(target="target_x_60", components={"clusters": False}), ablation=True)
    text = config_to_toml(config)
    parsed = tomllib.loads(text)
    assert parsed["embargo"] == 13 and parsed["ablation"] is True and parsed["components"] == {"clusters": False}
    path = tmp_path / "printed.toml"
    path.write_text(text)
    assert load_config(path).lightgbm == config.lightgbm


@pytest.mark.parametrize(
    "text, match",
    [("seeds = 0\n", "ensemble.seeds` must be a whole number >= 1"), ("seeds = 2.5\n", "ensemble.seeds"),
     ("seeds = true\n", "ensemble.seeds"), ("seed = 3\n", r"not an ensemble setting \(did you mean `seeds`\?\)"),
     ('targets = ["target", "target_jasper_20", "target_jasper_20"]\n', "names target_jasper_20 more than once"),
     ('targets = ["target", "target"]\n', "names target more than once"),
     ('targets = ["target", "target_jasper_20"]\nweights = [1, nan]\n', "one finite, non-negative weight"),
     ('targets = ["target", "target_jasper_20"]\nweights = [1, inf]\n', "one finite, non-negative weight"),
     ('targets = ["target_jasper_20"]\nweights = [1, 2]\n', "list the main target 'target' in `ensemble.targets`")],
)
def test_bad_ensemble_settings_are_named_before_any_data(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[ensemble]\n" + text)
    with pytest.raises(NmuError, match=match):
        check_config(load_config(path))


def test_each_weight_stays_with_its_target_whatever_the_order(tmp_path: Path) -> None:
    """The model lists the main target first; a weight written beside a target in another order follows its target
    (it went to the target at its place in the model's order before, silently)."""
    path = tmp_path / "c.toml"
    path.write_text('[ensemble]\ntargets = ["target_jasper_20", "target"]\nweights = [1, 0]\n')
    config = load_config(path)
    check_config(config)
    assert config.targets == ["target", "target_jasper_20"]
    assert config.ensemble.weights_of(config.targets) == [0.0, 1.0]
    ensemble = make_variant(NumeraiModel(), "baseline", config)
    assert dict(zip(ensemble.targets, ensemble.weights)) == {"target": 0.0, "target_jasper_20": 1.0}
    # a manifest written before the check, without the main target listed, keeps the order it was trained with
    older = config_from_dict({"ensemble": {"targets": ["target_jasper_20"], "weights": [1, 0.5]}})
    assert older.ensemble.weights_of(older.targets) == [1.0, 0.5]


def test_compute_and_ensemble_are_typed_sections_that_stay_dicts(tmp_path: Path) -> None:
    """[compute] and [ensemble] are typed (attributes with their defaults in one place) and still dicts for TOML,
    JSON, dataclasses.asdict and the callers that index them."""
    import dataclasses
    import json

    from training.config import ComputeSettings, EnsembleSettings, config_from_dict

    config = TrainConfig()
    assert isinstance(config.compute, ComputeSettings) and isinstance(config.ensemble, EnsembleSettings)
    assert (config.compute.threads, config.compute.one_fit_at_a_time, config.compute.scheduler) == ("auto", True, None)
    assert (config.ensemble.targets, config.ensemble.weights, config.ensemble.seeds) == ([], None, 1)
    config.compute["scheduler"] = "local:2"
    assert config.compute.scheduler == "local:2" and config.compute.get("scheduler") == "local:2"
    with pytest.raises(KeyError, match="not a compute setting"):
        config.compute["thread"] = 2
    replaced = dataclasses.replace(config, compute={**config.compute, "threads": 3})  # a plain dict becomes typed
    assert isinstance(replaced.compute, ComputeSettings) and replaced.compute.threads == 3
    data = dataclasses.asdict(replaced)
    assert json.loads(json.dumps(data))["compute"] == {"threads": 3, "one_fit_at_a_time": True, "scheduler": "local:2"}
    assert config_from_dict({k: v for k, v in data.items() if v is not None}) == replaced
    path = tmp_path / "c.toml"
    path.write_text("[compute]\nthread = 2\n")
    with pytest.raises(NmuError, match=r"`compute.thread` is not a compute setting \(did you mean `threads`\?\)"):
        load_config(path)


def test_ensemble_members_count_targets_and_seeds(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    assert TrainConfig().ensemble_members == 1
    path.write_text('[ensemble]\nseeds = 3\n')
    assert load_config(path).ensemble_members == 3
    path.write_text('[ensemble]\ntargets = ["target", "target_jasper_20"]\nseeds = 2\n')
    config = load_config(path)
    assert config.ensemble_members == 4
    printed = tmp_path / "printed.toml"
    printed.write_text(config_to_toml(config))
    assert load_config(printed).ensemble == config.ensemble


def test_a_weekly_refreshed_model_pools_its_momentum_evidence_unless_components_say_otherwise(tmp_path: Path) -> None:
    def settings(text: str) -> dict:
        path = tmp_path / "c.toml"
        path.write_text(text)
        params = build_model(load_config(path), {}).get_params(deep=False)
        return {k: params[k] for k in ("timing_pooled", "timing_window")}

    defaults = NumeraiModel()
    # left alone (the default): the estimator's own defaults, per-factor momentum over 12 eras
    assert settings("") == {"timing_pooled": defaults.timing_pooled, "timing_window": defaults.timing_window}
    assert settings("") == {"timing_pooled": False, "timing_window": 12}
    assert settings('refresh = "weekly"\n') == WEEKLY_TIMING == {"timing_pooled": True, "timing_window": 4}
    # what [components] sets wins in either mode
    assert settings('refresh = "weekly"\n[components]\ntiming_window = 8\n') == {"timing_pooled": True, "timing_window": 8}
    assert settings('refresh = "weekly"\n[components]\ntiming_pooled = false\n') == {"timing_pooled": False,
                                                                                     "timing_window": 4}
    assert settings('[components]\ntiming_pooled = true\n') == {"timing_pooled": True, "timing_window": 12}
