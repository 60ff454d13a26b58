"""`nmu predict`: run a model.pkl on a data dir's live era in this process, validate the result with the
predictions schema and write `id,prediction` CSV (atomically); returns what it wrote (`PredictResult`)."""

from __future__ import annotations

import inspect
import logging
import pickle
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from training.data import readable
from validation.artifacts import atomic_path, why_not_there
from validation.errors import NmuError, first_line
from validation.schemas import validate_predictions


@dataclass(frozen=True)
class PredictResult:
    """What `predict_command` wrote: the CSV, the validated predictions, the time of the call, and the pickle's own
    notes (filled NaN, a missing benchmark, a stale history) from its `model.live` log."""

    out: Path
    predictions: pd.DataFrame
    seconds: float
    notes: tuple[str, ...]

    def lines(self) -> list[str]:
        """The notes and the summary, as the command layer shows them."""
        col = self.predictions["prediction"]
        return [*(f"note (live predict): {note}" for note in self.notes),
                f"wrote {self.out}: {len(col):,} rows | min {col.min():.4f} | max {col.max():.4f} | mean "
                f"{col.mean():.4f} | predict {self.seconds:.2f} s"]


class _LiveNotes(logging.Handler):
    """Collects the live predict's log lines (filled NaN, missing benchmark, ...) as the result's notes."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


_SHOWN_CHARS = 300  # of an exception's message: its first line, so the error stays one sentence
_REFUSAL_CHARS = 2000  # the live function's refusal names up to five features per list, Numerai's names are long


def exception_text(exc: BaseException, limit: int = _SHOWN_CHARS) -> str:
    """What a pickle's exception says (`first_line`, "no message" when nothing); an exit says its code."""
    if isinstance(exc, SystemExit) and not isinstance(exc.code, str):
        return f"exited with code {exc.code if exc.code is not None else 0}"
    return first_line(exc, default="no message", limit=limit)


class PickleRaised(NmuError):
    """The pickle's own code raised (or exited) while predicting: a defect of the pickle, not of the data (exit 1, as a
    failed run of Numerai's). Says where, from the innermost frame, without the traceback the CLI never shows."""

    exit_code = 1

    def __init__(self, model_path: Path, live_path: Path, exc: BaseException):
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" (at {frames[-1].filename} line {frames[-1].lineno}, in {frames[-1].name})" if frames else ""
        if isinstance(exc, MemoryError):
            advice = ("This machine ran out of memory while it predicted; Numerai's runtime has 4 GB, and `nmu check` "
                      "runs the pickle under that limit.")
        else:
            advice = "Numerai's run of this pickle would fail the same way; fix the code that built it and export it again."
        super().__init__(f"{model_path.name} raised {type(exc).__name__} while predicting {live_path}: "
                         f"{exception_text(exc)}{where}. {advice}")


def load_pickle(model_path: Path):
    """The callable in a model.pkl (NmuError naming the file when it cannot be loaded)."""
    if not model_path.is_file():
        raise NmuError(f"{model_path} {why_not_there(model_path)}: build a pickle with `nmu train` (or pass its path).")
    try:
        model = pd.read_pickle(model_path)
    except (pickle.UnpicklingError, TypeError, ModuleNotFoundError, EOFError, AttributeError) as exc:
        raise NmuError(f"{model_path} could not be loaded ({type(exc).__name__}: {exc}); rebuild it with `nmu train`.") from exc
    if not callable(model):
        raise NmuError(f"{model_path} holds a {type(model).__name__}, not Numerai's predict function.")
    return model


def predict_command(model_path: str | Path, data_dir: str | Path, out: str | Path | None = None) -> PredictResult:
    """Run the pickle on DIR/live.parquet (+ live_benchmark_models.parquet), validate, write CSV; what it wrote."""
    model_path, data_dir = Path(model_path), Path(data_dir)
    out = Path(out) if out is not None else model_path.with_name("predictions.csv")
    if out.is_dir():
        raise NmuError(f"--out {out} is a directory; give the path of the CSV file to write.")
    model = load_pickle(model_path)
    live_path = data_dir / "live.parquet"
    bench_path = data_dir / "live_benchmark_models.parquet"
    if not live_path.is_file():
        raise NmuError(f"{live_path} {why_not_there(live_path)}: download the live era with `nmu data download --out {data_dir}`.")
    with readable(live_path):
        live = pd.read_parquet(live_path)
    if len(live) == 0:
        raise NmuError(f"{live_path} has no rows: download the live era again with `nmu data download --out {data_dir}`.")
    n_params = len(inspect.signature(model).parameters)
    if n_params not in (1, 2):
        raise NmuError(f"{model_path} takes {n_params} parameters; Numerai calls it with 1 or 2.")
    bench = None
    if n_params == 2:  # read before the pickle runs: a broken file is a data problem, not the pickle's failure
        with readable(bench_path):
            bench = pd.read_parquet(bench_path) if bench_path.is_file() else None
    notes = _LiveNotes()
    live_logger = logging.getLogger("model.live")
    live_logger.addHandler(notes)
    start = time.perf_counter()
    try:
        predictions = model(live, bench) if n_params == 2 else model(live)
    except (ValueError, TypeError) as exc:  # the live function refuses data it cannot predict honestly
        text = exception_text(exc, limit=_REFUSAL_CHARS)  # its refusal lists the features: shown whole
        raise NmuError(f"{model_path.name} could not predict {live_path}: {text}"
                       f"{'' if text.endswith(('.', '…')) else '.'}") from None
    except KeyboardInterrupt:  # the user's Ctrl-C, not the pickle's failure
        raise
    except BaseException as exc:  # noqa: BLE001 - the pickle's own code failed, or exited (SystemExit too): Numerai's
        raise PickleRaised(model_path, live_path, exc) from None  # run of it would fail the same way
    finally:
        live_logger.removeHandler(notes)
    seconds = time.perf_counter() - start
    if type(predictions) is not pd.DataFrame:
        raise NmuError(f"{model_path} returned a {type(predictions).__name__}; Numerai needs exactly a pandas DataFrame.")
    predictions = validate_predictions(predictions, live.index, source=f"predictions of {model_path.name}")
    with atomic_path(out) as tmp:
        predictions.to_csv(tmp, index_label="id")
    return PredictResult(out=out, predictions=predictions, seconds=seconds, notes=tuple(notes.lines))
