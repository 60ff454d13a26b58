"""The README stays true: its Quick start, its config examples and the commands it shows."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from training.cli import app
from training.config import (
    config_from_dict,
    tomllib,  # guarded: Python 3.10 has only tomli
)

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def test_quick_start_is_exactly_the_two_commands() -> None:
    quick = README.read_text().split("## Quick start", 1)[1].split("##", 1)[0]
    commands = [line for block in re.findall(r"```bash\n(.*?)```", quick, flags=re.S) for line in block.splitlines()]
    assert commands == ['pip install -e . && nmu train', 'pip install -e ".[test]" && pytest']


@pytest.mark.parametrize("block", _blocks("toml"))
def test_config_examples_are_valid_configs(block: str) -> None:
    config = config_from_dict(tomllib.loads(block), source="README")
    assert config.target


def _nmu_commands() -> list[list[str]]:
    commands = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("nmu "):
                commands.append(shlex.split(line)[1:])
    return commands


@pytest.mark.parametrize("argv", _nmu_commands(), ids=lambda a: " ".join(a))
def test_every_command_shown_parses(argv: list[str]) -> None:
    """Each `nmu ...` line of the README names a real command and options it accepts (checked with --help
    appended, so nothing runs)."""
    words = [w for w in argv if w != "--help"]
    result = CliRunner().invoke(app, [*words, "--help"])
    assert result.exit_code == 0, result.output
    options = [w.split("=")[0] for w in words if w.startswith("--")]
    for option in options:
        assert option in result.output, f"{option} not an option of `nmu {' '.join(words)}`"
