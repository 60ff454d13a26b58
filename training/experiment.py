"""The experiment behind `nmu train`, as plain steps without console or files: load and validate the data
(`load_dataset`), fit the variants and score them on the embargoed validation eras, cross-validate, refit the shipped
model (`run_experiment`). `training.pipeline` puts them together with the console and the artifacts.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from model import COMPONENTS, NumeraiModel, TargetEnsemble
from model.eras import sort_eras
from model.live import has_a_number
from model.params import available_cpus
from training.compute import fit_slot
from training.config import ComputeSettings, TrainConfig, config_from_dict, resolve_feature_set_name
from training.console import Reporter, Silent, fmt_score, ordinal, quiet
from training.data import (
    benchmark_column,
    check_eras,
    feature_groups,
    load_benchmark,
    load_feature_metadata,
    load_frame,
    read_data_info,
    resolve_feature_set,
)
from training.executor import InProcess, worker_threads
from validation.errors import NmuError
from validation.evaluation.scoring import ensemble_summary, score_eras, summarize
from validation.evaluation.selection import RULE, SHIP_T, VETO_T, choose_variant
from validation.evaluation.splits import EraSplit, embargo_split, expanding_window_folds
from validation.schemas import validate_benchmark_frame, validate_training_frame

MODE_OF_REFRESH = {"never": "left_alone", "weekly": "refreshed"}
"""The validation mode that judges the variants, by the config's `refresh` (how the model will run after upload)."""


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
    train_benchmark: pd.DataFrame | None
    validation_benchmark: pd.DataFrame | None
    benchmark_column: str | None
    split: EraSplit = field(default=None)  # type: ignore[assignment]
    targets: list[str] = field(default_factory=list)  # an ensemble's targets, the main one first ([] or one: none)
    version_from: str = ""  # what told the data version (training.data.read_data_info)

    def X(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The model's input of some rows: `era` and the features."""
        return frame[["era", *self.features]]

    def y(self, frame: pd.DataFrame) -> np.ndarray:
        """The main target of some rows (what is scored)."""
        return frame[self.target].to_numpy(dtype=np.float32)

    def y_fit(self, frame: pd.DataFrame) -> np.ndarray | pd.DataFrame:
        """What the model learns from some rows: the main target, or an ensemble's targets as columns."""
        return frame[self.targets] if len(self.targets) > 1 else self.y(frame)


@dataclass
class ExperimentResult:
    """What `run_experiment` learnt: the scores (metrics.json's content), per-era scores, the CV table and the
    shipped model with the eras it was fitted on."""

    metrics: dict[str, Any]
    per_era: pd.DataFrame
    cv: pd.DataFrame | None
    shipped: NumeraiModel
    shipped_variant: str
    refit_eras: list[str]

    @property
    def models(self) -> dict[str, dict[str, Any]]:
        """metrics.json's "models": each variant's headline scores."""
        return self.metrics["models"]


# ---- data ------------------------------------------------------------------------------------------------------
def _check_target(metadata: dict[str, Any], target: str, data_dir: Path) -> None:
    """NmuError when features.json lists no targets or not this one."""
    targets = [str(t) for t in metadata.get("targets") or []]
    if not targets:
        raise NmuError(f"{data_dir / 'features.json'} lists no targets, so there is nothing to train on.")
    if target not in targets:
        shown = ", ".join(targets[:12]) + (", ..." if len(targets) > 12 else "")
        raise NmuError(f"unknown target {target!r}: {data_dir / 'features.json'} lists {shown}.")


def resolved_rows(frame: pd.DataFrame, target: str) -> pd.DataFrame:
    """Rows whose target is known."""
    return frame.loc[frame[target].notna().to_numpy()]


def _features_without_values(frame: pd.DataFrame, features: list[str]) -> list[str]:
    """The features with no number in any row of the frame, by the pickle's own rule (model.live.has_a_number)."""
    return [f for f in features if not has_a_number(frame[f].to_numpy())]


def _check_shared_ids(data_dir: Path, train: pd.DataFrame, validation: pd.DataFrame) -> None:
    """NmuError when a row id appears in both train.parquet and validation.parquet (ids are one per stock per era)."""
    shared = train.index.intersection(validation.index)
    if len(shared):
        raise NmuError(f"{len(shared)} id(s) appear in both {data_dir / 'train.parquet'} and "
                       f"{data_dir / 'validation.parquet'} (e.g. {', '.join(map(str, shared[:3]))}): ids are one per "
                       "stock per era, so the files overlap; download or generate them again.")


def load_dataset(data_dir: Path, source: str, config: TrainConfig, reporter: Reporter | None = None) -> Dataset:
    """Load only the needed columns, validate them with the schemas, and split eras with the embargo."""
    reporter = reporter or Silent()
    with reporter.step("Loading data"):
        metadata = load_feature_metadata(data_dir)
        feature_set = resolve_feature_set_name(config.feature_set, metadata)
        features = resolve_feature_set(metadata, feature_set)
        for name in config.targets:
            _check_target(metadata, name, data_dir)
        target = config.target
        for name in ("train.parquet", "validation.parquet"):
            if not (data_dir / name).is_file():
                raise NmuError(f"{data_dir / name} is missing; a data directory needs train.parquet and validation.parquet.")
        train = load_frame(data_dir / "train.parquet", features, targets=config.targets, era_step=config.era_step)
        validation = load_frame(data_dir / "validation.parquet", features, targets=config.targets)
        step = f" (every {ordinal(config.era_step)})" if config.era_step > 1 else ""
        reporter.say(f"  {len(features)} features ({feature_set}), target {target}; train {len(train):,} rows / "
                     f"{train['era'].nunique()} eras{step}, validation {len(validation):,} rows / "
                     f"{validation['era'].nunique()} eras")

    with reporter.step("Validating data"):
        # The main target is complete but for the newest validation eras; auxiliary targets have gaps anywhere.
        main = target == "target"
        validate_training_frame(train, features, target, source=str(data_dir / "train.parquet"),
                                allow_unresolved=False if main else "anywhere")
        validate_training_frame(validation, features, target, source=str(data_dir / "validation.parquet"),
                                allow_unresolved=True if main else "anywhere")
        for other in config.targets[1:]:  # an ensemble's auxiliary targets: NaN anywhere (left out of its member)
            for frame, name in ((train, "train.parquet"), (validation, "validation.parquet")):
                validate_training_frame(frame[["era", *features, other]], features, other,
                                        source=str(data_dir / name), allow_unresolved="anywhere")
            if not train[other].notna().any():
                raise NmuError(f"{data_dir / 'train.parquet'} has no value of the auxiliary target {other!r} (NaN in "
                               "every row), so its ensemble member cannot be fitted; leave it out of "
                               "`ensemble.targets`.")
        check_eras(data_dir, np.concatenate([f["era"].unique() for f in (train, validation)]))
        for frame, name in ((train, "train.parquet"), (validation, "validation.parquet")):
            empty = _features_without_values(frame, features)
            if empty:  # LightGBM and the composites train on as if the column were absent: legal, but say so
                reporter.say(f"warning: {len(empty)} feature(s) have no value in {data_dir / name} (NaN in every "
                             f"row): {', '.join(empty[:5])}{', ...' if len(empty) > 5 else ''}; the model cannot use "
                             "them there (the pickle fills them with 2).")
        _check_shared_ids(data_dir, train, validation)
        train = resolved_rows(train, target)
        if train.empty:
            raise NmuError(f"{data_dir / 'train.parquet'} has no resolved values of target {target!r}; pick another target.")
        scored = resolved_rows(validation, target)
        if scored.empty:
            raise NmuError(f"{data_dir / 'validation.parquet'} has no resolved values of target {target!r}, so nothing can be scored.")
        split = embargo_split(train["era"].unique(), scored["era"].unique(), config.resolved_embargo)
        train_bench = val_bench = None
        column = None
        val_path = data_dir / "validation_benchmark_models.parquet"
        if val_path.is_file():
            val_bench = validate_benchmark_frame(load_benchmark(val_path), source=str(val_path))
            column = benchmark_column(val_bench)
        train_path = data_dir / "train_benchmark_models.parquet"
        if train_path.is_file():
            train_bench = validate_benchmark_frame(load_benchmark(train_path, eras=split.train), source=str(train_path))
        reporter.say(
            f"  fit on eras {split.train[0]}–{split.train[-1]}; embargo {config.resolved_embargo} eras drops "
            f"{len(split.embargoed)}; scoring {len(split.validation)} eras {split.validation[0]}–{split.validation[-1]}"
            + (f"; BMC against {column}" if column else "; no benchmark file, BMC left empty"))

    info = read_data_info(data_dir)
    reporter.say(f"  data version {info['version']}, from {info['version_from']}")
    return Dataset(
        data_dir=data_dir, source=source, version=info["version"], version_from=info["version_from"],
        feature_set=feature_set,
        features=features, groups=feature_groups(metadata, features), target=target, train=train,
        validation=validation, train_benchmark=train_bench, validation_benchmark=val_bench, benchmark_column=column,
        split=split, targets=list(config.targets),
    )


# ---- models ----------------------------------------------------------------------------------------------------
def variant_names(config: TrainConfig, ablation: bool | None = None) -> list[str]:
    """The variants to fit and score, the one place they are named: baseline (unless disabled), full, with
    ablation one no_<component> per component the config leaves switched on, and the variant `ship` names."""
    names = (["baseline"] if config.baseline else []) + ["full"]
    if config.ablation if ablation is None else ablation:
        names += [f"no_{c}" for c in COMPONENTS if switched_on(config, c)]
    if config.ship not in ("auto", *names) and ablation is None:
        names.append(config.ship)
    return names


WITHOUT_RESIDUALIZER = "no_residualizer"
"""The candidate derived from full's fit: the same trees, predicting without the residualizer (`without_residualizer`)."""


def derives_without_residualizer(config: TrainConfig) -> bool:
    """Whether the run scores full's fitted trees without the residualizer as a candidate of its own (no fit of its
    own, `without_residualizer`): when the ship rule chooses, full has the residualizer, and no ablation fits
    no_residualizer anyway.

    Why: the residualizer's gate judges a linear proxy on the training eras, never the trees. On the drifting
    family's planted worlds it turned the residualizer on where it then took 0.0049 and 0.0018 per era from full's
    validation scores (t -4.6 and -5.6; docs/benchmarks.md); the validation eras are the only out-of-sample
    predictions of the trees a run has, so they judge it, through the same rule as every variant."""
    names = variant_names(config)
    return (config.ship == "auto" and "baseline" in names and "full" in names and WITHOUT_RESIDUALIZER not in names
            and switched_on(config, "residualizer"))


def residualized_on_benchmark(model: NumeraiModel | TargetEnsemble) -> bool:
    """Whether the model's residualizer removes exposure to the benchmark column: asked to, and fitted with one (the
    model then predicts with one; an exposure no gate judges)."""
    residualizer = getattr(model, "residualizer_", None)
    return bool(residualizer is not None and residualizer.benchmark and getattr(model, "benchmark_columns_", None))


def without_residualizer(model: NumeraiModel | TargetEnsemble) -> NumeraiModel | TargetEnsemble | None:
    """The fitted `model` as its no_residualizer variant would predict: the residualizer is a postprocessor that
    leaves the fit alone (its gate draws on no random state), so no_residualizer fitted with the same settings has
    the same trees and predicts exactly as `model` with the residualizer removed. None when the residualizer does
    nothing (its gate kept no exposure, or it is off). A shallow copy: the trees and the timing history are shared."""
    residualizer = getattr(model, "residualizer_", None)
    if residualizer is None or not (residualizer.parts_ or residualized_on_benchmark(model)):
        return None
    plain = copy.copy(model)
    plain.residualizer_ = None
    if isinstance(plain, TargetEnsemble):  # the template holds the ensemble's residualizer switch
        plain.model = clone(plain.model).set_params(residualizer=False)
    else:
        plain.residualizer = False
    return plain


def switched_on(config: TrainConfig, component: str) -> bool:
    """Whether the config leaves a component on: its [components] switch, else NumeraiModel's default."""
    return bool(config.component(component))


WEEKLY_TIMING = {"timing_pooled": True, "timing_window": 4}
"""The model settings of `refresh = "weekly"`, under whatever [components] sets: factor momentum also kept on a test
pooled over the factors (one test on every training era, one timed column over all factors), over a trailing window
of 4 eras. Refreshed weekly the pickle paid over itself left alone +0.0009 +- 0.0003 on the battery's six planted
worlds, +0.0018 +- 0.0004 on benchmark 8's three, +0.0008 +- 0.0004 and +0.0013 +- 0.0003 on the six planted shapes of
the fresh seeds + 4000 and + 5000, +0.0011 +- 0.0003 and +0.0014 +- 0.0003 on the drifting family's three of the same
seeds (the left-alone model's refresh: +0.0000 +- 0.0002). Left alone it scored with the model built
for "never" on the battery (+0.0058 against +0.0059 over the baseline) but 0.0011 below it in planted-a, so a model
that will be left alone keeps the defaults (docs/benchmarks.md, "Momentum pooled over the factors", "One coefficient
for pooled momentum" and "One test on every era")."""


def build_model(config: TrainConfig, groups: dict[str, list[str]]) -> NumeraiModel:
    """The base NumeraiModel of this config: feature groups, seed, the [components] table as parameters (over
    WEEKLY_TIMING when the model will be refreshed weekly), and the [lightgbm] table merged over the estimator's
    LightGBM defaults (scikit-learn style names accepted)."""
    components = {**(WEEKLY_TIMING if config.refresh == "weekly" else {}), **config.components}
    return NumeraiModel(feature_groups=groups, random_state=config.seed, lgbm_params=dict(config.lightgbm) or None,
                        **components)


def make_variant(base: NumeraiModel, name: str, config: TrainConfig) -> NumeraiModel | TargetEnsemble:
    """An unfitted variant of the base model (an ensemble of it over the targets when the config names several); a
    component the config leaves off (clusters, unless switched on) stays off in every variant."""
    model = base.variant(name)
    off = {c: False for c in COMPONENTS if not switched_on(config, c)}
    model = model.set_params(**off) if off else model
    if config.ensemble_members > 1:
        return TargetEnsemble(model, config.targets, config.ensemble.weights_of(config.targets), config.ensemble.seeds)
    return model


def benchmark_for(frame: pd.DataFrame, *benchmarks: pd.DataFrame | None) -> pd.DataFrame | None:
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


def fit_model(model: NumeraiModel | TargetEnsemble, frame: pd.DataFrame, ds: Dataset, reporter: Reporter, title: str,
              benchmark: pd.DataFrame | None, compute: Mapping[str, Any] | None = None, member: int | None = None,
              shared: NumeraiModel | None = None) -> NumeraiModel | TargetEnsemble:
    """Fit one estimator on `frame` (era + features → target) in the machine's fit slot with the cores free then
    (training.compute), the reporter following the boosting rounds; with `member`, only that member of the ensemble
    `model` (TargetEnsemble.fit_member, `shared` the fitted first member, whose `target_free_` it is given), which is
    returned. The fitted model (and every fitted member) keeps its own n_jobs for predicting (-1: in Numerai's
    runtime, its one CPU)."""
    compute = ComputeSettings(compute or {})
    key = "n_jobs" if "n_jobs" in model.get_params(deep=False) else "model__n_jobs"  # an ensemble's members
    n_jobs = model.get_params()[key]
    with fit_slot(compute.threads, say=reporter.say, exclusive=compute.one_fit_at_a_time) \
            as fit_threads, reporter.boosting(title) as callback:
        if compute.threads == "auto" and fit_threads < available_cpus():
            reporter.say(f"  {fit_threads} of {available_cpus()} cores are free: {title} with {fit_threads} thread(s)")
        model.set_params(**{key: fit_threads})
        try:
            callbacks = [callback] if callback else None
            if member is None:
                fitted = model.fit(ds.X(frame), ds.y_fit(frame), benchmark=benchmark, callbacks=callbacks)
            else:
                fitted = model.fit_member(member, ds.X(frame), ds.y_fit(frame), benchmark, callbacks,
                                          None if shared is None else shared.target_free_)
        finally:
            model.set_params(**{key: n_jobs})
    for fitted_member in getattr(fitted, "members_", [fitted]):  # the members were cloned with the fit's threads
        fitted_member.set_params(n_jobs=n_jobs)
    return fitted


def score_model(model: NumeraiModel, frame: pd.DataFrame, ds: Dataset, predict_benchmark: pd.DataFrame | None,
                bmc_benchmark: pd.DataFrame | None) -> pd.DataFrame:
    """Per-era scores of a fitted model's predictions on `frame` (eras with a resolved target): the model sees
    `predict_benchmark`; BMC is measured against `bmc_benchmark`'s benchmark column."""
    with quiet("model.timing"):  # the left-alone scores are stale on purpose: no warning per call
        preds = np.asarray(model.predict(ds.X(frame), benchmark=predict_benchmark), dtype=np.float64)
    if preds.shape != (len(frame),) or not np.isfinite(preds).all():
        raise RuntimeError(f"the model returned {preds.shape} predictions (all finite: {np.isfinite(preds).all()}) "
                           f"for {len(frame)} rows")
    return score_eras(preds, frame, ds.target, ds.features, benchmark=bmc_reference(bmc_benchmark, ds))


def bmc_reference(bmc_benchmark: pd.DataFrame | None, ds: Dataset) -> pd.Series | None:
    """The benchmark model's column BMC is measured against (`ds.benchmark_column`), or None without one."""
    column = ds.benchmark_column
    return bmc_benchmark[column] if bmc_benchmark is not None and column in bmc_benchmark else None


def not_ahead_reason(decision: dict[str, Any]) -> str:
    """The console's one line when the shipped model is not ahead of the baseline on the report eras: why it
    shipped, and what to set to ship otherwise."""
    shipped, report = decision["shipped"], decision["report"]
    if decision["rule"] != RULE:  # set in the config (or no baseline to compare with): the rule did not choose
        return (f"the shipped model ({shipped}) is not ahead of the baseline on the report eras "
                f"({_report_scores(report)}); it shipped as {decision['rule']}")
    if shipped == "baseline":
        vetoed = (decision.get("veto") or {}).get("vetoed") or []
        why = (f"the validation eras as a whole showed {', '.join(vetoed)} behind it beyond noise (t < {VETO_T:g}: the "
               "veto)" if vetoed else "the components were behind it on the choosing eras beyond noise, or had too "
               "few eras to judge")
        return (f"shipping the baseline (report eras {_report_scores(report)}): {why}; ship = \"full\" in the config "
                f"ships them anyway")
    t = decision["evidence"][shipped]["t"]
    return (f"the shipped model ({shipped}) is not ahead of the baseline on the report eras ({_report_scores(report)}); "
            f"it shipped because the choosing eras did not show it behind beyond noise (t {t:.2f}; the rule refuses "
            f"t < {SHIP_T:g}); ship = \"baseline\" in the config ships the plain model")


def _report_scores(report: dict[str, Any]) -> str:
    """Every candidate's corr on the report eras, the baseline first."""
    order = ["baseline", *(v for v in report if v != "baseline")]
    return "corr " + ", ".join(f"{v} {fmt_score(report[v]['corr_mean'])}" for v in order if v in report)


# ---- the independent fits, as jobs any executor can run (training.executor) ---------------------------------------
@dataclass(frozen=True)
class Job:
    """One independent fit: a variant on the train eras (scored in both modes), a CV fold of a variant, or the refit
    of the shipped variant on every era with a resolved target. For an ensemble, each member is a job of its own
    (`member`: its index; `shared`: the fitted first member, whose target-free work the others reuse), and the job
    that scores it gets the fitted `members` to assemble instead of fitting them."""

    kind: str  # "variant", "fold" or "refit"
    variant: str
    fold: int = 0
    derive: bool = False  # a variant job: also score the model without its residualizer (`without_residualizer`)
    member: int | None = None
    shared: Any = field(default=None, compare=False, repr=False)
    members: tuple | None = field(default=None, compare=False, repr=False)

    @property
    def title(self) -> str:
        """What the job fits, for the console and error messages."""
        title = {"variant": f"{self.variant}", "fold": f"fold {self.fold} {self.variant}",
                 "refit": f"refit {self.variant}"}[self.kind]
        return title if self.member is None else f"{title} (member {self.member + 1})"


def _validation_frames(ds: Dataset) -> tuple[pd.DataFrame, pd.DataFrame]:
    resolved_validation = resolved_rows(ds.validation, ds.target)  # every era, embargoed ones too
    return resolved_validation, resolved_validation.loc[resolved_validation["era"].isin(ds.split.validation).to_numpy()]


def history_free(model: Any) -> bool:
    """Whether a fitted model's predictions ignore the factor-return history `update_factor_returns` extends: no
    member has the timing component (the baseline, no_timing). Its refreshed predictions are then its left-alone
    ones, so scoring predicts once instead of twice."""
    return all(getattr(m, "timing_", True) is None for m in getattr(model, "members_", [model]))


def variant_jobs(config: TrainConfig) -> list[Job]:
    """`nmu train`'s fits of the variants on the train eras; full's also scores its trees without the residualizer
    when the run derives that candidate (`derives_without_residualizer`)."""
    derive = derives_without_residualizer(config)
    return [Job("variant", n, derive=derive and n == "full") for n in variant_names(config)]


def fold_jobs(config: TrainConfig) -> list[Job]:
    """The CV's fits: one per fold and variant, the ablations left out."""
    return [Job("fold", v, i) for i in range(1, config.cv + 1) for v in variant_names(config, ablation=False)]


def planned_jobs(config: TrainConfig) -> list[Job]:
    """Every independent fit `run_experiment` hands its executor, in its order: the variants, the CV folds, the
    refit of the shipped variant (training.plan counts them before a run)."""
    return (variant_jobs(config) + (fold_jobs(config) if config.cv else [])
            + ([Job("refit", "shipped")] if config.refit else []))


def refit_rows(ds: Dataset, era_step: int) -> pd.DataFrame:
    """Training rows plus every resolved validation era, the latter downsampled like training (every `era_step`-th
    era): what a refit learns from."""
    resolved_validation = resolved_rows(ds.validation, ds.target)
    kept = sort_eras(resolved_validation["era"].unique())[::era_step]
    return pd.concat([ds.train, resolved_validation.loc[resolved_validation["era"].isin(kept).to_numpy()]])


def uses_benchmark(ds: Dataset) -> bool:
    """Whether models see benchmark predictions: at fit only when the training eras have them all, and then at
    predict too (as they will live)."""
    return benchmark_for(ds.train, ds.train_benchmark) is not None


def _fold(job: Job, ds: Dataset, config: TrainConfig) -> Any:
    """The CV fold a fold job fits and scores (expanding windows over the train eras)."""
    return expanding_window_folds(ds.split.train, config.cv, config.resolved_embargo)[job.fold - 1]


def _fit_rows(job: Job, ds: Dataset, config: TrainConfig) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The rows a job fits on and their benchmark (None when the model does not see one)."""
    if job.kind == "variant":
        return ds.train, benchmark_for(ds.train, ds.train_benchmark)
    if job.kind == "fold":
        fold = _fold(job, ds, config)
        fit_rows = ds.train.loc[np.isin(ds.train["era"].to_numpy(), fold.train)]
        return fit_rows, benchmark_for(fit_rows, ds.train_benchmark)
    everything = refit_rows(ds, config.era_step)
    return everything, (benchmark_for(everything, ds.train_benchmark, ds.validation_benchmark)
                        if uses_benchmark(ds) else None)


def run_job(job: Job, ds: Dataset, config: TrainConfig, reporter: Reporter, compute: dict[str, Any]) -> Any:
    """Do one job: a variant → (fitted model, {"left_alone": per-era scores, "refreshed": per-era scores}); a fold →
    its row of the CV table; the refit → (fitted model, its eras); an ensemble member → the fitted member."""
    base = build_model(config, ds.groups)
    model = make_variant(base, job.variant, config)
    fit_frame, fit_bench = _fit_rows(job, ds, config)
    if job.member is not None:
        with reporter.step(f"Fitting {job.title}"):
            return fit_model(model, fit_frame, ds, reporter, f"{job.title}: boosting rounds", fit_bench, compute,
                             member=job.member, shared=job.shared)

    def fit(title: str) -> Any:  # the model, or the ensemble made from its members fitted as jobs of their own
        if job.members is not None:
            return model.assemble(job.members, ds.X(fit_frame), ds.y_fit(fit_frame))
        return fit_model(model, fit_frame, ds, reporter, title, fit_bench, compute)

    if job.kind == "variant":
        with reporter.step(f"Fitting and scoring {job.variant}"):
            model = fit(f"{job.variant}: boosting rounds")
            # the validation rows are copied after the fit, so the fit's peak does not hold them
            resolved_validation, scored = _validation_frames(ds)
            val_bench = benchmark_for(scored, ds.validation_benchmark)
            # the model sees benchmark predictions at validation only if it saw them in training (as it will live)
            val_bench_predict = val_bench if fit_bench is not None else None
            # the model, and full's trees without the residualizer when judged too (derives_without_residualizer); the
            # copy shares the timing history, so the update below refreshes both
            plain = without_residualizer(model) if job.derive else None
            judged = {"": model} if plain is None else {"": model, WITHOUT_RESIDUALIZER: plain}
            # left alone: no target after the training data reaches the model, as a pickle never refreshed
            left_alone = {k: score_model(m, scored, ds, val_bench_predict, val_bench) for k, m in judged.items()}
            # refreshed: each era's target once it would be known (era t's timing uses targets of eras <= t - lag)
            model.update_factor_returns(ds.X(resolved_validation), ds.y_fit(resolved_validation))
            refreshed = {k: left_alone[k].copy() if history_free(model) else
                         score_model(m, scored, ds, val_bench_predict, val_bench) for k, m in judged.items()}
            scores = {"left_alone": left_alone.pop(""), "refreshed": refreshed.pop("")}
            scores.update({k: {"left_alone": left_alone[k], "refreshed": refreshed[k]} for k in left_alone})
            if isinstance(model, TargetEnsemble):  # each member's own predictions, scored on the main target
                with quiet("model.timing"):
                    members = model.member_predictions(ds.X(scored), benchmark=val_bench_predict)
                reference = bmc_reference(val_bench, ds)
                scores["members"] = {t: score_eras(p, scored, ds.target, ds.features, reference)
                                     for t, p in members.items()}
        return model, scores
    if job.kind == "fold":
        fold = _fold(job, ds, config)
        eras = ds.train["era"].to_numpy()
        test_rows = ds.train.loc[np.isin(eras, fold.validation)]
        later_rows = ds.train.loc[np.isin(eras, fold.embargoed + fold.validation)]
        test_bench = benchmark_for(test_rows, ds.train_benchmark)
        with reporter.step(f"CV fold {job.fold}/{config.cv}: {job.variant}"):
            model = fit(f"fold {job.fold} {job.variant}")
            model.update_factor_returns(ds.X(later_rows), ds.y_fit(later_rows))
            summary = summarize(score_model(model, test_rows, ds, test_bench, test_bench))
        return {"fold": job.fold, "variant": job.variant, "train_first": fold.train[0], "train_last": fold.train[-1],
                "scored_first": fold.validation[0], "scored_last": fold.validation[-1], **summary}
    with reporter.step(f"Refitting {job.variant} on every era with a resolved target (train + validation)"):
        model = fit("refit: boosting rounds")
    return model, sort_eras(fit_frame["era"].unique())


def with_fitted_members(jobs: list[Job], n_members: int, execute: Callable[[list[Job]], list[Any]]) -> list[Job]:
    """The jobs of an ensemble config, each given its members fitted as jobs of their own on the executor: every
    job's first member at once, then all the other members at once (they reuse their first member's target-free
    work)."""
    firsts = execute([replace(j, member=0) for j in jobs])
    others = execute([replace(j, member=i, shared=first) for j, first in zip(jobs, firsts)
                      for i in range(1, n_members)])
    per_job = n_members - 1
    return [replace(j, members=(first, *others[k * per_job:(k + 1) * per_job]))
            for k, (j, first) in enumerate(zip(jobs, firsts))]


@dataclass(frozen=True)
class RemoteJobs:
    """The jobs' function on a Dask worker: it loads the dataset by path (once per worker process), fits with the
    worker's own threads, and returns the result to the client."""

    data_dir: str
    source: str
    config: dict[str, Any]

    def __call__(self, job: Job) -> Any:
        """Run `job` on this worker (see `run_job`)."""
        key = (self.data_dir, self.source, repr(sorted(self.config.items())))
        config = config_from_dict({k: v for k, v in self.config.items() if v is not None}, source="config")
        if key not in _WORKER_DATASETS:
            _WORKER_DATASETS.clear()  # one dataset per worker process at a time: memory stays bounded
            _WORKER_DATASETS[key] = load_dataset(Path(self.data_dir), self.source, config, Silent())
        compute = {"threads": worker_threads() or "auto", "one_fit_at_a_time": False}
        return run_job(job, _WORKER_DATASETS[key], config, Silent(), compute)


_WORKER_DATASETS: dict[tuple, Dataset] = {}


def run_experiment(config: TrainConfig, ds: Dataset, reporter: Reporter | None = None,
                   executor: Any = None) -> ExperimentResult:
    """Fit every variant on the train eras and score it on the validation eras after the embargo in both modes
    (left alone: no target after the training data; refreshed: each era's target fed once it would be known live),
    cross-validate if asked, choose the shipped variant (validation.evaluation.selection) in the mode the user will
    run, and refit it on every era with a resolved target. The fits go through `executor` (training.executor;
    default in-process)."""
    reporter = reporter or Silent()
    executor = executor or InProcess()
    if isinstance(executor, InProcess):
        def run(job: Job) -> Any:
            return run_job(job, ds, config, reporter, config.compute)
    else:
        run = RemoteJobs(str(ds.data_dir.resolve()), ds.source, dataclasses.asdict(config))

    def execute_now(jobs: list[Job]) -> list[Any]:
        if isinstance(executor, InProcess) or not jobs:
            return executor.map(run, jobs)
        with reporter.step(f"Fitting {', '.join(j.title for j in jobs)} on the Dask cluster at {executor.name}"):
            return executor.map(run, jobs)

    def execute(jobs: list[Job]) -> list[Any]:
        if config.ensemble_members > 1:  # an ensemble's members are independent fits too
            jobs = with_fitted_members(jobs, config.ensemble_members, execute_now)
        return execute_now(jobs)

    if config.cv:  # the folds are cut after the variants' fits: a --cv the training eras cannot take fails now
        expanding_window_folds(ds.split.train, config.cv, config.resolved_embargo)
    if ds.train_benchmark is None and ds.validation_benchmark is not None:
        reporter.say("  no benchmark for the training eras: the models fit and predict without it")
    mode = MODE_OF_REFRESH[config.refresh]
    names = variant_names(config)
    summaries: dict[str, dict[str, dict[str, Any]]] = {"left_alone": {}, "refreshed": {}}
    parts: list[pd.DataFrame] = []
    fitted = {}
    ensembles: dict[str, dict[str, Any]] = {}
    for name, (model, scores) in zip(list(names), execute(variant_jobs(config))):
        members = scores.pop("members", None)
        derived = scores.pop(WITHOUT_RESIDUALIZER, None)  # full's trees without the residualizer, when judged
        judged = [(name, model, scores)]
        if derived is not None:
            names.append(WITHOUT_RESIDUALIZER)
            judged.append((WITHOUT_RESIDUALIZER, without_residualizer(model), derived))
        for n, fitted_model, by_mode in judged:
            fitted[n] = fitted_model
            if members:  # the members (full's, for the derived one) were predicted with the refreshed history
                ensembles[n] = ensemble_summary(members, by_mode["refreshed"])
            for m, per_era in by_mode.items():
                summaries[m][n] = summarize(per_era)
                parts.append(per_era.reset_index().assign(variant=n, mode=m))
    for name in names:
        s = summaries[mode][name]
        reporter.say(f"  {name} ({mode.replace('_', ' ')}): corr_mean {fmt_score(s['corr_mean'])}, "
                     f"sharpe {fmt_score(s['corr_sharpe'])}, bmc_mean {fmt_score(s['bmc_mean'])}, "
                     f"feature exposure {fmt_score(s['feature_exposure_max'])}")
    columns = ["mode", "variant", "era", "corr", "bmc", "feature_exposure"]
    per_era_all = pd.concat(parts, ignore_index=True)[columns]
    cv_table = None
    if config.cv:
        cv_table = pd.DataFrame(execute(fold_jobs(config)))

    decision = choose_variant(per_era_all[per_era_all["mode"] == mode], names, config.ship)
    decision["mode"] = mode
    if WITHOUT_RESIDUALIZER in fitted and WITHOUT_RESIDUALIZER not in variant_names(config):
        exposures = [f"the {p}" for p in fitted["full"].residualizer_.parts_]
        why = (f"the residualizer's gate kept {' and '.join(exposures)} on a linear proxy of the training eras"
               if exposures else "")
        if residualized_on_benchmark(fitted["full"]):
            why += (" and" if why else "the residualizer") + " removes exposure to the benchmark, which no gate judges"
        decision["derived"] = {WITHOUT_RESIDUALIZER: (
            f"full's trees without the residualizer (no fit of its own): {why}; the validation eras judge it on the "
            "trees' own predictions")}
    shipped_variant = decision["shipped"]
    report = decision["report"]
    evidence = decision["evidence"].get(shipped_variant)
    reporter.say(f"  shipping {shipped_variant}: "
                 + (f"gain over the baseline {evidence['gain']:+.4f} (t {evidence['t']:.1f}) on the choosing eras; "
                    if evidence else "")
                 + f"report eras corr {fmt_score(report[shipped_variant]['corr_mean'])}")
    if not decision["ahead_of_baseline"] and "baseline" in report:
        reporter.say(f"warning: {not_ahead_reason(decision)}")

    shipped, refit_eras = fitted[shipped_variant], list(ds.split.train)
    if config.refit:
        [(shipped, refit_eras)] = execute([Job("refit", shipped_variant)])

    metrics = {
        "data": {"train_eras": len(ds.split.train), "validation_eras": len(ds.split.validation),
                 "features": len(ds.features), "target": ds.target, "embargo_eras": config.resolved_embargo,
                 "mode": mode},
        "models": summaries[mode],
        "modes": summaries,
        "ship": decision,
    }
    if ensembles:
        # the members are scored with the refreshed history whatever `mode` judges the variants (run_job's note)
        metrics["ensemble"] = {"targets": ds.targets, "weights": config.ensemble.weights_of(ds.targets),
                               "seeds": config.ensemble.seeds, "mode": "refreshed", "variants": ensembles}
        e = ensembles.get(shipped_variant) or next(iter(ensembles.values()))
        reporter.say(f"  ensemble of {config.ensemble_members} members: best member {e['best_member']} "
                     f"{fmt_score(e['members'][e['best_member']]['corr_mean'])}, ensemble "
                     f"{fmt_score(e['ensemble']['corr_mean'])} (refreshed)")
    return ExperimentResult(metrics=metrics, per_era=per_era_all, cv=cv_table, shipped=shipped,
                            shipped_variant=shipped_variant, refit_eras=refit_eras)
