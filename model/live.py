"""The function Numerai runs every day: `predict(live_features, live_benchmark_models)` closing over a fitted
model. Robust rather than brittle, because a crash is a missed submission.

Rules (docs/design.md lists the runtime facts behind them):
- exactly two parameters (Numerai's runner counts them: 2 → it passes the benchmark frame);
- unknown extra columns are ignored; a missing trained feature or a NaN takes the neutral value 2
  (`FILL_VALUE`), reported in one log line of logger "model.live"; feature values off Numerai's bins (whole
  numbers 0..4) are predicted as given, with a log line; a value that is not a number (a feature column of text)
  is read as missing, with a log line naming the column;
- if fewer than `MIN_FEATURE_FRACTION` (half) of the trained features are present with a number in some row (a
  column of NaN or of text in every row counts as missing) the model cannot predict honestly: ValueError naming
  how many and which are missing;
- no `era` column → the frame is one era (model.eras.EraIndex: grouped once, the same grouping the estimator uses);
  rows without an era label join the era of every other row (Numerai's live frame is one era), or in a frame of
  several eras are one era of their own, logged;
- a repeated id is predicted once, from its first row, and a repeated column name is read from its first column:
  Numerai's submission takes each id once, and neither may crash the call (both logged);
- the benchmark frame may be None, empty, lack the expected column, some ids or finite values (NaN, inf): those
  eras are predicted without it, with a log line;
- multi-era input (Numerai's diagnostics over validation) is processed in bounded chunks of whole eras,
  never as a float copy of the whole frame, so memory stays within the runtime's 4 GB;
- the result is exactly `pandas.DataFrame`, index `id`, one column `prediction`, in [0, 1], never NaN, never
  constant within an era (ties of a constant era are broken by a stable hash of the ids, logged).

Imports numpy, pandas, the standard library and the model package only: it is pickled by value into model.pkl.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .benchmarks import benchmark_columns, benchmark_role, match_benchmark_column
from .eras import ERA_COLUMN, EraIndex
from .features import FEATURE_RANGE, FILL_VALUE, cells_off_the_bins, fill_gaps, is_small_int, rows_per_chunk
from .features import LIVE_CHUNK_CELLS as CHUNK_CELLS  # (model.features holds the chunk sizes)

LOGGER_NAME = "model.live"
MIN_FEATURE_FRACTION = 0.5
"""Below this share of the trained features present, predicting would be dishonest: raise instead."""
_SHOW = 5  # how many names a message lists


def _logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def _first(names: Sequence[str], n: int = _SHOW) -> str:
    shown = ", ".join(str(x) for x in list(names)[:n])
    return shown + (", ..." if len(names) > n else "")


_NO_BENCHMARK: list[str] = []


def _benchmark_columns(fitted: Any) -> list[str] | None:
    """The benchmark columns the fitted model uses: its `benchmark_columns_` ([] when it was fitted without
    benchmark models: it then never gets them), else None (every numeric column is passed)."""
    if hasattr(fitted, "benchmark_columns_"):
        value = fitted.benchmark_columns_
        if value is None:
            return _NO_BENCHMARK
        return [value] if isinstance(value, str) else [str(c) for c in value]
    return None


def _first_column(frame: pd.DataFrame, name: str) -> pd.Series | None:
    """The frame's column `name` (the first, when the name repeats; no copy of the frame), or None."""
    at = np.flatnonzero(frame.columns == name)
    return frame.iloc[:, int(at[0])] if len(at) else None


def _ids_of(frame: pd.DataFrame) -> pd.Index:
    """The ids of a Numerai frame: its index, or an `id` column when the index is a plain range."""
    column = _first_column(frame, "id") if isinstance(frame.index, pd.RangeIndex) else None
    if column is not None:
        return pd.Index(column.to_numpy(), name="id")
    return pd.Index(frame.index.to_numpy(), name="id")


MISSING_ERA = "<no era>"
"""The label of the rows whose era is missing (NaN, None) in a frame of several eras: one era of their own."""


def _era_index(live: pd.DataFrame, kept: np.ndarray | None = None) -> EraIndex:
    """The rows' eras (only the rows at positions `kept`, when given) grouped once; no `era` column → one era.

    A row without an era label (NaN, None: pandas 2 would read it as an era "nan", pandas 3 keeps it missing, which
    EraIndex refuses) joins the frame's era when every other row has the same one, as in Numerai's weekly live
    frame, where ranking it apart would give it a rank of its own; in a frame of several eras those rows are one era
    of their own (MISSING_ERA). Either way one log line says so."""
    column = _first_column(live, ERA_COLUMN)
    if column is None:
        return EraIndex(None, n_rows=len(live) if kept is None else len(kept))
    labels = column if kept is None else column.iloc[kept]
    missing = labels.isna().to_numpy()
    if missing.any():
        known = pd.unique(labels[~missing].astype(str).to_numpy())
        label = str(known[0]) if len(known) == 1 else MISSING_ERA
        _logger().warning("%d of %d row(s) of live_features have no era label: %s", int(missing.sum()), len(labels),
                          f"predicted with the era of every other row, {label}" if len(known) == 1
                          else "predicted as one era of their own")
        labels = labels.astype(object).where(~missing, label)
    return EraIndex(labels.astype(str).to_numpy())


def _unique_columns(frame: pd.DataFrame, what: str) -> np.ndarray:
    """The positions of the frame's columns with each name once (a repeated name's first column), logged when one
    repeats; positions, not a copy: live_features may be the 2 GB frame of 100 eras."""
    repeated = frame.columns.duplicated(keep="first")
    if repeated.any():
        _logger().warning("%s repeats column name(s) %s: the first column of each is read", what,
                          _first(sorted({str(c) for c in frame.columns[repeated]})))
    return np.flatnonzero(~repeated)


def text_as_numbers(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """A feature column of text (object, string or categorical dtype) read as numbers: float32 values, NaN where a
    value is missing or not a number, and the mask of the values given that are not numbers. The one reading of such
    a column, here and in `nmu check`'s count of filled cells."""
    values = pd.to_numeric(column.astype(object), errors="coerce").to_numpy(dtype=np.float32, na_value=np.nan)
    return values, np.isnan(values) & column.notna().to_numpy()


def has_a_number(source: Any) -> bool:
    """Whether a feature column (a numpy array or a pandas Series of a numeric dtype) holds a finite value; a float
    column is first looked at in its first rows, so the usual column costs no pass over a 100-era frame."""
    if isinstance(source, np.ndarray):
        if source.dtype.kind != "f":
            return len(source) > 0
        return bool(np.isfinite(source[:1024]).any()) or bool(np.isfinite(source).any())
    return bool(np.isfinite(source.to_numpy(dtype=np.float64, na_value=np.nan)).any())


def _column_sources(live: pd.DataFrame, present_pos: np.ndarray,
                    names: Sequence[str]) -> tuple[list[Any], list[str], list[str]]:
    """Each present trained feature column, fetched once per call: its numpy array (a view of the frame, cheap to
    slice per chunk) when it has a plain numpy dtype, the Series (converted per chunk through float32) for a pandas
    numeric dtype (Int8, Float32, boolean), else a column of text read as numbers up front (`text_as_numbers`), a
    value that is not one as missing: a crash on one bad column would be a missed submission.

    Also returns the text columns that held values other than numbers (name, count and an example, for the log) and
    the columns with no number at all, NaN or text in every row (they count as missing for the honesty rule)."""
    sources: list[Any] = []
    not_numbers: list[str] = []
    no_number: list[str] = []
    for p, name in zip(present_pos, names):
        column = live.iloc[:, p]
        if isinstance(column.dtype, np.dtype) and column.dtype.kind in "iubf":
            source = column.to_numpy()
        elif pd.api.types.is_numeric_dtype(column.dtype):
            source = column
        else:
            source, bad = text_as_numbers(column)
            if bad.any():
                not_numbers.append(f"{name} ({int(bad.sum())}, e.g. {column.iloc[int(np.argmax(bad))]!r})")
        if not has_a_number(source):
            no_number.append(str(name))
        sources.append(source)
    return sources, not_numbers, no_number


def _feature_block(sources: list[Any], rows: np.ndarray, present_slot: np.ndarray,
                   n_features: int) -> tuple[np.ndarray, int]:
    """The chunk's trained features in trained order as one (rows, features) block; missing/NaN → FILL_VALUE.

    Int8 when every value is a whole number in 0..127 (the training dtype), else float32. Built column by column
    into a feature-major array (one contiguous copy per column, a slice when the chunk's rows are consecutive, as
    in Numerai's era-sorted files) and returned as its transpose, which `pd.DataFrame(..., copy=False)` wraps without a copy
    (pandas 2 and 3). Integer
    columns are copied as int8; only the others pass through float32. Returns the block and the NaN cells filled."""
    m = len(rows)
    take: Any = slice(int(rows[0]), int(rows[-1]) + 1) if m and bool(np.all(np.diff(rows) == 1)) else rows
    block = np.full((n_features, m), FILL_VALUE, dtype=np.int8)
    is_int = np.array([isinstance(x, np.ndarray) and x.dtype.kind in "iub" for x in sources], dtype=bool)
    ints, floats = np.flatnonzero(is_int), np.flatnonzero(~is_int)
    n_nan = 0
    if len(ints):
        values = np.empty((len(ints), m), dtype=np.result_type(*[sources[i].dtype for i in ints]))
        for k, i in enumerate(ints):
            values[k] = sources[i][take]
        if not is_small_int(values):
            block = block.astype(np.float32)
        block[present_slot[ints]] = values
        del values
    if len(floats):
        values = np.empty((len(floats), m), dtype=np.float32)
        for k, i in enumerate(floats):
            source = sources[i]
            values[k] = source[take] if isinstance(source, np.ndarray) else source.iloc[take].to_numpy(
                dtype=np.float32, na_value=np.nan)
        values, n_nan = fill_gaps(values, in_place=True)
        if block.dtype == np.int8 and not is_small_int(values):
            block = block.astype(np.float32)
        block[present_slot[floats]] = values
    return block.T, n_nan


def _prepare_benchmark(bench: Any, wanted: list[str] | None, problems: list[str]) -> pd.DataFrame | None:
    """The usable benchmark columns indexed by id, or None with the reason appended to `problems`."""
    if bench is None:
        problems.append("no benchmark frame was given")
        return None
    if not isinstance(bench, pd.DataFrame) or len(bench) == 0:
        problems.append("the benchmark frame is empty" if isinstance(bench, pd.DataFrame)
                        else f"the benchmark argument is a {type(bench).__name__}, not a DataFrame")
        return None
    ids = _ids_of(bench)  # before the columns are narrowed: the ids may be an `id` column
    unique_pos = _unique_columns(bench, "the benchmark frame")
    if len(unique_pos) < bench.shape[1]:  # only then: the frame of 100 eras is not copied every call
        bench = bench.iloc[:, unique_pos]
    if wanted is None:
        cols = benchmark_columns(bench)
    else:
        # a column of the trained data version that is gone is read from the same model of the newer version
        found = {name: match_benchmark_column(bench, name) for name in wanted}
        lacking = [name for name, column in found.items() if column is None]
        if lacking:
            numeric = set(benchmark_columns(bench))
            not_numbers = [f"{c} ({bench[c].dtype})" for c in bench.columns if c not in numeric
                           and any(benchmark_role(str(c)) == benchmark_role(name) for name in lacking)]
            problems.append(f"the benchmark frame's column(s) {_first(not_numbers)} hold no numbers" if not_numbers
                            else f"the benchmark frame lacks column(s) {_first(lacking)}")
            return None
        renamed = {column: name for name, column in found.items() if column != name}
        if renamed:
            _logger().info("benchmark column(s) %s stand in for the trained %s",
                           _first(list(renamed)), _first(list(renamed.values())))
        bench = bench[list(found.values())].rename(columns=renamed)
        cols = list(wanted)
    out = bench[cols].astype(np.float32)
    out = out.where(np.isfinite(out.to_numpy()))  # inf is no benchmark value: its era goes without, as for NaN
    out.index = ids
    if not out.index.is_unique:
        out = out[~out.index.duplicated(keep="first")]
    return out


def _safe_values(raw: Any, n: int) -> np.ndarray:
    """The model's output for a chunk as a finite float64 vector in [0, 1] (NaN → 0.5, clipped)."""
    values = np.asarray(raw, dtype=np.float64).reshape(-1)
    if values.shape[0] != n:
        raise ValueError(f"the fitted model returned {values.shape[0]} predictions for {n} rows")
    values = np.where(np.isfinite(values), values, 0.5)
    return np.clip(values, 0.0, 1.0)


def _hash_ranks(ids: np.ndarray) -> np.ndarray:
    """Deterministic values in (0, 1] from the ids alone: the rank of a stable hash of each id."""
    hashed = pd.util.hash_array(np.asarray(ids, dtype=object).astype(str).astype(object))
    order = np.argsort(hashed, kind="stable")
    ranks = np.empty(len(ids), dtype=np.float64)
    ranks[order] = np.arange(1, len(ids) + 1, dtype=np.float64)
    return ranks / max(1, len(ids))


def _reads_eras(fitted: Any) -> bool:
    """Whether the estimator, or one nested in it (a Pipeline's step), reads the `era` column itself."""
    if getattr(fitted, "reads_eras", False):
        return True
    try:
        nested = fitted.get_params(deep=True).values() if hasattr(fitted, "get_params") else ()
    except Exception:  # noqa: BLE001 - an odd get_params: take the estimator as it is
        return False
    return any(getattr(v, "reads_eras", False) for v in nested if not isinstance(v, type))


def trained_columns(fitted: Any) -> list[str]:
    """The columns a fitted model was fitted on: scikit-learn's `feature_names_in_`, else LightGBM's own
    `feature_name_` (LightGBM before 4.6, e.g. the Python 3.10 image's 4.0.0, sets only that), unless LightGBM made
    those names up for an array ("Column_0", ...)."""
    names = getattr(fitted, "feature_names_in_", None)
    if names is None:
        names = getattr(fitted, "feature_name_", None) or []
        if all(str(n).startswith("Column_") and str(n)[7:].isdigit() for n in names):
            names = []
    return [str(f) for f in names]


def _live_features(fitted: Any) -> tuple[list[str], bool]:
    """The trained feature columns of a fitted model (without `era`), and whether it gets the `era` column (it was
    fitted with one, or it reads eras itself)."""
    names = trained_columns(fitted)
    return [f for f in names if f != ERA_COLUMN], ERA_COLUMN in names or _reads_eras(fitted)


def make_predict(fitted: Any) -> Callable[[pd.DataFrame, pd.DataFrame | None], pd.DataFrame]:
    """Return Numerai's `predict(live_features, live_benchmark_models)` for a fitted model.

    A NumeraiModel is called through its array-level `predict_eras` (this function has already normalised ids,
    eras, features and the benchmark). Any other fitted scikit-learn estimator needs `predict(X)` and
    `feature_names_in_` (fit it on a DataFrame); it gets X with exactly the columns it was fitted on (`era` too if
    it was), and `benchmark=` when its predict takes that argument; its output is ranked per era."""
    features, with_era = _live_features(fitted)
    if not features:
        raise ValueError("the fitted model has no feature_names_in_: fit it on a DataFrame before making the live predict")
    wanted_bench = _benchmark_columns(fitted)

    def predict(live_features: pd.DataFrame, live_benchmark_models: pd.DataFrame | None = None) -> pd.DataFrame:
        """Numerai's entry point: predictions in [0, 1] for every id of `live_features`, index `id`."""
        return predict_frame(fitted, features, wanted_bench, live_features, live_benchmark_models, with_era)

    predict.__qualname__ = "predict"
    return predict


def _takes_benchmark(fitted: Any) -> bool:
    try:
        return "benchmark" in inspect.signature(fitted.predict).parameters
    except (TypeError, ValueError):
        return False


def _predict_part(fitted: Any, block: np.ndarray, eras: EraIndex, ids: pd.Index, features: list[str],
                  bench: pd.DataFrame | None, with_era: bool) -> np.ndarray:
    """The model's values for some whole eras of a chunk: the array-level predict of a NumeraiModel, else the
    estimator's predict(X) on a frame of the columns it was fitted on, ranked per era."""
    if hasattr(fitted, "predict_eras"):
        vector = None if bench is None else bench[bench.columns[0]].to_numpy(dtype=np.float64)
        return fitted.predict_eras(block, eras, vector)
    X = pd.DataFrame(block, index=ids, columns=features, copy=False)
    if with_era:
        X.insert(0, ERA_COLUMN, eras.eras[eras.codes])
    values = fitted.predict(X, benchmark=bench) if _takes_benchmark(fitted) else fitted.predict(X)
    return eras.rank(np.asarray(values, dtype=np.float64).reshape(len(block), -1)[:, 0])


def predict_frame(fitted: Any, features: list[str], wanted_bench: list[str] | None,
                  live: pd.DataFrame, bench: Any, with_era: bool = False) -> pd.DataFrame:
    """The body of the live predict (see the module docstring for the rules it follows)."""
    log = _logger()
    if not isinstance(live, pd.DataFrame):
        raise TypeError(f"live_features must be a pandas DataFrame, got {type(live).__name__}")
    if len(live) == 0:
        raise ValueError("live_features has no rows")
    unique_pos = _unique_columns(live, "live_features")
    ids = _ids_of(live)
    kept = None  # positions of the rows predicted, when an id repeats (positions, not a copy of the frame)
    if not ids.is_unique:
        first = ~ids.duplicated(keep="first")
        log.warning("live_features repeats %d id(s) (%s): each is predicted once, from its first row",
                    int((~first).sum()), _first([str(i) for i in ids[~first].unique()]))
        kept, ids = np.flatnonzero(first), ids[first]
    at = live.columns[unique_pos].get_indexer(features)
    present_mask = at >= 0
    missing = [f for f, ok in zip(features, present_mask) if not ok]
    present_slot = np.flatnonzero(present_mask)
    present_pos = unique_pos[at[present_slot]]
    sources, not_numbers, no_number = _column_sources(live, present_pos, [features[i] for i in present_slot])
    n_present = len(features) - len(missing) - len(no_number)
    if n_present < MIN_FEATURE_FRACTION * len(features):
        lacking = ([f"{len(missing)} missing: {_first(missing)}"] if missing else []) + \
            ([f"{len(no_number)} with no number in any row: {_first(no_number)}"] if no_number else [])
        raise ValueError(
            f"only {n_present} of the model's {len(features)} trained features are in live_features with numbers "
            f"(at least {MIN_FEATURE_FRACTION:.0%} needed); {'; '.join(lacking)}"
        )
    if not_numbers:
        log.warning("live_features column(s) %s hold values that are not numbers: read as missing and filled with %d",
                    _first(not_numbers), FILL_VALUE)

    eras = _era_index(live, kept)
    problems: list[str] = []
    # a model fitted without benchmark columns, or an estimator whose predict takes none, is never given them: no
    # frame to prepare and no "without benchmark models" line every week (NumeraiModel and TargetEnsemble always
    # name their columns, so None is an estimator of the user's)
    uses_bench = len(wanted_bench) > 0 if wanted_bench is not None else _takes_benchmark(fitted)
    bench_frame = _prepare_benchmark(bench, wanted_bench, problems) if uses_bench else None
    eras_without_bench = 0

    # Numerai's features (feature_*) lie on the bins; a column of the user's own an exported estimator was fitted on
    # need not, so only the former are counted
    is_feature = np.array([str(f).startswith("feature") for f in features], dtype=bool)
    binned = None if is_feature.all() else np.flatnonzero(is_feature)
    out = np.empty(len(ids), dtype=np.float64)
    n_nan = off_bins = 0
    constant_eras: list[str] = []
    for rows in eras.chunks(rows_per_chunk(CHUNK_CELLS, len(features))):
        sub = eras.take(rows)
        block, filled = _feature_block(sources, rows if kept is None else kept[rows], present_slot, len(features))
        n_nan += filled
        off_bins += cells_off_the_bins(block if binned is None else block[:, binned])
        chunk_ids = ids[rows]
        # Which eras of the chunk have a complete benchmark: those get it, the others are predicted without.
        with_bench = np.zeros(len(rows), dtype=bool)
        bench_chunk = None
        if bench_frame is not None:
            bench_chunk = bench_frame.reindex(chunk_ids)
            era_ok = sub.sums((~bench_chunk.notna().all(axis=1).to_numpy()).astype(np.int64)) == 0
            with_bench = sub.broadcast(era_ok)
            eras_without_bench += int((~era_ok).sum())
        values = np.empty(len(rows), dtype=np.float64)
        for use in (True, False):
            part = np.flatnonzero(with_bench == use)
            if not len(part):
                continue
            whole = len(part) == len(rows)
            raw = _predict_part(fitted, block if whole else block[part], sub if whole else sub.take(part),
                                chunk_ids if whole else chunk_ids[part], features,
                                (bench_chunk if whole else bench_chunk.iloc[part]) if use else None, with_era)
            values[part] = _safe_values(raw, len(part))
        del block
        # Never constant within an era: break ties of a constant era by a stable hash of the ids.
        ordered = values[sub.order]
        spread = np.maximum.reduceat(ordered, sub.starts) - np.minimum.reduceat(ordered, sub.starts)
        for code in np.flatnonzero((sub.counts > 1) & (spread <= 0)):
            sel = sub.codes == code
            values[sel] = _hash_ranks(chunk_ids[sel].to_numpy())
            constant_eras.append(str(sub.eras[code]))
        out[rows] = values

    if missing or n_nan:
        log.warning(
            "filled %d NaN value(s) and %d missing trained feature(s)%s with %d",
            n_nan, len(missing), f" ({_first(missing)})" if missing else "", FILL_VALUE,
        )
    if off_bins:  # predicted as given: a warning, for data of another version or scale would go unnoticed
        log.warning("%d feature value(s) of live_features are not whole numbers in %d..%d, the bins the model was "
                    "trained on: predicted as given (data of another version or scale?)", off_bins, *FEATURE_RANGE)
    if problems or eras_without_bench:
        reason = "; ".join(problems) if problems else "the benchmark frame lacks some ids or finite values"
        n_eras = eras.n_eras if problems else eras_without_bench
        log.warning("predicted %d of %d era(s) without benchmark models: %s", n_eras, eras.n_eras, reason)
    if constant_eras:
        log.warning("the model's output was constant in %d era(s) (%s): ties broken by a stable hash of the ids",
                    len(constant_eras), _first(constant_eras))
    return pd.DataFrame({"prediction": out}, index=ids)
