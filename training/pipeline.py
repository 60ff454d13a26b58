"""`nmu train`: the settings checked first, the data loaded and validated, the experiment run
(training.experiment), and the artifacts written as one: model.pkl, manifest.json, metrics.json, per-era scores,
config.toml and report.html with its plots.

The outputs are built in a staging directory beside OUT and swapped in by renames only once all of them exist, so
OUT is never half new: a failed run leaves the previous artifacts as they were.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from training.config import TrainConfig, apply_flags, check_config, config_source, config_to_toml, load_config
from training.console import Reporter, progress_bars
from training.data import REQUIRED_FILES, read_data_info
from training.executor import check_scheduler, make_executor, scheduler_setting
from training.experiment import Dataset, ExperimentResult, load_dataset, run_experiment
from training.export import export_pickle
from training.synthetic import SyntheticConfig, write_synthetic_world
from validation.artifacts import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    update_manifest,
    why_not_there,
)
from validation.errors import NmuError
from validation.evaluation.report import PLOTS, render_html, render_plots
from validation.evaluation.selection import gain_table

DEFAULT_SYNTHETIC_DIR = Path("data") / "synthetic"
OUTPUTS = ("model.pkl", "manifest.json", "metrics.json", "report.html", "per_era_scores.csv", "cv_scores.csv",
           "config.toml", *(f"{name}.png" for name in PLOTS))
"""The files `nmu train` owns in OUT: written anew by each run (cv_scores.csv only with --cv); other files are kept."""


# ---- the output directory --------------------------------------------------------------------------------------
def check_out_dir(out: Path) -> None:
    """NmuError before any work when OUT cannot take the artifacts: a file, or a directory that is not writable."""
    if out.exists() and not out.is_dir():
        raise NmuError(f"--out {out} is a file; give a directory for the artifacts.")
    # the finished artifacts' directory is renamed over OUT: that cannot be done to the working directory (".") or to
    # a mount point (a Docker volume), and the run would fail only after its fits
    here = out.is_dir() and out.resolve() == Path.cwd().resolve()
    if here or (out.is_dir() and os.path.ismount(out)):
        what = "the current directory" if here else "a mount point"
        raise NmuError(f"--out {out} is {what}, which the finished artifacts cannot be renamed over; give a "
                       f"directory inside it, e.g. --out {out / 'artifacts'}.")
    ancestor = out.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise NmuError(f"cannot create --out {out}: {ancestor} is a file.")
    # the artifacts are built beside OUT and swapped in: OUT's parent (or its first existing ancestor) must be writable
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise NmuError(f"cannot write the artifacts into {out}: {ancestor} is not writable.")


@contextlib.contextmanager
def staging_dir(out: Path) -> Iterator[Path]:
    """A new directory beside OUT (same file system, so moves are renames) holding hard links of OUT's files that
    this run does not own; removed afterwards if it was not swapped in."""
    out.parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        if out.is_dir():
            for item in out.iterdir():
                if item.name in OUTPUTS:
                    continue
                if item.is_dir():
                    shutil.copytree(item, path / item.name, copy_function=_link_or_copy, symlinks=True)
                else:
                    _link_or_copy(item, path / item.name)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _link_or_copy(src: Any, dst: Any) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


def swap_in(stage: Path, out: Path) -> None:
    """Make the staged directory OUT: the previous OUT is moved aside, the stage renamed into place, and the previous
    one removed only after that succeeded (put back if it failed)."""
    previous = None
    if out.exists():
        previous = out.parent / f".{out.name}.previous-{os.getpid()}-{time.time_ns()}"
        os.rename(out, previous)
    try:
        os.rename(stage, out)
    except BaseException:
        if previous is not None:
            os.rename(previous, out)
        raise
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)


# ---- the artifacts ---------------------------------------------------------------------------------------------
def write_artifacts(out: Path, ds: Dataset, config: TrainConfig, result: ExperimentResult,
                    timings: dict[str, float]) -> dict[str, Any]:
    """Write every output of a run into a staging directory and swap it in as OUT; returns the manifest."""
    with staging_dir(out) as stage:
        pkl = stage / "model.pkl"
        export_pickle(result.shipped, pkl)
        decision = result.metrics["ship"]
        per_era_mode = result.per_era[result.per_era["mode"] == decision["mode"]]
        plots = render_plots(per_era_mode, result.models)
        for plot_name, png in plots.items():
            atomic_write_bytes(stage / f"{plot_name}.png", png)
        shipped = (f"{result.shipped_variant}, refit on train + validation eras" if config.refit
                   else f"{result.shipped_variant}, fit on train eras")
        notes = {"data": f"{ds.source} (data {ds.version})", "feature set": ds.feature_set, "shipped model": shipped,
                 "scores shown": decision["mode"].replace("_", " ") + f" (refresh = {config.refresh!r})"}
        atomic_write_text(stage / "report.html", render_html(result.metrics, plots, cv=result.cv, notes=notes,
                                                             ship=(gain_table(decision), decision["rule"])))
        atomic_write_json(stage / "metrics.json", result.metrics)
        atomic_write_text(stage / "per_era_scores.csv", result.per_era.to_csv(index=False))
        if result.cv is not None:
            atomic_write_text(stage / "cv_scores.csv", result.cv.to_csv(index=False))
        atomic_write_text(stage / "config.toml", config_to_toml(config))
        manifest = update_manifest(
            pkl,
            data={"source": ds.source, "version": ds.version, "version_from": ds.version_from},
            features=ds.features, target=ds.target, targets=ds.targets, feature_set=ds.feature_set,
            shipped_variant=result.shipped_variant, as_of_era=result.shipped.as_of_era_,
            eras={"train": ds.split.train, "validation": ds.split.validation, "embargoed": ds.split.embargoed,
                  "refit": result.refit_eras},
            scores=result.models, config=dataclasses.asdict(config), timings=timings,
            **({"cv": result.cv.to_dict(orient="records")} if result.cv is not None else {}),
        )
        swap_in(stage, out)
    return manifest


# ---- the command -----------------------------------------------------------------------------------------------
def ensure_synthetic_world(path: Path, reporter: Reporter) -> Path:
    """The built-in synthetic world in `path`, made once (default size) and reused when complete."""
    if all((path / name).is_file() for name in REQUIRED_FILES):
        reporter.say(f"  using the synthetic world in {path}")
        return path
    with reporter.step(f"Making the synthetic world in {path}"), progress_bars(reporter.console) as progress:
        write_synthetic_world(path, SyntheticConfig.default(), progress=progress)
    return path


def resolved_config(config_path: Path | None, ablation: bool = False, cv: int | None = None,
                    no_baseline: bool = False, no_refit: bool = False, scheduler: str | None = None) -> TrainConfig:
    """The config `nmu train` runs with: the file (or the defaults) with the command's flags on top."""
    config = apply_flags(load_config(config_path), ablation=ablation, cv=cv, no_baseline=no_baseline, no_refit=no_refit)
    if scheduler is not None:
        config.compute["scheduler"] = scheduler
    return config


def resolve_data(data: Path | None, reporter: Reporter) -> tuple[Path, str]:
    """The data directory of `--data` (None: the built-in synthetic world) and its source label; NmuError when the
    directory does not exist."""
    if data is None:
        return ensure_synthetic_world(DEFAULT_SYNTHETIC_DIR, reporter), "synthetic"
    data_dir = Path(data)
    if not data_dir.is_dir():
        raise NmuError(f"data directory {data_dir} {why_not_there(data_dir, 'directory')}; make one with `nmu data "
                       "synthetic` or `nmu data download`.")
    return data_dir, "synthetic" if read_data_info(data_dir)["source"] == "synthetic" else str(data_dir)


def estimate(config: TrainConfig, data_dir: Path, reporter: Reporter, details: bool = False) -> None:
    """The plan of the run (training.plan): one line of its estimate (every line with `details`); NmuError before
    any data is loaded when the estimated peak memory exceeds what is available."""
    from training.plan import DataShape, check_memory, make_plan  # noqa: PLC0415 - only when a run starts

    shape = DataShape(data_dir, config.target)
    try:
        plan = make_plan(config, data_dir, shape)
    except NmuError:
        if details:
            raise
        return  # a problem of the data: loading it names the problem in its own words
    for line in plan.lines() if details else [plan.summary()]:
        reporter.say(line)
    check_memory(plan, config, shape)


def plan_command(data: Path | None, config_path: Path | None, ablation: bool = False, cv: int | None = None,
                 no_baseline: bool = False, no_refit: bool = False, console: Any = None,
                 scheduler: str | None = None) -> None:
    """`nmu train --plan`: print what the run would do and its estimated peak memory and time, fitting nothing;
    NmuError (exit 2) when the estimate exceeds the memory available."""
    config = resolved_config(config_path, ablation=ablation, cv=cv, no_baseline=no_baseline, no_refit=no_refit,
                             scheduler=scheduler)
    check_config(config, config_source(config_path))
    # as `nmu train` checks it, before any data is read
    check_scheduler(config.compute.get("scheduler"), scheduler_setting(scheduler, config_source(config_path)))
    reporter = Reporter(console)
    data_dir, _ = resolve_data(data, reporter)
    estimate(config, data_dir, reporter, details=True)


def train_command(
    data: Path | None,
    out: Path,
    config_path: Path | None,
    ablation: bool = False,
    cv: int | None = None,
    no_baseline: bool = False,
    no_refit: bool = False,
    console: Any = None,  # a rich Console to draw on (the CLI's); None: progress lines go to logging
    scheduler: str | None = None,
    track: bool = False,
) -> dict[str, Any]:
    """Run `nmu train` end to end and return metrics.json's content (with `track`, or [tracking] enabled, the run is
    logged to MLflow: training.tracking)."""
    config = resolved_config(config_path, ablation=ablation, cv=cv, no_baseline=no_baseline, no_refit=no_refit,
                             scheduler=scheduler)
    check_config(config, config_source(config_path))  # every setting, before any data is read
    check_scheduler(config.compute.get("scheduler"), scheduler_setting(scheduler, config_source(config_path)))
    track = track or bool(config.tracking.get("enabled"))
    if track:
        from training.tracking import check_tracking  # noqa: PLC0415 - the optional extra

        check_tracking(config, config_source(config_path))
    out = Path(out)
    check_out_dir(out)
    reporter = Reporter(console)
    data_dir, source = resolve_data(data, reporter)
    estimate(config, data_dir, reporter)  # one line, or NmuError when the run would not fit in memory
    ds = load_dataset(data_dir, source, config, reporter)
    executor = make_executor(config.compute.get("scheduler"))
    try:
        result = run_experiment(config, ds, reporter, executor)
    finally:
        executor.close()
    with reporter.step(f"Writing model.pkl, manifest, metrics and report into {out}"):
        write_artifacts(out, ds, config, result, reporter.timings)
    reporter.scores_table(result.models)
    if track:
        from training.tracking import log_train_run  # noqa: PLC0415 - the optional extra

        with reporter.step("Logging the run to MLflow"):
            log_train_run(out, config, result.metrics)
    return result.metrics
