"""House rules a newcomer can follow: ruff (configured in pyproject.toml) finds nothing in the code base."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    proc = subprocess.run([ruff, "check", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_docstring_points_outside_the_repository() -> None:
    """Design notes live in the repository (docs/), never in a file beside it."""
    outside = "../" + "shared"  # (spelt in two pieces so this file does not find itself)
    offenders = [str(p.relative_to(ROOT)) for p in [*ROOT.rglob("*.py"), *ROOT.rglob("*.md")]
                 if "build" not in p.parts and outside in p.read_text(encoding="utf-8")]
    assert offenders == []
