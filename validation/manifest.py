"""The manifest beside a model.pkl: what the pickle is, what built it, what it saw, and whether it passed
the runtime check. Read by `nmu check` and `nmu upload`; written atomically."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from validation.errors import NmuError
from validation.files import atomic_write_json

MANIFEST_NAME = "manifest.json"


def manifest_path(pickle_path: str | Path) -> Path:
    """The manifest that belongs to a pickle: `manifest.json` in the pickle's directory."""
    return Path(pickle_path).with_name(MANIFEST_NAME)


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(pickle_path: str | Path) -> dict[str, Any]:
    """The manifest of a pickle, or {} when there is none."""
    path = manifest_path(pickle_path)
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise NmuError(f"{path} is not valid JSON ({exc}); rebuild it with `nmu train`.") from exc


def update_manifest(pickle_path: str | Path, **fields: Any) -> dict[str, Any]:
    """Merge top-level `fields` into the pickle's manifest and write it atomically; returns the result."""
    manifest = read_manifest(pickle_path)
    manifest.update(fields)
    atomic_write_json(manifest_path(pickle_path), manifest)
    return manifest
