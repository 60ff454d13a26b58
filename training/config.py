"""The training config: a TOML file, documented defaults, and command-line flags on top.

Example (every key optional; `nmu train --print-config` prints the resolved config in this form):

    feature_set = "auto"          # a feature set or group of features.json (small, medium, all, intelligence, ...);
                                  # auto: "all" when it has at most 300 features (the synthetic world), else "medium"
    target = "target"             # a target column of features.json
    era_step = 1                  # fit on every k-th training era (Numerai's examples use 4 on real data)
    embargo = 4                   # eras dropped after the last training era; default 4, or 13 for *_60 targets
    cv = 0                        # K > 0 adds an expanding-window CV with K folds on the training eras
    ablation = false              # also fit one `no_<component>` variant per component
    baseline = true               # fit the plain-LightGBM baseline variant
    refit = true                  # refit the shipped variant on every era with a resolved target
    seed = 0                      # random_state of every model
    ship = "auto"                 # the variant that ships: auto (chosen on the first half of the validation eras,
                                  # reported on the second), full, baseline or no_<component>
    refresh = "never"             # how the model will run after upload: never refreshed (judged on "left alone"
                                  # scores), or weekly (`nmu refresh`: judged on "refreshed" scores)

    [components]                  # NumeraiModel parameters: the six switches and their settings
    clusters = true               # a switch left off is off in every variant (and not ablated); clusters is off
                                  # unless switched on, the other five on unless switched off

    [lightgbm]                    # LightGBM parameters of every variant's booster, over the model's defaults
    n_estimators = 2000
    learning_rate = 0.01

    [compute]
    threads = "auto"              # LightGBM threads of a fit: the cores free when it starts, or a fixed number
    one_fit_at_a_time = true      # nmu fits on one machine take turns (LightGBM's threads spin: training.compute)
    scheduler = "tcp://host:8786" # run the independent fits on a Dask cluster (or "local:N"); unset: in-process

    [ensemble]
    targets = ["target", "target_jasper_20"]   # one model per target, averaged per era (empty: one model)
    weights = [1, 1]                           # the targets' weights (default equal)
    seeds = 1                                  # fits per target, each with its own LightGBM seed, averaged
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import math
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import lightgbm.basic as lgb_basic
import numpy as np

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from model import VARIANTS, NumeraiModel
from model.booster import ALIASES, DEFAULT_LGBM_PARAMS
from model.params import check_params
from validation.artifacts import why_not_there
from validation.errors import NmuError
from validation.evaluation.splits import embargo_for_target

# LightGBM parameters given here are merged over the estimator's own defaults
# (model.booster.DEFAULT_LGBM_PARAMS: 1000 trees at learning rate 0.02, depth 5, 31 leaves, sized for the
# synthetic world). Real data wants Numerai's recipe: n_estimators = 2000, learning_rate = 0.01,
# colsample_bytree = 0.1. scikit-learn style names (n_estimators, colsample_bytree, ...) are accepted.
DEFAULT_LIGHTGBM: dict[str, Any] = {}

AUTO_ALL_MAX_FEATURES = 300
"""`feature_set = "auto"` takes every feature up to this many (the synthetic world), else the medium set
(Numerai's v5.2: 780 of 2748 features, about 2 GB of int8 for the training rows)."""

_SCALARS: dict[str, tuple[type, ...]] = {
    "feature_set": (str,),
    "target": (str,),
    "era_step": (int,),
    "embargo": (int,),
    "cv": (int,),
    "ablation": (bool,),
    "baseline": (bool,),
    "refit": (bool,),
    "seed": (int,),
    "ship": (str,),
    "refresh": (str,),
}
SHIP_CHOICES = ("auto", *VARIANTS)
REFRESH_CHOICES = ("never", "weekly")
_TABLES = ("components", "lightgbm", "compute", "ensemble")
_FREE_TABLES = ("tune", "tracking")  # tables that `nmu train` passes on: [tune] is never written back (config_to_toml)
_MODEL_TABLES = ("feature_groups", "lgbm_params", "random_state")  # NumeraiModel parameters set otherwise (seed)


class _Section(dict):
    """A config table with a fixed set of keys, each with its default: its settings are typed attributes, and it
    stays a dict for TOML, JSON, `dataclasses.asdict` and the callers that index it (`section["key"]`). A key it
    does not have is refused (KeyError); `config_from_dict` names it with the nearest valid one first."""

    NAME: ClassVar[str] = ""
    NOUN: ClassVar[str] = ""  # what one of its keys is, in messages
    DEFAULTS: ClassVar[dict[str, Any]] = {}

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(copy.deepcopy(self.DEFAULTS))
        self.update(*args, **kwargs)

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self.DEFAULTS:
            raise KeyError(f"`{self.NAME}.{key}` is not a {self.NAME} setting; known: {', '.join(self.DEFAULTS)}")
        super().__setitem__(key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:  # noqa: D102 - dict's, through __setitem__
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def unknown(self, table: dict[str, Any], source: str) -> None:
        """NmuError naming the first key of `table` that is not a setting of this section (with the nearest one)."""
        for key in table:
            if key not in self.DEFAULTS:
                raise NmuError(f"{source}: `{self.NAME}.{key}` is not {self.NOUN}{_nearest(key, list(self.DEFAULTS))}; "
                               f"known: {', '.join(self.DEFAULTS)}.")


class ComputeSettings(_Section):
    """The [compute] table: how `nmu train` runs its fits (see the module docstring)."""

    NAME = "compute"
    NOUN = "a compute setting"
    DEFAULTS: ClassVar[dict[str, Any]] = {"threads": "auto", "one_fit_at_a_time": True, "scheduler": None}

    @property
    def threads(self) -> str | int:
        """LightGBM threads of a fit: "auto" (the cores free when it starts) or a fixed number."""
        return self["threads"]

    @property
    def one_fit_at_a_time(self) -> bool:
        """Whether nmu fits on one machine take turns (training.compute)."""
        return bool(self["one_fit_at_a_time"])

    @property
    def scheduler(self) -> str | None:
        """The Dask scheduler the independent fits run on (or "local:N"); None: in-process."""
        return self["scheduler"]

    def check(self, source: str) -> None:
        """NmuError naming the first setting whose value cannot work."""
        threads = self["threads"]
        if threads != "auto" and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise NmuError(f"{source}: `compute.threads` must be \"auto\" or a whole number >= 1, got {threads!r}.")
        if not isinstance(self["one_fit_at_a_time"], bool):
            raise NmuError(f"{source}: `compute.one_fit_at_a_time` must be true or false, got "
                           f"{self['one_fit_at_a_time']!r}.")
        if self.scheduler is not None and not isinstance(self.scheduler, str):
            raise NmuError(f"{source}: `compute.scheduler` must be a Dask address or \"local:N\", got "
                           f"{self.scheduler!r}.")


class EnsembleSettings(_Section):
    """The [ensemble] table: the targets averaged per era, their weights and the seeds per target."""

    NAME = "ensemble"
    NOUN = "an ensemble setting"
    DEFAULTS: ClassVar[dict[str, Any]] = {"targets": [], "weights": [], "seeds": 1}

    @property
    def targets(self) -> list[str]:
        """The targets named in the table (the config's `targets` puts the main target first)."""
        return [str(t) for t in self["targets"] or []]

    @property
    def weights(self) -> list[float] | None:
        """The targets' weights; None: equal."""
        return list(self["weights"]) if self["weights"] else None

    @property
    def seeds(self) -> int:
        """Fits per target, each with its own LightGBM seed."""
        return int(self["seeds"])

    def check(self, source: str, targets: list[str], main: str = "target") -> None:
        """NmuError naming the first setting whose value cannot work (`targets`: the config's, main target first;
        `main`: the main target). Each weight belongs to the target at its place in `ensemble.targets`."""
        for key, value in self.items():
            if key == "seeds":
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise NmuError(f"{source}: `ensemble.seeds` must be a whole number >= 1 (fits per target), got "
                                   f"{value!r}.")
                continue
            if not isinstance(value, list) or not all(isinstance(v, str if key == "targets" else (int, float))
                                                      and not isinstance(v, bool) for v in value):
                kind = "target names" if key == "targets" else "numbers"
                raise NmuError(f"{source}: `ensemble.{key}` must be a list of {kind}, got {value!r}.")
        listed = self.targets
        twice = sorted({t for t in listed if listed.count(t) > 1})
        if twice:
            raise NmuError(f"{source}: `ensemble.targets` names {', '.join(twice)} more than once; name each target "
                           "once (`seeds` fits a target several times).")
        weights = self["weights"] or []
        if weights and listed and main not in listed:
            raise NmuError(f"{source}: `ensemble.weights` is given, so list the main target {main!r} in "
                           f"`ensemble.targets` too: each weight belongs to the target at its place; got targets "
                           f"{listed!r}.")
        if weights and (len(weights) != len(targets) or not all(math.isfinite(w) for w in weights)
                        or min(weights) < 0 or sum(weights) <= 0):
            raise NmuError(f"{source}: `ensemble.weights` must give one finite, non-negative weight per target "
                           f"({', '.join(listed or targets)}), not all zero; got {weights!r}.")

    def weights_of(self, targets: list[str]) -> list[float] | None:
        """The weights in the order of `targets` (the config's, main target first), each the one written at its
        target's place in `ensemble.targets`; None: equal."""
        weights = self.weights
        if weights is None:
            return None
        listed = self.targets if set(targets) <= set(self.targets) else targets  # a config `check` refuses now, as
        return [float(dict(zip(listed, weights))[t]) for t in targets]  # an older manifest may hold: main first


_SECTIONS: dict[str, type[_Section]] = {"compute": ComputeSettings, "ensemble": EnsembleSettings}
DEFAULT_COMPUTE: dict[str, Any] = ComputeSettings.DEFAULTS
DEFAULT_ENSEMBLE: dict[str, Any] = EnsembleSettings.DEFAULTS


@dataclass
class TrainConfig:
    """Everything `nmu train` needs besides paths; see the module docstring for each key's meaning."""

    feature_set: str = "auto"
    target: str = "target"
    era_step: int = 1
    embargo: int | None = None  # None: derived from the target (4, or 13 for *_60)
    cv: int = 0
    ablation: bool = False
    baseline: bool = True
    refit: bool = True
    seed: int = 0
    ship: str = "auto"  # which variant ships: "auto" (chosen on validation evidence), or a variant by name
    refresh: str = "never"  # how the user will run the model: "never" refreshed after upload, or "weekly"
    components: dict[str, Any] = field(default_factory=dict)
    lightgbm: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_LIGHTGBM))
    compute: ComputeSettings = field(default_factory=ComputeSettings)
    ensemble: EnsembleSettings = field(default_factory=EnsembleSettings)
    tune: dict[str, Any] = field(default_factory=dict)  # `nmu tune`'s search space and objective (training.tune)
    tracking: dict[str, Any] = field(default_factory=dict)  # MLflow tracking (training.tracking)

    def __post_init__(self) -> None:
        # a table given as a plain mapping (TrainConfig(compute={...}), dataclasses.replace) becomes its typed section
        for name, section in _SECTIONS.items():
            if not isinstance(getattr(self, name), section):
                setattr(self, name, section(getattr(self, name)))

    @property
    def targets(self) -> list[str]:
        """The targets the model learns: the ensemble's ([ensemble] targets, the main target first), else `target`."""
        members = self.ensemble.targets
        return [self.target, *[t for t in members if t != self.target]] if members else [self.target]

    @property
    def ensemble_members(self) -> int:
        """Members the model is made of: one per target and seed (1: a single NumeraiModel, no ensemble)."""
        return len(self.targets) * self.ensemble.seeds

    def component(self, name: str) -> Any:
        """A NumeraiModel setting as this config makes it: its [components] value, else the estimator's default."""
        return self.components[name] if name in self.components else NumeraiModel().get_params()[name]

    @property
    def resolved_embargo(self) -> int:
        """The embargo in eras: the configured one, else the target's default."""
        return self.embargo if self.embargo is not None else embargo_for_target(self.target)


def _check_value(key: str, value: Any, source: str) -> None:
    """NmuError unless a top-level key holds a value of its type and range."""
    types = _SCALARS[key]
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        raise NmuError(f"{source}: `{key}` must be a {types[0].__name__}, got {value!r}.")
    if key == "era_step" and value < 1:
        raise NmuError(f"{source}: `era_step` must be 1 or more, got {value}.")
    if key in ("embargo", "cv", "seed") and value < 0:  # (a negative seed failed at the first fit)
        raise NmuError(f"{source}: `{key}` must be 0 or more, got {value}.")
    choices = {"ship": SHIP_CHOICES, "refresh": REFRESH_CHOICES}.get(key)
    if choices and value not in choices:
        raise NmuError(f"{source}: `{key}` must be one of {', '.join(choices)}; got {value!r}"
                       f"{_nearest(str(value), list(choices))}.")


def resolve_feature_set_name(name: str, metadata: dict[str, Any]) -> str:
    """The feature set to load: `name`, or for "auto" "all" when small enough, else "medium" (if present)."""
    if name != "auto":
        return name
    sets = metadata.get("feature_sets") or {}
    if len(sets.get("all") or []) <= AUTO_ALL_MAX_FEATURES or "medium" not in sets:
        return "all"
    return "medium"


def config_from_dict(data: dict[str, Any], source: str = "config") -> TrainConfig:
    """A TrainConfig from parsed TOML: defaults, then the given keys; NmuError naming any unknown key."""
    config = TrainConfig()
    for key, value in data.items():
        if key in _TABLES:
            if not isinstance(value, dict):
                raise NmuError(f"{source}: `{key}` must be a table of settings, got {value!r}.")
            for sub, sub_value in value.items():
                if isinstance(sub_value, dict):
                    raise NmuError(f"{source}: `{key}.{sub}` must be a plain value, not a table.")
            if key in _SECTIONS:
                getattr(config, key).unknown(value, source)
            getattr(config, key).update(value)
        elif key in _FREE_TABLES:  # checked where they are used (training.tune, training.tracking)
            if not isinstance(value, dict):
                raise NmuError(f"{source}: `{key}` must be a table of settings, got {value!r}.")
            setattr(config, key, copy.deepcopy(value))
        elif key in _SCALARS:
            _check_value(key, value, source)
            setattr(config, key, value)
        else:
            known = ", ".join(_SCALARS) + " and the tables " + ", ".join(_TABLES + _FREE_TABLES)
            raise NmuError(f"{source}: unknown key `{key}`; known keys are {known}.")
    return config


def load_config(path: Path | None) -> TrainConfig:
    """Read a TOML config file (None → the defaults); NmuError when it is missing, not TOML or has unknown keys."""
    if path is None:
        return TrainConfig()
    path = Path(path)
    if not path.is_file():
        raise NmuError(f"config file {path} {why_not_there(path)}.")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise NmuError(f"config file {path} is not valid TOML: {exc}.") from None
    return config_from_dict(data, source=str(path))


def apply_flags(
    config: TrainConfig,
    ablation: bool = False,
    cv: int | None = None,
    no_baseline: bool = False,
    no_refit: bool = False,
) -> TrainConfig:
    """The config with command-line flags on top: a flag given on the command line wins over the file."""
    changes: dict[str, Any] = {}
    if ablation:
        changes["ablation"] = True
    if cv is not None:
        _check_value("cv", cv, "--cv")
        changes["cv"] = cv
    if no_baseline:
        changes["baseline"] = False
    if no_refit:
        changes["refit"] = False
    return dataclasses.replace(config, **changes)


def _toml_value(value: Any) -> str:
    """One TOML value (str, bool, int, float, list of those)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise NmuError(f"config value {value!r} cannot be written as TOML.")


def _toml_key(key: str) -> str:
    """A bare TOML key when it can be one, else a quoted key."""
    return key if key and all(c.isalnum() or c in "_-" for c in key) else _toml_value(key)


def _model_defaults(table: str) -> str:
    """A one-line summary of the estimator's defaults for a config table."""
    if table not in ("components", "lightgbm"):
        return ""
    if table == "lightgbm":
        values = DEFAULT_LGBM_PARAMS
    else:
        values = {k: v for k, v in NumeraiModel().get_params(deep=False).items() if k not in _MODEL_TABLES}
    return ", ".join(f"{k} = {_toml_value(v) if v is not None else 'none'}" for k, v in values.items())


def config_to_toml(config: TrainConfig) -> str:
    """The resolved config as TOML (embargo filled in from the target), readable back by `load_config`."""
    lines = []
    for key in _SCALARS:
        value = config.resolved_embargo if key == "embargo" else getattr(config, key)
        lines.append(f"{key} = {_toml_value(value)}")
    for table in _TABLES:
        lines.append("")
        lines.append(f"[{table}]")
        defaults = _model_defaults(table)
        if defaults:
            lines.append(f"# defaults of model.NumeraiModel: {defaults}")
        for sub, value in getattr(config, table).items():
            if value is None:  # unset (e.g. no scheduler): TOML has no null
                continue
            lines.append(f"{_toml_key(sub)} = {_toml_value(value)}")
    if config.tracking:  # [tune] is left out: a written config is one to train with
        lines += ["", "[tracking]", *(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in config.tracking.items())]
    return "\n".join(lines) + "\n"


# ---- checks of the whole config, before any data is read -----------------------------------------------------
# LightGBM parameters whose type and range are checked (by LightGBM's own name); others need only be a TOML scalar
_LGBM_RULES: dict[str, tuple] = {
    "num_iterations": ("int", 1, None), "learning_rate": ("real", 1e-12, None), "num_leaves": ("int", 2, 131072),
    "max_depth": ("int", None, None), "feature_fraction": ("real", 1e-12, 1.0), "bagging_fraction": ("real", 1e-12, 1.0),
    "bagging_freq": ("int", 0, None), "min_data_in_leaf": ("int", 0, None), "lambda_l1": ("real", 0, None),
    "lambda_l2": ("real", 0, None), "min_gain_to_split": ("real", 0, None), "max_bin": ("int", 2, None),
    "num_threads": ("int", None, None), "seed": ("int", None, None), "verbosity": ("int", None, None),
    "objective": ("str",), "boosting": ("str",),
}


def _nearest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""


def lightgbm_names() -> dict[str, str]:
    """Every name the [lightgbm] table accepts → LightGBM's canonical name: LightGBM's parameters and their aliases
    (as the installed LightGBM reports them) and the scikit-learn style names."""
    names = {**{k: k for k in DEFAULT_LGBM_PARAMS}, **dict(ALIASES)}
    try:
        aliases = lgb_basic._ConfigAliases._get_all_param_aliases()  # LightGBM's own table (4.0 .. 4.7)
    except Exception:  # noqa: BLE001 - an older or newer LightGBM: fall back to the names above
        return names
    for canonical, others in aliases.items():
        for alias in [canonical, *others]:
            names.setdefault(alias, canonical)
    return names


def _check_lightgbm_value(key: str, canonical: str, value: Any, source: str) -> None:
    rule = _LGBM_RULES.get(canonical)
    if isinstance(value, (list, dict)) or rule is None:
        if isinstance(value, (list, dict)):
            raise NmuError(f"{source}: `lightgbm.{key}` must be a single value, got {value!r}.")
        return
    kind, *bounds = rule
    if kind == "str":
        if not isinstance(value, str):
            raise NmuError(f"{source}: `lightgbm.{key}` must be a string, got {value!r}.")
        return
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not is_number or (kind == "int" and not isinstance(value, int)) or (isinstance(value, float) and math.isnan(value)):
        noun = "an integer" if kind == "int" else "a number"
        raise NmuError(f"{source}: `lightgbm.{key}` must be {noun}, got {value!r}.")
    low, high = (bounds + [None, None])[:2]
    if (low is not None and value < low) or (high is not None and value > high):
        allowed = " and ".join(x for x in (f">= {low}" if low not in (None, 1e-12) else ("> 0" if low == 1e-12 else ""),
                                            f"<= {high}" if high is not None else "") if x)
        raise NmuError(f"{source}: `lightgbm.{key}` must be {allowed}, got {value!r}.")


def config_source(config_path: Path | str | None) -> str:
    """How a message names where the settings came from: the config file's path, or "config" for the defaults."""
    return str(config_path) if config_path is not None else "config"


def check_config(config: TrainConfig, source: str = "config") -> None:
    """NmuError naming the first setting that cannot work, before any data is read: a [components] key that is not
    a NumeraiModel parameter or a value it refuses; a [lightgbm] key LightGBM does not know (with the nearest valid
    name) or a value of the wrong type or range."""
    known = [k for k in NumeraiModel().get_params(deep=False) if k not in _MODEL_TABLES]
    for key in config.components:
        if key not in known:
            raise NmuError(f"{source}: `components.{key}` is not a NumeraiModel setting{_nearest(key, known)}; "
                           f"known: {', '.join(sorted(known))}.")
    try:
        check_params(NumeraiModel(**config.components))
    except ValueError as exc:
        raise NmuError(f"{source}: [components] {str(exc).removeprefix('NumeraiModel: ')}") from None
    config.compute.check(source)
    config.ensemble.check(source, config.targets, config.target)
    names = lightgbm_names()
    for key, value in config.lightgbm.items():
        if key not in names:
            raise NmuError(f"{source}: `lightgbm.{key}` is not a LightGBM parameter{_nearest(key, list(names))}.")
        _check_lightgbm_value(key, names[key], value, source)
    _check_objective(config.lightgbm, source)


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """The process's stderr (file descriptor 2) sent to the null device for the block: LightGBM's C++ side writes
    "[LightGBM] [Fatal] ..." there itself before raising the same text as a Python exception. (Python's own stderr is
    line-buffered, so nothing of ours is pending there when the block starts.)"""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all (`2>&-`): nothing to keep the line from
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _check_objective(params: Mapping[str, Any], source: str) -> None:
    """NmuError when LightGBM does not know the configured objective (it failed at the first fit, after the data had
    loaded): LightGBM itself is asked, on a ten-row dataset."""
    objective = next((params[k] for k in ("objective", "objective_type", "app", "application", "loss") if k in params),
                     None)
    if objective is None:
        return
    import lightgbm as lgb  # noqa: PLC0415 - lightgbm.basic is imported above; the package by the fits anyway

    probe = {"objective": objective, "verbosity": -1, **{k: params[k] for k in ("num_class",) if k in params}}
    try:
        with _native_stderr_silenced():  # its "[LightGBM] [Fatal] ..." line: the message below says it once
            lgb.Booster(params=probe, train_set=lgb.Dataset(np.linspace(0, 1, 10)[:, None],
                                                            label=np.linspace(0, 1, 10), params={"verbosity": -1}))
    except lgb.basic.LightGBMError as exc:
        raise NmuError(f"{source}: `lightgbm.objective` {objective!r} is refused by LightGBM ({exc}).") from None
