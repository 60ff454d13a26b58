"""`nmu train`: load and validate the data, fit the variants, score them on embargoed validation eras, refit the
shipped model, and write model.pkl, manifest.json, metrics.json, per-era scores and report.html.

Every output is first written into a staging directory beside OUT and moved in only once everything has
succeeded, so a failed run leaves the previous artifacts intact.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from model import COMPONENTS, NumeraiModel
from training.config import TrainConfig, apply_flags, config_to_toml, load_config, resolve_feature_set_name
from training.data import REQUIRED_FILES, read_data_info, benchmark_column, feature_groups, load_benchmark, load_feature_metadata, load_frame, resolve_feature_set
from training.export import export_pickle
from validation.errors import NmuError
from validation.artifacts import atomic_write_bytes, atomic_write_json, atomic_write_text
from validation.artifacts import update_manifest
from validation.schemas import validate_benchmark_frame, validate_training_frame
from validation.evaluation.scoring import score_eras, summarize
from validation.evaluation.splits import EraSplit, embargo_split, expanding_window_folds

DEFAULT_SYNTHETIC_DIR = Path("data") / "synthetic"
_PACKAGES = ("numpy", "pandas", "scipy", "lightgbm", "scikit-learn", "pyarrow", "cloudpickle", "numerai-tools", "pandera")
_OPTIONAL_OUTPUTS = ("cv_scores.csv",)


# --------------------------------------------------------------------------------------------- progress
class Reporter:
    """Steps on screen with their time, and a progress bar for boosting rounds (a LightGBM callback)."""

    def __init__(self, console: Optional[Console] = None):
        self.console = console or Console(stderr=True)
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        """Print a step, run it, print its time (or that it failed)."""
        self.console.print(f"[bold cyan]→[/bold cyan] {title} …", highlight=False)
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            self.console.print(f"[bold red]✗[/bold red] {title} failed after {time.perf_counter() - start:.1f} s", highlight=False)
            raise
        elapsed = time.perf_counter() - start
        self.timings[title] = round(elapsed, 2)
        self.console.print(f"[bold green]✓[/bold green] {title} [dim]({elapsed:.1f} s)[/dim]", highlight=False)

    @contextlib.contextmanager
    def boosting(self, title: str) -> Iterator[Callable[[Any], None]]:
        """A LightGBM callback that moves a progress bar; the total comes from the first call."""
        progress = Progress(
            TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), console=self.console, transient=True,
        )
        task = progress.add_task(title, total=None)

        def callback(env: Any) -> None:
            total = env.end_iteration - env.begin_iteration
            done = env.iteration - env.begin_iteration + 1
            progress.update(task, total=total, completed=done)

        callback.order = 100  # type: ignore[attr-defined]  # after LightGBM's own callbacks
        with progress:
            yield callback


# --------------------------------------------------------------------------------------------- data
@dataclass
class Dataset:
    """What the fits need: frames, the feature list and groups, the target, benchmarks, and where it came from."""

    data_dir: Path
    source: str
    version: str
    feature_set: str
    features: list[str]
    groups: dict[str, list[str]]
    target: str
    train: pd.DataFrame
    validation: pd.DataFrame
    train_benchmark: Optional[pd.DataFrame]
    validation_benchmark: Optional[pd.DataFrame]
    benchmark_column: Optional[str]
    split: EraSplit = field(default=None)  # type: ignore[assignment]


def ensure_synthetic_world(path: Path, reporter: Reporter) -> Path:
    """The built-in synthetic world in `path`, made once (default size) and reused when complete."""
    if all((path / name).is_file() for name in REQUIRED_FILES):
        reporter.console.print(f"  using the synthetic world in {path}", highlight=False)
        return path
    from training.synthetic import SyntheticConfig, write_synthetic_world

    with reporter.step(f"Making the synthetic world in {path}"):
        write_synthetic_world(path, SyntheticConfig.default(), progress=True)
    return path


def _check_target(metadata: dict[str, Any], target: str, data_dir: Path) -> None:
    """NmuError when features.json lists no targets or not this one."""
    targets = [str(t) for t in metadata.get("targets") or []]
    if not targets:
        raise NmuError(f"{data_dir / 'features.json'} lists no targets, so there is nothing to train on.")
    if target not in targets:
        shown = ", ".join(targets[:12]) + (", ..." if len(targets) > 12 else "")
        raise NmuError(f"unknown target {target!r}: {data_dir / 'features.json'} lists {shown}.")


def _resolved_rows(frame: pd.DataFrame, target: str) -> pd.DataFrame:
    """Rows whose target is known."""
    return frame.loc[frame[target].notna().to_numpy()]


def load_dataset(data_dir: Path, source: str, config: TrainConfig, reporter: Reporter) -> Dataset:
    """Load only the needed columns, validate them with the schemas, and split eras with the embargo."""
    with reporter.step("Loading data"):
        metadata = load_feature_metadata(data_dir)
        feature_set = resolve_feature_set_name(config.feature_set, metadata)
        features = resolve_feature_set(metadata, feature_set)
        _check_target(metadata, config.target, data_dir)
        target = config.target
        for name in ("train.parquet", "validation.parquet"):
            if not (data_dir / name).is_file():
                raise NmuError(f"{data_dir / name} is missing; a data directory needs train.parquet and validation.parquet.")
        train = load_frame(data_dir / "train.parquet", features, targets=(target,), era_step=config.era_step)
        validation = load_frame(data_dir / "validation.parquet", features, targets=(target,))
        reporter.console.print(
            f"  {len(features)} features ({feature_set}), target {target}; train {len(train):,} rows / "
            f"{train['era'].nunique()} eras{f' (every {config.era_step}th)' if config.era_step > 1 else ''}, validation {len(validation):,} rows / "
            f"{validation['era'].nunique()} eras", highlight=False,
        )

    with reporter.step("Validating data"):
        # The main target is complete but for the newest validation eras; auxiliary targets have gaps anywhere.
        main = target == "target"
        validate_training_frame(train, features, target, source=str(data_dir / "train.parquet"),
                                allow_unresolved=False if main else "anywhere")
        validate_training_frame(validation, features, target, source=str(data_dir / "validation.parquet"),
                                allow_unresolved=True if main else "anywhere")
        train = _resolved_rows(train, target)
        if train.empty:
            raise NmuError(f"{data_dir / 'train.parquet'} has no resolved values of target {target!r}; pick another target.")
        scored = _resolved_rows(validation, target)
        if scored.empty:
            raise NmuError(f"{data_dir / 'validation.parquet'} has no resolved values of target {target!r}, so nothing can be scored.")
        split = embargo_split(sorted(train["era"].unique()), sorted(scored["era"].unique()), config.resolved_embargo)
        train_bench = val_bench = None
        column = None
        val_path = data_dir / "validation_benchmark_models.parquet"
        if val_path.is_file():
            val_bench = validate_benchmark_frame(load_benchmark(val_path), source=str(val_path))
            column = benchmark_column(val_bench)
        train_path = data_dir / "train_benchmark_models.parquet"
        if train_path.is_file():
            train_bench = validate_benchmark_frame(load_benchmark(train_path, eras=split.train), source=str(train_path))
        reporter.console.print(
            f"  fit on eras {split.train[0]}–{split.train[-1]}; embargo {config.resolved_embargo} eras drops "
            f"{len(split.embargoed)}; scoring {len(split.validation)} eras {split.validation[0]}–{split.validation[-1]}"
            + (f"; BMC against {column}" if column else "; no benchmark file, BMC left empty"), highlight=False,
        )

    return Dataset(
        data_dir=data_dir, source=source, version=read_data_info(data_dir)["version"], feature_set=feature_set, features=features,
        groups=feature_groups(metadata, features), target=target, train=train, validation=validation,
        train_benchmark=train_bench, validation_benchmark=val_bench, benchmark_column=column, split=split,
    )


# --------------------------------------------------------------------------------------------- models
def components() -> tuple[str, ...]:
    """The estimator's components (model.COMPONENTS)."""
    return tuple(COMPONENTS)


def variant_names(config: TrainConfig) -> list[str]:
    """Variants to fit and score: baseline (unless disabled), full, and with ablation one no_<component> per
    component the config leaves switched on."""
    names = (["baseline"] if config.baseline else []) + ["full"]
    if config.ablation:
        names += [f"no_{c}" for c in components() if config.components.get(c, True) is not False]
    return names


def make_variant(base: Any, name: str, config: TrainConfig) -> Any:
    """An unfitted variant of the base model; a component the config switches off stays off in every variant."""
    model = base.variant(name)
    off = {c: False for c in components() if config.components.get(c, True) is False}
    return model.set_params(**off) if off else model


def check_model_settings(config: TrainConfig) -> dict[str, Any]:
    """NmuError naming a [components] key that is not a NumeraiModel parameter; returns the model's defaults."""
    known = NumeraiModel().get_params()
    for key in config.components:
        if key not in known or key in ("feature_groups", "lgbm_params"):
            choices = ", ".join(sorted(k for k in known if k not in ("feature_groups", "lgbm_params")))
            raise NmuError(f"config table `components`: `{key}` is not a NumeraiModel setting; known: {choices}.")
    return known


def build_model(config: TrainConfig, groups: dict[str, list[str]]) -> Any:
    """The base NumeraiModel of this config: feature groups, seed, the components table as parameters, and the
    lightgbm table merged over the estimator's LightGBM defaults (scikit-learn style names accepted); train_command checks the components table first."""
    kwargs: dict[str, Any] = {"feature_groups": groups, "random_state": config.seed, **config.components}
    kwargs["lgbm_params"] = dict(config.lightgbm) or None
    return NumeraiModel(**kwargs)


def _fit_kwargs(model: Any, callback: Callable[[Any], None]) -> dict[str, Any]:
    """Pass the progress callback when the estimator's fit accepts LightGBM callbacks."""
    params = inspect.signature(model.fit).parameters
    return {"callbacks": [callback]} if "callbacks" in params else {}


def _benchmark_for(frame: pd.DataFrame, *benchmarks: Optional[pd.DataFrame]) -> Optional[pd.DataFrame]:
    """Benchmark rows for `frame`'s ids (the float columns), or None when the files do not cover them all."""
    parts = [b for b in benchmarks if b is not None]
    if not parts:
        return None
    bench = pd.concat(parts) if len(parts) > 1 else parts[0]
    bench = bench[[c for c in bench.columns if c not in ("era", "data_type")]]
    bench = bench[~bench.index.duplicated()].reindex(frame.index)
    if bench.isna().all(axis=1).any():
        return None
    return bench


def fit_model(model: Any, frame: pd.DataFrame, ds: Dataset, reporter: Reporter, title: str,
              benchmark: Optional[pd.DataFrame]) -> Any:
    """Fit one estimator on `frame` (era + features → target) with a boosting-round progress bar."""
    X = frame[["era", *ds.features]]
    y = frame[ds.target].to_numpy(dtype=np.float32)
    with reporter.boosting(title) as callback:
        model.fit(X, y, benchmark=benchmark, **_fit_kwargs(model, callback))
    return model


def refresh_history(model: Any, frame: pd.DataFrame, ds: Dataset) -> None:
    """Give a fitted model the resolved targets of eras after its training data (NumeraiModel's
    `update_factor_returns`), as the weekly live model has them: its timing features stay point-in-time
    (era t only uses targets of eras at least `timing_lag` before t), so this is no look-ahead."""
    update = getattr(model, "update_factor_returns", None)
    if update is None or frame.empty:
        return
    update(frame[["era", *ds.features]], frame[ds.target].to_numpy(dtype=np.float32))


def score_model(model: Any, frame: pd.DataFrame, ds: Dataset, predict_benchmark: Optional[pd.DataFrame],
                bmc_benchmark: Optional[pd.DataFrame]) -> pd.DataFrame:
    """Per-era scores of a fitted model's predictions on `frame` (eras with a resolved target): the model sees
    `predict_benchmark`; BMC is measured against `bmc_benchmark`'s benchmark column."""
    preds = np.asarray(model.predict(frame[["era", *ds.features]], benchmark=predict_benchmark), dtype=np.float64)
    if preds.shape != (len(frame),) or not np.isfinite(preds).all():
        raise RuntimeError(f"the model returned {preds.shape} predictions (all finite: {np.isfinite(preds).all()}) for {len(frame)} rows")
    column = ds.benchmark_column
    reference = bmc_benchmark[column] if bmc_benchmark is not None and column in bmc_benchmark else None
    return score_eras(preds, frame, ds.target, ds.features, benchmark=reference)


# --------------------------------------------------------------------------------------------- outputs
def _packages() -> dict[str, str]:
    """Versions of the packages that built the model."""
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def export_model(fitted: Any, path: Path) -> dict[str, Any]:
    """Write the pickle with training.export.export_pickle; returns its size and sha256."""
    info = export_pickle(fitted, path)
    return {"size_bytes": int(info["size_bytes"]), "sha256": str(info["sha256"])}


def _move_into(staging: Path, out: Path, first: tuple[str, ...]) -> None:
    """Move every staged file into OUT (each an atomic rename), the pickle and manifest first."""
    out.mkdir(parents=True, exist_ok=True)
    names = sorted(p.name for p in staging.iterdir() if p.is_file())
    for name in [n for n in first if n in names] + [n for n in names if n not in first]:
        os.replace(staging / name, out / name)


@contextlib.contextmanager
def staging_dir(out: Path) -> Iterator[Path]:
    """A temporary directory in OUT's parent (same file system, so moves are renames); removed afterwards."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------------------------- the command
def train_command(
    data: Optional[Path],
    out: Path,
    config_path: Optional[Path],
    ablation: bool = False,
    cv: Optional[int] = None,
    no_baseline: bool = False,
    no_refit: bool = False,
    print_config: bool = False,
    console: Optional[Console] = None,
) -> dict[str, Any]:
    """Run `nmu train` end to end and return metrics.json's content (None-free keys as DESIGN.md says)."""
    config = apply_flags(load_config(config_path), ablation=ablation, cv=cv, no_baseline=no_baseline, no_refit=no_refit)
    if print_config:
        print(config_to_toml(config), end="")
        return {}
    check_model_settings(config)
    reporter = Reporter(console)
    out = Path(out)
    if data is None:
        data_dir, source = ensure_synthetic_world(DEFAULT_SYNTHETIC_DIR, reporter), "synthetic"
    else:
        data_dir = Path(data)
        if not data_dir.is_dir():
            raise NmuError(f"data directory {data_dir} does not exist; make one with `nmu data synthetic` or `nmu data download`.")
        source = "synthetic" if read_data_info(data_dir)["source"] == "synthetic" else str(data_dir)
    ds = load_dataset(data_dir, source, config, reporter)
    base = build_model(config, ds.groups)

    split = ds.split
    train = ds.train
    resolved_validation = _resolved_rows(ds.validation, ds.target)  # every era, embargoed ones too
    scored = resolved_validation.loc[resolved_validation["era"].isin(split.validation).to_numpy()]
    fit_bench = _benchmark_for(train, ds.train_benchmark)
    val_bench = _benchmark_for(scored, ds.validation_benchmark)
    # the model sees benchmark predictions at validation only if it saw them in training (as it will live)
    val_bench_predict = val_bench if fit_bench is not None else None
    if fit_bench is None and val_bench is not None:
        reporter.console.print("  no benchmark for the training eras: the models fit and predict without it", highlight=False)

    per_era_parts = []
    models: dict[str, dict[str, Any]] = {}
    fitted: dict[str, Any] = {}
    for name in variant_names(config):
        with reporter.step(f"Fitting and scoring {name}"):
            model = fit_model(make_variant(base, name, config), train, ds, reporter, f"{name}: boosting rounds", fit_bench)
            refresh_history(model, resolved_validation, ds)
            per_era = score_model(model, scored, ds, val_bench_predict, val_bench)
            models[name] = summarize(per_era)
            per_era_parts.append(per_era.reset_index().assign(variant=name))
            fitted[name] = model
            s = models[name]
            reporter.console.print(
                f"  {name}: corr_mean {_f(s['corr_mean'])}, sharpe {_f(s['corr_sharpe'])}, bmc_mean {_f(s['bmc_mean'])}, "
                f"feature exposure {_f(s['feature_exposure_max'])}", highlight=False,
            )
    per_era_all = pd.concat(per_era_parts, ignore_index=True)[["variant", "era", "corr", "bmc", "feature_exposure"]]

    cv_table = None
    if config.cv:
        cv_table = run_cv(config, ds, base, reporter)

    refit_eras = split.train
    shipped = fitted["full"]
    if config.refit:
        with reporter.step("Refitting full on every era with a resolved target (train + validation)"):
            extra = resolved_validation
            kept = sorted(extra["era"].unique())[:: config.era_step]  # the same era downsampling as training
            everything = pd.concat([train, extra.loc[extra["era"].isin(kept).to_numpy()]])
            del extra
            bench = _benchmark_for(everything, ds.train_benchmark, ds.validation_benchmark) if fit_bench is not None else None
            shipped = fit_model(make_variant(base, "full", config), everything, ds, reporter, "refit: boosting rounds", bench)
            refit_eras = sorted(everything["era"].unique())

    metrics = {
        "data": {
            "train_eras": len(split.train), "validation_eras": len(split.validation), "features": len(ds.features),
            "target": ds.target, "embargo_eras": config.resolved_embargo,
        },
        "models": models,
    }

    with reporter.step(f"Writing model.pkl, manifest, metrics and report into {out}"):
        with staging_dir(out) as stage:
            pkl = stage / "model.pkl"
            info = export_model(shipped, pkl)
            from validation.evaluation.report import render_html, render_plots

            plots = render_plots(per_era_all, models)
            for plot_name, png in plots.items():
                atomic_write_bytes(stage / f"{plot_name}.png", png)
            notes = {"data": f"{ds.source} (data {ds.version})", "feature set": ds.feature_set,
                     "shipped model": "full, refit on train + validation eras" if config.refit else "full, fit on train eras"}
            atomic_write_text(stage / "report.html", render_html(metrics, plots, cv=cv_table, notes=notes))
            atomic_write_json(stage / "metrics.json", metrics)
            atomic_write_text(stage / "per_era_scores.csv", per_era_all.to_csv(index=False))
            if cv_table is not None:
                atomic_write_text(stage / "cv_scores.csv", cv_table.to_csv(index=False))
            atomic_write_text(stage / "config.toml", config_to_toml(config))
            manifest = {
                "pickle": {"file": "model.pkl", **info},
                "python": platform.python_version(),
                "packages": _packages(),
                "data": {"source": ds.source, "version": ds.version},
                "features": ds.features,
                "target": ds.target,
                "feature_set": ds.feature_set,
                "eras": {"train": split.train, "validation": split.validation, "embargoed": split.embargoed, "refit": refit_eras},
                "scores": models,
                "timings": reporter.timings,
            }
            if cv_table is not None:
                manifest["cv"] = cv_table.to_dict(orient="records")
            update_manifest(pkl, **manifest)
            _move_into(stage, out, first=("model.pkl", "manifest.json"))
            for name in _OPTIONAL_OUTPUTS:
                if cv_table is None and (out / name).exists():
                    (out / name).unlink()
    _summary_table(reporter, models)
    return metrics


def run_cv(config: TrainConfig, ds: Dataset, base: Any, reporter: Reporter) -> pd.DataFrame:
    """Expanding-window CV on the training eras with the same embargo: one row per fold and variant."""
    folds = expanding_window_folds(ds.split.train, config.cv, config.resolved_embargo)
    rows = []
    names = (["baseline"] if config.baseline else []) + ["full"]
    eras = ds.train["era"].to_numpy()
    for i, fold in enumerate(folds, start=1):
        fit_rows = ds.train.loc[np.isin(eras, fold.train)]
        test_rows = ds.train.loc[np.isin(eras, fold.validation)]
        later_rows = ds.train.loc[np.isin(eras, fold.embargoed + fold.validation)]
        fit_bench = _benchmark_for(fit_rows, ds.train_benchmark)
        test_bench = _benchmark_for(test_rows, ds.train_benchmark)
        for name in names:
            with reporter.step(f"CV fold {i}/{len(folds)}: {name}"):
                model = fit_model(make_variant(base, name, config), fit_rows, ds, reporter, f"fold {i} {name}", fit_bench)
                refresh_history(model, later_rows, ds)
                summary = summarize(score_model(model, test_rows, ds, test_bench, test_bench))
            rows.append({"fold": i, "variant": name, "train_first": fold.train[0], "train_last": fold.train[-1],
                         "scored_first": fold.validation[0], "scored_last": fold.validation[-1], **summary})
    return pd.DataFrame(rows)


def _f(value: Optional[float]) -> str:
    """A score for the screen."""
    return "–" if value is None else f"{value:+.4f}"


def _summary_table(reporter: Reporter, models: dict[str, dict[str, Any]]) -> None:
    """The variants' headline scores as a rich table."""
    table = Table(title="validation scores (after the embargo)")
    keys = ("corr_mean", "corr_sharpe", "max_drawdown", "bmc_mean", "feature_exposure_max", "n_eras")
    table.add_column("variant")
    for key in keys:
        table.add_column(key, justify="right")
    for name, scores in models.items():
        table.add_row(name, *(str(scores[k]) if k == "n_eras" else _f(scores[k]) for k in keys))
    reporter.console.print(table)
