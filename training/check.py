"""`nmu check`: run a pickle in the replica of Numerai's runtime (validation.runtime.replica) on the live era and
on a multi-era validation slice, print the result, and record it in the pickle's manifest."""

from __future__ import annotations

import platform
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from validation.artifacts import file_sha256, read_manifest, update_manifest
from validation.errors import NmuError
from validation.runtime.replica import (
    MEMORY_LIMIT_MB,
    TIME_LIMIT_S,
    ensure_runtime,
    pins_file,
    run_pickle,
    write_validation_slice,
)

DEFAULT_DATA_DIR = Path("data/synthetic")


def _require(path: Path, what: str) -> None:
    if not path.is_file():
        raise NmuError(f"{path} does not exist: {what}")


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


def check_command(model_path: str | Path, data_dir: str | Path | None = None, validation_eras: int = 50, *,
                  memory_limit_mb: float = MEMORY_LIMIT_MB, time_limit_s: float = TIME_LIMIT_S,
                  runtime_dir: Path | None = None, log: Callable[[str], None] = print) -> bool:
    """Run a pickle in the replica of Numerai's runtime on the live era and on a multi-era validation slice;
    print and record (manifest `check`) the result; True only when both pass."""
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

    sha = file_sha256(model_path)
    size = model_path.stat().st_size
    built = str(read_manifest(model_path).get("python") or "")
    if built and built.split(".")[:2] != platform.python_version().split(".")[:2]:
        log(f"warning: the manifest says this pickle was built with Python {built}; this check (and the upload's "
            f"runtime image) must use the same minor version, not {platform.python_version()}.")
    python = ensure_runtime(root=runtime_dir, log=log)
    log(f"runtime replica: {python} (Python {platform.python_version()}, pins {pins_file().name}); limits: 1 CPU, "
        f"{memory_limit_mb:.0f} MB, {time_limit_s:g} s")
    limits = {"memory_limit_mb": memory_limit_mb, "time_limit_s": time_limit_s}
    live_result = run_pickle(python, model_path, live, live_bench, **limits)
    live_result["run"] = "live run"
    log(_line("live", live_result))
    results = [live_result]
    validation_result: dict[str, Any] | None = None
    if live_result["status"] == "pass" and validation_eras > 0:
        with tempfile.TemporaryDirectory(prefix="nmu-validation-") as tmp:
            v_live, v_bench, n_eras, _ = write_validation_slice(data_dir, validation_eras, Path(tmp))
            validation_result = run_pickle(python, model_path, v_live, v_bench, all_eras_at_once=True, **limits)
        validation_result["run"] = f"validation diagnostics run ({n_eras} eras in one call)"
        log(_line(f"validation diagnostics ({n_eras} newest eras in one call)", validation_result))
        results.append(validation_result)

    failed = next((r for r in results if r["status"] != "pass"), None)
    passed = failed is None
    reason = "" if passed else f"{failed['run']}: {failed.get('reason')}"
    peak = max(r["peak_rss_mb"] for r in results)
    log(f"pickle: {model_path} {size / 2**20:.2f} MB, sha256 {sha[:12]}")
    if passed:
        log(f"PASS: the pickle runs in the replica of Numerai's runtime (peak memory {peak:.0f} MB, "
            f"live predict {live_result['predict_seconds']:.2f} s).")
    else:
        log(f"FAIL: {reason}")
    check = {
        "passed": passed, "sha256": sha, "python": live_result.get("python") or platform.python_version(),
        "peak_rss_mb": peak, "predict_seconds": live_result.get("predict_seconds"),
        "load_seconds": live_result.get("load_seconds"), "reason": reason, "pickle_bytes": size,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "limits": {"cpus": 1, "memory_mb": memory_limit_mb, "seconds": time_limit_s},
    }
    if validation_result is not None:
        check["validation"] = {k: validation_result.get(k) for k in
                               ("status", "reason", "rows", "eras", "predict_seconds", "peak_rss_mb")}
    update_manifest(model_path, check=check)
    return passed
