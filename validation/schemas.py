"""pandera schemas for Numerai frames: training/validation, live, benchmark and predictions.

Each `validate_*` function builds a schema for the frame at hand, validates it lazily (every failure is
collected, nothing stops at the first one) and either returns the frame unchanged or raises
`DataValidationError(source, failures)`, where `failures` has one row per (column, check) with the count
of offending rows and the first offending ids as `id@era=value`.

Speed on Numerai-sized frames (2.75M rows x 780 int8 features) matters, so:
- pandera runs with `inplace=True` (no copy of the frame) and the feature block is NOT 780 pandera checks:
  one DataFrame-level check looks at every feature column's min/max with numpy (per dtype, no float64
  conversion, no boolean frame) and only looks row by row into the few columns that fail;
- row-level rules (NaN, a value set, a range, duplicate ids, unresolved-era targets, std, live ids) are the
  project's own vectorised pandera checks: each returns one bool to pandera and records its count and first
  offending rows (in row order, with their eras) itself. pandera's element-wise failure cases would sort and
  stringify every failing value: 35-40 s when all 2.75M rows fail, against about a second this way;
- pandera's own failure cases (missing or unexpected columns, index name, duplicated column names, a check
  that raised) are folded into the same compact table.

Not used inside model/: pandera is not part of Numerai's runtime.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

try:  # pandera >= 0.24 keeps the pandas API here; older releases at the top level
    import pandera.pandas as pa
except ImportError:  # pragma: no cover - older pandera
    import pandera as pa  # type: ignore[no-redef]

from model.eras import EraIndex
from model.features import FEATURE_RANGE, between_the_bins, outside_the_range
from validation.errors import DataValidationError

__all__ = [
    "FAILURE_COLUMNS",
    "FEATURE_RANGE",
    "TARGET_VALUES",
    "validate_benchmark_frame",
    "validate_live_frame",
    "validate_predictions",
    "validate_training_frame",
]

FAILURE_COLUMNS = ["column", "check", "count", "examples"]
TARGET_VALUES = (0.0, 0.25, 0.5, 0.75, 1.0)
INDEX_NAME = "id"
ERA = "era"
DATA_TYPE = "data_type"
PREDICTION = "prediction"

MAX_EXAMPLES = 3  # offending ids listed per row of the table
EXAMPLES_WIDTH = 60  # DataValidationError.table() cuts cells at 60 characters
MAX_ROWS_PER_CHECK = 12  # beyond this, one check's failures over many columns fold into one row

# pandera's check names -> the words the table shows
_CHECK_NAMES = {
    "column_in_dataframe": "present",
    "column_in_schema": "expected (no extra columns)",
    "field_uniqueness": "unique",
    "not_nullable": "not NaN",
    "dataframe_column_labels_unique": "unique column names",
}


# --------------------------------------------------------------------------------------------- helpers


class _Problems:
    """Rows recorded by the project's own checks during one validation (pandera sees only a bool)."""

    def __init__(self, df: pd.DataFrame):
        self.df = df
        self.rows: list[dict[str, Any]] = []
        self.names: set[str] = set()

    def check(self, fn: Callable[..., bool], name: str) -> pa.Check:
        """A pandera Check named `name` whose failures `fn` records itself (it returns True when all is fine)."""
        self.names.add(name)

        def run(obj: Any) -> bool:
            try:
                return bool(fn(obj))
            except Exception as exc:  # noqa: BLE001 - a check that breaks on odd data is itself a finding
                column = str(obj.name) if isinstance(obj, pd.Series) and obj.name is not None else "(frame)"
                self.add(column, name, 1, _fmt_value(f"check raised {type(exc).__name__}: {exc}")[:EXAMPLES_WIDTH])
                return False

        return pa.Check(run, name=name, error=name, ignore_na=False)

    def add(self, column: str, check: str, count: int, examples: str) -> None:
        self.rows.append({"column": str(column), "check": check, "count": int(count), "examples": examples})

    def add_positions(
        self, column: str, check: str, mask: np.ndarray, values: np.ndarray | None = None, count: int | None = None
    ) -> None:
        """Record the rows where `mask` is True (positions in the frame), citing the first few."""
        positions = np.flatnonzero(mask)
        if len(positions) == 0:
            return
        shown = positions[:MAX_EXAMPLES]
        shown_values = None if values is None else [values[p] for p in shown]
        examples = _examples(_labels_at(self.df, shown), shown_values, total=len(positions))
        self.add(column, check, len(positions) if count is None else count, examples)


def _fmt_value(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return "NaN"
        return f"{float(value):g}"
    text = repr(value) if isinstance(value, str) else str(value)
    limit = EXAMPLES_WIDTH if isinstance(value, str) and value.startswith("check raised") else 20
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _examples(labels: Sequence[str], values: Sequence[Any] | None = None, total: int | None = None) -> str:
    """`id@era=value, ...` for the first offending rows, cut to fit the table's 60-character cells."""
    items = [lab if values is None else f"{lab}={_fmt_value(v)}" for lab, v in zip(labels, values or [None] * len(labels))]
    out = ""
    for item in items:
        candidate = item if not out else f"{out}, {item}"
        if out and len(candidate) > EXAMPLES_WIDTH - 3:
            return out + ", …"
        out = candidate
    if total is not None and total > len(items) and len(out) <= EXAMPLES_WIDTH - 3:
        out += ", …"
    return out


def _era_values(df: pd.DataFrame) -> pd.Series | None:
    if ERA not in df.columns:
        return None
    era = df[ERA]
    return era.iloc[:, 0] if isinstance(era, pd.DataFrame) else era


def _labels_at(df: pd.DataFrame, positions: np.ndarray) -> list[str]:
    """`id@era` for rows at the given positions (just `id` if the frame has no era column)."""
    ids = [str(i) for i in df.index[positions]]
    era = _era_values(df)
    if era is None:
        return ids
    eras = era.iloc[positions].tolist()
    return [f"{i}@{e}" for i, e in zip(ids, eras)]


def _labels_for_ids(df: pd.DataFrame, ids: Sequence[Any]) -> list[str]:
    """`id@era` for index labels reported by pandera (the first row carrying each label)."""
    era = _era_values(df)
    if era is None or len(ids) == 0:
        return [str(i) for i in ids]
    try:
        mask = df.index.isin(list(ids))
        found = pd.Series(era.to_numpy()[mask], index=df.index[mask])
        found = found[~found.index.duplicated()]
        return [f"{i}@{found[i]}" if i in found.index else str(i) for i in ids]
    except Exception:  # noqa: BLE001 - examples are best effort, never hide the failure itself
        return [str(i) for i in ids]


def _is_numeric(dtype: Any) -> bool:
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def _is_string_like(s: pd.Series | pd.Index) -> bool:
    dtype = s.dtype
    if isinstance(dtype, pd.StringDtype):
        return True
    if isinstance(dtype, pd.CategoricalDtype):
        return pd.api.types.infer_dtype(dtype.categories, skipna=True) in ("string", "empty")
    if not isinstance(dtype, np.dtype):  # e.g. pyarrow-backed strings
        return pd.api.types.is_string_dtype(dtype)
    if dtype == np.dtype(object):
        return pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty")
    return False


def _not_string_mask(s: pd.Series | pd.Index) -> np.ndarray:
    values = pd.Series(np.asarray(s, dtype=object))
    return (values.notna() & ~values.map(lambda v: isinstance(v, str))).to_numpy()


def _as_float_or_int(s: pd.Series) -> np.ndarray:
    """The column as a numpy array without a float64 detour (extension dtypes: float32 with NaN)."""
    if isinstance(s.dtype, np.dtype):
        return s.to_numpy()
    return s.to_numpy(dtype=np.float32, na_value=np.nan)


def _minmax(a: np.ndarray, axis: int | None = None) -> tuple[Any, Any]:
    if a.dtype.kind == "f":  # fmin/fmax skip NaN (all-NaN gives NaN, which compares False)
        return np.fmin.reduce(a, axis=axis), np.fmax.reduce(a, axis=axis)
    return a.min(axis=axis), a.max(axis=axis)


def _column(df: pd.DataFrame, name: str) -> pd.Series:
    col = df[name]
    return col.iloc[:, 0] if isinstance(col, pd.DataFrame) else col


def _block_minmax(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column min and max of a 2-D block (NaN skipped) without a float64 copy of it."""
    if block.flags.f_contiguous:  # columns contiguous: one fast 1-D reduction per column
        pairs = [_minmax(block[:, j]) for j in range(block.shape[1])]
        return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    step = max(1, (1 << 22) // max(1, block.shape[1]))  # rows per chunk: ~4M values, a small contiguous copy
    mins = maxs = None
    for start in range(0, block.shape[0], step):
        mn, mx = _minmax(np.ascontiguousarray(block[start : start + step]), axis=0)
        mins = mn if mins is None else np.fmin(mins, mn)
        maxs = mx if maxs is None else np.fmax(maxs, mx)
    return mins, maxs


def _out_of_range_columns(df: pd.DataFrame, columns: list[str], lo: float, hi: float) -> list[str]:
    """Numeric columns holding a value outside [lo, hi] (NaN ignored), found from per-column min/max.

    Columns stored contiguously (what parquet loading gives) are reduced one by one on their own memory;
    columns stored row-major (a frame built from one 2-D array) are seen as one 2-D view of that array and
    reduced in row chunks. Either way no float64 copy and no boolean frame of the whole block.
    """
    if len(df) == 0:
        return []
    bad: list[str] = []
    strided: list[str] = []
    strided_views: list[np.ndarray] = []
    for c in columns:
        values = _as_float_or_int(_column(df, c))
        if values.flags.c_contiguous or values.ndim != 1 or len(values) < 2:
            mn, mx = _minmax(values)
            if mn < lo or mx > hi:
                bad.append(c)
        else:
            strided.append(c)
            strided_views.append(values)
    for views, names in _strided_runs(strided_views, strided):  # row-major storage: 2-D views, no copy
        block = np.lib.stride_tricks.as_strided(
            views[0], shape=(len(views[0]), len(views)), strides=(views[0].strides[0], views[0].itemsize), writeable=False
        )
        mins, maxs = _block_minmax(block)
        bad.extend(c for c, mn, mx in zip(names, mins, maxs) if mn < lo or mx > hi)
    return sorted(bad, key=columns.index) if len(bad) < 100 else bad


def _root(a: np.ndarray) -> Any:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a.base if a.base is not None else a


def _strided_runs(views: list[np.ndarray], names: list[str]) -> Iterable[tuple[list[np.ndarray], list[str]]]:
    """Group strided column views that are neighbours in one row-major array (same memory, dtype and
    row stride, next column one item further): each group is one 2-D view of that array."""
    run_views: list[np.ndarray] = []
    run_names: list[str] = []
    for view, name in zip(views, names):
        if run_views:
            last = run_views[-1]
            if (
                view.dtype == last.dtype
                and view.strides == last.strides
                and view.__array_interface__["data"][0] == last.__array_interface__["data"][0] + last.itemsize
                and _root(view) is _root(last)
            ):
                run_views.append(view)
                run_names.append(name)
                continue
            yield run_views, run_names
        run_views, run_names = [view], [name]
    if run_views:
        yield run_views, run_names


def _cap(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep the table short: past MAX_ROWS_PER_CHECK columns failing one check, fold the rest into one row."""
    seen: dict[str, int] = {}
    out: list[dict[str, Any]] = []
    folded: dict[str, dict[str, Any]] = {}
    for row in rows:
        n = seen.get(row["check"], 0)
        seen[row["check"]] = n + 1
        if n < MAX_ROWS_PER_CHECK:
            out.append(row)
            continue
        extra = folded.get(row["check"])
        if extra is None:
            extra = folded[row["check"]] = {"column": "", "check": row["check"], "count": 0, "examples": "", "_cols": []}
            out.append(extra)
        extra["count"] += row["count"]
        extra["_cols"].append(row["column"])
    for extra in folded.values():
        cols = extra.pop("_cols")
        extra["column"] = f"(+{len(cols)} more columns)"
        extra["examples"] = _examples(cols, total=len(cols))
    return out


# ----------------------------------------------------------------------------------------- the checks


def _strings_check(problems: _Problems, column: str, name: str) -> pa.Check:
    """Values are strings (ids, eras): the offending rows are cited, or the dtype when no row stands out."""

    def strings(values: pd.Series) -> bool:
        if _is_string_like(values):
            return True
        mask = _not_string_mask(values)
        if mask.any():
            problems.add_positions(column, name, mask, np.asarray(values, dtype=object))
        else:
            problems.add(column, name, len(values), f"dtype {values.dtype}")
        return False

    return problems.check(strings, name)


def _index_component(problems: _Problems) -> pa.Index:
    """Index named `id`, unique, no missing values, strings."""

    def unique(idx: pd.Series) -> bool:
        index = problems.df.index  # its hash table is cached: is_unique is paid once
        if index.is_unique:
            return True
        duplicated = index.duplicated(keep=False)
        first_of_each = duplicated & ~index.duplicated(keep="first")  # cite distinct ids, count every row
        problems.add_positions(INDEX_NAME, "unique", first_of_each, count=int(duplicated.sum()))
        return False

    return pa.Index(
        None, name=INDEX_NAME, nullable=True,
        checks=[_not_nan_check(problems, INDEX_NAME, "no missing id"), problems.check(unique, "unique"),
                _strings_check(problems, INDEX_NAME, "string ids")],
    )


def _era_column(problems: _Problems) -> pa.Column:
    """`era` present, no missing values, strings ("0001", ...)."""
    return pa.Column(None, name=ERA, nullable=True, checks=[_not_nan_check(problems, ERA), _strings_check(problems, ERA, "string eras")])


def _numeric_check(problems: _Problems, column: str) -> pa.Check:
    """The column's dtype is int or float (not bool, not object/strings)."""
    name = "numeric dtype"

    def numeric(s: pd.Series) -> bool:
        if _is_numeric(s.dtype):
            return True
        _record_not_numeric(problems, column, s, name)
        return False

    return problems.check(numeric, name)


def _record_not_numeric(problems: _Problems, column: str, s: pd.Series, check: str) -> None:
    values = s.to_numpy(dtype=object)
    mask = pd.notna(values) & ~np.fromiter(
        (isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) for v in values), dtype=bool, count=len(values)
    )
    if mask.any():
        problems.add_positions(column, f"{check} (found {s.dtype})", mask, values)
    else:
        problems.add(column, f"{check} (found {s.dtype})", len(s), f"dtype {s.dtype}")


def _range_check(problems: _Problems, column: str, lo: float, hi: float) -> pa.Check:
    """Values within [lo, hi] (NaN is left to the column's not-NaN rule); vectorised, numeric columns only."""
    name = f"in [{lo:g}, {hi:g}]"

    def in_range(s: pd.Series) -> bool:
        if not _is_numeric(s.dtype) or len(s) == 0:
            return True  # the dtype check reports it
        a = _as_float_or_int(s)
        mn, mx = _minmax(a)
        if not (mn < lo or mx > hi):
            return True
        problems.add_positions(column, name, (a < lo) | (a > hi), a)
        return False

    return problems.check(in_range, name)


def _feature_block_check(problems: _Problems, features: list[str]) -> pa.Check:
    """Every expected feature present, numeric, a whole number within 0..4 or NaN: one vectorised pass over the
    block (and one more over the float columns only, for whole numbers)."""
    lo, hi = FEATURE_RANGE
    range_name = f"in {lo}..{hi} or NaN"
    name = "features present, numeric, in 0..4"

    def block(df: pd.DataFrame) -> bool:
        present = set(df.columns)
        missing = [c for c in features if c not in present]
        for c in missing:
            problems.add(c, "present", 1, "feature column missing")
        dtypes = df.dtypes
        here = [c for c in features if c in present]
        not_numeric = [c for c in here if not _is_numeric(_first(dtypes[c]))]
        for c in not_numeric:
            _record_not_numeric(problems, c, _column(df, c), "numeric dtype")
        numeric = [c for c in here if c not in set(not_numeric)]
        bad = _out_of_range_columns(df, numeric, lo, hi)
        for c in bad:
            a = _as_float_or_int(_column(df, c))
            problems.add_positions(c, range_name, outside_the_range(a), a)
        fractional = []
        for c in numeric:  # a float column (it may hold NaN) must still hold whole numbers: the bins 0..4
            if c in bad or _as_float_or_int(_column(df, c)).dtype.kind != "f":
                continue
            a = _as_float_or_int(_column(df, c))
            off = between_the_bins(a)
            if off.any():
                problems.add_positions(c, "whole number", off, a)
                fractional.append(c)
        return not (missing or not_numeric or bad or fractional)

    return problems.check(block, name)


def _isin(problems: _Problems, column: str, values: Sequence[Any]) -> pa.Check:
    """Values among `values` (NaN is left to the column's NaN rule); one vectorised isin."""
    name = "in {" + ", ".join(_fmt_value(v) if not isinstance(v, str) else v for v in values) + "}"

    def isin(s: pd.Series) -> bool:
        bad = (~s.isin(list(values)) & s.notna()).to_numpy()
        if not bad.any():
            return True
        problems.add_positions(column, name, bad, s.to_numpy())
        return False

    return problems.check(isin, name)


def _not_nan_check(problems: _Problems, column: str, name: str = "not NaN") -> pa.Check:
    """No missing value (NaN/None); the offending rows are cited in row order."""

    def not_nan(s: pd.Series) -> bool:
        missing = s.isna().to_numpy()
        if not missing.any():
            return True
        problems.add_positions(column, name, missing)
        return False

    return problems.check(not_nan, name)


def _first(dtype: Any) -> Any:
    return dtype.iloc[0] if isinstance(dtype, pd.Series) else dtype


def _target_nan_check(problems: _Problems, df: pd.DataFrame, target: str, allow_unresolved: bool) -> pa.Check:
    """NaN target: an error, or (allow_unresolved) allowed only in whole eras after the last resolved era."""
    name = "no NaN" if not allow_unresolved else "NaN only in trailing unresolved eras"

    def nan_rule(s: pd.Series) -> bool:
        isnan = s.isna().to_numpy()
        if not isnan.any():
            return True
        era = _era_values(df)
        if not allow_unresolved or era is None or era.isna().any():
            problems.add_positions(target, name, isnan, None)
            return False
        ranks = EraIndex(era.to_numpy()).codes  # eras in era order (model.eras)
        n_eras = int(ranks.max()) + 1
        rows = np.bincount(ranks, minlength=n_eras)
        nans = np.bincount(ranks, weights=isnan, minlength=n_eras)
        resolved = nans < rows  # an era with at least one target
        last_resolved = int(np.flatnonzero(resolved).max()) if resolved.any() else -1
        bad = isnan & (ranks <= last_resolved)  # NaN inside or before the resolved eras
        if not bad.any():
            return True
        problems.add_positions(target, name, bad, None)
        return False

    return problems.check(nan_rule, name)


def _std_check(problems: _Problems, column: str) -> pa.Check:
    """Non-zero standard deviation (Numerai rejects a constant submission)."""
    name = "non-zero std"

    def std(s: pd.Series) -> bool:
        if not _is_numeric(s.dtype) or len(s) == 0:
            return True
        a = _as_float_or_int(s)
        mn, mx = _minmax(a)
        if mn < mx or (a.dtype.kind == "f" and np.isnan(mn)):  # all NaN: the NaN check reports it
            return True
        problems.add(column, name, len(s), f"every value is {_fmt_value(mn)}")
        return False

    return problems.check(std, name)


def _ids_check(problems: _Problems, live_ids: pd.Index) -> pa.Check:
    """Prediction ids are exactly the live ids: every live id present, no other id."""
    name = "ids are the live ids"

    def ids(df: pd.DataFrame) -> bool:
        got = df.index
        if got.equals(live_ids):  # the usual case: the model kept the live frame's index
            return True
        missing = live_ids[~live_ids.isin(got)]
        extra_mask = ~got.isin(live_ids)
        if len(missing):
            problems.add(INDEX_NAME, "every live id present", len(missing),
                         _examples([str(i) for i in missing[:MAX_EXAMPLES]], total=len(missing)))
        if extra_mask.any():
            problems.add_positions(INDEX_NAME, "only live ids", extra_mask, None)
        return not (len(missing) or extra_mask.any())

    return problems.check(ids, name)


def _non_empty_check(problems: _Problems) -> pa.Check:
    """At least one row."""

    def non_empty(df: pd.DataFrame) -> bool:
        if len(df):
            return True
        problems.add("(frame)", "non-empty", 1, "no rows")
        return False

    return problems.check(non_empty, "non-empty")


# --------------------------------------------------------------------------------------- the running


def _fold(errors: pa.errors.SchemaErrors, problems: _Problems) -> pd.DataFrame:
    """Pandera's failure cases plus the project's own rows, one row per (column, check)."""
    df = problems.df
    cases = errors.failure_cases
    rows: list[dict[str, Any]] = []
    if cases is not None and len(cases):
        cases = cases[~cases["check"].astype(str).isin(problems.names)]
        cases = cases.assign(check=cases["check"].astype(str))
        for (context, column, check), group in cases.groupby(
            [cases["schema_context"].astype(str), cases["column"].astype(str), "check"], sort=False, dropna=False
        ):
            label = _CHECK_NAMES.get(check, check)
            failure = group["failure_case"].tolist()
            index = group["index"].tolist()
            if check in ("column_in_dataframe", "column_in_schema"):
                for col in failure:
                    example = "column missing" if check == "column_in_dataframe" else "unexpected column"
                    rows.append({"column": str(col), "check": label, "count": 1, "examples": example})
                continue
            if check == "dataframe_column_labels_unique":
                duplicated = [str(c) for c in df.columns[df.columns.duplicated()].unique()]
                for col in duplicated:
                    rows.append({"column": col, "check": label, "count": int((df.columns == col).sum()),
                                 "examples": "column name repeated"})
                continue
            if column in ("None", "nan"):
                column = INDEX_NAME if context == "Index" else "(frame)"
            if check.startswith("dtype("):
                rows.append({"column": column, "check": f"dtype {check[7:-2]}", "count": 1, "examples": f"found {failure[0]}"})
                continue
            if check.startswith("field_name("):
                rows.append({"column": column, "check": f"index named {INDEX_NAME}", "count": 1, "examples": f"found {failure[0]!r}"})
                continue
            with_index = [(i, f) for i, f in zip(index, failure) if i is not None and not (isinstance(i, float) and np.isnan(i))]
            if not with_index:  # a check that raised, or a whole-column verdict
                rows.append({"column": column, "check": label, "count": len(failure), "examples": _fmt_value(str(failure[0]))})
                continue
            if check == "field_uniqueness":
                ids = list(dict.fromkeys(i for i, _ in with_index))
                examples = _examples(_labels_for_ids(df, ids[:MAX_EXAMPLES]), total=len(ids))
                rows.append({"column": column, "check": label, "count": len(with_index), "examples": examples})
                continue
            first = with_index[:MAX_EXAMPLES]
            labels = _labels_for_ids(df, [i for i, _ in first])
            values = None if check == "not_nullable" else [f for _, f in first]
            examples = _examples(labels, values, total=len(with_index))
            rows.append({"column": column, "check": label, "count": len(with_index), "examples": examples})
    rows.extend(problems.rows)
    order = {INDEX_NAME: 0, ERA: 1, DATA_TYPE: 2}
    rows.sort(key=lambda r: order.get(r["column"], 3))  # stable: pandera's order, then the project's rows
    return pd.DataFrame(_cap(rows), columns=FAILURE_COLUMNS)


def _run(schema: pa.DataFrameSchema, df: pd.DataFrame, problems: _Problems, source: str) -> pd.DataFrame:
    """Validate lazily without copying the frame; raise DataValidationError with the folded table."""
    # pandera (0.35) registers the schema on the frame it validates in a weakref registry whose callback fails
    # at interpreter exit ("Exception ignored in ... cleanup"): it validates a shallow copy (same data, no copy
    # of it) that dies here, while the interpreter is whole
    shallow = df.copy(deep=False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandera's own FutureWarnings while concatenating failure cases
            schema.validate(shallow, lazy=True, inplace=True)
    except pa.errors.SchemaErrors as errors:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            failures = _fold(errors, problems)
        if failures.empty:  # pandera failed in a way the table does not know: still say something
            failures = pd.DataFrame(
                [{"column": "(frame)", "check": "schema", "count": 1, "examples": str(errors).splitlines()[0][:EXAMPLES_WIDTH]}],
                columns=FAILURE_COLUMNS,
            )
        raise DataValidationError(source, failures) from None
    finally:
        del shallow
    if problems.rows:  # a check recorded rows but pandera did not fail (should not happen); be strict
        raise DataValidationError(source, pd.DataFrame(problems.rows, columns=FAILURE_COLUMNS))
    return df


def _require_frame(df: Any, source: str) -> None:
    if not isinstance(df, pd.DataFrame):
        failures = pd.DataFrame(
            [{"column": "(frame)", "check": "is a pandas DataFrame", "count": 1, "examples": f"found {type(df).__name__}"}],
            columns=FAILURE_COLUMNS,
        )
        raise DataValidationError(source, failures)


# ------------------------------------------------------------------------------------------ the API


def validate_training_frame(
    df: pd.DataFrame, features: Sequence[str], target: str, source: str,
    allow_unresolved: bool | Literal["anywhere"] = False,
) -> pd.DataFrame:
    """Check a train/validation frame (id index, era, features 0..4 or NaN, target in the five values).

    With `allow_unresolved`, NaN targets are accepted in whole eras after the last resolved era (Numerai's
    newest validation eras); a NaN inside a resolved era is still an error naming that era. With "anywhere",
    NaN is accepted in any row (Numerai's auxiliary targets have gaps; those rows are simply not used).
    """
    _require_frame(df, source)
    problems = _Problems(df)
    features = list(features)
    target_checks = [
        _numeric_check(problems, target),
        _isin(problems, target, TARGET_VALUES),
    ]
    if allow_unresolved != "anywhere":
        target_checks.append(_target_nan_check(problems, df, target, bool(allow_unresolved)))
    columns = {
        ERA: _era_column(problems),
        target: pa.Column(None, name=target, nullable=True, checks=target_checks),
        DATA_TYPE: pa.Column(None, name=DATA_TYPE, required=False, nullable=True,
                             checks=[_not_nan_check(problems, DATA_TYPE), _isin(problems, DATA_TYPE, ("train", "validation", "test"))]),
    }
    schema = pa.DataFrameSchema(
        columns,
        index=_index_component(problems),
        checks=[_non_empty_check(problems), _feature_block_check(problems, features)],
        unique_column_names=True,
        name=source,
    )
    return _run(schema, df, problems, source)


def validate_live_frame(df: pd.DataFrame, features: Sequence[str], source: str) -> pd.DataFrame:
    """Check a live frame: id index, era, every expected feature present, numeric, 0..4 or NaN."""
    _require_frame(df, source)
    problems = _Problems(df)
    columns = {
        ERA: _era_column(problems),
        DATA_TYPE: pa.Column(None, name=DATA_TYPE, required=False, nullable=True,
                             checks=[_not_nan_check(problems, DATA_TYPE), _isin(problems, DATA_TYPE, ("live",))]),
    }
    schema = pa.DataFrameSchema(
        columns,
        index=_index_component(problems),
        checks=[_non_empty_check(problems), _feature_block_check(problems, list(features))],
        unique_column_names=True,
        name=source,
    )
    return _run(schema, df, problems, source)


def validate_benchmark_frame(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Check a benchmark-models frame: id index, era, at least one float column, values in [0, 1], no NaN."""
    _require_frame(df, source)
    problems = _Problems(df)
    bench_cols = [str(c) for c in dict.fromkeys(df.columns) if c not in (ERA, DATA_TYPE)]
    columns: dict[str, Any] = {
        ERA: _era_column(problems),
        DATA_TYPE: pa.Column(None, name=DATA_TYPE, required=False, nullable=True, checks=[_not_nan_check(problems, DATA_TYPE)]),
    }
    for c in bench_cols:
        columns[c] = pa.Column(
            None, name=c, nullable=True,
            checks=[_not_nan_check(problems, c), _float_check(problems, c), _range_check(problems, c, 0.0, 1.0)],
        )

    def has_benchmark(frame: pd.DataFrame) -> bool:
        if bench_cols:
            return True
        problems.add("(frame)", "a benchmark column", 1, "only era/data_type found")
        return False

    schema = pa.DataFrameSchema(
        columns,
        index=_index_component(problems),
        checks=[_non_empty_check(problems), problems.check(has_benchmark, "a benchmark column")],
        unique_column_names=True,
        name=source,
    )
    return _run(schema, df, problems, source)


def _float_check(problems: _Problems, column: str) -> pa.Check:
    """The column is float (benchmark predictions are float32 ranks)."""
    name = "float dtype"

    def is_float(s: pd.Series) -> bool:
        if pd.api.types.is_float_dtype(s.dtype):
            return True
        if _is_numeric(s.dtype):
            problems.add(column, f"{name} (found {s.dtype})", len(s), f"dtype {s.dtype}")
        else:
            _record_not_numeric(problems, column, s, name)
        return False

    return problems.check(is_float, name)


def validate_predictions(df: pd.DataFrame, live_ids: Iterable[Any], source: str) -> pd.DataFrame:
    """Check predictions as Numerai wants them: index `id` = exactly the live ids, one column `prediction`
    in [0, 1], no NaN, not constant."""
    _require_frame(df, source)
    if isinstance(live_ids, (pd.DataFrame, pd.Series)):
        ids = live_ids.index if isinstance(live_ids, pd.DataFrame) else pd.Index(live_ids.to_numpy())
    else:
        ids = pd.Index(list(live_ids) if not isinstance(live_ids, (pd.Index, np.ndarray)) else live_ids)
    problems = _Problems(df)
    columns = {
        PREDICTION: pa.Column(
            None, name=PREDICTION, nullable=True,
            checks=[_not_nan_check(problems, PREDICTION), _numeric_check(problems, PREDICTION),
                    _range_check(problems, PREDICTION, 0.0, 1.0), _std_check(problems, PREDICTION)],
        )
    }
    schema = pa.DataFrameSchema(
        columns,
        index=_index_component(problems),
        checks=[_non_empty_check(problems), _ids_check(problems, ids)],
        strict=True,
        unique_column_names=True,
        name=source,
    )
    return _run(schema, df, problems, source)
