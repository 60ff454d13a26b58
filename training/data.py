"""Lean loading of Numerai-layout data: only the requested columns, features as int8, every k-th era.

Numerai's train file is ~7.7 GB on disk and ~7.5 GB as int8 in memory (30 GB as float32), so loading reads
the parquet file row group by row group and column batch by column batch with pyarrow, keeps only the rows
of the wanted eras, and writes each column straight into preallocated numpy blocks of the final dtype. The
frame is then assembled from those blocks without a copy, so the peak memory stays near the result's size:
no float64 detour, no full arrow table plus pandas copy.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from model.benchmarks import choose_benchmark_column
from model.eras import check_era_labels, era_number, sort_eras
from model.features import small_ints
from validation.artifacts import atomic_write_json
from validation.errors import NmuError, first_line

NON_GROUP_SETS = ("small", "medium", "all")
_BATCH_BYTES = 16 * 1024 * 1024  # arrow data read at once (one row group x a batch of columns)
_GET_DATA = "get data with `nmu data synthetic --out DIR` or `nmu data download --out DIR`"


REQUIRED_FILES = (
    "features.json",
    "train.parquet",
    "validation.parquet",
    "live.parquet",
    "live_benchmark_models.parquet",
    "validation_benchmark_models.parquet",
)
"""The files of a data directory in Numerai's layout that `nmu train`, `check` and `predict` need."""
OPTIONAL_FILES = ("train_benchmark_models.parquet",)
DATA_INFO = "nmu-data.json"
"""Written beside the data files by `nmu data download` and `nmu data synthetic`: the data version and the source."""
_VERSION = re.compile(r"v\d+(\.\d+)*")


def write_data_info(data_dir: str | Path, version: str, source: str) -> None:
    """Record a data directory's Numerai data version (e.g. "v5.3") and source ("numerai" or "synthetic")."""
    atomic_write_json(Path(data_dir) / DATA_INFO, {"version": version, "source": source})


_BENCHMARK_PREFIX = re.compile(r"v(\d)(\d+)_")
"""Numerai's benchmark columns carry the data version: `v53_lgbm_ender20` belongs to v5.3."""
BENCHMARK_FILES = ("live_benchmark_models.parquet", "validation_benchmark_models.parquet",
                   "train_benchmark_models.parquet")


def version_from_benchmarks(data_dir: str | Path) -> str | None:
    """The data version the benchmark columns' prefix names (`v53_…` → "v5.3"; the newest when several), read from the
    first benchmark file's schema only; None when no file or no column tells."""
    for name in BENCHMARK_FILES:
        path = Path(data_dir) / name
        if not path.is_file():
            continue
        try:
            columns = pq.read_schema(path).names
        except (OSError, pa.ArrowException):
            continue
        versions = {f"v{m.group(1)}.{m.group(2)}" for m in map(_BENCHMARK_PREFIX.match, columns) if m}
        if versions:
            return max(versions, key=version_key)
    return None


def read_data_info(data_dir: str | Path) -> dict[str, str]:
    """A data directory's version and source, and what told the version ("version_from").

    In order: nmu-data.json (written by `nmu data download` and `nmu data synthetic`); else the benchmark columns'
    prefix (`v53_…` → v5.3, a user's own numerapi download; source "numerai"); else a `vX.Y` part of its path (source
    "numerai"); else version "unknown" (then `nmu upload` asks for --data-version).
    """
    path = Path(data_dir) / DATA_INFO
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(info, dict) and isinstance(info.get("version"), str):
            return {"version": info["version"], "source": str(info.get("source") or "numerai"),
                    "version_from": DATA_INFO}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        pass
    from_benchmarks = version_from_benchmarks(data_dir)
    if from_benchmarks is not None:
        prefix = from_benchmarks.replace(".", "")
        return {"version": from_benchmarks, "source": "numerai",
                "version_from": f"the benchmark columns' prefix {prefix}_"}
    for part in reversed(Path(data_dir).resolve().parts):
        if _VERSION.fullmatch(part):
            return {"version": part, "source": "numerai", "version_from": f"the directory name {part}"}
    return {"version": "unknown", "source": "unknown", "version_from": "nothing (no nmu-data.json, no v..._ benchmark "
                                                                         "column, no vX.Y directory)"}


def version_key(version: str) -> tuple[int, ...]:
    """A data version as numbers for ordering ("v5.10" after "v5.9"); non-numeric parts order first."""
    return tuple(int(p) if p.isdigit() else -1 for p in version.lstrip("v").split("."))


def load_feature_metadata(data_dir: str | Path) -> dict:
    """Read features.json of a data directory (or the file itself); NmuError naming the file if missing/bad."""
    path = Path(data_dir)
    if path.is_dir() or path.suffix != ".json":
        path = path / "features.json"
    if not path.is_file():
        raise NmuError(f"{path} does not exist; {_GET_DATA}.")
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NmuError(f"{path} is not valid JSON ({exc}); download or generate it again.") from None
    sets = metadata.get("feature_sets") if isinstance(metadata, dict) else None
    if not isinstance(sets, dict) or not sets or not all(isinstance(v, list) for v in sets.values()):
        raise NmuError(f"{path} has no \"feature_sets\" mapping of set names to feature lists.")
    return metadata


def resolve_feature_set(metadata: dict, name: str) -> list[str]:
    """The features of a named set (small, medium, all or a group); NmuError listing the choices."""
    sets = metadata.get("feature_sets", {})
    if name not in sets:
        raise NmuError(f"unknown feature set {name!r}; choose one of: {', '.join(sets)}.")
    return list(sets[name])


def feature_groups(metadata: dict, features: Sequence[str]) -> dict[str, list[str]]:
    """The named feature groups (intelligence, charisma, ...) restricted to `features`, without empty ones."""
    wanted = set(features)
    groups: dict[str, list[str]] = {}
    for name, members in metadata.get("feature_sets", {}).items():
        if name in NON_GROUP_SETS or name.endswith("_features"):  # v2/v3/fncv3 sets are not groups
            continue
        kept = [f for f in members if f in wanted]
        if kept:
            groups[name] = kept
    return groups


def benchmark_column(frame: pd.DataFrame) -> str:
    """The benchmark column to compare against (model.benchmarks' rule: the newest `*_lgbm_ender20`, else the first
    numeric column); NmuError when the frame has none."""
    column = choose_benchmark_column(frame)
    if column is None:
        raise NmuError(f"the benchmark frame has no numeric column (columns: {', '.join(map(str, frame.columns))}).")
    return column


def load_frame(
    path: str | Path,
    features: Sequence[str],
    targets: Sequence[str] | str | None = ("target",),
    era_step: int = 1,
    eras: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Read a Numerai parquet file lean: index `id`, `era` (str), `data_type` if present, features int8
    (float32 where a column holds NaN), targets float32; only eras in `eras` (if given), then every
    `era_step`-th of them. Columns: era, data_type, features, targets, in the requested order."""
    if isinstance(targets, str):
        targets = (targets,)
    with readable(Path(path)):  # corrupt pages show only when their row group is read
        return _load(Path(path), list(dict.fromkeys(features)), list(dict.fromkeys(targets or ())), era_step, eras)


def load_benchmark(path: str | Path, eras: Iterable[str] | None = None) -> pd.DataFrame:
    """Read a benchmark-models file: index `id`, `era`, every other column as float32."""
    path = Path(path)
    pf = _open(path)
    columns = [c for c in _file_columns(pf) if c not in ("id", "era", "data_type")]
    with readable(path):
        return _load(path, [], columns, 1, eras, pf=pf, keep_data_type=False)


# --------------------------------------------------------------------------------------------------- internals


@contextlib.contextmanager
def readable(path: Path, error: type[NmuError] = NmuError, prefix: str = "", suffix: str = "") -> Iterator[None]:
    """Reading a parquet file, a failure anywhere in it (an unreadable footer, or corrupt pages found only when a row
    group is read) is one sentence naming the file, as `error`."""
    try:
        yield
    except (pa.ArrowException, OSError) as exc:
        if isinstance(exc, (MemoryError, PermissionError)):  # ArrowMemoryError is one: not the file's fault
            raise
        cause = first_line(exc)
        raise error(f"{prefix}{path} is not a readable parquet file ({cause}); download or generate it again."
                    f"{suffix}") from None


def _open(path: Path) -> pq.ParquetFile:
    if not path.is_file():
        raise NmuError(f"{path} does not exist; {_GET_DATA}.")
    with readable(path):
        return pq.ParquetFile(path)


def _file_columns(pf: pq.ParquetFile) -> list[str]:
    return list(pf.schema_arrow.names)


def _era_filter(eras: Iterable[Any] | None) -> Callable[[str], bool] | None:
    """A test of a file's era label against the wanted eras: the same label, or the same era number in another
    writing ("0002" for 2), so a benchmark file matches the training frame's eras whatever their style."""
    if eras is None:
        return None
    if isinstance(eras, (str, int, np.integer)):
        eras = [eras]
    labels = {str(e) for e in eras}
    numbers = {era_number(e) for e in eras} - {float("inf")}
    return lambda label: label in labels or era_number(label) in numbers


def _dictionary(column: pa.ChunkedArray) -> tuple[list[str], np.ndarray]:
    """Labels and int codes of a (string or integer) column, without a Python object per row."""
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if pa.types.is_dictionary(array.type):
        encoded = array
    else:
        encoded = array.dictionary_encode()
    labels = [str(v) for v in encoded.dictionary.to_pylist()]
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    if encoded.indices.null_count:
        labels.append("nan")
        codes = np.where(codes < 0, len(labels) - 1, codes)
    return labels, codes


def check_eras(data_dir: Path, eras: Iterable[Any]) -> None:
    """NmuError when the era labels of the data directory's files cannot be ordered as one history: one era written
    two ways ("0002" and "2"), or labels with a number beside labels without one ("0037" and "era0001")."""
    try:
        check_era_labels(eras)
    except ValueError as exc:
        raise NmuError(f"{data_dir}: {exc}.") from None


def era_labels(path: Path, pf: pq.ParquetFile, rg: int,
               column: pa.ChunkedArray | None = None) -> tuple[list[str], np.ndarray]:
    """The era labels and per-row label codes of row group `rg` (its `era` column, read unless given); NmuError
    naming the file when the column is not labels (text or whole numbers: a bool or a date would order nothing) or a
    row has no era (it was read as an era "nan" and blamed on the embargo)."""
    column = column if column is not None else pf.read_row_group(rg, columns=["era"]).column(0)
    kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)
            or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
            or getattr(pa.types, "is_string_view", lambda _: False)(kind)):
        raise NmuError(f"{path} column era has type {column.type}; eras are labels such as \"0001\" (text or whole "
                       "numbers), one per week: download or generate the file again.")
    floating = pa.types.is_floating(column.type)  # a float NaN is no era either (pandas writes NaN as null, not all do)
    absent = column.is_null(nan_is_null=True) if floating else column.is_null()
    if column.null_count or (floating and pc.any(absent).as_py()):
        missing = np.flatnonzero(absent.to_numpy(zero_copy_only=False))
        ids = pf.read_row_group(rg, columns=["id"]).column(0) if "id" in pf.schema_arrow.names else None
        first = f"id {ids[int(missing[0])].as_py()}" if ids is not None else f"row {int(missing[0])} of row group {rg}"
        raise NmuError(f"{path} has {len(missing)} row(s) without an era in row group {rg} (the first: {first}); every "
                       "row needs its era label: download or generate the file again.")
    return _dictionary(column)


def null_free(pf: pq.ParquetFile, column: str, row_groups: list[int]) -> bool:
    """True if the parquet statistics prove the column holds no null in these row groups."""
    for rg in row_groups:
        meta = pf.metadata.row_group(rg)
        position = _column_positions(pf).get(column)
        stats = meta.column(position).statistics if position is not None else None
        if stats is None or not stats.has_null_count or stats.null_count:
            return False
    return True


def _column_positions(pf: pq.ParquetFile) -> dict[str, int]:
    """Leaf column positions in the parquet metadata by name (cached on the ParquetFile object)."""
    cached = getattr(pf, "_nmu_positions", None)
    if cached is None:
        schema = pf.metadata.schema
        cached = {schema.column(i).path: i for i in range(len(schema))}
        pf._nmu_positions = cached  # type: ignore[attr-defined]
    return cached


def _load(
    path: Path,
    features: list[str],
    floats: list[str],
    era_step: int,
    eras: Iterable[str] | None,
    pf: pq.ParquetFile | None = None,
    keep_data_type: bool = True,
) -> pd.DataFrame:
    pf = pf or _open(path)
    available = _file_columns(pf)
    present = set(available)
    missing = [c for c in ["id", "era", *features, *floats] if c not in present]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise NmuError(f"{path} has no column {shown}; check the feature set, target name and data version.")
    if int(era_step) < 1:
        raise NmuError(f"era_step must be a positive integer, got {era_step}.")
    era_step = int(era_step)
    has_data_type = keep_data_type and "data_type" in present

    # pass 1: the era of every row (codes per row group), then the eras to keep
    n_groups = pf.metadata.num_row_groups
    group_eras: list[tuple[list[str], np.ndarray]] = []
    for rg in range(n_groups):
        group_eras.append(era_labels(path, pf, rg))
    all_eras = sort_eras(e for labels, _ in group_eras for e in labels)
    wanted = _era_filter(eras)
    candidates = [e for e in all_eras if wanted is None or wanted(e)]
    selected = candidates[::era_step]
    if not selected:
        why = f"eras {sort_eras(eras)[:5]}" if wanted is not None and not candidates else f"era_step {era_step}"
        raise NmuError(f"no eras of {path} are left after selecting {why} ({len(all_eras)} eras in the file).")
    keep = set(selected)

    masks: list[np.ndarray | None] = []
    counts: list[int] = []
    for labels, codes in group_eras:
        label_keep = np.array([label in keep for label in labels], dtype=bool)
        if label_keep.all():
            masks.append(None)
            counts.append(len(codes))
        else:
            mask = label_keep[codes] if len(labels) else np.zeros(len(codes), bool)
            masks.append(mask)
            counts.append(int(mask.sum()))
    n = int(sum(counts))
    used_groups = [rg for rg in range(n_groups) if counts[rg]]

    # the dtype of each feature column: int8 unless it can hold NaN/null
    schema = pf.schema_arrow
    int_features, float_features, maybe_int = [], [], []
    for name in features:
        kind = schema.field(name).type
        if pa.types.is_integer(kind) and null_free(pf, name, used_groups):
            int_features.append(name)
        elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
            maybe_int.append(name)  # float32 while reading; int8 afterwards if it holds no NaN
        else:
            raise NmuError(f"{path} column {name} has type {kind}; features must be integers 0..4 (or NaN).")
    for name in floats:
        kind = schema.field(name).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)):
            raise NmuError(f"{path} column {name} has type {kind}; expected numbers.")
    float_features = maybe_int
    float_columns = float_features + floats

    int_block = np.empty((len(int_features), n), dtype=np.int8)
    float_block = np.empty((len(float_columns), n), dtype=np.float32)
    object_block = np.empty((2 if has_data_type else 1, n), dtype=object)
    index_values = np.empty(n, dtype=object)
    destination: dict[str, tuple[np.ndarray, int]] = {}
    for i, name in enumerate(int_features):
        destination[name] = (int_block, i)
    for i, name in enumerate(float_columns):
        destination[name] = (float_block, i)

    # pass 2: fill the blocks row group by row group, a batch of columns at a time
    era_objects: dict[str, str] = {e: e for e in all_eras}
    offset = 0
    for rg in used_groups:
        mask, count = masks[rg], counts[rg]
        rows = pf.metadata.row_group(rg).num_rows
        labels, codes = group_eras[rg]
        kept_codes = codes if mask is None else codes[mask]
        row_labels = np.array([era_objects[label] for label in labels], dtype=object)
        object_block[0, offset : offset + count] = row_labels[kept_codes] if len(labels) else []
        heads = ["id"] + (["data_type"] if has_data_type else [])
        head = pf.read_row_group(rg, columns=heads)
        ids = head.column("id").to_numpy(zero_copy_only=False)
        index_values[offset : offset + count] = ids if mask is None else ids[mask]
        del ids
        if has_data_type:
            dt_labels, dt_codes = _dictionary(head.column("data_type"))
            dt_objects = np.array(dt_labels, dtype=object)
            object_block[1, offset : offset + count] = dt_objects[dt_codes if mask is None else dt_codes[mask]]
        del head
        columns = int_features + float_columns
        batch = max(1, int(_BATCH_BYTES // max(1, rows * 4)))
        for start in range(0, len(columns), batch):
            names = columns[start : start + batch]
            table = pf.read_row_group(rg, columns=names)
            for name in names:
                block, row = destination[name]
                _fill(block[row, offset : offset + count], table.column(name), mask)
            del table
        offset += count

    # float-typed feature columns without NaN become int8 (one small block each)
    singles: dict[str, np.ndarray] = {}
    float_keep = []
    for i, name in enumerate(float_features):
        as_int = small_ints(float_block[i])  # None when the column holds a NaN (or a value that is not a bin)
        if as_int is not None:
            singles[name] = as_int
            continue
        float_keep.append(i)
    if singles:
        rows_kept = float_keep + list(range(len(float_features), len(float_columns)))
        float_block = float_block[rows_kept] if rows_kept != list(range(len(float_columns))) else float_block
        float_columns = [float_columns[i] for i in rows_kept]

    # assemble without copying: one block per dtype, placed at the requested column positions
    order = ["era"] + (["data_type"] if has_data_type else []) + features + floats
    index = pd.Index(index_values, name="id", dtype=object, copy=False)
    return _assemble(
        order, index,
        [(object_block, ["era"] + (["data_type"] if has_data_type else []))]
        + [(int_block, int_features)] + [(float_block, float_columns)]
        + [(values[None, :], [name]) for name, values in singles.items()],
    )


def _fill(out: np.ndarray, column: pa.ChunkedArray, mask: np.ndarray | None) -> None:
    """Copy one row group's column into `out` (int8 or float32 view), keeping the masked rows only."""
    position = 0
    written = 0
    for chunk in column.chunks:
        length = len(chunk)
        if chunk.null_count:
            if pa.types.is_floating(chunk.type):
                values = chunk.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
            else:
                nulls = chunk.is_null().to_numpy(zero_copy_only=False)
                values = chunk.fill_null(0).to_numpy(zero_copy_only=False).astype(np.float32)
                values[nulls] = np.nan
        else:
            values = chunk.to_numpy(zero_copy_only=False)
        if mask is not None:
            values = values[mask[position : position + length]]
        out[written : written + len(values)] = values
        written += len(values)
        position += length


def _assemble(order: list[str], index: pd.Index, blocks: list[tuple[np.ndarray, list[str]]]) -> pd.DataFrame:
    """A DataFrame whose columns (in `order`) live in the given 2-D blocks (columns x rows), not copied."""
    blocks = [(values, names) for values, names in blocks if names]
    position = {name: i for i, name in enumerate(order)}
    placements = [np.array([position[c] for c in names], dtype=np.intp) for _, names in blocks]
    try:
        try:  # pandas >= 3: the public constructor (make_block is deprecated there)
            from pandas.api.internals import create_dataframe_from_blocks
        except ImportError:  # pandas 2.x
            create_dataframe_from_blocks = None
        if create_dataframe_from_blocks is not None:
            return create_dataframe_from_blocks(
                [(values, placement) for (values, _), placement in zip(blocks, placements)], index, pd.Index(order))
        from pandas.core.internals import BlockManager
        from pandas.core.internals.api import make_block

        made = [make_block(values, placement=placement, ndim=2) for (values, _), placement in zip(blocks, placements)]
        manager = BlockManager(made, [pd.Index(order), index])
        return pd.DataFrame._from_mgr(manager, axes=manager.axes)
    except (ImportError, TypeError, ValueError, AssertionError):  # pragma: no cover - internals changed
        parts = [pd.DataFrame(values.T, index=index, columns=names, copy=False) for values, names in blocks]
        frame = pd.concat(parts, axis=1)
        ordered = [c for c in order if c in frame.columns]
        return frame if list(frame.columns) == ordered else frame[ordered]
