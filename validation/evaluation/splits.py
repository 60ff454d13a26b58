"""Era-wise splits with an embargo: Numerai targets look 20 or 60 days ahead while eras are a week apart, so
eras right after the last training era share outcomes with it and must not be scored.

Eras are ordered as eras (model.eras.era_key): "0002", 2 and "2" are the same position, "10" comes after "9".
`EraTimeSeriesSplit` is the scikit-learn splitter (usable as `cv=` anywhere); `nmu train --cv` uses the same
`expanding_window_folds`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import BaseCrossValidator

from model.eras import ERA_COLUMN, era_positions, sort_eras
from validation.errors import NmuError

EMBARGO_20 = 4
EMBARGO_60 = 13


def embargo_for_target(target: str) -> int:
    """Default embargo in eras for a target: 13 for a 60-day target (`*_60`), else 4 (20-day targets)."""
    return EMBARGO_60 if target.endswith("_60") else EMBARGO_20


@dataclass(frozen=True)
class EraSplit:
    """One split: the eras to fit on, the eras to score, and the eras dropped by the embargo between them."""

    train: list[str]
    validation: list[str]
    embargoed: list[str]


def embargo_split(train_eras: Sequence[Any], validation_eras: Sequence[Any], embargo: int) -> EraSplit:
    """Keep only validation eras more than `embargo` eras after the last training era (by era number, so era
    downsampling does not shrink the gap); NmuError when none is left."""
    if embargo < 0:
        raise NmuError(f"embargo must be 0 or more eras, got {embargo}.")
    train = sort_eras(train_eras)
    validation = sort_eras(validation_eras)
    if not train:
        raise NmuError("there are no training eras to fit on.")
    if not validation:
        raise NmuError("there are no validation eras with a resolved target to score.")
    every = sort_eras(train + validation)
    position = dict(zip(every, era_positions(every)))
    last = position[train[-1]]
    kept = [e for e in validation if position[e] - last > embargo]
    dropped = [e for e in validation if position[e] - last <= embargo]
    if not kept:
        raise NmuError(
            f"an embargo of {embargo} eras after the last training era {train[-1]} leaves none of the "
            f"{len(validation)} validation eras ({validation[0]}–{validation[-1]}) to score; lower `embargo`."
        )
    return EraSplit(train=train, validation=kept, embargoed=dropped)


def expanding_window_folds(eras: Sequence[Any], k: int, embargo: int, setting: str | None = None) -> list[EraSplit]:
    """K expanding-window folds over the eras in era order: cut them into K+1 blocks in time; fold i fits on blocks
    0..i and scores block i+1 minus the `embargo` eras after its training data. NmuError when a fold is empty,
    naming `setting` (default `--cv K`, the flag of `nmu train`) as what asked for the folds."""
    setting = setting or f"--cv {k}"
    if k < 1:
        raise NmuError(f"{setting} needs at least 1 fold, got {k}.")
    ordered = sort_eras(eras)
    if len(ordered) < k + 1:
        raise NmuError(f"{setting} needs at least {k + 1} training eras, found {len(ordered)}.")
    n = len(ordered)
    cuts = [round(i * n / (k + 1)) for i in range(k + 2)]
    blocks = [ordered[cuts[i]:cuts[i + 1]] for i in range(k + 1)]
    folds = []
    for i in range(k):
        train = [e for block in blocks[: i + 1] for e in block]
        try:
            folds.append(embargo_split(train, blocks[i + 1], embargo))
        except NmuError:
            raise NmuError(
                f"{setting}: fold {i + 1} scores {len(blocks[i + 1])} eras ({blocks[i + 1][0]}–{blocks[i + 1][-1]}) "
                f"and an embargo of {embargo} eras leaves none of them; use fewer folds or a smaller embargo."
            ) from None
    return folds


class EraTimeSeriesSplit(BaseCrossValidator):
    """Expanding-window cross-validation over eras with an embargo, as a scikit-learn splitter (`cv=`).

    The eras are cut into `n_splits` + 1 blocks in era order; split i fits on blocks 0..i and tests on block i+1
    without its first `embargo` eras (their targets overlap the training eras'). Eras come from `groups` when given,
    else from the `era` column of X.

    Parameters
    ----------
    n_splits : int, default=3
        Number of folds.
    embargo : int, default=4
        Eras left out between the training and the test eras (4 for 20-day targets, 13 for 60-day ones).

    Examples
    --------
    >>> from sklearn.model_selection import cross_validate
    >>> cross_validate(NumeraiModel(), X, y, cv=EraTimeSeriesSplit(3, embargo=4), scoring=era_corr_scorer)
    """

    def __init__(self, n_splits: int = 3, embargo: int = EMBARGO_20):
        self.n_splits = n_splits
        self.embargo = embargo

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        """The number of folds."""
        return int(self.n_splits)

    def split(self, X: Any, y: Any = None, groups: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (train row positions, test row positions) per fold."""
        if groups is not None:
            eras = np.asarray(groups)
        elif isinstance(X, pd.DataFrame) and ERA_COLUMN in X.columns:
            eras = X[ERA_COLUMN].to_numpy()
        else:
            raise ValueError("EraTimeSeriesSplit needs the eras: an `era` column in X, or groups=eras")
        labels = np.asarray([str(e) for e in eras], dtype=object)
        try:
            folds = expanding_window_folds(labels, int(self.n_splits), int(self.embargo))
        except NmuError as exc:
            raise ValueError(str(exc)) from None
        for fold in folds:
            yield (np.flatnonzero(np.isin(labels, fold.train)), np.flatnonzero(np.isin(labels, fold.validation)))

    def _iter_test_indices(self, X: Any = None, y: Any = None, groups: Any = None) -> Iterator[np.ndarray]:
        for _, test in self.split(X, y, groups):
            yield test
