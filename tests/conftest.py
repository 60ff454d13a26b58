"""Shared fixtures: small synthetic worlds in Numerai's layout, made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.synthetic import SyntheticConfig, write_synthetic_world


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic world (fast to make and fit) with every planted effect."""
    out = tmp_path_factory.mktemp("small_world")
    write_synthetic_world(out, SyntheticConfig.default(eras=120, stocks=600, features=60, seed=1))
    return out


@pytest.fixture(scope="session")
def null_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same shape with no planted effects for the components (the control world)."""
    out = tmp_path_factory.mktemp("null_world")
    write_synthetic_world(out, SyntheticConfig.default(eras=120, stocks=600, features=60, seed=1, planted=False))
    return out


@pytest.fixture(scope="session")
def long_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small world's shape over three times the eras: enough training eras for the components to show their
    evidence out of sample (chosen on the first 60 % of them, confirmed on the later ones)."""
    out = tmp_path_factory.mktemp("long_world")
    write_synthetic_world(out, SyntheticConfig.default(eras=360, stocks=600, features=60, seed=1))
    return out
