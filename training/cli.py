"""The `nmu` command line: data, train, predict, check, upload. Thin: each command parses its options and
calls one function of the package; a user-fixable problem (NmuError) is printed and exits 2."""

from __future__ import annotations

import errno
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import typer
from rich.console import Console

from validation.errors import DataValidationError, NmuError

F = TypeVar("F", bound=Callable[..., object])

console = Console(stderr=True)
app = typer.Typer(
    help="Train a Numerai model, prove its pickle runs in Numerai's runtime, and upload it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Get data in Numerai's layout: download it, or make the synthetic world.", no_args_is_help=True)
app.add_typer(data_app, name="data", short_help="Get data: download Numerai's, or make the synthetic world.")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("numerai-uploads")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def _print_error(exc: NmuError) -> None:
    console.print("[bold red]error:[/bold red] ", end="", highlight=False)
    console.print(str(exc), highlight=False, markup=False, soft_wrap=True)
    if isinstance(exc, DataValidationError):
        console.print(exc.table(), highlight=False, markup=False, soft_wrap=True)


_FILE_SYSTEM_CAUSES = {
    errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up", errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied", errno.EPERM: "the operation is not permitted",
    errno.ENOTDIR: "a file stands where a directory is needed", errno.EEXIST: "a file stands where a directory is needed",
    errno.EISDIR: "it is a directory", errno.EBUSY: "it is in use (a mount point?)",
}


def file_system_refusal(exc: OSError) -> NmuError | None:
    """One sentence for a file or directory the file system refused (full, read-only, no permission, a file in the
    way), naming the path; None for any other OSError (a defect, shown with its traceback)."""
    cause = _FILE_SYSTEM_CAUSES.get(exc.errno)
    if cause is None or not exc.filename:
        return None
    return NmuError(f"the file system refused {exc.filename}: {cause} ({exc.strerror}).")


def user_errors(func: F) -> F:
    """Show the library's progress lines; turn an NmuError into its message (and failure table) on stderr and its
    exit code (2 for input to fix, 1 when Numerai's run of an upload failed), never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from training.console import show_progress_lines

        try:
            with show_progress_lines(console):
                return func(*args, **kwargs)
        except NmuError as exc:
            _print_error(exc)
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:
            refused = file_system_refusal(exc)
            if refused is None:
                raise
            _print_error(refused)
            raise typer.Exit(refused.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _print_version(value: bool) -> None:
    """`nmu --version`: an eager option callback, so it answers before click asks for a command."""
    if value:
        typer.echo(f"nmu (numerai-uploads) {_version()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", is_eager=True, callback=_print_version
    ),
) -> None:
    """Train a Numerai model, prove its pickle runs in Numerai's runtime, and upload it."""


@data_app.command("synthetic")
@user_errors
def data_synthetic(
    out: Path = typer.Option(..., "--out", help="Directory to write the data into."),
    eras: int | None = typer.Option(None, "--eras", help="Train + validation eras (live is one more). \\[default: 400]"),
    stocks: int | None = typer.Option(None, "--stocks", help="Stocks per era. \\[default: 2000]"),
    features: int | None = typer.Option(None, "--features", help="Number of features. \\[default: 120]"),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same files."),
    no_effects: bool = typer.Option(False, "--no-effects", help="A control world: no planted effects for the components."),
) -> None:
    """Write the built-in synthetic world in Numerai's layout."""
    from training.console import progress_bars
    from training.synthetic import SyntheticConfig, write_synthetic_world

    config = SyntheticConfig.default(eras=eras, stocks=stocks, features=features, seed=seed, planted=not no_effects)
    with progress_bars(console) as progress:
        write_synthetic_world(out, config, progress=progress)


@data_app.command("download")
@user_errors
def data_download(
    out: Path = typer.Option(..., "--out", help="Directory to write the data into."),
    version: str | None = typer.Option(None, "--version", help="Numerai data version, e.g. v5.3. \\[default: the newest]"),
) -> None:
    """Download a data version's files from Numerai with numerapi."""
    from training.console import progress_bars
    from training.download import download_data

    with progress_bars(console) as progress:
        download_data(out, version=version, progress=progress)


def _data_option() -> typer.models.OptionInfo:
    return typer.Option(None, "--data", help="Data directory; default: the synthetic world in data/synthetic.")


def _scheduler_option(fits: str) -> typer.models.OptionInfo:
    return typer.Option(None, "--scheduler", help=f"Run {fits} on a Dask cluster: tcp://HOST:PORT, or local:N workers.")


def _track_option(what: str) -> typer.models.OptionInfo:
    return typer.Option(False, "--track", help=f"Log {what} to MLflow (MLFLOW_TRACKING_URI, else OUT/mlruns.db); needs "
                                               "the \\[tracking] extra.")


@app.command("train", short_help="Fit, score and write model.pkl, metrics and a report.")
@user_errors
def train(
    data: Path | None = _data_option(),
    out: Path = typer.Option(Path("artifacts"), "--out", help="Output directory."),
    config: Path | None = typer.Option(None, "--config", help="TOML config file."),
    ablation: bool = typer.Option(False, "--ablation", help="Also fit one variant without each component."),
    cv: int | None = typer.Option(None, "--cv", help="Add an era-wise expanding-window CV with K folds on the train eras."),
    no_baseline: bool = typer.Option(False, "--no-baseline", help="Skip the baseline variant."),
    no_refit: bool = typer.Option(False, "--no-refit", help="Ship the model fitted on train eras only."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config and exit."),
    plan: bool = typer.Option(
        False, "--plan", help="Print what the run would do (rows, columns, fits) and its estimated peak memory and "
                              "time on this machine, fit nothing; exit 2 if it would not fit in memory."),
    scheduler: str | None = _scheduler_option("the independent fits"),
    track: bool = _track_option("the run"),
) -> None:
    """Fit baseline and full, score them on validation eras, and write model.pkl, metrics and a report."""
    from training.pipeline import plan_command, resolved_config, train_command

    if print_config:
        from training.config import check_config, config_source, config_to_toml
        from training.executor import check_scheduler, scheduler_setting

        resolved = resolved_config(config, ablation=ablation, cv=cv, no_baseline=no_baseline, no_refit=no_refit,
                                   scheduler=scheduler)
        check_config(resolved, config_source(config))  # what `nmu train` would refuse is not printed as a config
        check_scheduler(resolved.compute.get("scheduler"), scheduler_setting(scheduler, config_source(config)))
        typer.echo(config_to_toml(resolved), nl=False)
        return
    if plan:
        plan_command(data=data, config_path=config, ablation=ablation, cv=cv, no_baseline=no_baseline,
                     no_refit=no_refit, scheduler=scheduler, console=console)
        return
    train_command(
        data=data, out=out, config_path=config, ablation=ablation, cv=cv,
        no_baseline=no_baseline, no_refit=no_refit, scheduler=scheduler, track=track, console=console,
    )


@app.command("tune", short_help="Tune the config with Optuna on the train eras; write the best.")
@user_errors
def tune(
    data: Path | None = _data_option(),
    out: Path = typer.Option(Path("tune"), "--out", help="Output directory (best_config.toml, tune_report.html, tune.db)."),
    config: Path | None = typer.Option(None, "--config", help="TOML config file; its \\[tune] table is the search space."),
    trials: int = typer.Option(20, "--trials", help="Finished (complete or pruned) trials the study should hold."),
    timeout: float | None = typer.Option(
        None, "--timeout", help="Seconds after which no new trial starts (trials in flight finish)."),
    study: str = typer.Option("nmu-tune", "--study", help="Study name; the same name in the same storage resumes it."),
    storage: str | None = typer.Option(
        None, "--storage", help="Optuna storage URL (sqlite:///PATH, postgresql://...); default: sqlite:///OUT/tune.db."),
    scheduler: str | None = _scheduler_option("the trials' fits"),
    track: bool = _track_option("the study"),
) -> None:
    """Tune the config on the train eras' folds (Optuna, pruned fold by fold), write best_config.toml and a report
    that scores the default and the tuned config on the validation report eras, after the choice."""
    from training.tune import tune_command

    tune_command(data=data, out=out, config_path=config, trials=trials, timeout=timeout, study_name=study,
                 storage=storage, scheduler=scheduler, track=track, console=console)


@app.command("predict", short_help="Run a pickle on the live era and write id,prediction CSV.")
@user_errors
def predict(
    model_path: Path = typer.Argument(..., metavar="MODEL.pkl", help="The pickle to run."),
    data: Path = typer.Option(..., "--data", help="Data directory with live.parquet and live_benchmark_models.parquet."),
    out: Path | None = typer.Option(None, "--out", help="CSV to write; default: predictions.csv beside the pickle."),
) -> None:
    """Run a pickle on the live era in this process and write id,prediction CSV."""
    from training.predict import predict_command

    for line in predict_command(model_path, data, out).lines():
        typer.echo(line)


@app.command("check", short_help="Run a pickle in a replica of Numerai's runtime.")
@user_errors
def check(
    model_path: Path = typer.Argument(..., metavar="MODEL.pkl", help="The pickle to check."),
    data: Path | None = typer.Option(None, "--data", help="Data directory; default: data/synthetic."),
    validation_eras: int = typer.Option(50, "--validation-eras", min=0,
                                        help="Eras of validation to run as a diagnostics run (0: none)."),
    record: Path | None = typer.Option(
        None, "--record", help="Write the check record here (default: the pickle's manifest, when it has one)."),
) -> None:
    """Run a pickle in a replica of Numerai's runtime (1 CPU, 4 GB, 10 minutes, pinned packages)."""
    from training.check import check_command

    result = check_command(model_path, data, validation_eras=validation_eras, record=record)
    for line in result.lines():
        typer.echo(line)
    raise typer.Exit(0 if result.passed else 1)


@app.command("upload", short_help="Upload a checked pickle; Numerai validates it; assign it.")
@user_errors
def upload(
    model_path: Path = typer.Argument(..., metavar="MODEL.pkl", help="The pickle to upload."),
    model: str = typer.Option(..., "--model", help="Name of your Numerai model."),
    data_version: str | None = typer.Option(
        None, "--data-version", help="Data version the pickle expects. \\[default: the one it was trained on]"),
    docker_image: str = typer.Option(
        "auto", "--docker-image", help="Runtime image; auto: the image of the Python that built the pickle."),
    skip_check: bool = typer.Option(False, "--skip-check", help="Upload even if this pickle has not passed `nmu check`."),
    wait: bool = typer.Option(
        True, "--wait/--no-wait",
        help="Wait for Numerai's validation, then assign the pickle to the model; --no-wait stops after the upload "
             "(the pickle is then NOT assigned)."),
    timeout: float | None = typer.Option(
        None, "--timeout", min=0, help="Seconds to wait for Numerai's validation. \\[default: 2700, 45 minutes]"),
    poll_interval: float | None = typer.Option(
        None, "--poll-interval", min=0, help="Seconds between two reads of the validation status. \\[default: 15]"),
    force: bool = typer.Option(False, "--force", help="Upload even when the model already runs these bytes."),
    create_model: bool = typer.Option(False, "--create-model", help="Create the model slot first if you have none so named."),
) -> None:
    """Upload a checked pickle, wait for Numerai to validate it, and make it the pickle your model runs."""
    from training.upload import describe, upload_command

    waiting = {k: v for k, v in (("timeout", timeout), ("poll_interval", poll_interval)) if v is not None}
    result = upload_command(model_path, model_name=model, data_version=data_version, docker_image=docker_image,
                            skip_check=skip_check, wait=wait, force=force, create_model=create_model, **waiting)
    typer.echo(describe(result))


@app.command("refresh", short_help="Keep an uploaded model current: new resolved eras, check, upload.")
@user_errors
def refresh(
    model_path: Path = typer.Argument(..., metavar="MODEL.pkl", help="The pickle to refresh (from nmu train)."),
    data: Path | None = typer.Option(None, "--data", help="Data directory with the newest validation.parquet."),
    download: bool = typer.Option(
        False, "--download",
        help="Download the newest eras first, of the data version the pickle was trained on (into --data, or data/numerai)."),
    upload: bool = typer.Option(False, "--upload", help="Upload the refreshed pickle when it passes the check."),
    model: str | None = typer.Option(None, "--model", help="Name of your Numerai model (with --upload)."),
    refit: bool = typer.Option(False, "--refit", help="Retrain on the newest data; replace only if not worse."),
    validation_eras: int = typer.Option(50, "--validation-eras", min=0, help="Eras of the diagnostics run of the check."),
    upload_timeout: float | None = typer.Option(
        None, "--upload-timeout", min=0,
        help="With --upload: seconds to wait for Numerai's validation. \\[default: 2700, 45 minutes]"),
    poll_interval: float | None = typer.Option(
        None, "--poll-interval", min=0, help="With --upload: seconds between two reads of the validation status."),
) -> None:
    """Keep an uploaded model current: new resolved eras extend its timing history (same trees), or --refit."""
    from training.refresh import refresh_command

    waiting = {k: v for k, v in (("timeout", upload_timeout), ("poll_interval", poll_interval)) if v is not None}
    from training.console import Reporter

    refresh_command(model_path, data=data, download=download, upload=upload, model_name=model, refit=refit,
                    reporter=Reporter(console),
                    validation_eras=validation_eras, upload_options=waiting)


@app.command("status", short_help="What Numerai runs for a model, whether it submits, what to do.")
@user_errors
def status(
    model: str = typer.Option(..., "--model", help="Name of your Numerai model."),
    pickle: Path | None = typer.Option(
        None, "--pickle", help="The uploaded pickle's local path (default: artifacts/model.pkl) for its manifest."),
) -> None:
    """One look: the pickle Numerai runs and its latest runs, this round's submission, scores, and what to do."""
    from training.status import status_command, status_lines

    for line in status_lines(status_command(model, pickle_path=pickle)):
        typer.echo(line)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="nmu")


if __name__ == "__main__":
    sys.exit(main())
