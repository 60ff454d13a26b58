"""Standalone runner of the runtime replica: does what Numerai's numerai-predict runner does with a pickle.

Run by `validation.runtime.replica` with the replica venv's Python in isolated mode (`python -I`), from a temporary
directory, so nothing of this project can be imported: it imports only the standard library and the
runtime's pinned packages. It loads the pickle with `pandas.read_pickle`, counts the parameters of what it
loaded (1 → model(live), 2 → model(live, benchmarks), else fail), runs it era by era as the runner does,
checks each result by the runner's rules (not None, exactly `pandas.DataFrame`, one row per input row, no
NaN, first column in [0, 1]) and the whole by Numerai's submission rules (every live id exactly once,
non-zero standard deviation), and writes a JSON result: status, reason, load and predict seconds, and memory:
the frames' own size (loaded lean, as a careful loader would), the resident size before predict and the peak
during predict, so what the pickle adds is told apart from the frame Numerai hands it.

Usage: python -I runner.py --pickle P --live L [--benchmarks B] --result R [--predictions CSV]
       [--all-eras-at-once]
"""

import argparse
import inspect
import json
import logging
import os
import pickle
import platform
import sys
import time
import traceback


def _py_version() -> str:
    return ".".join(platform.python_version().split(".")[:2])


_PEAK_BEFORE_RESET = [0]  # the high-water mark before the last reset_peak (VmHWM restarts there)


def status_bytes(key: str, pid: "int | str" = "self") -> int:
    """A memory line of /proc/<pid>/status ("VmHWM", "VmRSS") in bytes, of this process by default; 0 where /proc is
    absent. The one reader of these lines: the replica's watch reads its child's through it too."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _peak_rss_bytes() -> int:
    """The peak resident memory of this process since exec (VmHWM, across resets). Not ru_maxrss: that also counts
    the parent's memory that a forked child held before exec."""
    return max(_PEAK_BEFORE_RESET[0], status_bytes("VmHWM"))


def reset_peak() -> bool:
    """Restart VmHWM at the current resident size (Linux clear_refs 5), so the next peak is the predict's own."""
    _PEAK_BEFORE_RESET[0] = _peak_rss_bytes()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _read_frame(path: str):
    """Load a parquet file as a lean loader does: one row group at a time into preallocated column arrays, then
    one frame over those arrays without a copy, so the peak is about the frame itself. (`pandas.read_parquet`,
    and even arrow's `to_pandas(self_destruct=True)`, hold the arrow table and the frame at once: over 3x the
    frame for Numerai's validation files.) Same frame as `pandas.read_parquet`: index, columns, dtypes."""
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    n = pf.metadata.num_rows
    if pf.num_row_groups < 2:
        return pf.read().to_pandas(split_blocks=True, self_destruct=True)
    columns: dict = {}  # name -> preallocated numpy array, or the pieces of an extension array (concatenated once)
    index: list = []
    start = 0
    for group in range(pf.num_row_groups):
        part = pf.read_row_group(group).to_pandas(split_blocks=True, self_destruct=True)
        stop = start + len(part)
        if not columns:
            columns = {c: np.empty(n, dtype=part[c].dtype) if isinstance(part[c].dtype, np.dtype) else []
                       for c in part.columns}
        index.append(part.index)
        for c in part.columns:
            target = columns[c]
            if isinstance(target, list):
                target.append(part[c].array)
                continue
            values = part[c].to_numpy()
            if not np.can_cast(values.dtype, target.dtype, casting="safe"):  # e.g. ints here, NaN there
                target = columns[c] = target.astype(np.result_type(values.dtype, target.dtype))
            target[start:stop] = values
            del values  # a column view keeps its row group's arrow buffers alive
        start = stop
        del part
    for c, target in columns.items():
        if isinstance(target, list):
            columns[c] = type(target[0])._concat_same_type(target)
    stored = not all(isinstance(i, pd.RangeIndex) for i in index)  # a file without an index: 0..n-1, as pandas
    frame_index = index[0].append(index[1:]) if stored else pd.RangeIndex(n)
    return pd.DataFrame(columns, index=frame_index, copy=False)


def _frame_bytes(frame) -> int:
    """In-memory size of a frame, strings included."""
    return int(frame.memory_usage(deep=True, index=True).sum())


def _write(path: str, result: dict) -> None:
    result["peak_rss_bytes"] = _peak_rss_bytes()
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(result, fh, indent=2)
    os.replace(tmp, path)


def _fail(result: dict, reason: str, path: str, code: int = 1) -> int:
    result["status"] = "fail"
    result["reason"] = reason
    _write(path, result)
    print(f"FAIL: {reason}", file=sys.stderr)
    return code


class _Records(logging.Handler):
    """Keeps the pickle's first MAX_RECORDS log records (logger, level, message) in the result."""

    MAX_RECORDS = 50

    def __init__(self, result: dict) -> None:
        super().__init__(logging.INFO)
        self.records = result.setdefault("model_log", [])

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) < self.MAX_RECORDS:
            self.records.append({"logger": record.name, "level": record.levelname, "message": record.getMessage()})


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:500]


def main(argv=None) -> int:
    """Run the pickle as the runner does and write the result (see the module docstring); the exit code."""
    parser = argparse.ArgumentParser(description="Run a Numerai model pickle as Numerai's runner does.")
    parser.add_argument("--pickle", required=True)
    parser.add_argument("--live", required=True)
    parser.add_argument("--benchmarks")
    parser.add_argument("--result", required=True)
    parser.add_argument("--predictions")
    parser.add_argument("--all-eras-at-once", action="store_true",
                        help="Call the pickle once with the whole multi-era frame (Numerai's diagnostics may).")
    args = parser.parse_args(argv)

    result = {"status": "running", "reason": "", "python": platform.python_version(), "load_seconds": None,
              "predict_seconds": None, "rows": None, "eras": None, "n_parameters": None}
    _write(args.result, result)

    import pandas as pd

    # the pickle's own log lines (filled values, a stale history, an ensemble's members' time) reach the log as on
    # Numerai's runner, and as records in the result: `nmu check` shows them by logger and level, never by their text
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger().addHandler(_Records(result))
    result["packages"] = {"pandas": pd.__version__}
    start = time.perf_counter()
    try:
        model = pd.read_pickle(args.pickle)
    except pickle.UnpicklingError as exc:
        return _fail(result, f"Invalid pickle - {_one_line(exc)}", args.result)
    except TypeError as exc:
        return _fail(result, f"Pickle incompatible with {_py_version()} - {_one_line(exc)}", args.result)
    except ModuleNotFoundError as exc:
        return _fail(result, f"Import error reading pickle - {_one_line(exc)}", args.result)
    except Exception as exc:  # the real runner dies with a traceback here
        return _fail(result, f"Error reading pickle - {_one_line(exc)}", args.result)
    result["load_seconds"] = round(time.perf_counter() - start, 3)
    result["rss_after_pickle_bytes"] = status_bytes("VmRSS")
    _write(args.result, result)

    try:
        n_params = len(inspect.signature(model).parameters)
    except (TypeError, ValueError) as exc:
        return _fail(result, f"Invalid pickle function - not callable ({_one_line(exc)})", args.result)
    result["n_parameters"] = n_params
    if n_params not in (1, 2):
        return _fail(result, f"Invalid pickle function - it must have 1 or 2 arguments, it has {n_params}",
                     args.result)

    live = _read_frame(args.live)
    benchmarks = None
    if n_params == 2:
        if not args.benchmarks:
            return _fail(result, "the pickle takes benchmark models but none were given", args.result)
        benchmarks = _read_frame(args.benchmarks)
    result["rows"] = int(len(live))
    result["eras"] = int(live["era"].nunique())
    # Memory of the frames Numerai hands over (not ours) apart from what our predict adds on top of them.
    result["frame_bytes"] = _frame_bytes(live) + (0 if benchmarks is None else _frame_bytes(benchmarks))
    result["load_peak_bytes"] = _peak_rss_bytes()
    result["rss_before_predict_bytes"] = status_bytes("VmRSS")
    peak_reset = reset_peak()

    start = time.perf_counter()
    parts = []
    try:
        groups = [(None, live)] if args.all_eras_at_once else live.groupby("era")
        for _era, era_features in groups:
            if n_params == 1:
                preds = model(era_features)
            else:
                preds = model(era_features, benchmarks.loc[era_features.index])
            if preds is None:
                return _fail(result, "Pickle function is invalid - returned None", args.result)
            if type(preds) is not pd.DataFrame:
                return _fail(result, f"Pickle function is invalid - returned {type(preds)} instead of pd.DataFrame",
                             args.result)
            if len(preds) != len(era_features):
                return _fail(result, f"Pickle function returned {len(preds)} predictions, expected "
                                     f"{len(era_features)}", args.result)
            if preds.isna().any().any():
                return _fail(result, "Pickle function returned at least 1 NaN prediction", args.result)
            if len(preds.columns) == 0 or not preds.iloc[:, 0].between(0, 1).all():
                return _fail(result, "Pickle function returned invalid predictions. Ensure values are between "
                                     "0 and 1.", args.result)
            parts.append(preds)
        predictions = pd.concat(parts)
    except TypeError as exc:
        traceback.print_exc()
        return _fail(result, f"Pickle function is invalid - {_one_line(exc)}", args.result)
    except Exception as exc:
        traceback.print_exc()
        return _fail(result, f"Pickle function raised {_one_line(exc)}", args.result)
    result["predict_seconds"] = round(time.perf_counter() - start, 3)
    if peak_reset:
        result["predict_peak_bytes"] = status_bytes("VmHWM")

    # Numerai's submission rules (numerai-tools validate_submission_numerai): every live id exactly once,
    # values in [0, 1], not constant; the CSV is `id,prediction`.
    if len(predictions) == 0:
        return _fail(result, "Pickle function returned no predictions", args.result)
    column = predictions.iloc[:, 0]
    ids = predictions.index
    if ids.has_duplicates:
        dup = ids[ids.duplicated()].unique()
        return _fail(result, f"Submission has {len(dup)} duplicated id(s), e.g. {list(dup[:3])}", args.result)
    missing = live.index.difference(ids)
    extra = ids.difference(live.index)
    if len(missing) or len(extra):
        return _fail(result, f"Submission ids differ from live ids: {len(missing)} missing (e.g. "
                             f"{list(missing[:3])}), {len(extra)} unknown (e.g. {list(extra[:3])})", args.result)
    if not (column.std() > 0):
        return _fail(result, "Submission has zero standard deviation (constant predictions)", args.result)
    # Numerai writes `predictions.to_csv()` (predict.py of numerai-predict), and its submission check (numerai-tools
    # validate_headers_numerai) takes exactly the header id,prediction or id,probability: another is a missed round
    header = [ids.name, *predictions.columns]
    if header not in (["id", "prediction"], ["id", "probability"]):
        return _fail(result, f"Submission CSV header would be {header}: Numerai's submission check takes only "
                             "['id', 'prediction'] or ['id', 'probability'] (the index named id, one prediction "
                             "column)", args.result)
    result["summary"] = {"min": float(column.min()), "max": float(column.max()), "mean": float(column.mean()),
                         "std": float(column.std())}
    if args.predictions:
        with open(args.predictions, "w") as fh:
            predictions.to_csv(fh)
    result["status"] = "pass"
    _write(args.result, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
