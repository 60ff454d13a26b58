"""The package's dependency ranges admit the runtime's pins of every image, so a user can build in exactly them."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement

from training.config import tomllib  # guarded: Python 3.10 has only tomli

ROOT = Path(__file__).resolve().parents[1]
PINS = sorted((ROOT / "validation" / "runtime" / "pins").glob("py3.*.txt"))


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return pins


def test_pins_ship_for_every_runtime_image() -> None:
    assert [p.name for p in PINS] == ["py3.10.txt", "py3.11.txt", "py3.12.txt", "py3.13.txt"]


@pytest.mark.parametrize("pins_file", PINS, ids=lambda p: p.name)
def test_dependency_ranges_admit_the_runtime_pins(pins_file: Path) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _pins(pins_file)
    python = pins_file.stem.removeprefix("py")
    checked = 0
    for spec in project["dependencies"]:
        req = Requirement(spec)
        if req.marker is not None and not req.marker.evaluate({"python_version": python}):
            continue
        name = req.name.lower()
        if name in pins:
            assert req.specifier.contains(pins[name], prereleases=True), (
                f"{spec} excludes {name}=={pins[name]} pinned in {pins_file.name}"
            )
            checked += 1
    assert checked >= 8
