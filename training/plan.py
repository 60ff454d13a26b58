"""`nmu train --plan`: what a run will do before it does it, and whether it fits in this machine's memory.

Without loading the data or fitting anything, the plan reads the shape of the run: the feature set's columns
(features.json), the rows after the era step (the parquet files' `era` and target columns only, a small fraction
of the files), the fits the config implies (`training.experiment`'s variants, CV folds, the refit and the
ensemble's members, the same jobs `run_experiment` hands its executor). It then estimates the run's peak resident
memory and its time from the curves of tests/benchmarks/bench_curves.py (training/scale_model.json: fit time
against rows, features and trees, the fit's memory above its input, predict time per era), the time calibrated to
this machine by a short timed probe (a small LightGBM fit whose time on the machine of the curves is known).

The memory estimate adds what the run holds: the Python process with its libraries, the loaded frames (train after
the era step, every validation era, the benchmark files) counted in bytes from their shape, and the largest step on
top of them (a fit: its copy of the features and LightGBM's bin sample and Dataset from the curves; the refit: also
the concatenated train + validation rows; scoring: the copy of the scored rows). When that exceeds the memory
available (MemAvailable and the cgroup's limit, or $NMU_MEMORY_LIMIT), `nmu train` refuses before loading anything,
in one line that says what to change.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from model.eras import sort_eras
from model.features import CHUNK_CELLS
from training.config import TrainConfig, resolve_feature_set_name
from training.console import ordinal
from training.data import check_eras, era_labels, load_feature_metadata, readable, resolve_feature_set
from training.executor import local_workers
from validation.errors import NmuError
from validation.evaluation.splits import embargo_split, expanding_window_folds

SCALE_MODEL_PATH = Path(__file__).with_name("scale_model.json")
MEMORY_ENV = "NMU_MEMORY_LIMIT"
"""Bytes the run may use instead of the memory available now (a number, or with a unit: 16G, 900M)."""
PROBE_ENV = "NMU_PLAN_PROBE"
"""0: skip the timed probe (the time estimate is then the curves' machine's, uncalibrated)."""

PROCESS_BYTES = 450 * 2**20
"""Resident size of `nmu train` with its libraries imported, before any data (measured ~420 MB: numpy, pandas,
pyarrow, scikit-learn, LightGBM, scipy, rich)."""
ROW_BYTES = 90
"""Bytes per loaded row besides its features and targets: the `id` index (a Python string of Numerai's ~16
characters, 65 bytes, and its 8-byte reference) and the references to the shared `era` and `data_type` strings."""
DATASET_BYTES_PER_CELL = 0.5
"""At least what LightGBM's Dataset keeps per row and feature once built: 4-bit bins (max_bin 15). The curves'
sweeps peak while LightGBM holds its bin sample, so they cannot tell this term apart below ~1M rows."""
CHUNK_BLOCKS = 3
"""Blocks of float32 cells a chunk of predict or of the components' per-era work holds at once."""


def chunk_bytes(rows: float, features: float) -> float:
    """What a chunk of predict or of the components' per-era work holds at once: CHUNK_BLOCKS blocks of float32 cells,
    each at most model.features.CHUNK_CELLS, fewer when the rows hold fewer (counted at twice the features, for the
    columns the components engineer). The full chunk counted on a small world made the estimate 1.6 x the run's peak
    (940 MB against 597 MB measured, 120 eras x 1,000 stocks x 60 features, 200 trees)."""
    return 4 * CHUNK_BLOCKS * min(CHUNK_CELLS, rows * features * 2)


# ---- the curves ------------------------------------------------------------------------------------------------
class ScaleModel:
    """The curves fitted by bench_curves.py (training/scale_model.json), evaluated at a shape; times are the
    reference machine's."""

    def __init__(self, data: Mapping[str, Any]):
        self.data = dict(data)

    @staticmethod
    def _law(law: Mapping[str, Any], **values: float) -> float:
        out = float(law["coefficient"])
        for key, exponent in law["exponents"].items():
            out *= max(float(values[key]), 1.0) ** float(exponent)
        return out

    def fit_seconds(self, rows: float, features: float, trees: float, components: bool = False,
                    linear: bool = False) -> float:
        """Wall time of one fit on the reference machine: LightGBM's Dataset, its boosting rounds, the components'
        extra when `components`, and the linear layer's when `linear` (curves without that term: none)."""
        if "dataset_seconds" in self.data:
            seconds = self._law(self.data["dataset_seconds"], rows=rows, features=features) + \
                self._law(self.data["boosting_seconds"], rows=rows, features=features, trees=trees)
        else:  # a single power law (the first curves)
            seconds = self._law(self.data["fit_seconds"], rows=rows, features=features, trees=trees)
        if components:
            seconds += self._law(self.data["components_seconds"], rows=rows, features=features)
        if linear and "linear_layer_seconds" in self.data:
            layer = self.data["linear_layer_seconds"]  # the era centring (rows x features) and the Gram matrix
            seconds += float(layer["per_fit"]) + rows * features * (
                float(layer["per_cell"]) + float(layer["per_gram_cell"]) * features)
        return seconds

    def fit_peak_bytes(self, rows: float, features: float, components: bool = False) -> float:
        """Resident memory a fit adds above its input (the features' frame): LightGBM's bin sample and Dataset."""
        m = self.data["fit_peak_bytes"]
        cells = max(float(m["c_cells"]), DATASET_BYTES_PER_CELL)
        peak = m["c0"] + m["c_sample"] * features * min(rows, m["sample_rows"]) + cells * rows * features
        return peak * (float(self.data.get("components_peak_factor", 1.0)) if components else 1.0)

    def predict_era_seconds(self, trees: float, members: float = 1) -> float:
        """Predict time of one era of the reference's stocks (bench_curves: 5,000 rows) on the reference machine."""
        return self._law(self.data["predict_era_seconds"], trees=trees, members=members)

    def predict_seconds(self, rows: float, trees: float, members: float = 1) -> float:
        """Predict time of `rows` rows, in proportion to the rows of the reference era."""
        return self.predict_era_seconds(trees, members) * rows / float(self.data["predict_era_seconds"]["stocks"])

    @property
    def probe_seconds(self) -> float:
        """The probe's time on the reference machine (one thread)."""
        return float(self.data["probe_seconds"])

    @property
    def cores(self) -> int:
        """Cores of the reference machine."""
        return int(self.data.get("measured", {}).get("machine", {}).get("cores") or 2)

    @property
    def machine(self) -> str:
        """The reference machine in words."""
        m = self.data.get("measured", {}).get("machine", {})
        return f"{m.get('cores', '?')} cores of {m.get('cpu', 'an unknown CPU')}".strip()


def load_scale_model(path: Path = SCALE_MODEL_PATH) -> ScaleModel:
    """The curves shipped with the package."""
    try:
        return ScaleModel(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError) as exc:  # pragma: no cover - a broken install
        raise NmuError(f"the plan's curves {path} cannot be read ({exc}); reinstall the package.") from None


# ---- the probe -------------------------------------------------------------------------------------------------
PROBE_SHAPE = {"rows": 20_000, "features": 100, "trees": 100}
_PROBE_CACHE: dict[str, float] = {}


CORE_EXPONENT = 0.75
"""A fit on c cores takes (reference cores / c) ** CORE_EXPONENT of the reference's time, per core equally fast: an
assumption (LightGBM's threads do not scale perfectly), not measured on a machine with many cores."""


def probe_seconds(repeats: int = 3, threads: int = 1) -> float:
    """The median wall time of a small fit through the project's booster (PROBE_SHAPE: 20,000 rows x 100 int8
    features x 100 trees of the standard recipe) on one thread: one thread, so that a busy core's spinning OpenMP
    threads do not swamp it (training.compute)."""
    from model.booster import train_booster

    rng = np.random.default_rng(0)
    rows, features, trees = PROBE_SHAPE["rows"], PROBE_SHAPE["features"], PROBE_SHAPE["trees"]
    raw = rng.integers(0, 5, (rows, features), dtype=np.int8)
    score = raw[:, :8].sum(axis=1, dtype=np.float32) + rng.normal(0.0, 6.0, rows).astype(np.float32)
    target = (np.searchsorted(np.quantile(score, [0.2, 0.4, 0.6, 0.8]), score) / 4).astype(np.float32)
    engineered = np.zeros((rows, 0), dtype=np.float32)
    params = {"num_iterations": trees, "learning_rate": 0.01, "max_depth": 5, "num_leaves": 31,
              "feature_fraction": 0.1}
    names = [f"f{i}" for i in range(features)]
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        train_booster(raw, engineered, target, params, names, [], 0, threads, 0)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def machine_speed(model: ScaleModel, probe: bool = True) -> tuple[float, str]:
    """How much slower than the curves' machine this one fits (> 1: slower), and how that was found."""
    if not probe or os.environ.get(PROBE_ENV, "1").strip() in ("0", "false", "no"):
        return 1.0, f"uncalibrated: the times of the curves' machine ({model.machine})"
    from model.params import available_cpus

    if "probe" not in _PROBE_CACHE:
        start = time.perf_counter()
        _PROBE_CACHE["probe"] = probe_seconds()
        _PROBE_CACHE["took"] = time.perf_counter() - start
    per_core = _PROBE_CACHE["probe"] / model.probe_seconds
    cores = available_cpus()
    ratio = per_core * (model.cores / cores) ** CORE_EXPONENT
    where = "" if cores == model.cores else f" with {cores} cores against {model.cores}"
    return ratio, (f"calibrated by a {_PROBE_CACHE['took']:.1f} s probe: this machine fits {_speed_words(ratio)} the "
                   f"curves' machine{where} ({model.machine})")


def _speed_words(ratio: float) -> str:
    if 0.9 <= ratio <= 1.1:
        return "as fast as"
    return f"{ratio:.1f} x slower than" if ratio > 1 else f"{1 / ratio:.1f} x faster than"


# ---- the memory available --------------------------------------------------------------------------------------
_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_bytes(text: str) -> int:
    """Bytes of "17179869184", "16G", "16 GB", "900M" (binary units); ValueError otherwise."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", text.lower())
    if not match:
        raise ValueError(text)
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def _cgroup_room() -> int | None:
    """Bytes this process's cgroup (v2) still allows: memory.max minus memory.current; None without a limit."""
    try:
        line = Path("/proc/self/cgroup").read_text().splitlines()[0]
        base = Path("/sys/fs/cgroup") / line.split(":", 2)[2].lstrip("/")
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int((base / "memory.current").read_text().strip())
    except (OSError, IndexError, ValueError):
        return None


def available_memory() -> tuple[int, str]:
    """Bytes a run may use now and where that comes from: $NMU_MEMORY_LIMIT, else MemAvailable (psutil) or the
    cgroup's room when that is smaller."""
    value = os.environ.get(MEMORY_ENV)
    if value:
        try:
            return parse_bytes(value), f"${MEMORY_ENV}"
        except ValueError:
            raise NmuError(f"${MEMORY_ENV} is {value!r}; give bytes, e.g. 16G or 17179869184.") from None
    import psutil

    available, source = int(psutil.virtual_memory().available), "available now"
    room = _cgroup_room()
    if room is not None and room < available:
        available, source = room, "left under this container's memory limit"
    return available, source


# ---- the shape of the data -------------------------------------------------------------------------------------
@dataclass
class EraCounts:
    """Rows per era of a parquet file, and how many of them have a resolved `target`."""

    rows: dict[str, int]
    resolved: dict[str, int]
    columns: list[str]

    @property
    def eras(self) -> list[str]:
        """The file's eras in era order."""
        return sort_eras(self.rows)


def era_counts(path: Path, target: str | None) -> EraCounts:
    """Rows per era (and resolved rows of `target`) read from the `era` and target columns only."""
    if not path.is_file():
        raise NmuError(f"{path} is missing; a data directory needs train.parquet and validation.parquet.")
    with readable(path):
        pf = pq.ParquetFile(path)
        names = list(pf.schema_arrow.names)
        if "era" not in names:
            raise NmuError(f"{path} has no column era; check the data version.")
        wanted = ["era"] + ([target] if target and target in names else [])
        rows: dict[str, int] = {}
        resolved: dict[str, int] = {}
        for rg in range(pf.metadata.num_row_groups):
            table = pf.read_row_group(rg, columns=wanted)
            labels, codes = era_labels(path, pf, rg, table.column("era"))
            counts = np.bincount(codes, minlength=len(labels))
            known = counts if len(wanted) == 1 else \
                np.bincount(codes, weights=_resolved(table.column(target)), minlength=len(labels))
            for label, n, k in zip(labels, counts.tolist(), np.asarray(known).tolist()):
                rows[label] = rows.get(label, 0) + int(n)
                resolved[label] = resolved.get(label, 0) + int(k)
    return EraCounts(rows, resolved, names)


def _resolved(column: pa.ChunkedArray) -> np.ndarray:
    """1.0 where a target is known: not null and not NaN."""
    values = column.to_numpy(zero_copy_only=False)
    if values.dtype.kind == "f":
        return np.isfinite(values).astype(np.float64)
    return column.is_valid().to_numpy(zero_copy_only=False).astype(np.float64)


# ---- the plan --------------------------------------------------------------------------------------------------
@dataclass
class Fit:
    """One independent fit of the run: what it fits, on how many rows, with the components or without, with the
    linear layer (its era centring grows with rows x features, its Gram matrix with rows x features squared: 10.4 s
    at 714,499 rows x 780 features on 2 cores in benchmark 5) or without."""

    title: str
    rows: int
    components: bool
    members: int = 1
    linear: bool = False


@dataclass
class Plan:
    """What `nmu train` will do with a config and a data directory, and what it will cost (see the module)."""

    data_dir: Path
    feature_set: str
    features: int
    targets: int
    era_step: int
    train_eras: int
    train_eras_in_file: int
    train_rows: int
    validation_rows: int
    validation_eras: int
    scored_eras: int
    scored_rows: int
    refit_rows: int
    benchmark_columns: int
    trees: int
    members: int
    fits: list[Fit]
    variants: list[str]
    cv: int
    refit: bool
    scheduler: str | None = None
    speed: float = 1.0
    speed_note: str = ""
    available: int = 0
    available_note: str = ""
    cv_scored_rows: int = 0
    timed_variants: int | None = None  # variants with the timing component (None: all)
    derived: list[str] = field(default_factory=list)  # candidates scored from another's fit (no_residualizer)
    model: ScaleModel = field(default=None, repr=False)  # type: ignore[assignment]

    # -- memory --------------------------------------------------------------------------------------------------
    def frame_bytes(self, rows: float) -> float:
        """A loaded frame of `rows` rows: int8 features, float32 targets, the id index and era references."""
        return rows * (self.features + 4 * self.targets + ROW_BYTES)

    @property
    def resident_bytes(self) -> float:
        """What the run holds throughout: the process, the train and validation frames, the benchmark frames."""
        bench = (self.train_rows + self.validation_rows) * (4 * self.benchmark_columns + ROW_BYTES) \
            if self.benchmark_columns else 0
        return PROCESS_BYTES + self.frame_bytes(self.train_rows) + self.frame_bytes(self.validation_rows) + bench

    def step_bytes(self) -> dict[str, float]:
        """What each kind of step adds on top of the resident frames at its peak."""
        steps: dict[str, float] = {}
        for fit in self.fits:
            copy = fit.rows * (self.features + 8)  # the model's input: `era` and the features (ds.X)
            extra = self.frame_bytes(fit.rows) if fit.title.startswith("refit") else 0.0  # train + validation rows
            peak = extra + copy + self.model.fit_peak_bytes(fit.rows, self.features, fit.components)
            steps[fit.title] = max(steps.get(fit.title, 0.0), peak)
        steps["scoring"] = self.scored_rows * (self.features + 8 + 16) + chunk_bytes(self.scored_rows, self.features)
        return steps

    @property
    def process_peak_bytes(self) -> float:
        """The estimated peak resident memory of one process of the run."""
        return self.resident_bytes + max(self.step_bytes().values())

    @property
    def peak_bytes(self) -> float:
        """The estimated peak resident memory of the run on this machine: with local:N, N worker processes beside
        this one, each loading the data and fitting (measured on a 120-era world with local:2: 966 MB summed over the
        processes, 2.8 times the single process's 348 MB), so counted as N + 1 processes."""
        return (1 + local_workers(self.scheduler)) * self.process_peak_bytes

    @property
    def peak_step(self) -> str:
        """The step at the estimated peak."""
        steps = self.step_bytes()
        return max(steps, key=steps.__getitem__)

    # -- time ----------------------------------------------------------------------------------------------------
    def fit_seconds(self) -> float:
        """Every fit, on this machine."""
        return self.speed * sum(
            f.members * self.model.fit_seconds(f.rows, self.features, self.trees, f.components, f.linear)
            for f in self.fits)

    def predict_seconds(self) -> float:
        """Scoring's predictions: each variant on the scored eras in two modes (once for a variant without the
        timing component, whose two modes predict alike; its members once more for an ensemble), each CV fold on its
        scored eras; on this machine."""
        timed = len(self.variants) if self.timed_variants is None else self.timed_variants
        rows = self.scored_rows * (len(self.variants) + timed + (len(self.variants) if self.members > 1 else 0))
        rows += self.scored_rows * 2 * len(self.derived)  # at most: only when full's residualizer gate keeps exposures
        if self.cv:
            rows += self.cv_scored_rows
        return self.speed * self.model.predict_seconds(rows, self.trees, self.members)

    @property
    def seconds(self) -> float:
        """The estimated wall time of the run (fits and predictions; loading and writing are not counted)."""
        return self.fit_seconds() + self.predict_seconds()

    @property
    def n_fits(self) -> int:
        """LightGBM fits the run makes (an ensemble's members each count)."""
        return sum(f.members for f in self.fits)

    # -- words ---------------------------------------------------------------------------------------------------
    def summary(self) -> str:
        """The one line `nmu train` starts with."""
        return (f"plan: {self.n_fits} fit(s) of {self.trees:,} trees on {self.train_rows:,} rows x {self.features:,} "
                f"features; estimated peak memory {gb(self.peak_bytes)} of {gb(self.available)} {self.available_note}, "
                f"time {duration(self.seconds)} ({'uncalibrated' if self.speed_note.startswith('uncal') else 'this machine'})"
                f"; `nmu train --plan` for details")

    def lines(self) -> list[str]:
        """What `nmu train --plan` prints."""
        step = f"every {ordinal(self.era_step)} of " if self.era_step > 1 else "all "
        fits = [f"  {f.title}: {f.rows:,} rows" + (f" x {f.members} members" if f.members > 1 else "")
                + ("" if f.components else " (no components)") for f in self.fits]
        steps = self.step_bytes()
        out = [
            f"data: {self.data_dir}",
            f"columns: {self.features:,} features ({self.feature_set}) + {self.targets} target(s)",
            f"train: {self.train_rows:,} rows in {self.train_eras} eras ({step}{self.train_eras_in_file})",
            f"validation: {self.validation_rows:,} rows in {self.validation_eras} eras; {self.scored_eras} scored after "
            f"the embargo ({self.scored_rows:,} rows)",
            f"fits: {self.n_fits} of {self.trees:,} trees ({len(self.variants)} variant(s): {', '.join(self.variants)}"
            + (f"; {self.cv}-fold CV" if self.cv else "") + ("; the refit of the shipped variant" if self.refit else "")
            + (f"; {self.members} ensemble members each" if self.members > 1 else "") + ")"
            + "".join(f"; {d} scored from full's fit when its residualizer acts" for d in self.derived),
            *fits,
            f"memory: peak ~{gb(self.peak_bytes)} = {gb(self.resident_bytes)} held throughout (process and frames) "
            f"+ {gb(steps[self.peak_step])} at its largest step ({self.peak_step}); {gb(self.available)} "
            f"{self.available_note}",
            f"time: ~{duration(self.seconds)} (fits {duration(self.fit_seconds())}, predictions "
            f"{duration(self.predict_seconds())}; loading and writing not counted), {self.speed_note}",
        ]
        if local_workers(self.scheduler):
            out.append(f"note: with --scheduler {self.scheduler} the fits run in {local_workers(self.scheduler)} worker "
                       "processes on this machine, each holding its own copy of the data: the memory above counts them "
                       f"with this one ({gb(self.process_peak_bytes)} a process)")
        elif self.scheduler:
            out.append(f"note: with --scheduler {self.scheduler} the fits run on the cluster's workers, each holding its "
                       "own copy of the data; the estimate is for one process")
        out.append("estimates from the curves of docs/scale.md; expect +-30 % on time, +-20 % on memory")
        return out

    def fits_in_memory(self) -> bool:
        """Whether the estimated peak is within the memory available."""
        return self.peak_bytes <= self.available


def gb(n: float) -> str:
    """Bytes in GB (2**30) for people: 1.2 GB, 850 MB."""
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def duration(seconds: float) -> str:
    """Seconds for people: 40 s, 12 min, 3 h 20 min."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    return f"{int(minutes // 60)} h {int(minutes % 60):02d} min"


@dataclass
class DataShape:
    """What the plan reads from a data directory, once, to plan several configs on it."""

    data_dir: Path
    target: str

    @cached_property
    def metadata(self) -> dict:
        """features.json."""
        return load_feature_metadata(self.data_dir)

    @cached_property
    def train(self) -> EraCounts:
        """train.parquet's eras."""
        return era_counts(self.data_dir / "train.parquet", self.target)

    @cached_property
    def validation(self) -> EraCounts:
        """validation.parquet's eras."""
        return era_counts(self.data_dir / "validation.parquet", self.target)

    @cached_property
    def benchmark_columns(self) -> int:
        """Benchmark columns of the validation benchmark file (0 without one)."""
        path = self.data_dir / "validation_benchmark_models.parquet"
        if not path.is_file():
            return 0
        return len([c for c in pq.read_schema(path).names if c not in ("id", "era", "data_type")])


def planned_fits(config: TrainConfig, train_rows_of: Callable[[list[str]], int], train_eras: list[str],
                 refit_rows: int) -> list[Fit]:
    """The run's independent fits as `run_experiment` makes them (training.experiment.Job): one per variant, one per
    CV fold and variant without the ablations, the refit of the shipped variant; an ensemble's members each."""
    from training.experiment import planned_jobs, switched_on

    jobs = planned_jobs(config)
    folds = expanding_window_folds(train_eras, config.cv, config.resolved_embargo) if config.cv else []
    fits = []
    for job in jobs:
        if job.kind == "variant":
            rows = train_rows_of(train_eras)
        elif job.kind == "fold":
            rows = train_rows_of(folds[job.fold - 1].train)
        else:
            rows = refit_rows
        components = job.variant != "baseline"
        linear = components and job.variant != "no_linear" and switched_on(config, "linear")
        title = "refit of the shipped variant" if job.kind == "refit" else job.title
        fits.append(Fit(title, rows, components, config.ensemble_members, linear))
    return fits


def make_plan(config: TrainConfig, data_dir: Path, shape: DataShape | None = None, probe: bool = True,
              model: ScaleModel | None = None) -> Plan:
    """The plan of `nmu train` with `config` on `data_dir` (see the module docstring); reads no feature column."""
    from model.booster import lgbm_params
    from training.experiment import WITHOUT_RESIDUALIZER, build_model, derives_without_residualizer, variant_names

    shape = shape or DataShape(Path(data_dir), config.target)
    model = model or load_scale_model()
    metadata = shape.metadata
    feature_set = resolve_feature_set_name(config.feature_set, metadata)
    features = resolve_feature_set(metadata, feature_set)
    present = set(shape.train.columns)
    missing = [c for c in features if c not in present]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise NmuError(f"{data_dir / 'train.parquet'} has no column {shown}; check the feature set, target name and "
                       "data version.")
    for name, columns in (("train.parquet", shape.train.columns), ("validation.parquet", shape.validation.columns)):
        absent = [t for t in config.targets if t not in set(columns)]
        if absent:  # as loading the data says it (else the plan would count every row as resolved)
            raise NmuError(f"{data_dir / name} has no column {', '.join(absent)}; check the target names "
                           "(`target`, `[ensemble] targets`) and the data version.")
    train = shape.train
    train_all = [e for e in train.eras if train.resolved.get(e, 0) or train.rows[e]]
    if config.target == "target":  # complete in the eras `nmu train` loads (every era_step-th), as it checks
        holes = [e for e in train_all[:: config.era_step] if train.resolved.get(e, 0) < train.rows[e]]
        if holes:
            raise NmuError(f"{data_dir / 'train.parquet'} has rows without a value of target 'target' in "
                           f"{len(holes)} era(s) ({holes[0]}-{holes[-1]}); the main target must be complete in the "
                           "train eras.")
    train_eras = [e for e in train_all[:: config.era_step] if train.resolved.get(e, train.rows[e])]
    if not train_eras:
        raise NmuError(f"no eras of {data_dir / 'train.parquet'} are left after era_step {config.era_step}.")
    val = shape.validation
    scored_all = [e for e in val.eras if val.resolved.get(e, 0)]
    if not scored_all:
        raise NmuError(f"{data_dir / 'validation.parquet'} has no resolved values of target {config.target!r}, so "
                       "nothing can be scored.")
    check_eras(data_dir, [*train.eras, *val.eras])
    split = embargo_split(train_eras, scored_all, config.resolved_embargo)

    def rows_of(eras: list[str]) -> int:
        return int(sum(train.resolved.get(e, train.rows[e]) for e in eras))

    refit_extra = int(sum(val.resolved[e] for e in sort_eras(scored_all)[:: config.era_step]))
    fits = planned_fits(config, rows_of, train_eras, rows_of(train_eras) + refit_extra)
    trees = int(lgbm_params(build_model(config, {}).lgbm_params)["num_iterations"])
    cv_scored = 0
    if config.cv:
        folds = expanding_window_folds(train_eras, config.cv, config.resolved_embargo)
        cv_scored = sum(rows_of(f.validation) for f in folds) * len(variant_names(config, ablation=False))
    speed, note = machine_speed(model, probe)
    available, source = available_memory()
    return Plan(
        data_dir=Path(data_dir), feature_set=feature_set, features=len(features), targets=len(config.targets),
        era_step=config.era_step, train_eras=len(train_eras), train_eras_in_file=len(train_all),
        train_rows=rows_of(train_eras), validation_rows=int(sum(val.rows.values())), validation_eras=len(val.rows),
        scored_eras=len(split.validation), scored_rows=int(sum(val.resolved[e] for e in split.validation)),
        refit_rows=rows_of(train_eras) + refit_extra, benchmark_columns=shape.benchmark_columns, trees=trees,
        members=config.ensemble_members, fits=fits, variants=variant_names(config), cv=config.cv, refit=config.refit,
        scheduler=config.compute.get("scheduler"), speed=speed, speed_note=note, available=available,
        available_note=source, model=model, cv_scored_rows=cv_scored,
        timed_variants=timed_variants(config, variant_names(config)),
        derived=[WITHOUT_RESIDUALIZER] if derives_without_residualizer(config) else [],
    )


def timed_variants(config: TrainConfig, names: list[str]) -> int:
    """How many of the variants have the timing component (scoring predicts those twice: training.experiment)."""
    from training.experiment import build_model, switched_on

    base = build_model(config, {})
    return sum(1 for n in names if switched_on(config, "timing") and base.variant(n).timing)


def smaller_runs(plan: Plan, config: TrainConfig, shape: DataShape) -> list[str]:
    """Changes of the config that bring the estimated peak within the memory available, smallest change first."""
    suggestions = []
    sets = shape.metadata.get("feature_sets", {})
    for name in ("medium", "small"):
        if name in sets and len(sets[name]) < plan.features:
            smaller = make_plan(replace(config, feature_set=name), plan.data_dir, shape, probe=False, model=plan.model)
            if smaller.fits_in_memory():
                suggestions.append(f'feature_set = "{name}" ({len(sets[name]):,} features, ~{gb(smaller.peak_bytes)})')
                break
    for step in (2, 4, 8, 16):
        era_step = plan.era_step * step
        if era_step > plan.train_eras_in_file:
            break
        smaller = make_plan(replace(config, era_step=era_step), plan.data_dir, shape, probe=False, model=plan.model)
        if smaller.fits_in_memory():
            suggestions.append(f"era_step = {era_step} (~{gb(smaller.peak_bytes)})")
            break
    return suggestions


def check_memory(plan: Plan, config: TrainConfig, shape: DataShape | None = None) -> None:
    """NmuError (exit 2), in one line with what to change, when the estimated peak exceeds the memory available."""
    if plan.fits_in_memory():
        return
    shape = shape or DataShape(plan.data_dir, config.target)
    options = smaller_runs(plan, config, shape)
    change = ("in the config, " + " or ".join(options)) if options else \
        "a smaller feature set, a larger era_step or fewer validation eras (none of the usual changes is enough)"
    raise NmuError(f"this run needs an estimated {gb(plan.peak_bytes)} at its peak ({plan.peak_step}) but "
                   f"{gb(plan.available)} is {plan.available_note}; use {change}, or free memory "
                   f"(${MEMORY_ENV} sets the limit; `nmu train --plan` shows the estimate).")
