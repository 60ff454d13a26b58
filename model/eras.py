"""Eras: their order and the rows of each, the one home for both.

Eras come from the `era` column of X (never from metadata routing); a frame without `era` is one era.

Era labels order as eras, not as text: zero-padded strings ("0002"), integers (2) and unpadded strings ("2") all
order by their number, so "10" comes after "9". A label without a number (a live era "X") comes after every
numbered one. Two labels of the same number written differently ("0002" and "2") are one era written two ways,
and labels with a number beside labels without one have no order in time: `check_era_labels` rejects such a frame,
naming them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtri

ERA_COLUMN = "era"
SINGLE_ERA = "live"


_FLOAT_WRITTEN = re.compile(r"(\d+)(?:\.0*)?")


def era_number(era: Any) -> float:
    """The number of an era label ("0042", "42", 42 and "42.0" are 42.0); a label without one (a live "X") is +inf."""
    if isinstance(era, (int, np.integer)) and not isinstance(era, bool):
        return float(era)
    if isinstance(era, (float, np.floating)) and float(era).is_integer():
        return float(era)
    text = str(era).strip()
    whole = _FLOAT_WRITTEN.fullmatch(text)  # "481.0": a float label written as text (an era column of floats)
    return float(int(whole.group(1))) if whole else float("inf")


def era_key(era: Any) -> tuple[float, str]:
    """Sort key of an era label: by number, then by text (labels without a number last, in text order)."""
    return era_number(era), str(era)


def sort_eras(eras: Iterable[Any]) -> list[str]:
    """The distinct era labels of `eras` as strings, in era order."""
    return sorted({str(e) for e in eras}, key=era_key)


def era_positions(eras: Sequence[Any]) -> np.ndarray:
    """Each era's position in time: its number when every era has one (so downsampled eras keep their real gaps),
    else its rank in era order (labels without numbers have nothing better)."""
    numbers = np.array([era_number(e) for e in eras], dtype=np.float64)
    if np.isfinite(numbers).all():
        return numbers
    ranked = sorted(range(len(numbers)), key=lambda i: era_key(eras[i]))
    positions = np.empty(len(numbers))
    positions[ranked] = np.arange(len(numbers), dtype=np.float64)
    return positions


def check_era_labels(eras: Iterable[Any]) -> None:
    """ValueError when two labels name the same era number in different writing ("0002" and "2"), or when some
    labels have a number and others none ("0037" and "era0001"): the unnumbered would be ordered after every
    numbered one, so the training eras would come after the validation eras."""
    labels = sorted({str(e) for e in eras}, key=era_key)
    unnumbered = [label for label in labels if not np.isfinite(era_number(label))]
    if unnumbered and len(unnumbered) < len(labels):
        numbered = labels[: len(labels) - len(unnumbered)]
        raise ValueError(f"the era column mixes labels with a whole number ({', '.join(map(repr, numbered[:2]))}, ...) "
                         f"and labels without one ({', '.join(map(repr, unnumbered[:2]))}, ...), so the eras' order in "
                         "time is unknown: write every era as its number")
    seen: dict[float, str] = {}
    clashes: list[str] = []
    for label in labels:
        number = era_number(label)
        if np.isfinite(number) and number in seen and seen[number] != label:
            clashes.append(f"{seen[number]!r} and {label!r}")
        seen.setdefault(number, label)
    if clashes:
        shown = "; ".join(clashes[:3]) + (f"; and {len(clashes) - 3} more" if len(clashes) > 3 else "")
        raise ValueError(f"the era column writes the same era in two ways ({shown}): use one label style for every era")


class EraIndex:
    """Rows grouped by era once (codes in era order, the rows sorted by era, boundaries), reused by every per-era
    operation.

    Parameters
    ----------
    eras : array-like of era labels, or None
        One label per row; None means one era of `n_rows` rows, labelled "live".
    n_rows : int, optional
        The number of rows when `eras` is None.

    Attributes
    ----------
    codes : ndarray of int32, (n,)
        Each row's era as a position in `eras`.
    eras : ndarray of str, (n_eras,)
        The distinct era labels in era order (`era_key`).
    order : ndarray, (n,)
        Row positions sorted by era (stable).
    starts, counts : ndarray, (n_eras,)
        Where each era's rows begin in `order`, and how many there are.
    """

    __slots__ = ("codes", "eras", "order", "starts", "counts")

    def __init__(self, eras: np.ndarray | pd.Series | list | None, n_rows: int | None = None):
        if eras is None:
            if n_rows is None:
                raise ValueError("EraIndex needs eras or n_rows")
            eras = np.full(n_rows, SINGLE_ERA, dtype=object)
        values = np.asarray(eras)
        if values.dtype.kind not in "OUS":
            values = values.astype(str)
        codes, uniques = pd.factorize(values)
        if (codes < 0).any():
            raise ValueError("the era column holds missing values")
        labels = np.asarray(uniques).astype(str)
        order = np.array(sorted(range(len(labels)), key=lambda i: era_key(labels[i])), dtype=np.int64)
        rank = np.empty(len(order), dtype=np.int32)
        rank[order] = np.arange(len(order), dtype=np.int32)
        self._set(rank[codes], labels[order])

    def _set(self, codes: np.ndarray, eras: np.ndarray) -> None:
        self.codes: np.ndarray = codes
        self.eras: np.ndarray = eras
        self.counts: np.ndarray = np.bincount(self.codes, minlength=len(self.eras))
        self.order: np.ndarray = np.argsort(self.codes, kind="stable")
        self.starts: np.ndarray = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)

    @classmethod
    def from_frame(cls, X: pd.DataFrame) -> EraIndex:
        """Group a frame's rows by its `era` column; no `era` column means one era."""
        if ERA_COLUMN in X.columns:
            return cls(X[ERA_COLUMN].to_numpy())
        return cls(None, n_rows=len(X))

    @property
    def n_eras(self) -> int:
        """The number of eras."""
        return len(self.eras)

    def __len__(self) -> int:
        return len(self.codes)

    def rows(self) -> Iterator[tuple[str, np.ndarray]]:
        """Yield (era, row positions) for each era, in era order."""
        for era, start, count in zip(self.eras, self.starts, self.counts):
            yield era, self.order[start : start + count]

    def chunks(self, max_rows: int, part: slice = slice(None)) -> Iterator[np.ndarray]:
        """Row positions of consecutive groups of whole eras (in era order) with at most `max_rows` rows each, one
        era alone when it is bigger: bounded memory for work on a multi-era frame. `part`: only the eras at these
        positions (a slice of era positions)."""
        start, end, _ = part.indices(self.n_eras)
        while start < end:
            stop = start + 1
            total = int(self.counts[start])
            while stop < end and total + int(self.counts[stop]) <= max_rows:
                total += int(self.counts[stop])
                stop += 1
            begin = int(self.starts[start])
            yield self.order[begin : begin + total]
            start = stop

    def take(self, rows: np.ndarray) -> EraIndex:
        """The EraIndex of the given row positions (in that order), reusing the era labels instead of regrouping."""
        codes = self.codes[np.asarray(rows)]
        present = np.flatnonzero(np.bincount(codes, minlength=self.n_eras))
        remap = np.zeros(self.n_eras, dtype=np.int32)
        remap[present] = np.arange(len(present), dtype=np.int32)
        sub = EraIndex.__new__(EraIndex)
        sub._set(remap[codes], self.eras[present])
        return sub

    def sums(self, values: np.ndarray) -> np.ndarray:
        """Per-era sums of the columns of `values` (n,) or (n, k), NaN counted as 0; shape (n_eras[, k])."""
        x = np.asarray(values)
        x = np.where(np.isnan(x), 0.0, x) if x.dtype.kind == "f" else x
        out = np.add.reduceat(x[self.order], self.starts, axis=0)
        return out

    def means(self, values: np.ndarray) -> np.ndarray:
        """Per-era means of the columns of `values`, ignoring NaN; shape (n_eras[, k]) float64."""
        x = np.asarray(values, dtype=np.float64)
        valid = ~np.isnan(x)
        total = np.add.reduceat(np.where(valid, x, 0.0)[self.order], self.starts, axis=0)
        count = np.add.reduceat(valid[self.order].astype(np.int64), self.starts, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return total / count

    def broadcast(self, era_values: np.ndarray) -> np.ndarray:
        """Expand per-era values (n_eras[, k]) back to rows (n[, k])."""
        return np.asarray(era_values)[self.codes]

    def standardize(self, values: np.ndarray, dtype: type = np.float32) -> np.ndarray:
        """Per-era z-scores of each column; NaN becomes 0 (the era mean); a constant column becomes 0."""
        x = np.asarray(values, dtype=np.float64)
        mean = self.means(x)
        centred = x - self.broadcast(mean)
        var = self.means(centred * centred)
        std = np.sqrt(var)
        std = np.where(std > 0, std, 1.0)
        z = centred / self.broadcast(std)
        return np.nan_to_num(z, nan=0.0).astype(dtype, copy=False)

    def rank(self, values: np.ndarray) -> np.ndarray:
        """Per-era percentile ranks in (0, 1] (ties averaged) of each column of `values`."""
        x = np.asarray(values)
        frame = pd.DataFrame(x.reshape(len(x), -1))
        ranked = frame.groupby(self.codes, sort=False).rank(pct=True, method="average").to_numpy()
        return ranked.reshape(x.shape)

    def gaussianize(self, values: np.ndarray) -> np.ndarray:
        """Per-era ranks mapped through the normal quantile function: (rank·n − 0.5)/n → N(0, 1) scores."""
        ranks = self.rank(values)
        n = self.counts[self.codes].astype(np.float64)
        if ranks.ndim == 2:
            n = n[:, None]
        return ndtri((ranks * n - 0.5) / n)
