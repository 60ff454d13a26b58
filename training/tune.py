"""`nmu tune`: an Optuna study over the config's parameters, scored on the training eras only.

Each trial is a config: the `[tune]` table's search space (LightGBM parameters, NumeraiModel parameters, ensemble
weights) sampled over the config given with `--config`. Its objective is the mean per-era corr (or its sharpe, or
the mean BMC: `metric` in [tune]) of the tuned variant (the config's `ship` variant, "full" when `ship = "auto"`)
over the expanding-window folds of the TRAIN eras (`expanding_window_folds`, the folds `EraTimeSeriesSplit` and
`nmu train --cv` use), with the embargo between each fold's fit and scored eras, scored in the mode the model will
run in (`refresh`: left alone, or refreshed with each scored era's target once it would be known, as
`training.experiment` scores the variants). After each fold the running objective over the folds so far is reported
to the trial, and Optuna's MedianPruner stops a trial that is below the median of the earlier trials at that fold.

The validation eras are never seen by the study. After it, one fit each of the default config (the one given, as
`nmu train` would use it) and of the best config on the train eras is scored on the validation report eras (the
second half of the embargoed validation eras, where `nmu train` reports the shipped model): `tune_report.html`
shows both, labelled as measured after the choice.

The study lives in an Optuna storage (default `sqlite:///OUT/tune.db`); running `nmu tune` again with the same
`--study` resumes it: `--trials N` is the number of finished (complete or pruned) trials the study should hold, and a
trial that a killed run left unfinished is run again first. A study remembers its search space and objective (study
user attributes) and refuses to continue with others. Folds run as jobs of the project's executor
(training.executor): in-process one after another, or with `--scheduler` one trial's fold per Dask worker at a time,
each worker's fit using its own share of the cores (the threads `nmu train` gives a worker).
"""

from __future__ import annotations

import copy
import dataclasses
import html
import json
import math
import os
import re
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model import COMPONENTS
from training.config import TrainConfig, check_config, config_source, config_to_toml, lightgbm_names, load_config
from training.console import Reporter, Silent, fmt_score
from training.data import read_data_info
from training.executor import (
    DaskExecutor,
    InProcess,
    check_scheduler,
    make_executor,
    scheduler_setting,
    worker_threads,
)
from training.experiment import (
    MODE_OF_REFRESH,
    Dataset,
    Job,
    RemoteJobs,
    benchmark_for,
    build_model,
    fit_model,
    load_dataset,
    make_variant,
    run_job,
    score_model,
    switched_on,
)
from training.pipeline import check_out_dir, resolve_data
from validation.artifacts import atomic_write_bytes, atomic_write_json, atomic_write_text, make_directory, remove_empty
from validation.errors import NmuError, first_line
from validation.evaluation.report import _png, _pyplot
from validation.evaluation.scoring import summarize
from validation.evaluation.selection import paired_difference, split_eras
from validation.evaluation.splits import expanding_window_folds

METRICS = {"corr": "corr_mean", "sharpe": "corr_sharpe", "bmc": "bmc_mean"}
"""`metric` in [tune] → the summary score (validation.evaluation.scoring.summarize) the study maximises."""
SETTINGS: dict[str, Any] = {"metric": "corr", "folds": 3}
"""The plain keys of [tune] and their defaults."""
SPACE_TABLES = ("lightgbm", "components", "ensemble")
DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "lightgbm": {
        "learning_rate": {"low": 0.005, "high": 0.1, "log": True},
        "max_depth": [3, 8],
        "num_leaves": {"low": 8, "high": 128, "log": True},
        "colsample_bytree": [0.05, 0.5],
    },
    "components": {
        "residualize_proportion": [0.0, 1.0],
        "timing_window": [4, 26],
        "interaction_threshold": [3.5, 6.0],
    },
    "ensemble": {"weights": [0.0, 1.0]},
}
"""The search space without a [tune] table: the booster's learning rate, depth, leaves and column sampling (the
parameters Numerai's own tuning guides vary, at the trees the config sets), and one setting per switched-on
component; an ensemble's auxiliary targets' weights (the main target's weight stays 1)."""
_COMPONENT_OF = {"residualize_": "residualizer", "timing_": "timing", "interaction": "interactions",
                 "max_interactions": "interactions", "n_clusters": "clusters", "cluster_": "clusters",
                 "linear_": "linear", "structural_": "structural"}
REPORT_FILES = ("best_config.toml", "tune_report.html", "tune.json", "tune_trials.csv", "tune_history.png",
                "tune_importance.png", "tune_best_trials.png")
DEFAULT_STUDY = "nmu-tune"


# ---- the search space ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dimension:
    """One tuned parameter: `name` is "table.key" (ensemble weights: "ensemble.weights.<target>"); a range
    (kind "int" or "float", low..high, log scale or a step) or a list of choices (kind "choice")."""

    name: str
    kind: str
    low: Any = None
    high: Any = None
    log: bool = False
    step: Any = None
    choices: tuple = ()

    def suggest(self, trial: Any) -> Any:
        """The trial's value of this parameter."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, self.low, self.high, log=self.log, step=self.step or 1)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able (a study user attribute)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()
                if v not in (None, (), False)}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _dimension(name: str, value: Any, where: str) -> Dimension:
    """A Dimension from its TOML form: [low, high] (integers: an int range), a list of other values (choices), or a
    table {low, high, log, step} / {choices = [...]}; NmuError naming `where` otherwise."""
    shape = ("[low, high], a list of choices, or a table {low = .., high = .., log = true} / {choices = [..]}")
    if isinstance(value, list):
        value = {"low": value[0], "high": value[1]} if len(value) == 2 and all(map(_number, value)) \
            else {"choices": value}
    if not isinstance(value, dict):
        raise NmuError(f"{where} must be {shape}; got {value!r}.")
    unknown = sorted(set(value) - {"low", "high", "log", "step", "choices"})
    if unknown:
        raise NmuError(f"{where} has unknown key(s) {', '.join(unknown)}; a range is {shape}.")
    if "choices" in value:
        choices = value["choices"]
        if set(value) != {"choices"} or not isinstance(choices, list):
            raise NmuError(f"{where} must give either `choices = [..]` or `low`/`high`, got {value!r}.")
        if not choices:
            raise NmuError(f"{where} has an empty list of choices; give at least one value.")
        if any(isinstance(c, (list, dict)) for c in choices):
            raise NmuError(f"{where}: choices must be plain values, got {choices!r}.")
        return Dimension(name, "choice", choices=tuple(choices))
    low, high = value.get("low"), value.get("high")
    if not (_number(low) and _number(high)):
        raise NmuError(f"{where} needs numbers `low` and `high`, got low {low!r}, high {high!r}.")
    if not all(math.isfinite(v) for v in (low, high)):
        raise NmuError(f"{where} needs finite bounds, got low {low!r}, high {high!r}.")
    if low >= high:
        raise NmuError(f"{where} is an empty range: low {low!r} must be below high {high!r}.")
    log, step = value.get("log", False), value.get("step")
    if not isinstance(log, bool):
        raise NmuError(f"{where}: `log` must be true or false, got {log!r}.")
    if log and low <= 0:
        raise NmuError(f"{where}: a log-scale range needs low > 0, got {low!r}.")
    if step is not None and (not _number(step) or step <= 0 or log):
        raise NmuError(f"{where}: `step` must be a positive number and cannot go with log, got {step!r}.")
    kind = "int" if all(isinstance(v, int) for v in (low, high)) and (step is None or isinstance(step, int)) \
        else "float"
    if step is not None:
        steps = (high - low) / step
        if abs(steps - round(steps)) > 1e-9 * max(1.0, abs(steps)):
            # Optuna would warn on every trial and never sample `high`
            raise NmuError(f"{where}: `step` {step!r} does not divide the range {low!r}..{high!r}; choose a high of "
                           f"{low + math.floor(steps) * step!r} or a step that divides it.")
    return Dimension(name, kind, low=low, high=high, log=log, step=step)


def tune_settings(config: TrainConfig, source: str = "config") -> dict[str, Any]:
    """[tune]'s plain settings (metric, folds) over their defaults; NmuError on an unknown key or a bad value."""
    settings = dict(SETTINGS)
    for key, value in config.tune.items():
        if key in SPACE_TABLES:
            if not isinstance(value, dict):
                raise NmuError(f"{source}: `tune.{key}` must be a table of parameter ranges, got {value!r}.")
            continue
        if key not in SETTINGS:
            raise NmuError(f"{source}: `tune.{key}` is not a [tune] setting; known: {', '.join(SETTINGS)} and the "
                           f"tables {', '.join(f'tune.{t}' for t in SPACE_TABLES)}.")
        settings[key] = value
    if settings["metric"] not in METRICS:
        raise NmuError(f"{source}: `tune.metric` must be one of {', '.join(METRICS)}; got {settings['metric']!r}.")
    folds = settings["folds"]
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 1:
        raise NmuError(f"{source}: `tune.folds` must be a whole number >= 1, got {folds!r}.")
    return settings


def search_space(config: TrainConfig, source: str = "config") -> list[Dimension]:
    """The study's parameters: the [tune] tables, or DEFAULT_SPACE (for the switched-on components, and ensemble
    weights only for an ensemble of several targets) when [tune] declares none. NmuError naming the entry when a
    parameter is unknown, a range is empty or a bound is a value the parameter refuses."""
    declared = {t: config.tune[t] for t in SPACE_TABLES if t in config.tune}
    tables = declared or copy.deepcopy(DEFAULT_SPACE)
    if not declared:
        tables["components"] = {k: v for k, v in tables["components"].items() if switched_on(config, _component(k))}
        if len(config.targets) < 2:
            tables.pop("ensemble")
    space = []
    for table, entries in tables.items():
        for key, value in entries.items():
            where = f"{source}: `tune.{table}.{key}`"
            if table == "ensemble":
                if key != "weights":
                    raise NmuError(f"{where} is not a tunable ensemble setting; only `weights` (one per auxiliary "
                                   "target, the main target's staying 1) can be tuned.")
                if len(config.targets) < 2:
                    raise NmuError(f"{where} needs [ensemble] targets with more than one target.")
                space += [_dimension(f"ensemble.weights.{t}", value, where) for t in config.targets[1:]]
                continue
            component = _switch_of(key) if table == "components" else None
            if component is not None and not switched_on(config, component):
                raise NmuError(f"{where} tunes the {component} component, which the config switches off "
                               f"([components] {component} = false): every trial would score the same. Switch it "
                               "on or leave the range out.")
            space.append(_dimension(f"{table}.{key}", value, where))
    if not space:
        raise NmuError(f"{source}: the [tune] tables declare no parameter to tune.")
    for dim in space:  # every bound must be a value `nmu train` accepts for that parameter
        values = list(dim.choices) if dim.kind == "choice" else [dim.low, dim.high]
        for value in values:
            try:
                check_config(apply_params(config, {dim.name: value}), source=f"{source} [tune]")
            except NmuError as exc:
                raise NmuError(f"{exc}".rstrip(".") + f" (tune.{dim.name} = {value!r}).") from None
    return space


def _switch_of(key: str) -> str | None:
    """The component whose switch a NumeraiModel parameter belongs to, None for a parameter of the whole model."""
    return next((c for prefix, c in _COMPONENT_OF.items() if key.startswith(prefix)), None)


def _component(key: str) -> str:
    return _switch_of(key) or COMPONENTS[0]


def apply_params(config: TrainConfig, params: dict[str, Any]) -> TrainConfig:
    """The config with a trial's parameters set: [lightgbm] keys replace any alias of the same LightGBM parameter,
    [components] keys are set, ensemble weights filled in per target (the main target's 1)."""
    lightgbm, components = dict(config.lightgbm), dict(config.components)
    ensemble = {k: copy.deepcopy(v) for k, v in config.ensemble.items()}
    names = lightgbm_names()
    weights = {}
    for name, value in params.items():
        table, key = name.split(".", 1)
        if table == "lightgbm":
            canonical = names.get(key, key)
            lightgbm = {k: v for k, v in lightgbm.items() if names.get(k, k) != canonical}
            lightgbm[key] = value
        elif table == "components":
            components[key] = value
        elif table == "ensemble":
            weights[key.removeprefix("weights.")] = value
    if weights:
        current = dict(zip(config.targets, config.ensemble.weights_of(config.targets) or [1.0] * len(config.targets)))
        ensemble["targets"] = list(config.targets)  # written out in the order the weights follow, main target first
        ensemble["weights"] = [1.0 if t == config.targets[0] else weights.get(t, current.get(t, 1.0))
                               for t in config.targets]
    return dataclasses.replace(config, lightgbm=lightgbm, components=components, ensemble=ensemble, tune={})


def tuned_variant(config: TrainConfig) -> str:
    """The variant the study tunes: the one `ship` names, "full" for ship = "auto"."""
    return "full" if config.ship == "auto" else config.ship


# ---- one fold of one trial: the job the executor runs --------------------------------------------------------
@dataclass(frozen=True)
class FoldJob:
    """Fold `fold` (1-based) of trial `trial` with the trial's parameters."""

    trial: int
    fold: int
    params: tuple

    @property
    def title(self) -> str:
        """For the console and the executor's error messages."""
        return f"trial {self.trial} fold {self.fold}"


@dataclass(frozen=True)
class FoldError:
    """A fold that raised: the trial fails, the study goes on."""

    message: str


def score_fold(job: FoldJob, ds: Dataset, config: TrainConfig, settings: dict[str, Any],
               compute: dict[str, Any]) -> pd.DataFrame:
    """Per-era scores of the tuned variant with the trial's parameters on one expanding-window fold of the TRAIN
    eras: fitted on the fold's eras, scored on its test eras after the embargo, in the config's mode (refreshed: the
    factor-return history extended with the eras after the fit, as training.experiment scores a fold)."""
    config = apply_params(config, dict(job.params))
    fold = expanding_window_folds(ds.split.train, settings["folds"], config.resolved_embargo)[job.fold - 1]
    eras = ds.train["era"].to_numpy()
    fit_rows = ds.train.loc[np.isin(eras, fold.train)]
    test_rows = ds.train.loc[np.isin(eras, fold.validation)]
    fit_bench, test_bench = benchmark_for(fit_rows, ds.train_benchmark), benchmark_for(test_rows, ds.train_benchmark)
    model = make_variant(build_model(config, ds.groups), tuned_variant(config), config)
    model = fit_model(model, fit_rows, ds, Silent(), job.title, fit_bench, compute)
    if MODE_OF_REFRESH[config.refresh] == "refreshed":
        later = ds.train.loc[np.isin(eras, fold.embargoed + fold.validation)]
        model.update_factor_returns(ds.X(later), ds.y_fit(later))
    return score_model(model, test_rows, ds, test_bench if fit_bench is not None else None, test_bench)


def _guarded(function: Callable[[FoldJob], pd.DataFrame], job: FoldJob) -> pd.DataFrame | FoldError:
    try:
        return function(job)
    except Exception as exc:  # noqa: BLE001 - a trial's failure is recorded in the study, not the end of the study
        message = first_line(exc, default="")
        return FoldError(f"{type(exc).__name__}: {message}")


@dataclass(frozen=True)
class RemoteFolds:
    """The folds' function on a Dask worker: the dataset is loaded by path once per worker process and the fit uses
    the worker's threads, as training.experiment.RemoteJobs does for `nmu train`."""

    data_dir: str
    source: str
    config: dict[str, Any]
    settings: dict[str, Any]

    def __call__(self, job: FoldJob) -> pd.DataFrame | FoldError:
        """Score `job` on this worker (see `score_fold`)."""
        config = _config_of(self.config)
        key = (self.data_dir, self.source, repr(sorted(self.config.items())))
        if key not in _WORKER_DATASETS:
            _WORKER_DATASETS.clear()
            _WORKER_DATASETS[key] = load_dataset(Path(self.data_dir), self.source, config, Silent())
        compute = {"threads": worker_threads() or "auto", "one_fit_at_a_time": False}
        return _guarded(lambda j: score_fold(j, _WORKER_DATASETS[key], config, self.settings, compute), job)


_WORKER_DATASETS: dict[tuple, Dataset] = {}


def _config_of(data: dict[str, Any]) -> TrainConfig:
    from training.config import config_from_dict  # noqa: PLC0415 - one helper, used by the workers

    return config_from_dict({k: v for k, v in data.items() if v is not None}, source="config")


@dataclass(frozen=True)
class AfterJob:
    """One fit after the study: a config (as a dict) fitted on the train eras and scored on the validation eras."""

    label: str
    config: dict[str, Any]

    @property
    def title(self) -> str:
        """For the executor's error messages."""
        return f"{self.label} config"


@dataclass(frozen=True)
class RemoteAfter:
    """An AfterJob on a Dask worker: `nmu train`'s own variant job (training.experiment.RemoteJobs)."""

    data_dir: str
    source: str

    def __call__(self, job: AfterJob) -> Any:
        """(fitted model, per-era scores by mode)."""
        return RemoteJobs(self.data_dir, self.source, job.config)(Job("variant", tuned_variant(_config_of(job.config))))


# ---- the study -------------------------------------------------------------------------------------------------
def _optuna() -> Any:
    try:
        import optuna  # noqa: PLC0415 - the optional extra
    except ImportError:
        raise NmuError('`nmu tune` needs the tune extra: pip install -e ".[tune]"') from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def default_storage(out: Path) -> str:
    """sqlite:///OUT/tune.db (absolute)."""
    return f"sqlite:///{(Path(out) / 'tune.db').resolve()}"


def shown_url(url: str) -> str:
    """A storage URL fit to print: a password in it (postgresql://user:PASSWORD@host/db) is masked."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def _new_sqlite_file(url: str) -> Path | None:
    """The file of a sqlite storage URL when it does not exist yet (this run would make it), else None."""
    import sqlalchemy  # noqa: PLC0415 - Optuna's own dependency; its parser, not ours

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except Exception:  # noqa: BLE001 - not a URL: open_storage says so
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database)
    return None if path.exists() else path


def open_storage(url: str) -> Any:
    """The Optuna RDB storage at `url`; NmuError in one line when it cannot be opened."""
    optuna = _optuna()
    shown = shown_url(url)
    if "://" not in url:
        raise NmuError(f"--storage {shown!r} is not a storage URL; give sqlite:///PATH/tune.db, postgresql://... or "
                       "mysql://... (any URL SQLAlchemy opens).")
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        foreign = _foreign_tables(url, kwargs)
        if foreign:  # Optuna would add its tables beside them (an MLflow store, say), then fail on their schema
            tables = ", ".join(foreign[:6]) + (", ..." if len(foreign) > 6 else "")
            raise NmuError(f"--storage {shown} holds a database that is not an Optuna storage (its tables: {tables}); "
                           "give a new file or database for the study. Nothing was written to it.")
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except NmuError:
        raise
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy's and Optuna's errors alike: the storage cannot be used
        message = first_line(exc).replace(url, shown)
        raise NmuError(f"--storage {shown} cannot be opened: {message}.") from None


def _foreign_tables(url: str, engine_kwargs: dict[str, Any]) -> list[str]:
    """The tables of the database at `url` when it has some and none is Optuna's `version_info`; else []."""
    import sqlalchemy  # noqa: PLC0415 - Optuna's own dependency

    engine = sqlalchemy.create_engine(url, **engine_kwargs)
    try:
        tables = sqlalchemy.inspect(engine).get_table_names()
    finally:
        engine.dispose()
    return [] if not tables or "version_info" in tables else sorted(tables)


def study_signature(config: TrainConfig, settings: dict[str, Any], space: list[Dimension],
                    data: dict[str, str]) -> dict[str, Any]:
    """What makes two studies' trial values comparable: the search space, the objective (metric, folds, mode,
    variant, target), the data and every fixed setting of the config."""
    fixed = {"feature_set": config.feature_set, "targets": config.targets, "era_step": config.era_step,
             "embargo": config.resolved_embargo, "seed": config.seed, "lightgbm": config.lightgbm,
             "components": config.components, "ensemble": config.ensemble}
    signature = {"space": [d.as_dict() for d in space],
                 "objective": {"metric": settings["metric"], "folds": settings["folds"],
                               "mode": MODE_OF_REFRESH[config.refresh], "variant": tuned_variant(config),
                               "data": data, "config": fixed}}
    return json.loads(json.dumps(signature, default=str))  # as the storage gives it back


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else key)
    if isinstance(a, list) and isinstance(b, list) and path == "space":
        names_a, names_b = {d["name"]: d for d in a}, {d["name"]: d for d in b}
        for name in list(names_a) + [n for n in names_b if n not in names_a]:
            if names_a.get(name) != names_b.get(name):
                return f"space {name}: {names_a.get(name, 'absent')} there, {names_b.get(name, 'absent')} now"
    return f"{path}: {a!r} there, {b!r} now"


def load_study(name: str, storage: Any, signature: dict[str, Any], seed: int) -> Any:
    """Create the study or load it (same name: resume); NmuError when it was made with another search space or
    objective."""
    optuna = _optuna()
    study = optuna.create_study(
        study_name=name, storage=storage, direction="maximize", load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed, constant_liar=True),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0))
    # a sampler seeded as in the run before would draw that run's start-up points again: on a resume it is seeded
    # with the seed plus the trials the study holds (a new study keeps `seed` itself)
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.get_trials(deepcopy=False)), constant_liar=True)
    stored = {k: study.user_attrs.get(f"nmu_{k}") for k in signature}
    if all(v is None for v in stored.values()):
        if study.get_trials(deepcopy=False):
            raise NmuError(f"study {name!r} in the storage was not made by `nmu tune` (it has trials but no nmu "
                           "search space); choose another --study name.")
        for key, value in signature.items():
            study.set_user_attr(f"nmu_{key}", value)
    elif stored != signature:
        raise NmuError(f"study {name!r} was created with another search space or objective "
                       f"({_first_difference(stored, signature)}); resume it with the config it was made with, or "
                       "choose another --study name.")
    return study


def _process_tag() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def requeue_orphans(study: Any, storage: Any, say: Callable[[str], None]) -> int:
    """Trials a killed `nmu tune` of this machine left running (its process is gone) are marked failed and their
    parameters queued to run again first; returns how many."""
    import psutil  # noqa: PLC0415

    optuna = _optuna()
    host = socket.gethostname()
    requeued = 0
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        owner = str(trial.user_attrs.get("nmu_process", ""))
        owner_host, _, pid = owner.rpartition(":")
        if owner_host != host or not pid.isdigit() or psutil.pid_exists(int(pid)):
            continue  # another machine's, or still running
        trial_id = storage.get_trial_id_from_study_id_trial_number(
            storage.get_study_id_from_name(study.study_name), trial.number)
        storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
        if trial.user_attrs.get("nmu_rerun_of") is not None:  # killed twice (out of memory, say): not a third time
            say(f"  trial {trial.number}, a re-run of trial {trial.user_attrs['nmu_rerun_of']}, was stopped again: "
                "marked failed, not queued again")
            continue
        study.enqueue_trial(trial.params, user_attrs=_rerun_attrs(trial), skip_if_exists=False)
        requeued += 1
    if requeued:
        say(f"  {requeued} trial(s) left unfinished by a stopped run will run again first")
    return requeued


def _rerun_attrs(trial: Any) -> dict[str, Any]:
    """The user attributes of a trial queued to run `trial` again: which trial it re-runs, and the default config's
    marks (never pruned, what it samples), so that a stopped default trial stays the study's default."""
    kept = {k: v for k, v in trial.user_attrs.items() if k in ("nmu_default", "nmu_default_sampled")}
    return {"nmu_rerun_of": trial.number, **kept}


def _contains(dim: Dimension, value: Any) -> bool:
    if dim.kind == "choice":
        return value in dim.choices
    return _number(value) and dim.low <= value <= dim.high and (dim.kind == "float" or float(value).is_integer())


def enqueue_default(study: Any, config: TrainConfig, space: list[Dimension], say: Callable[[str], None]) -> bool:
    """Queue the default config (the one given to `nmu tune`) as the study's next trial, once per study, so that
    the study measures it on the same folds as every other trial: the best trial is then the default unless a
    sampled config beats it there, and the report shows by how much. A default outside the searched range is
    sampled instead (said in one line). Returns whether it was queued."""
    if any(t.user_attrs.get("nmu_default") for t in study.get_trials(deepcopy=False)):
        return False
    defaults = default_params(config, space)
    fixed = {d.name: defaults[d.name] for d in space if _contains(d, defaults.get(d.name))}
    outside = [f"{d.name} = {defaults.get(d.name)!r}" for d in space if d.name not in fixed]
    if outside:
        say(f"  the default config's {', '.join(outside)} lies outside the searched range: the default trial samples it")
    sampled = [d.name for d in space if d.name not in fixed]
    study.enqueue_trial(fixed, user_attrs={"nmu_default": True, **({"nmu_default_sampled": sampled} if sampled else {})},
                        skip_if_exists=False)
    return True


def default_trial(study: Any) -> Any:
    """The study's finished trial of the default config (see `enqueue_default`): the completed one, else the latest
    one that finished otherwise (a default stopped by an interruption is re-run under the same mark), or None."""
    finished = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("nmu_default") and t.state.is_finished()]
    complete = [t for t in finished if t.state.name == "COMPLETE"]
    return (complete or finished or [None])[-1]


def default_label(trial: Any) -> str:
    """"the default config", and which parameters it sampled when its value lay outside the searched range."""
    sampled = trial.user_attrs.get("nmu_default_sampled") or []
    return "the default config" + (f" with {', '.join(sampled)} sampled" if sampled else "")


@dataclass
class _Running:
    trial: Any
    params: dict[str, Any]
    scores: list[pd.DataFrame]


def objective_value(scores: list[pd.DataFrame], metric: str) -> float | None:
    """The study's objective over the folds scored so far: the metric's summary of their pooled per-era scores."""
    value = summarize(pd.concat(scores))[METRICS[metric]]
    return None if value is None else float(value)


def _slots(executor: Any) -> int:
    """How many folds run at once: one per Dask worker (each fits with its own share of the cores), else 1."""
    if isinstance(executor, DaskExecutor):
        return max(1, len(executor.client.nthreads()))
    return 1


def run_trials(study: Any, space: list[Dimension], settings: dict[str, Any], n_trials: int,
               timeout: float | None, executor: Any, run_fold: Callable[[FoldJob], Any], say: Callable[[str], None],
               train_eras: list[str]) -> dict[str, Any]:
    """Ask, fit fold by fold through the executor, report, prune and tell until the study holds `n_trials`
    finished trials or `timeout` seconds passed (trials in flight then run to their end). Returns counts/timings."""
    optuna = _optuna()
    states = optuna.trial.TrialState
    slots = _slots(executor)
    start = time.monotonic()
    folds, metric = settings["folds"], settings["metric"]
    running: list[_Running] = []
    started = failed_in_a_row = 0

    def finished() -> int:
        return len(study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED)))

    try:
        while True:
            budget = n_trials - finished() - len(running)
            while len(running) < slots and budget > 0 and (timeout is None or time.monotonic() - start < timeout):
                trial = study.ask()
                trial.set_user_attr("nmu_process", _process_tag())
                params = {d.name: d.suggest(trial) for d in space}
                running.append(_Running(trial, params, []))
                started += 1
                budget -= 1
            if not running:
                break
            jobs = [FoldJob(r.trial.number, len(r.scores) + 1, tuple(sorted(r.params.items()))) for r in running]
            results = executor.map(run_fold, jobs)
            still = []
            for r, result in zip(running, results):
                number, k = r.trial.number, len(r.scores) + 1
                if isinstance(result, pd.DataFrame) and result.empty:
                    result = FoldError("no test era could be scored (its predictions were constant or missing in "
                                       "every era)")
                if isinstance(result, FoldError):
                    study.tell(r.trial, state=states.FAIL)
                    say(f"  trial {number} failed in fold {k}: {result.message}")
                    failed_in_a_row += 1
                    continue
                r.scores.append(result)
                r.trial.set_user_attr(f"fold{k}_eras", [str(result.index[0]), str(result.index[-1])])
                if str(result.index[-1]) not in train_eras:  # honest by construction: never a validation era
                    raise RuntimeError(f"trial {number} fold {k} scored era {result.index[-1]}, not a train era")
                value = objective_value(r.scores, metric)
                if value is None:
                    study.tell(r.trial, state=states.FAIL)
                    say(f"  trial {number} failed in fold {k}: no {METRICS[metric]} on its eras")
                    failed_in_a_row += 1
                    continue
                failed_in_a_row = 0
                r.trial.report(value, step=k)
                if k == folds:
                    study.tell(r.trial, value)
                    label = f" ({default_label(r.trial)})" if r.trial.user_attrs.get("nmu_default") else ""
                    say(f"  trial {number}{label}: {metric} {fmt_score(value)} over {folds} folds "
                        f"(best so far {fmt_score(study.best_value)})")
                elif not r.trial.user_attrs.get("nmu_default") and r.trial.should_prune():
                    # the default is the reference every other trial is read against: measured on every fold
                    study.tell(r.trial, state=states.PRUNED)
                    say(f"  trial {number} pruned after fold {k}/{folds}: {metric} {fmt_score(value)} below the "
                        "median of earlier trials there")
                else:
                    still.append(r)
            running = still
            if failed_in_a_row >= max(3, slots):
                raise NmuError(f"{failed_in_a_row} trials in a row failed (the last: see above); check the [tune] "
                               "ranges and the [lightgbm] table.")
    except BaseException as exc:  # interrupted or failed: the trials in flight run again first next time
        interrupted = isinstance(exc, (KeyboardInterrupt, SystemExit))
        for r in running:
            try:
                study.tell(r.trial, state=states.FAIL)
            except Exception:  # noqa: BLE001 - already told (finished in the round that failed)
                continue
            # an error of nmu's own, not an interruption, would recur: a trial already re-run once is not queued
            # again, so that a resume cannot fail on the same trial for ever
            if interrupted or r.trial.user_attrs.get("nmu_rerun_of") is None:
                study.enqueue_trial(r.params, user_attrs=_rerun_attrs(r.trial))
        raise
    return {"started": started, "seconds": round(time.monotonic() - start, 1), "slots": slots}


# ---- after the study: default and best config on the validation report eras ---------------------------------
def after_choice(ds: Dataset, configs: dict[str, TrainConfig], executor: Any, reporter: Reporter) -> dict[str, Any]:
    """One fit of each config's tuned variant on the train eras, scored as `nmu train` scores a variant (in the
    config's mode) and summarised on the validation report eras; per label: the summary and the per-era scores."""
    jobs = [AfterJob(label, dataclasses.asdict(c)) for label, c in configs.items()]
    if isinstance(executor, InProcess):
        def run(job: AfterJob) -> Any:
            config = configs[job.label]
            return run_job(Job("variant", tuned_variant(config)), ds, config, Silent(), config.compute)
    else:
        run = RemoteAfter(str(ds.data_dir.resolve()), ds.source)
    with reporter.step(f"After the choice: fitting the {' and the '.join(configs)} config on the train eras, scoring "
                       "the validation report eras"):
        results = executor.map(run, jobs)
    _, report_eras = split_eras(ds.split.validation)
    out = {}
    for (label, config), (_, scores) in zip(configs.items(), results):
        per_era = scores[MODE_OF_REFRESH[config.refresh]]
        per_era = per_era.loc[per_era.index.isin(report_eras)]
        out[label] = {"scores": summarize(per_era), "per_era": per_era}
    out["eras"] = [report_eras[0], report_eras[-1]]
    return out


def after_choice_line(after: dict[str, Any], metric: str) -> str:
    """The after-the-choice comparison in one line: the report eras, each config's corr (and the study's metric when
    it is another), and the per-era difference of corr with its Newey-West standard error (`paired_difference`, as
    the ship rule reads it), so that a gap within the noise of these few eras reads as such."""
    d, t = after["default"], after["tuned"]
    paired = paired_difference(t["per_era"]["corr"], d["per_era"]["corr"])  # the ship rule's: Newey-West
    gain = paired["gain"] if math.isfinite(paired["gain"]) else None
    line = (f"{paired['n_eras']} validation report eras {after['eras'][0]}–{after['eras'][1]}: default corr "
            f"{fmt_score(d['scores']['corr_mean'])}, tuned corr {fmt_score(t['scores']['corr_mean'])} (tuned - default "
            f"{fmt_score(gain)} +- {paired['se']:.4f} per era)")
    if metric != "corr":
        key = METRICS[metric]
        line += f"; {metric}: default {fmt_score(d['scores'][key])}, tuned {fmt_score(t['scores'][key])}"
    return line


# ---- the report ------------------------------------------------------------------------------------------------
def _history_png(trials: list[Any], states: Any, metric: str) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4))
    done = [(t.number, t.value) for t in trials if t.state == states.COMPLETE]
    pruned = [(t.number, t.intermediate_values[max(t.intermediate_values)]) for t in trials
              if t.state == states.PRUNED and t.intermediate_values]
    if done:
        x, y = zip(*done)
        ax.scatter(x, y, color="#1f77b4", label="complete", zorder=3)
        best = np.maximum.accumulate(np.asarray(y))
        ax.step(x, best, where="post", color="#2ca02c", label="best so far")
    if pruned:
        x, y = zip(*pruned)
        ax.scatter(x, y, marker="x", color="#d62728", label="pruned (running value when stopped)", zorder=3)
    ax.set_title(f"optimisation history: {metric} over the folds of the train eras")
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    if done or pruned:
        ax.legend(fontsize=8)
    return _png(fig)


def _importance_png(study: Any) -> tuple[bytes, dict[str, float]]:
    plt = _pyplot()
    optuna = _optuna()
    fig, ax = plt.subplots(figsize=(9, 3.8))
    try:
        with warnings.catch_warnings():  # "too few trials: importances will be equal" is shown as such below
            warnings.simplefilter("ignore")
            importance = optuna.importance.get_param_importances(study)
    except Exception as exc:  # noqa: BLE001 - too few complete trials, or a constant parameter
        importance = {}
        reason = first_line(exc)
        ax.text(0.5, 0.5, f"no importances: {reason[:90]}", ha="center", va="center", transform=ax.transAxes,
                fontsize=8)
    if importance:
        names = list(importance)[::-1]
        ax.barh(names, [importance[n] for n in names], color="#1f77b4")
        ax.set_xlabel("importance (Optuna's get_param_importances, normalised to sum 1)")
    ax.set_title("parameter importance over the complete trials")
    ax.grid(alpha=0.3, axis="x")
    return _png(fig), {k: float(v) for k, v in importance.items()}


def _best_png(best: list[Any], metric: str) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 0.35 * max(3, len(best)) + 1))
    labels = [f"trial {t.number}" for t in best][::-1]
    ax.barh(labels, [t.value for t in best][::-1], color="#2ca02c")
    ax.set_title(f"best trials: {metric} over the folds of the train eras")
    ax.grid(alpha=0.3, axis="x")
    return _png(fig)


def _table(rows: list[dict[str, Any]]) -> str:
    return pd.DataFrame(rows).to_html(index=False, border=0, na_rep="–",
                                      float_format=lambda v: f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}")


def _default_sentence(summary: dict[str, Any]) -> str:
    dt = summary.get("default_trial")
    if dt is None:
        return "The default config was not measured on the folds (a study made before nmu ran it as a trial)."
    label = html.escape(dt.get("label", "the default config"))
    label = label[0].upper() + label[1:]
    if dt["state"] != "complete":
        return f"{label}, trial {dt['number']}, {_not_complete(dt)} on the same folds."
    return (f"{label}, trial {dt['number']}, scored {dt['value']:.4f} on the same folds "
            f"({summary['best_value'] - dt['value']:+.4f} for the best).")


def _not_complete(record: dict[str, Any]) -> str:
    """How a trial that did not complete ended: "failed after 1 fold(s)", "was pruned after 2 fold(s)"."""
    verb = {"fail": "failed", "pruned": "was pruned"}.get(record["state"], f"ended {record['state']}")
    return f"{verb} after {record['folds']} fold(s)"


def render_tune_html(summary: dict[str, Any], plots: dict[str, bytes], best_rows: list[dict[str, Any]]) -> str:
    """The tune report as one self-contained page."""
    import base64  # noqa: PLC0415

    after = summary["after_choice"]
    keys = ("corr_mean", "corr_sharpe", "bmc_mean", "max_drawdown", "n_eras")
    after_rows = [{"config": label, **{k: after[label][k] for k in keys}} for label in ("default", "tuned")]
    params_rows = [{"parameter": k, "default": summary["default_params"].get(k), "tuned": v}
                   for k, v in summary["best_params"].items()]
    info = {k: summary[k] for k in ("study", "storage", "metric", "folds", "mode", "variant", "train_eras")}
    info.update({f"trials {k}": v for k, v in summary["trials"].items()})
    images = "".join(f"<h2>{html.escape(title)}</h2><img alt=\"{name}\" src=\"data:image/png;base64,"
                     f"{base64.b64encode(plots[name]).decode('ascii')}\">"
                     for name, title in (("tune_history", "Optimisation history"),
                                         ("tune_importance", "Parameter importance"),
                                         ("tune_best_trials", "Best trials")))
    eras = after["eras"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>nmu tune report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }}
img {{ max-width: 100%; display: block; margin-bottom: 1em; }}
.after {{ background: #fff8e1; padding: 0.5em 1em; border-left: 4px solid #f0a000; }}
</style></head><body>
<h1>nmu tune report</h1>
<p>The study chose on the training eras only: each trial's {html.escape(summary['metric'])} over
{summary['folds']} expanding-window folds of the train eras, with an embargo of {summary['embargo']} eras before each
fold's scored eras, in the mode the model will run in ({html.escape(summary['mode'].replace('_', ' '))}).</p>
<div class="after"><h2>After the choice: the validation report eras</h2>
<p>Measured <b>after</b> the study, one fit each on the train eras, on validation eras {html.escape(eras[0])}–{html.escape(eras[1])}
(the eras <code>nmu train</code> reports the shipped model on). The tuner never saw these eras and nothing was chosen
on them; the default config is the one given to <code>nmu tune</code> (as <code>nmu train</code> would use it).</p>
{_table(after_rows)}</div>
<h2>The best trial's parameters</h2>
<p>Trial {summary['best_trial']}: {html.escape(summary['metric'])} {summary['best_value']:.4f} on the train folds.
{_default_sentence(summary)}
<code>best_config.toml</code> holds this config for <code>nmu train --config</code>.</p>
{_table(params_rows)}
<h2>Best trials</h2>
{_table(best_rows)}
<h2>Study</h2>
{_table([{"setting": k, "value": str(v)} for k, v in info.items()])}
{images}
</body></html>
"""


def write_report(out: Path, study: Any, summary: dict[str, Any]) -> dict[str, float]:
    """tune_report.html, its PNGs, tune_trials.csv and tune.json in OUT; returns the parameter importances."""
    optuna = _optuna()
    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    complete = sorted((t for t in trials if t.state == states.COMPLETE), key=lambda t: t.value, reverse=True)
    best = complete[:10]
    importance_png, importance = _importance_png(study)
    plots = {"tune_history": _history_png(trials, states, summary["metric"]), "tune_importance": importance_png,
             "tune_best_trials": _best_png(best, summary["metric"])}
    for name, png in plots.items():
        atomic_write_bytes(out / f"{name}.png", png)
    best_rows = [{"trial": t.number, summary["metric"]: t.value, **t.params} for t in best]
    summary["importance"] = importance
    atomic_write_text(out / "tune_report.html", render_tune_html(summary, plots, best_rows))
    atomic_write_text(out / "tune_trials.csv", study.trials_dataframe().to_csv(index=False))
    atomic_write_json(out / "tune.json", summary)
    return importance


# ---- the command -----------------------------------------------------------------------------------------------
def default_params(config: TrainConfig, space: list[Dimension]) -> dict[str, Any]:
    """What the default config sets for each tuned parameter (its table's value, else NumeraiModel's default)."""
    from model import NumeraiModel  # noqa: PLC0415
    from model.booster import DEFAULT_LGBM_PARAMS  # noqa: PLC0415

    names = lightgbm_names()
    model_defaults = NumeraiModel().get_params(deep=False)
    out: dict[str, Any] = {}
    for dim in space:
        table, key = dim.name.split(".", 1)
        if table == "lightgbm":
            given = {names.get(k, k): v for k, v in config.lightgbm.items()}
            defaults = {names.get(k, k): v for k, v in DEFAULT_LGBM_PARAMS.items()}
            canonical = names.get(key, key)
            out[dim.name] = given.get(canonical, defaults.get(canonical))
        elif table == "components":
            out[dim.name] = config.components.get(key, model_defaults.get(key))
        else:
            target = key.removeprefix("weights.")
            weights = config.ensemble.weights_of(config.targets) or [1.0] * len(config.targets)
            out[dim.name] = dict(zip(config.targets, weights)).get(target, 1.0)
    return out


def _trial_record(trial: Any) -> dict[str, Any] | None:
    if trial is None:
        return None
    return {"number": trial.number, "state": trial.state.name.lower(),
            "value": None if trial.value is None else float(trial.value),
            "folds": len(trial.intermediate_values), "params": trial.params,
            "label": default_label(trial)}


def tune_command(
    data: Path | None,
    out: Path,
    config_path: Path | None,
    trials: int = 20,
    timeout: float | None = None,
    study_name: str = DEFAULT_STUDY,
    storage: str | None = None,
    scheduler: str | None = None,
    track: bool = False,
    console: Any = None,  # a rich Console to draw on (the CLI's); None: progress lines go to logging
) -> dict[str, Any]:
    """Run `nmu tune` end to end (see the module docstring) and return tune.json's content."""
    if trials < 1:
        raise NmuError(f"--trials must be 1 or more, got {trials}.")
    if timeout is not None and not timeout > 0:  # (NaN too: it compares false with everything)
        raise NmuError(f"--timeout must be a positive number of seconds, got {timeout}.")
    source_name = config_source(config_path)
    config = load_config(config_path)  # the default config: what `nmu train --config` would use untuned
    check_config(config, source=source_name)
    settings = tune_settings(config, source_name)
    space = search_space(config, source_name)
    run_config = dataclasses.replace(config, compute={**config.compute})
    if scheduler is not None:
        run_config.compute["scheduler"] = scheduler
    check_scheduler(run_config.compute.get("scheduler"), scheduler_setting(scheduler, source_name))
    tracker = None
    if track or config.tracking.get("enabled"):
        from training import tracking as tracker  # noqa: PLC0415 - the optional extra

        tracker.check_tracking(config, source_name)
    _optuna()
    out = Path(out)
    check_out_dir(out)
    created = make_directory(out)
    # The study is made only once the data has passed: a study made for refused data would hold the default storage's
    # directory and, signed with that data, refuse the corrected run. A storage URL of the user's is opened first, so
    # a bad one is said before the data loads; either failure leaves no directory behind.
    url = storage or default_storage(out)
    made_file = _new_sqlite_file(url)
    try:
        store = open_storage(url) if storage is not None else None
        reporter = Reporter(console)
        data_dir, source = resolve_data(data, reporter)
        info = read_data_info(data_dir)
        ds = load_dataset(data_dir, source, run_config, reporter)
        if settings["metric"] == "bmc" and ds.train_benchmark is None:
            raise NmuError(f"tune.metric = \"bmc\" needs the benchmark of the train eras ({data_dir}/"
                           "train_benchmark_models.parquet), which the data lacks; use corr or sharpe.")
        expanding_window_folds(ds.split.train, settings["folds"], config.resolved_embargo,  # NmuError if it cannot cut
                               f"{source_name}: `tune.folds` = {settings['folds']}")
        if store is None:
            store = open_storage(url)
        signature = study_signature(config, settings, space, {"dir": str(Path(data_dir).resolve()),
                                                              "source": source, "version": str(info["version"])})
        study = load_study(study_name, store, signature, config.seed)
    except BaseException:
        if made_file is not None:  # the storage file this run made, holding no study yet
            made_file.unlink(missing_ok=True)
        remove_empty(created)
        raise
    requeue_orphans(study, store, reporter.say)
    enqueue_default(study, config, space, reporter.say)
    executor = make_executor(run_config.compute.get("scheduler"))
    try:
        if isinstance(executor, InProcess):
            def run_fold(job: FoldJob) -> Any:
                return _guarded(lambda j: score_fold(j, ds, run_config, settings, run_config.compute), job)
        else:
            run_fold = RemoteFolds(str(ds.data_dir.resolve()), ds.source, dataclasses.asdict(run_config), settings)
        optuna = _optuna()
        states = optuna.trial.TrialState
        done = len(study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED)))
        reporter.say(f"  {len(space)} parameters ({', '.join(d.name for d in space)}); objective: "
                     f"{settings['metric']} over {settings['folds']} folds of the train eras, "
                     f"{MODE_OF_REFRESH[config.refresh].replace('_', ' ')}")
        with reporter.step(f"Tuning {tuned_variant(config)}: study {study_name!r} to {trials} finished trials "
                           f"({done} before this run), {executor.name}"):
            timing = run_trials(study, space, settings, trials, timeout, executor, run_fold, reporter.say,
                                list(ds.split.train))
        complete = study.get_trials(deepcopy=False, states=(states.COMPLETE,))
        if not complete:
            raise NmuError(f"no trial of study {study_name!r} completed ({len(study.trials)} trials: pruned or "
                           "failed); nothing to choose from.")
        best = study.best_trial
        best_config = apply_params(config, best.params)
        atomic_write_text(out / "best_config.toml", config_to_toml(best_config))
        after = after_choice(ds, {"default": dataclasses.replace(config, compute=run_config.compute),
                                  "tuned": dataclasses.replace(best_config, compute=run_config.compute)},
                             executor, reporter)
    finally:
        executor.close()
    counts = {s.name.lower(): len([t for t in study.get_trials(deepcopy=False) if t.state == s])
              for s in (states.COMPLETE, states.PRUNED, states.FAIL)}
    finished_now = timing["started"]
    summary = {
        "study": study_name, "storage": url, "metric": settings["metric"], "folds": settings["folds"],
        "mode": MODE_OF_REFRESH[config.refresh], "variant": tuned_variant(config),
        "embargo": config.resolved_embargo, "train_eras": f"{ds.split.train[0]}–{ds.split.train[-1]}",
        "data": {"source": ds.source, "version": ds.version},
        "space": [d.as_dict() for d in space], "trials": counts, "best_trial": best.number,
        "best_value": float(best.value), "best_params": best.params, "default_params": default_params(config, space),
        "default_trial": _trial_record(default_trial(study)),
        "after_choice": {"eras": after["eras"], "default": after["default"]["scores"],
                         "tuned": after["tuned"]["scores"]},
        "this_run": {**timing, "trials_per_hour": round(3600 * finished_now / timing["seconds"], 1)
                     if timing["seconds"] > 0 and finished_now else None},
    }
    write_report(out, study, summary)
    reporter.say(f"  best trial {best.number}: {settings['metric']} {fmt_score(best.value)} on the train folds; "
                 f"written {out / 'best_config.toml'}")
    if summary["default_trial"] is not None:
        dt = summary["default_trial"]
        reporter.say(f"  {dt['label']} (trial {dt['number']}): "
                     + (f"{settings['metric']} {fmt_score(dt['value'])} on the train folds" if dt["state"] == "complete"
                        else _not_complete(dt)))
    reporter.say(f"  after the choice ({MODE_OF_REFRESH[config.refresh].replace('_', ' ')}), "
                 f"{after_choice_line(after, settings['metric'])}")
    if tracker is not None:
        with reporter.step("Logging the study to MLflow"):
            summary["mlflow_run"] = tracker.log_tune_run(out, config, study, summary,
                                                          {k: v["per_era"] for k, v in after.items() if k != "eras"})
    return summary
