"""The linear layers: ridge regressions of the era-centred target on era-centred columns (the raw features, or the
engineered columns: composites, kept products, timed exposures), blended with the trees by per-era rank, each kept
only where it predicts later eras it never saw.

Why (issue 23, docs/benchmarks.md "What the trees leave is linear"): 1,000 to 2,000 trees of depth 5, each on a
tenth of the columns, approximate a sum of many small linear terms poorly. On the battery's control worlds a ridge
alone beat plain LightGBM in all six, and the rank blend rank(trees) + 0.5 x rank(ridge) added to full in 14 of 17
worlds of both families (pooled +0.0010 over the planted worlds, +0.0028 over the controls).

The structural layer (the same ridge over the engineered columns, each standardised): in the lab of session 9
(docs/benchmarks.md "A linear layer over the engineered columns too") trees + 0.5 x raw ridge + 0.5 x engineered
ridge beat trees + 0.5 x raw ridge in all 18 worlds of both families, and in the model it gained on the later eras
of all 18 fresh-seed worlds ("The structural layer in the model"); its weight in the blend is 2
(NumeraiModel.structural_weight says why; trees grown from its prediction instead, LightGBM's init_score, gained
nothing over the blend: "The weight of 2"). The composites are a less noisy view of the
styles than any one feature, and the products and timed exposures enter the target about linearly: a line through
them weighs every one at once, where trees of depth 5 approximate a sum of small linear terms poorly.

The gate: the ridge fitted on the choosing block of the training eras must predict the confirming block, after the
embargo, with a per-era correlation whose Newey-West t exceeds `threshold`; otherwise the layer is off and the model
predicts exactly as without it. A world without linear signal gets nothing from it.
"""

from __future__ import annotations

import numpy as np

from .eras import EraIndex
from .features import FACTOR_CHUNK_ROWS, era_filled
from .stats import MIN_CONFIRM_ERAS, _era_centred, era_correlations, evidence_blocks, newey_west_t

RIDGE_ALPHA_PER_1000_ROWS = 1.0
"""The ridge penalty per 1,000 rows with a target, on features of 0..4 (variance about 2); when the layer is
`standardised`, per 1,000 rows per unit of each column's variance (the same penalty on standardised columns). The
value of the lab measurements (tests/benchmarks/bench_engine.py), not tuned; at these row counts it barely
shrinks."""


class LinearLayer:
    """Ridge regression of the era-centred target on era-centred columns (the raw features, or the engineered
    columns when `standardised`), behind an out-of-sample gate.

    A plain class, not a scikit-learn estimator: its fit takes the feature matrix, the target and the rows' eras.

    Parameters
    ----------
    threshold : float
        The Newey-West t the choosing block's ridge must reach on the confirming block's per-era correlations.
    nw_lags : int
        Newey-West lags of that t (neighbouring eras' targets overlap).
    embargo : int
        Eras between the choosing and the confirming block.
    standardised : bool, default=False
        Penalise each column in proportion to its era-centred variance: the ridge of standardised columns, for
        columns of unlike scales (the engineered ones); False penalises all alike (the raw features, all 0..4).

    Attributes
    ----------
    coef_ : ndarray (n_features,) float32 or None
        The ridge's coefficients fitted on every training era with a target; None when the gate refused the layer.
    confirm_t_ : float
        The t of the choosing block's ridge on the confirming block (0 with fewer than MIN_CONFIRM_ERAS there).
    confirm_corr_ : float
        Its mean per-era correlation there.
    """

    def __init__(self, threshold: float, nw_lags: int, embargo: int, standardised: bool = False):
        self.threshold = threshold
        self.nw_lags = nw_lags
        self.embargo = embargo
        self.standardised = standardised

    def fit(self, raw: np.ndarray, target: np.ndarray, eras: EraIndex, chunk: int) -> LinearLayer:
        """Fit the gate's ridge on the choosing block, test it on the confirming block, and (if it passes) the
        layer's ridge on every era.

        Parameters
        ----------
        raw : ndarray (n, n_features)
            The columns: the features (int8, as `model.features.feature_matrix` gives them) or the engineered
            columns (float32). A NaN counts as 0 before the era's centring, where `scores` fills the era's mean:
            the same wherever a column is NaN for a whole era or not at all, as every engineered column is (the
            composites, products and timed columns are finite; the state and momentum columns one value an era).
        target : ndarray (n,)
            The target; rows without one are left out.
        eras : EraIndex
            The rows' eras.
        chunk : int
            Rows of whole eras handled at once (bounded memory: about 20 bytes a cell of a chunk).

        Returns
        -------
        self
        """
        p = raw.shape[1]
        target = np.asarray(target, dtype=np.float64)
        select, later = evidence_blocks(eras.n_eras, self.embargo)
        gap = slice(select.stop, later.start)
        gram, moment, rows = np.zeros((p, p)), np.zeros(p), 0
        self.coef_, self.confirm_t_, self.confirm_corr_ = None, 0.0, 0.0
        series: list[np.ndarray] = []
        gate_coef = None
        for block in (select, gap, later):
            if block is gap and rows:  # the gate's ridge sees the choosing block only, not the embargoed eras
                gate_coef = _solve(gram, moment, rows, self.standardised)
            for sub_rows in eras.chunks(chunk, block):
                sub = eras.take(sub_rows)
                c, yc, count = _era_centred(raw[sub_rows], target[sub_rows], sub)
                # float32 Gram (twice as fast; each chunk's sum is then added in float64): the ridge needs no more
                c32 = c.astype(np.float32)
                gram += c32.T @ c32
                moment += c.T @ yc
                rows += int(count.sum())
                if block is later and gate_coef is not None:  # _era_centred's rows are in era order: back to the chunk's
                    scores = np.empty(len(sub_rows))
                    scores[sub.order] = c @ gate_coef
                    series.append(era_correlations(scores, target[sub_rows], sub)[:, 0])
        if series:
            per_era = np.concatenate(series)  # NaN (an era without targets) kept: the t skips it, lags stay in place
            if np.isfinite(per_era).sum() >= MIN_CONFIRM_ERAS:
                self.confirm_t_ = float(newey_west_t(per_era[:, None], self.nw_lags)[0])
                self.confirm_corr_ = float(np.nanmean(per_era))
        if self.confirm_t_ > self.threshold and rows:
            self.coef_ = _solve(gram, moment, rows, self.standardised).astype(np.float32)
        return self

    def scores(self, raw: np.ndarray, eras: EraIndex) -> np.ndarray:
        """The layer's prediction (n,) float64 for whole eras, in blocks of rows (no float copy of the whole chunk);
        a missing feature takes its era's mean (model.features.era_filled)."""
        out = np.empty(len(raw), dtype=np.float64)
        if raw.dtype.kind == "f" and np.isnan(raw).any():
            raw = era_filled(raw, eras)
        for start in range(0, len(raw), FACTOR_CHUNK_ROWS):
            # copy=False: the engineered columns are float32 already (only int8 features need the conversion)
            block = raw[start : start + FACTOR_CHUNK_ROWS].astype(np.float32, copy=False)
            out[start : start + FACTOR_CHUNK_ROWS] = block @ self.coef_
        return out


def blend(values: np.ndarray, eras: EraIndex, layers: list[tuple[LinearLayer | None, np.ndarray, float]]) -> np.ndarray:
    """rank(values) + sum of weight x rank(layer's scores) per era over the layers that are on (a fitted `coef_`)
    with a weight above 0; `values` unchanged when none is.

    Parameters
    ----------
    values : ndarray (n,)
        The trees' raw predictions of whole eras.
    eras : EraIndex
        The rows' eras.
    layers : list of (LinearLayer or None, ndarray (n, m), float)
        Each layer, the columns it scores and its weight.
    """
    active = [(layer, columns, weight) for layer, columns, weight in layers
              if layer is not None and layer.coef_ is not None and weight > 0]
    if not active:
        return values
    out = eras.rank(values)
    for layer, columns, weight in active:
        out = out + weight * eras.rank(layer.scores(columns, eras))
    return out


def _solve(gram: np.ndarray, moment: np.ndarray, rows: int, standardised: bool = False) -> np.ndarray:
    """The ridge solution of the normal equations with RIDGE_ALPHA_PER_1000_ROWS x rows / 1000 on the diagonal, or
    (standardised) RIDGE_ALPHA_PER_1000_ROWS / 1000 x each column's sum of squares: the same ridge on the columns
    divided by their standard deviations (a column without variance gets 1, so the system stays solvable)."""
    penalised = gram.copy()
    diagonal = np.diag_indices_from(penalised)
    if standardised:
        squares = np.diag(gram)
        penalised[diagonal] += np.where(squares > 0, RIDGE_ALPHA_PER_1000_ROWS * squares / 1000, 1.0)
    else:
        penalised[diagonal] += RIDGE_ALPHA_PER_1000_ROWS * rows / 1000
    return np.linalg.solve(penalised, moment)
