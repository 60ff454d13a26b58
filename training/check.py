"""`nmu check`: run a pickle in the replica of Numerai's runtime (validation.runtime.replica) on the live era and
on a multi-era validation slice, record the result bound to what was checked, and return it (`CheckResult`); the
progress lines go to the `training.check` logger, the command layer shows them and the verdict.

The record names the pickle's sha256, the data it ran on (each file's sha256) and the outcome. It is written into
the pickle's manifest when the pickle has one (from `nmu train`, `nmu refresh` or `export_pickle`), or into an
explicit `--record` path; beside an unknown pickle nothing is written. Problems of the data (an empty live file,
too few of the trained features) are reported as such before anything runs, and leave the pickle's earlier record
as it was. A pass on live data that needed the neutral fill for more than FILL_WARN_SHARE of the trained feature
cells is recorded with a warning, which `nmu upload` repeats.
"""

from __future__ import annotations

import logging
import platform
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from model.live import MIN_FEATURE_FRACTION, has_a_number, text_as_numbers
from training.data import null_free, readable
from validation.artifacts import (
    atomic_write_json,
    file_sha256,
    manifest_path,
    read_json_object,
    read_manifest,
    why_not_there,
)
from validation.errors import NmuError
from validation.runtime.replica import (
    MEMORY_LIMIT_MB,
    TIME_LIMIT_S,
    pins_file,
    run_pickle,
    runtime,
    write_validation_slice,
)

_log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = Path("data/synthetic")
FILL_WARN_SHARE = 0.05
"""A pass on live data where more than this share of the trained feature cells was missing or NaN (and so took the
neutral value 2) is recorded with a warning: Numerai's live era rarely lacks more than ~1 % of its values."""


class DataProblem(NmuError):
    """The data cannot show whether the pickle works (not a verdict on the pickle)."""


@dataclass(frozen=True)
class CheckResult:
    """What `check_command` found.

    Attributes
    ----------
    passed : bool
        Both runs passed.
    reason : str
        Why it failed ("" on a pass).
    warning : str
        A caveat of a pass (most live feature cells filled), "" when none.
    record : dict
        The check record (the manifest's "check").
    record_path : Path or None
        Where it was written; None when the pickle has no manifest and no --record was given.
    model_log : list of dict
        The pickle's own log records of the live run ({"logger", "level", "message"}).
    """

    passed: bool
    reason: str
    warning: str
    record: dict[str, Any]
    record_path: Path | None
    model_log: list[dict[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The verdict as the command layer shows it."""
        lines = [f"pickle: {self.record['pickle_path']} {self.record['pickle_bytes'] / 2**20:.2f} MB, sha256 "
                 f"{self.record['sha256'][:12]}"]
        if self.passed:
            lines.append(f"PASS: the pickle runs in the replica of Numerai's runtime (peak memory "
                         f"{self.record['peak_rss_mb']:.0f} MB, live predict {self.record['predict_seconds']:.2f} s).")
            if self.warning:
                lines.append(f"warning: {self.warning}")
        else:
            lines.append(f"FAIL: {self.reason}")
        if self.record_path is None:
            lines.append(f"not recorded: {Path(self.record['pickle_path']).name} has no manifest from `nmu train` or "
                         "`nmu refresh`; pass --record PATH to keep the result.")
        return lines


def _require(path: Path, what: str) -> None:
    if not path.is_file():
        raise NmuError(f"{path} {why_not_there(path)}: {what}")


def _line(name: str, r: dict[str, Any]) -> str:
    status = "PASS" if r.get("status") == "pass" else "FAIL"
    parts = [f"{name}: {status}"]
    if r.get("rows") is not None:
        parts.append(f"{r['rows']:,} rows, {r.get('eras')} era(s)")
    if r.get("load_seconds") is not None:
        parts.append(f"load {r['load_seconds']:.2f} s")
    if r.get("predict_seconds") is not None:
        parts.append(f"predict {r['predict_seconds']:.2f} s")
    parts.append(f"peak memory {r['peak_rss_mb']:.0f} MB")
    if r.get("frame_bytes") is not None and r.get("predict_peak_bytes") is not None:
        added = max(0, r["predict_peak_bytes"] - r["rss_before_predict_bytes"])
        parts.append(f"of which the frames {r['frame_bytes'] / 2**20:.0f} MB, the predict's own {added / 2**20:.0f} MB")
    text = " | ".join(parts)
    if status == "FAIL":
        text += f"\n  reason: {r.get('reason')}"
    return text


def live_fill_share(live: Path, features: list[str], what: str | None = None) -> float:
    """The share of the trained feature cells of the live file that are missing or NaN; DataProblem when the file is
    empty or holds fewer than MIN_FEATURE_FRACTION of the trained features with numbers (the pickle would refuse to
    predict, and its failed run would overwrite the record). `what` names the data in messages (default: the path)."""
    what = what or str(live)
    with readable(live, DataProblem, "data problem: ", " The pickle's earlier check record was left as it was."):
        return _fill_share(pq.ParquetFile(live), what, features)


def _fill_share(pf: pq.ParquetFile, live: str, features: list[str]) -> float:
    rows = pf.metadata.num_rows
    if rows == 0:
        raise DataProblem(f"data problem: {live} has no rows, so it cannot show whether the pickle works; download "
                          "the live era again. The pickle's earlier check record was left as it was.")
    names = set(pf.schema_arrow.names)
    present = [f for f in features if f in names]
    everything = list(range(pf.metadata.num_row_groups))
    filled, no_number = 0, []
    for name in present:  # a column at a time, read as the pickle reads it (model.live): a gap takes the neutral value
        if pa.types.is_integer(pf.schema_arrow.field(name).type) and null_free(pf, name, everything):
            continue  # Numerai's int8 features: complete by the file's statistics, nothing to read
        column = pf.read(columns=[name]).column(0).to_pandas()
        if pd.api.types.is_numeric_dtype(column.dtype):
            values = column.to_numpy(dtype=np.float32, na_value=np.nan)
        else:
            values, _ = text_as_numbers(column)
        filled += int((~np.isfinite(values)).sum())
        if not has_a_number(values):
            no_number.append(name)
    if len(present) - len(no_number) < MIN_FEATURE_FRACTION * len(features):
        missing = [f for f in features if f not in names]
        lacking = ([f"missing e.g. {', '.join(missing[:3])}"] if missing else []) + \
            ([f"with no number in any row e.g. {', '.join(no_number[:3])}"] if no_number else [])
        raise DataProblem(
            f"data problem: {live} holds {len(present) - len(no_number)} of the pickle's {len(features)} trained "
            f"features with numbers (at least {MIN_FEATURE_FRACTION:.0%} needed; {'; '.join(lacking)}): is it another "
            "data version than the pickle was trained on? The pickle's earlier check record was left as it was.")
    return ((len(features) - len(present)) * rows + filled) / max(1, len(features) * rows)


def check_command(model_path: str | Path, data_dir: str | Path | None = None, validation_eras: int = 50, *,
                  record: str | Path | None = None, memory_limit_mb: float = MEMORY_LIMIT_MB,
                  time_limit_s: float = TIME_LIMIT_S, runtime_dir: Path | None = None) -> CheckResult:
    """Run a pickle in the replica of Numerai's runtime on the live era and on a multi-era validation slice, record
    the result (see the module docstring) and return it; it passes only when both runs pass.

    Parameters
    ----------
    model_path : path
        The pickle.
    data_dir : path, optional
        A data directory with live.parquet, live_benchmark_models.parquet and, for the diagnostics run,
        validation.parquet and validation_benchmark_models.parquet (default: data/synthetic).
    validation_eras : int, default=50
        The newest validation eras run in one call, as Numerai's diagnostics do (0 skips that run).
    record : path, optional
        Where to write the check record instead of the pickle's manifest.

    Returns
    -------
    CheckResult
    """
    model_path = Path(model_path)
    data_dir = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    _require(model_path, "build a pickle with `nmu train` (or pass its path).")
    hint = f"make the data with `nmu data synthetic --out {data_dir}` or `nmu data download --out {data_dir}`."
    live = data_dir / "live.parquet"
    live_bench = data_dir / "live_benchmark_models.parquet"
    _require(live, hint)
    _require(live_bench, hint)
    if validation_eras > 0:
        for name in ("validation.parquet", "validation_benchmark_models.parquet"):
            _require(data_dir / name, hint + " Or skip the diagnostics run with --validation-eras 0.")
    manifest = read_manifest(model_path)
    record_path = Path(record) if record is not None else (manifest_path(model_path) if manifest.get("pickle") else None)
    if record is not None:
        read_json_object(record_path, missing={})  # a record file that exists must be one we can merge into
    features = [str(f) for f in manifest.get("features") or []]
    # an empty live file is a data problem whether or not a manifest names the trained features (without one, the
    # pickle's run failed on it and the earlier record was overwritten with a fail)
    fill_share = live_fill_share(live, features)
    fill_share = fill_share if features else None

    sha = file_sha256(model_path)
    size = model_path.stat().st_size
    built = str(manifest.get("python") or "")
    if built and built.split(".")[:2] != platform.python_version().split(".")[:2]:
        _log.warning("warning: the manifest says this pickle was built with Python %s; this check (and the upload's "
                     "runtime image) must use the same minor version, not %s.", built, platform.python_version())
    with runtime(root=runtime_dir) as python:  # held: a rebuild for other pins waits until these runs end
        _log.info("runtime replica: %s (Python %s, pins %s); limits: 1 CPU, %.0f MB, %g s", python,
                  platform.python_version(), pins_file().name, memory_limit_mb, time_limit_s)
        limits = {"memory_limit_mb": memory_limit_mb, "time_limit_s": time_limit_s}
        live_result = run_pickle(python, model_path, live, live_bench, **limits)
        live_result["run"] = "live run"
        _log.info("%s", _line("live", live_result))
        model_log = [r for r in live_result.get("model_log") or [] if str(r.get("logger", "")).startswith("model")]
        for record_ in model_log:  # the pickle's own words: filled values, a stale history, an ensemble's time shares
            _log.info("  the pickle (%s): %s", record_["logger"], record_["message"])
        results = [live_result]
        validation_result: dict[str, Any] | None = None
        checked_files = [live, live_bench]
        if live_result["status"] == "pass" and validation_eras > 0:
            with tempfile.TemporaryDirectory(prefix="nmu-validation-") as tmp:
                v_live, v_bench, n_eras, _ = write_validation_slice(data_dir, validation_eras, Path(tmp))
                # the same rule for the diagnostics' eras: data the pickle would refuse is not its failed run
                live_fill_share(v_live, features, f"the {n_eras} newest eras of {data_dir / 'validation.parquet'}")
                validation_result = run_pickle(python, model_path, v_live, v_bench, all_eras_at_once=True, **limits)
            validation_result["run"] = f"validation diagnostics run ({n_eras} eras in one call)"
            _log.info("%s", _line(f"validation diagnostics ({n_eras} newest eras in one call)", validation_result))
            results.append(validation_result)
            checked_files += [data_dir / "validation.parquet", data_dir / "validation_benchmark_models.parquet"]

    failed = next((r for r in results if r["status"] != "pass"), None)
    passed = failed is None
    reason = "" if passed else f"{failed['run']}: {failed.get('reason')}"
    peak = max(r["peak_rss_mb"] for r in results)
    warning = ""
    if passed and fill_share is not None and fill_share > FILL_WARN_SHARE:
        warning = (f"{fill_share:.1%} of the live era's trained feature cells were missing or NaN and took the neutral "
                   f"value (more than {FILL_WARN_SHARE:.0%}): the pass says little about the model's predictions")
    check = {
        "passed": passed, "sha256": sha, "python": live_result.get("python") or platform.python_version(),
        "data": {"dir": str(data_dir.resolve()), "files": {p.name: file_sha256(p) for p in checked_files}},
        "fill_share": None if fill_share is None else round(fill_share, 6), "warning": warning,
        "peak_rss_mb": peak, "predict_seconds": live_result.get("predict_seconds"),
        "load_seconds": live_result.get("load_seconds"), "reason": reason, "pickle_bytes": size,
        "pickle_path": str(model_path),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "limits": {"cpus": 1, "memory_mb": memory_limit_mb, "seconds": time_limit_s},
    }
    if validation_result is not None:
        check["validation"] = {k: validation_result.get(k) for k in
                               ("status", "reason", "rows", "eras", "predict_seconds", "peak_rss_mb")}
    if record_path is not None:
        atomic_write_json(record_path, {**read_json_object(record_path, missing={}), "check": check})
    return CheckResult(passed=passed, reason=reason, warning=warning, record=check, record_path=record_path,
                       model_log=model_log)
