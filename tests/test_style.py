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


COMMAND_LAYER = {"training/cli.py", "training/console.py"}
"""The only modules that print: the CLI and its console (which renders the library's results, logs and progress)."""
OWN_PROCESS = {"validation/runtime/runner.py"}
"""A script of its own process (the replica's runner), whose stderr is its channel to `nmu check`."""


def test_only_the_command_layer_prints() -> None:
    """Library code returns results and logs through `logging`: no print(), no sys.stdout/sys.stderr writes, no rich
    Console or Progress outside the command layer."""
    import ast

    offenders = []
    for package in ("model", "training", "validation"):
        for path in sorted((ROOT / package).rglob("*.py")):
            name = str(path.relative_to(ROOT))
            if name in COMMAND_LAYER | OWN_PROCESS:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                    offenders.append(f"{name}:{node.lineno} print()")
                elif isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr") and \
                        isinstance(node.value, ast.Name) and node.value.id == "sys":
                    offenders.append(f"{name}:{node.lineno} sys.{node.attr}")
                elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rich"):
                    offenders.append(f"{name}:{node.lineno} imports {node.module}")
    assert offenders == [], "\n".join(offenders)
