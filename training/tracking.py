"""MLflow tracking of `nmu train` and `nmu tune` (the `tracking` extra: pip install -e ".[tracking]").

`--track` (or `[tracking] enabled = true` in the config) logs each run once its artifacts are written:

- `nmu train`: the config as parameters (tables flattened: `lightgbm.learning_rate`), every variant's scores in
  both modes as metrics (`left_alone.full.corr_mean`; the judged mode's also as `full.corr_mean`; the report eras'
  `report_eras.full.corr_mean`), report.html, metrics.json, per_era_scores.csv, config.toml and the manifest as
  artifacts, and tags for the data (`nmu.data_source`, `nmu.data_version`), the package version and the pickle's
  sha256;
- `nmu tune`: one run for the study (best parameters, the after-the-choice scores of the default and the tuned config,
  the report, best_config.toml, the trials table) with one nested run per trial not logged before (its parameters
  and folds' eras, its running value after each fold as steps, its state, `nmu.default` / `nmu.rerun_of` tags).

Where: `MLFLOW_TRACKING_URI` when set, else `[tracking] uri`, else a local store in OUT: `sqlite:///OUT/mlruns.db`
with the artifacts in `OUT/mlruns/` (an experiment nmu creates in any SQLite store keeps its artifacts in `mlruns/`
beside the database file, never in the working directory). SQLite rather than a file store because MLflow 3 refuses the file store (it is
in maintenance mode and raises unless MLFLOW_ALLOW_FILE_STORE=true) and recommends SQLite for a local store; the
`mlflow ui --backend-store-uri sqlite:///OUT/mlruns.db` command shows it. mlflow is imported only here, only when
tracking is asked for; nothing in `model/` imports it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from training.config import TrainConfig
from training.console import quiet
from validation.artifacts import manifest_path, read_manifest
from validation.errors import NmuError, first_line

SETTINGS: dict[str, Any] = {"enabled": False, "uri": None, "experiment": "nmu"}
"""The keys of [tracking] and their defaults."""
DB_NAME, ARTIFACTS_DIR = "mlruns.db", "mlruns"


def check_tracking(config: TrainConfig, source: str = "config") -> None:
    """NmuError before any work when [tracking] has an unknown key or a bad value, or mlflow is not installed."""
    for key, value in config.tracking.items():
        if key not in SETTINGS:
            raise NmuError(f"{source}: `tracking.{key}` is not a tracking setting; known: {', '.join(SETTINGS)}.")
        if key == "enabled" and not isinstance(value, bool):
            raise NmuError(f"{source}: `tracking.enabled` must be true or false, got {value!r}.")
        if key in ("uri", "experiment") and not (isinstance(value, str) and value):
            raise NmuError(f"{source}: `tracking.{key}` must be a non-empty string, got {value!r}.")
    try:
        import mlflow  # noqa: F401, PLC0415 - the optional extra
    except ImportError:
        raise NmuError('--track needs the tracking extra: pip install -e ".[tracking]"') from None


def wanted(config: TrainConfig, track: bool) -> bool:
    """Whether this run is logged: --track, or [tracking] enabled = true."""
    return bool(track or config.tracking.get("enabled"))


def tracking_uri(out: Path, config: TrainConfig) -> str:
    """MLFLOW_TRACKING_URI, else [tracking] uri, else the local store sqlite:///OUT/mlruns.db."""
    return os.environ.get("MLFLOW_TRACKING_URI") or config.tracking.get("uri") or local_uri(out)


def local_uri(out: Path) -> str:
    """The default store of OUT: sqlite:///OUT/mlruns.db (absolute)."""
    return f"sqlite:///{(Path(out) / DB_NAME).resolve()}"


@contextlib.contextmanager
def _client(out: Path, config: TrainConfig) -> Iterator[tuple[Any, str, str]]:
    """(MlflowClient, experiment id, uri), MLflow's and SQLAlchemy's chatter silenced; any failure → one NmuError."""
    uri = tracking_uri(out, config)
    with warnings.catch_warnings(), quiet("mlflow"), quiet("alembic"):
        warnings.simplefilter("ignore")
        try:
            from mlflow.tracking import MlflowClient  # noqa: PLC0415 - the optional extra

            client = MlflowClient(tracking_uri=uri)
            name = config.tracking.get("experiment") or SETTINGS["experiment"]
            experiment = client.get_experiment_by_name(name)
            if experiment is not None:
                experiment_id = experiment.experiment_id
            elif uri.startswith("sqlite:///"):  # a local store keeps its artifacts beside it, not in the working directory
                beside = Path(uri.removeprefix("sqlite:///")).parent / ARTIFACTS_DIR
                experiment_id = client.create_experiment(name, artifact_location=beside.resolve().as_uri())
            else:  # a tracking server (or another database) decides where artifacts go
                experiment_id = client.create_experiment(name)
            yield client, experiment_id, uri
        except NmuError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever MLflow raises, the artifacts are written: say so
            message = first_line(exc)
            raise NmuError(f"the artifacts are in {out}, but logging the run to MLflow at {uri} failed: "
                           f"{type(exc).__name__}: {message}") from None


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested tables as dotted parameter names; lists as JSON; None left out."""
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        elif value is not None:
            flat[name] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
    return flat


def _metric_name(name: str) -> str:
    """MLflow's metric names take letters, digits, _ - . / and spaces."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in name)


def _log(client: Any, run_id: str, params: dict[str, str] | None = None, metrics: dict[str, float] | None = None,
         tags: dict[str, str] | None = None, steps: list[tuple[str, float, int]] | None = None) -> None:
    """Parameters, metrics (None skipped) and tags in batches within MLflow's limits."""
    from mlflow.entities import Metric, Param, RunTag  # noqa: PLC0415 - the optional extra

    now = int(time.time() * 1000)
    items = [Param(k, v[:6000]) for k, v in (params or {}).items()]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i:i + 100])
    values = [Metric(_metric_name(k), float(v), now, 0) for k, v in (metrics or {}).items() if v is not None]
    values += [Metric(_metric_name(k), float(v), now, step) for k, v, step in steps or []]
    for i in range(0, len(values), 1000):
        client.log_batch(run_id, metrics=values[i:i + 1000])
    if tags:
        client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def _package_version() -> str:
    from training.cli import _version  # noqa: PLC0415 - the one place that reads it

    return _version()


def _config_params(config: TrainConfig) -> dict[str, str]:
    return _flatten({k: v for k, v in dataclasses.asdict(config).items() if k not in ("tune", "tracking")})


def log_train_run(out: Path, config: TrainConfig, metrics: dict[str, Any]) -> str:
    """Log a finished `nmu train` (its artifacts in OUT) as one MLflow run; returns the run id."""
    out = Path(out)
    manifest = read_manifest(out / "model.pkl")
    decision = metrics.get("ship") or {}
    values: dict[str, float] = {}
    for mode, variants in metrics["modes"].items():
        for variant, scores in variants.items():
            values.update({f"{mode}.{variant}.{k}": v for k, v in scores.items()})
    for variant, scores in metrics["models"].items():
        values.update({f"{variant}.{k}": v for k, v in scores.items()})
    for variant, scores in (decision.get("report") or {}).items():
        values.update({f"report_eras.{variant}.{k}": v for k, v in scores.items()})
    data = manifest.get("data") or {}
    tags = {"nmu.command": "train", "nmu.data_source": data.get("source"), "nmu.data_version": data.get("version"),
            "nmu.package_version": _package_version(), "nmu.pickle_sha256": (manifest.get("pickle") or {}).get("sha256"),
            "nmu.shipped_variant": decision.get("shipped"), "nmu.mode": decision.get("mode")}
    with _client(out, config) as (client, experiment_id, _):
        run = client.create_run(experiment_id, run_name=f"train {decision.get('shipped', '')}".strip(),
                                tags={k: str(v) for k, v in tags.items() if v is not None})
        run_id = run.info.run_id
        try:
            _log(client, run_id, params=_config_params(config), metrics=values)
            for name in ("report.html", "metrics.json", "per_era_scores.csv", "cv_scores.csv", "config.toml"):
                if (out / name).is_file():
                    client.log_artifact(run_id, str(out / name))
            client.log_artifact(run_id, str(manifest_path(out / "model.pkl")))
        except BaseException:
            client.set_terminated(run_id, status="FAILED")
            raise
        client.set_terminated(run_id)
    return run_id


LOGGED_TRIALS = "nmu_logged_trials"
"""The study user attribute listing the trials a tracked `nmu tune` has logged."""


def log_tune_run(out: Path, config: TrainConfig, study: Any, summary: dict[str, Any],
                 per_era: dict[str, pd.DataFrame]) -> str:
    """Log a finished `nmu tune` as one MLflow run with a nested run per finished trial that no tracked run of the
    study logged before (a resume logs the trials of a run that stopped before it); returns the study run's id."""
    out = Path(out)
    metric = summary["metric"]
    values = {"best_value": summary["best_value"],
              **{f"trials.{k}": v for k, v in summary["trials"].items()},
              **{f"after_choice.{label}.{k}": v for label in ("default", "tuned")
                 for k, v in summary["after_choice"][label].items()}}
    if summary["this_run"].get("trials_per_hour") is not None:
        values["trials_per_hour"] = summary["this_run"]["trials_per_hour"]
    params = {**_config_params(config), **{f"best.{k}": str(v) for k, v in summary["best_params"].items()},
              "tune.metric": metric, "tune.folds": str(summary["folds"]), "tune.mode": summary["mode"],
              "tune.variant": summary["variant"], "tune.space": json.dumps(summary["space"])}
    tags = {"nmu.command": "tune", "nmu.study": summary["study"], "nmu.storage": summary["storage"],
            "nmu.data_source": summary["data"]["source"], "nmu.data_version": summary["data"]["version"],
            "nmu.package_version": _package_version()}
    with _client(out, config) as (client, experiment_id, _):
        run = client.create_run(experiment_id, run_name=f"tune {summary['study']}", tags=tags)
        run_id = run.info.run_id
        try:
            _log(client, run_id, params=params, metrics=values)
            for name in ("tune_report.html", "best_config.toml", "tune.json", "tune_trials.csv", "tune_history.png",
                         "tune_importance.png", "tune_best_trials.png"):
                if (out / name).is_file():
                    client.log_artifact(run_id, str(out / name))
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "after_choice_per_era.csv"
                pd.concat({k: v for k, v in per_era.items()}, names=["config"]).reset_index().to_csv(path, index=False)
                client.log_artifact(run_id, str(path))
            # every finished trial no tracked run of the study has logged yet (their numbers are kept in the study,
            # whose finished trials cannot be changed): a resume logs its own trials and those of a run before it
            # that stopped or ran untracked; none twice
            logged = set(study.user_attrs.get(LOGGED_TRIALS, []))
            for trial in study.get_trials(deepcopy=False):
                if not trial.state.is_finished() or trial.number in logged:
                    continue
                marks = {"nmu.default": "true"} if trial.user_attrs.get("nmu_default") else {}
                if trial.user_attrs.get("nmu_rerun_of") is not None:
                    marks["nmu.rerun_of"] = str(trial.user_attrs["nmu_rerun_of"])
                child = client.create_run(experiment_id, run_name=f"trial {trial.number}",
                                          tags={"mlflow.parentRunId": run_id, "nmu.trial_state": trial.state.name,
                                                **marks})
                steps = [(f"running_{metric}", v, step) for step, v in sorted(trial.intermediate_values.items())]
                folds = {f"{k}": "–".join(v) for k, v in trial.user_attrs.items()
                         if k.startswith("fold") and k.endswith("_eras")}
                _log(client, child.info.run_id, params={**{k: str(v) for k, v in trial.params.items()}, **folds},
                     metrics={metric: trial.value} if trial.value is not None else {}, steps=steps)
                client.set_terminated(child.info.run_id,
                                      status="FINISHED" if trial.state.name in ("COMPLETE", "PRUNED") else "FAILED")
                logged.add(trial.number)
                study.set_user_attr(LOGGED_TRIALS, sorted(logged))
        except BaseException:
            client.set_terminated(run_id, status="FAILED")
            raise
        client.set_terminated(run_id)
    return run_id
