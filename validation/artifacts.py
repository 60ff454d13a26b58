"""The artifacts a run leaves and their record: atomic file writes (a failed step leaves the previous file intact)
and the manifest beside a model.pkl (what the pickle is, what built it, what it saw, whether it passed the runtime
check).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from validation.errors import NmuError


# ---- atomic writes: a temporary file beside the target, then one rename ------------------------------------
def _umask() -> int:
    """The process's umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temporary_beside(path: str | os.PathLike[str]) -> Path:
    """A new empty temporary file in the target's directory (so that renaming it over the target is atomic), with an
    ordinary file's mode; the caller renames or deletes it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the result gets an ordinary file's mode
    return Path(tmp)


def make_directory(path: str | os.PathLike[str]) -> list[Path]:
    """Create `path` with its missing parents; the directories this created, deepest first, for `remove_empty` when
    the command then fails (a refused or failed run should leave no empty directory behind)."""
    target = Path(path)
    created = [p for p in (target, *target.absolute().parents) if not p.exists()]
    target.mkdir(parents=True, exist_ok=True)
    return created


def remove_empty(directories: list[Path]) -> None:
    """Remove these directories (deepest first) while they are empty; one that holds anything stops it."""
    for directory in directories:
        try:
            directory.rmdir()
        except OSError:
            return


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; on success rename it over `path`, else delete it."""
    target = Path(path)
    tmp_path = temporary_beside(target)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


@contextlib.contextmanager
def replace_together(pairs: list[tuple[Path, Path]]) -> Iterator[None]:
    """Move each new file (`(new, target)` pairs, new files beside their targets) over its target, keeping the old
    files until the `with` block ends without an error; on any error every target is put back as it was."""
    placed: list[Path] = []
    backups: list[tuple[Path, Path]] = []
    try:
        for new, target in pairs:
            if target.exists():
                backup = target.with_name(f".{target.name}.previous-{os.getpid()}")
                os.replace(target, backup)
                backups.append((backup, target))
            os.replace(new, target)
            placed.append(target)
        yield
    except BaseException:
        for target in placed:
            target.unlink(missing_ok=True)
        for backup, target in backups:
            os.replace(backup, target)
        raise
    for backup, _ in backups:
        backup.unlink(missing_ok=True)


# ---- the manifest ---------------------------------------------------------------------------------------------
MANIFEST_NAME = "manifest.json"


def manifest_path(pickle_path: str | Path) -> Path:
    """The manifest that belongs to a pickle: `manifest.json` beside `model.pkl` (what `nmu train` writes), else
    `<name>.manifest.json` beside `<name>.pkl`, so that two pickles in one directory keep their own records."""
    path = Path(pickle_path)
    return path.with_name(MANIFEST_NAME) if path.name == "model.pkl" else path.with_name(f"{path.stem}.{MANIFEST_NAME}")


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(pickle_path: str | Path) -> dict[str, Any]:
    """The manifest of a pickle, or {} when there is none."""
    return read_json_object(manifest_path(pickle_path), missing={})


def read_json_object(path: str | Path, missing: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JSON file holding one object, or `missing` when the file does not exist; NmuError naming the file when it
    is not JSON or not an object."""
    path = Path(path)
    if not path.exists() and missing is not None:
        return dict(missing)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NmuError(f"{path} is not valid JSON ({exc}); rebuild it with `nmu train` or remove it.") from None
    if not isinstance(value, dict):
        raise NmuError(f"{path} holds a JSON {type(value).__name__}, not an object of fields; rebuild it with "
                       "`nmu train` or remove it.")
    return value


def update_manifest(pickle_path: str | Path, **fields: Any) -> dict[str, Any]:
    """Merge top-level `fields` into the pickle's manifest and write it atomically; returns the result."""
    manifest = read_manifest(pickle_path)
    manifest.update(fields)
    atomic_write_json(manifest_path(pickle_path), manifest)
    return manifest


def why_not_there(path: Path, want: str = "file") -> str:
    """Why `path` is not the `want` ("file" or "directory") a command needs, for its error: "does not exist", or what
    stands there instead (a directory given for a config file was reported as "does not exist")."""
    path = Path(path)
    if want == "file" and path.is_dir():
        return "is a directory, not a file"
    if want == "directory" and path.exists() and not path.is_dir():
        return "is a file, not a directory"
    return "does not exist"
