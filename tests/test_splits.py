"""Embargo: no validation era within `embargo` eras of the last training era is scored; CV folds too."""

from __future__ import annotations

import pytest

from validation.errors import NmuError
from validation.evaluation.splits import embargo_for_target, embargo_split, expanding_window_folds


def eras(a: int, b: int, step: int = 1) -> list[str]:
    return [f"{e:04d}" for e in range(a, b + 1, step)]


def test_embargo_defaults_from_target() -> None:
    assert embargo_for_target("target") == 4
    assert embargo_for_target("target_ender_20") == 4
    assert embargo_for_target("target_ender_60") == 13


@pytest.mark.parametrize("embargo", [0, 1, 4, 13])
def test_no_scored_era_within_embargo(embargo: int) -> None:
    split = embargo_split(eras(1, 100), eras(101, 150), embargo)
    last = int(split.train[-1])
    assert all(int(e) - last > embargo for e in split.validation)
    assert split.embargoed == eras(101, 100 + embargo)
    assert split.validation == eras(101 + embargo, 150)


def test_embargo_counts_era_numbers_not_positions() -> None:
    # every 4th training era: the gap is measured in weeks, so downsampling does not shrink it
    split = embargo_split(eras(1, 97, 4), eras(98, 120), 4)
    assert split.validation[0] == "0102"


def test_embargo_leaving_nothing_is_an_error() -> None:
    with pytest.raises(NmuError, match="leaves none"):
        embargo_split(eras(1, 100), eras(101, 104), 4)
    with pytest.raises(NmuError):
        embargo_split([], eras(101, 104), 0)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_cv_folds_expand_and_respect_embargo(k: int) -> None:
    folds = expanding_window_folds(eras(1, 120), k, 4)
    assert len(folds) == k
    for before, after in zip(folds, folds[1:]):
        assert set(before.train) < set(after.train)
    for fold in folds:
        assert fold.train[0] == "0001"
        assert all(int(e) - int(fold.train[-1]) > 4 for e in fold.validation)
        assert len(fold.embargoed) == 4 and not set(fold.validation) & set(fold.train)


def test_cv_embargo_leaving_nothing_is_an_error() -> None:
    with pytest.raises(NmuError, match="fold"):
        expanding_window_folds(eras(1, 30), 5, 13)
    with pytest.raises(NmuError):
        expanding_window_folds(eras(1, 30), 0, 4)
