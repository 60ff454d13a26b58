"""Era-wise splits with an embargo: Numerai targets look 20 or 60 days ahead while eras are a week apart, so
eras right after the last training era share outcomes with it and must not be scored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

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


def _distance_fn(eras: Sequence[str]) -> Callable[[str], int]:
    """A function giving an era's position, numeric when every era is a number, else by sorted order."""
    numeric = all(str(e).isdigit() for e in eras)
    order = {e: i for i, e in enumerate(sorted(eras))}
    return (lambda e: int(e)) if numeric else (lambda e: order[e])


def embargo_split(train_eras: Sequence[str], validation_eras: Sequence[str], embargo: int) -> EraSplit:
    """Keep only validation eras more than `embargo` eras after the last training era (by era number, so era
    downsampling does not shrink the gap); NmuError when none is left."""
    if embargo < 0:
        raise NmuError(f"embargo must be 0 or more eras, got {embargo}.")
    train = sorted(set(map(str, train_eras)))
    validation = sorted(set(map(str, validation_eras)))
    if not train:
        raise NmuError("there are no training eras to fit on.")
    if not validation:
        raise NmuError("there are no validation eras with a resolved target to score.")
    pos = _distance_fn(train + validation)
    last = pos(train[-1])
    kept = [e for e in validation if pos(e) - last > embargo]
    dropped = [e for e in validation if pos(e) - last <= embargo]
    if not kept:
        raise NmuError(
            f"an embargo of {embargo} eras after the last training era {train[-1]} leaves none of the "
            f"{len(validation)} validation eras ({validation[0]}–{validation[-1]}) to score; lower `embargo`."
        )
    return EraSplit(train=train, validation=kept, embargoed=dropped)


def expanding_window_folds(eras: Sequence[str], k: int, embargo: int) -> list[EraSplit]:
    """K expanding-window folds over sorted eras: cut them into K+1 blocks in time; fold i fits on blocks
    0..i and scores block i+1 minus the `embargo` eras after its training data. NmuError when a fold is empty."""
    if k < 1:
        raise NmuError(f"--cv needs at least 1 fold, got {k}.")
    ordered = sorted(set(map(str, eras)))
    if len(ordered) < k + 1:
        raise NmuError(f"--cv {k} needs at least {k + 1} training eras, found {len(ordered)}.")
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
                f"--cv {k}: fold {i + 1} scores {len(blocks[i + 1])} eras ({blocks[i + 1][0]}–{blocks[i + 1][-1]}) "
                f"and an embargo of {embargo} eras leaves none of them; use fewer folds or a smaller embargo."
            ) from None
    return folds
