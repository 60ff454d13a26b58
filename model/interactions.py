"""Interactions: products of factor composites that explain the target beyond their main effects, consistently.

Candidates are pairs of composites and composite × cluster-relative composite. In every training era the centred
target is regressed on both main effects and the centred product (one batched 3×3 solve for all eras); a
candidate's score is the t-statistic of the product's per-era coefficient across eras, with a Newey-West
correction for the overlap of neighbouring eras' targets. A candidate is chosen when its |t| on the first training
eras clears a family-wise threshold, and kept only if it holds on the later, embargoed eras (model.stats.confirm;
at most `max_pairs`), so a world without interactions adds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from .eras import EraIndex
from .params import check_params
from .stats import confirm, familywise_threshold, gate_embargo, pair_coefficients, series_stat


class Interactions:
    """Choose and build the products of composites whose per-era coefficient is consistently non-zero.

    A plain class, not a scikit-learn estimator: its fit takes the composites, the target and the rows' eras, not (X, y).

    Parameters
    ----------
    max_pairs : int, default=4
        At most this many products are kept, strongest first.
    threshold : float, default=3.0
        Least |Newey-West t| of a product's per-era coefficient; raised to the family-wise (Bonferroni 5 %)
        critical value for the number of candidates.
    nw_lags : int, default=4
        Newey-West lags (neighbouring eras' targets overlap).

    Attributes
    ----------
    candidates_ : ndarray (C, 3)
        Every candidate (composite i, partner j, kind: 0 composite, 1 cluster-relative composite).
    tstats_ : ndarray (C,)
        Each candidate's t-statistic on the choosing eras.
    evidence_ : model.stats.Evidence
        Each candidate's t and size on the choosing and the confirming eras, and the verdict.
    threshold_ : float
        The |t| a candidate had to clear.
    pairs_, pair_tstats_ : ndarray
        The kept candidates and their t.
    names_ : list of str
        Column names of `transform`'s output.
    """

    _parameter_rules: ClassVar[dict[str, tuple]] = {
        "max_pairs": ("int", 0, None), "threshold": ("real", 0, None), "nw_lags": ("int", 0, None)}

    def __init__(self, max_pairs: int = 4, threshold: float = 3.0, nw_lags: int = 4):
        self.max_pairs = max_pairs
        self.threshold = threshold
        self.nw_lags = nw_lags

    def fit(
        self,
        composites: np.ndarray,
        target: np.ndarray,
        eras: EraIndex,
        names: Sequence[str],
        relative: np.ndarray | None = None,
    ) -> Interactions:
        """Score every candidate pair on the training eras and keep the consistent ones."""
        check_params(self)
        k = composites.shape[1]
        candidates: list[tuple[int, int, int]] = [(i, j, 0) for i in range(k) for j in range(i + 1, k)]
        if relative is not None:
            candidates += [(i, j, 1) for i in range(k) for j in range(k) if i != j]
        partners = composites if relative is None else np.concatenate([composites, relative], axis=1)
        pairs = np.asarray([(i, j + k * kind) for i, j, kind in candidates], dtype=np.int64).reshape(-1, 2)
        coef = pair_coefficients(composites, partners, pairs, target, eras)
        # chosen on the first training eras, confirmed on the later ones (NaN eras are the same for every pair)
        self.threshold_ = familywise_threshold(len(candidates), self.threshold)
        self.evidence_ = confirm(series_stat(coef, self.nw_lags), eras.n_eras, self.threshold_,
                                 gate_embargo(self.nw_lags))
        tstats = self.evidence_.select_t
        order = np.argsort(-np.abs(tstats), kind="stable")
        keep = [c for c in order if self.evidence_.passed[c]][: self.max_pairs]
        self.candidates_ = np.asarray(candidates, dtype=np.int64).reshape(-1, 3)
        self.tstats_ = tstats
        self.pairs_ = self.candidates_[keep] if keep else np.zeros((0, 3), dtype=np.int64)
        self.pair_tstats_ = tstats[keep] if keep else np.zeros(0)
        self.names_ = [
            f"ix_{names[i]}_x_{'rel_' if kind else ''}{names[j]}" for i, j, kind in self.pairs_.tolist()
        ]
        return self

    def ranking(self, names: Sequence[str]) -> list[tuple[str, str, str, float]]:
        """Every candidate (a, b, kind, t) ordered by |t|, strongest first: for reports and tests."""
        order = np.argsort(-np.abs(self.tstats_), kind="stable")
        kinds = ("composite", "relative")
        return [
            (names[self.candidates_[c, 0]], names[self.candidates_[c, 1]], kinds[self.candidates_[c, 2]], float(self.tstats_[c]))
            for c in order
        ]

    def transform(self, composites: np.ndarray, relative: np.ndarray | None = None) -> np.ndarray:
        """The kept products (n, n_pairs) float32."""
        out = np.empty((composites.shape[0], len(self.pairs_)), dtype=np.float32)
        for c, (i, j, kind) in enumerate(self.pairs_.tolist()):
            other = relative[:, j] if kind else composites[:, j]
            out[:, c] = composites[:, i] * other
        return out
