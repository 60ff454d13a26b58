"""Per-era residualization: remove the part of values explained by exposures (the talk's "specific return").

`residualize(values, exposures, eras, proportion)` does, per era, what numerai-tools' `neutralize` does
(least squares of the values on [exposures, 1], then subtract `proportion` x the fit) but batched:

- rows are grouped by era once (`model.eras.EraIndex`); exposures are touched one era (or one bounded
  chunk of rows of a huge era) at a time, in reused buffers, so no float64 copy of a multi-era exposure
  matrix ever exists;
- per era the Gram matrix XᵀX comes from ONE BLAS syrk call in float32. Columns holding small integers
  (Numerai's 0..4 features, dummies, the intercept) are exact there: every product and partial sum is an
  integer below 2**24. Any other column (e.g. benchmark predictions) is handled in float64. Xᵀv is exact
  too: the values are split into a few float32 slices of ~9-bit integers (times powers of two) appended
  to the design, so the same syrk call yields them; Xβ is computed the same way. Nothing of the
  exposures is ever copied to float64 when they are small integers;
- the intercept is eliminated exactly (the Schur complement is the centred Gram matrix), columns without
  variance in the era get coefficient 0, and ONE Cholesky factorisation of the equilibrated (unit
  diagonal) centred Gram matrix is shared by every column of values, followed by two steps of iterative
  refinement: answers agree with numpy's SVD least squares to ~1e-13 of the values' standard deviation;
- a singular or ill-conditioned era (duplicated exposure columns, fewer rows than columns: LAPACK's
  condition estimate below 1e-11) falls back to a ridge factorisation (C + 1e-10 I) iterated to
  convergence ("iterated Tikhonov"), which tends to lstsq's minimum-norm solution on the well-determined
  directions: results stay finite, never NaN.

Eras are independent: `n_jobs` spreads them over worker threads. The Gram matrix already runs at the core's
float32 peak (~40 ms of a ~57 ms era at 6,000 x 780), so a many-era call gains speed only from more cores.

Return value: the RAW residual `values - proportion * fit` as float64, which is what
`numerai_tools.scoring.neutralize` returns (0.4.3: it does not rescale). One difference, on purpose:
`neutralize` turns a values column that is constant (over all rows it is given) into NaN; `residualize`
returns its residual ((1 - proportion) x the constant), because the live path must never produce NaN.

`residualize_predictions` is the postprocessor: per era gaussianize the ranked predictions, residualize, rank to
(0, 1]. `Residualizer` chooses the exposures and gates them on the training eras (it is NumeraiModel's residualizer
component), and `ResidualizedRegressor` puts it behind any scikit-learn regressor.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.linalg.lapack
from sklearn.base import BaseEstimator, MetaEstimatorMixin, RegressorMixin, clone

from .clusters import cluster_dummies
from .eras import ERA_COLUMN, EraIndex
from .features import as_frame, era_filled, feature_matrix
from .params import check_params, resolve_n_jobs
from .stats import MIN_CONFIRM_ERAS, era_correlations, evidence_blocks

__all__ = ["residualize", "residualize_predictions", "Residualizer", "ResidualizedRegressor"]

# float32 holds every integer up to 2**24 exactly: a Gram entry sum_i x_i*y_i of integers with
# |x|,|y| <= h over r rows is exact when r*h*h <= 2**24 (all partial sums are integers below that).
_FLOAT32_EXACT = float(2**24)
# elements of one chunk of rows of the design: an era (~5-7k rows) is one chunk even with all 2,748
# features; a bigger "era" (e.g. a frame without an era column) is processed in chunks of <= 128 MB float32.
_CHUNK_ELEMENTS = 2**25
# below this reciprocal condition estimate (1-norm, of the equilibrated Gram matrix) the plain Cholesky
# answer is not trusted and the ridge fallback is used. numpy's lstsq in `neutralize` drops singular
# values below 1e-6 x the largest, i.e. Gram eigenvalues below ~1e-12 x the largest.
_RCOND_MIN = 1e-11
# ridge added to the unit-diagonal (equilibrated, centred) Gram matrix in the fallback, and refinement steps.
_RIDGE = 1e-10
_REFINE_STEPS = 2
_RIDGE_REFINE_STEPS = 30


def _as_blocks(exposures: Any) -> tuple[list[np.ndarray], int]:
    """Exposure columns as a list of 2-D arrays in their stored dtypes (no common-dtype copy of a mixed frame)."""
    if isinstance(exposures, pd.DataFrame):
        if exposures.shape[1] == 0:
            return [], len(exposures)
        groups: dict[str, list[int]] = {}
        for position, dtype in enumerate(exposures.dtypes):
            groups.setdefault(str(dtype), []).append(position)
        frames = [exposures] if len(groups) == 1 else [exposures.iloc[:, cols] for cols in groups.values()]
        blocks = []
        for frame in frames:
            block = frame.to_numpy()
            blocks.append(block if block.dtype.kind in "biuf" else block.astype(np.float64))
        return blocks, len(exposures)
    if isinstance(exposures, pd.Series):
        exposures = exposures.to_numpy()
    array = np.asarray(exposures)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"exposures must be 2-D (n, k); got shape {array.shape}")
    if array.dtype.kind not in "biuf":
        array = array.astype(np.float64)
    return [array], len(array)


def _rows_of(index: EraIndex, era: int) -> np.ndarray | slice:
    """Row positions of one era; a slice (a view, no copy) when the era's rows are contiguous."""
    start, count = int(index.starts[era]), int(index.counts[era])
    rows = index.order[start : start + count]
    if count and int(rows[-1]) - int(rows[0]) == count - 1:
        return slice(int(rows[0]), int(rows[0]) + count)
    return rows


class _Workspace:
    """Design buffers reused by every era of one call (no fresh 10-100 MB allocation, and its page faults, per era)."""

    def __init__(self, rows: int, columns: int):
        self.rows = rows
        self.f32 = np.empty(rows * columns, dtype=np.float32)
        self.f64: np.ndarray | None = None

    def x32(self, n: int, width: int) -> np.ndarray:
        return self.f32[: n * width].reshape(n, width)

    def x64(self, n: int, width: int) -> np.ndarray:
        if self.f64 is None or self.f64.size < n * width:  # only for exposure columns that are not small integers
            self.f64 = np.empty(self.rows * width, dtype=np.float64)
        return self.f64[: n * width].reshape(n, width)


_MAX_SLICE_COLUMNS = 48  # beyond this many float32 slice columns a plain float64 product is cheaper


def _slice_plan(inner: int, bound: float, m: int) -> tuple[int, int] | None:
    """(bits, pieces) for exact float32 products over `inner` terms of integers |a| <= bound, or None."""
    limit = _FLOAT32_EXACT / (max(inner, 1) * max(float(bound), 1.0))
    bits = int(np.floor(np.log2(limit))) if limit >= 2 else 0
    if bits < 6:
        return None
    pieces = -(-52 // bits) + 1
    if pieces * m > _MAX_SLICE_COLUMNS:
        return None
    return bits, pieces


def _slices(y: np.ndarray, bits: int, pieces: int, out: np.ndarray) -> np.ndarray:
    """Write y (K, m) float64 as `pieces` slices of `bits`-bit integers into out (K, pieces*m) float32; return exponents."""
    m = y.shape[1]
    _, exponent = np.frexp(np.abs(y).max(axis=0))  # per column: |y| < 2**exponent
    rest = np.ldexp(y, -exponent)
    for j in range(pieces):
        rest = np.ldexp(rest, bits)
        whole = np.rint(rest)
        rest -= whole
        out[:, j * m : (j + 1) * m] = whole
    return exponent


def _combine(products: np.ndarray, exponent: np.ndarray, bits: int, pieces: int) -> np.ndarray:
    """Recombine exact float32 products with the slices (r, pieces*m) into float64 (r, m)."""
    m = len(exponent)
    out = np.zeros((products.shape[0], m))
    for j in range(pieces - 1, -1, -1):  # smallest slice first
        out += np.ldexp(products[:, j * m : (j + 1) * m].astype(np.float64), exponent - (j + 1) * bits)
    return out


def _exact_product(a32: np.ndarray, y: np.ndarray, bound: float) -> np.ndarray:
    """a32 @ y to float64 accuracy, where a32 holds integers |a| <= bound in float32, without a float64 copy of a32.

    y is split into slices of `bits`-bit integers (scaled by powers of two per column); every float32
    product and partial sum of a32 @ slice is then an integer below 2**24, i.e. exact, and the slices are
    recombined in float64. Falls back to a float64 product when that would not be cheaper.
    """
    plan = _slice_plan(a32.shape[1], bound, y.shape[1])
    if plan is None:
        return a32.astype(np.float64) @ y
    bits, pieces = plan
    slices = np.empty((a32.shape[1], pieces * y.shape[1]), dtype=np.float32)
    exponent = _slices(y, bits, pieces, slices)
    return _combine(a32 @ slices, exponent, bits, pieces)


class _Design:
    """One chunk of rows as [1, small-integer exposures] in float32 (exact) and the other exposures in float64.

    Given the values, their exact float32 slices are appended as extra columns, so that the one syrk call
    that builds XᵀX also yields Xᵀv (exactly) at almost no extra cost.
    """

    __slots__ = ("x32", "floats", "perm", "bound", "_full", "_values", "_plan", "_exponent")

    def __init__(self, parts: Sequence[np.ndarray], work: _Workspace, values: np.ndarray | None = None):
        n = len(parts[0])
        exact: list[np.ndarray] = []
        exact_idx: list[np.ndarray] = []
        other: list[np.ndarray] = []
        other_idx: list[np.ndarray] = []
        bound = 1.0
        offset = 1  # position 0 is the intercept
        for part in parts:
            width = part.shape[1]
            columns = np.arange(offset, offset + width)
            offset += width
            if part.dtype.kind == "b":
                ok = np.ones(width, dtype=bool)
                high = np.ones(width)
            else:
                if part.dtype.kind == "f" and not np.isfinite(part).all():
                    raise ValueError("exposures hold NaN or infinite values; fill them before residualizing")
                high = np.maximum(np.abs(part.max(axis=0).astype(np.float64)), np.abs(part.min(axis=0).astype(np.float64)))
                ok = high * high * n <= _FLOAT32_EXACT
                if part.dtype.kind == "f":
                    ok &= (part == np.rint(part)).all(axis=0)
            if ok.any():
                bound = max(bound, float(high[ok].max()))
            if ok.all():
                exact.append(part)
                exact_idx.append(columns)
            elif not ok.any():
                other.append(part)
                other_idx.append(columns)
            else:
                exact.append(part[:, ok])
                exact_idx.append(columns[ok])
                other.append(part[:, ~ok])
                other_idx.append(columns[~ok])
        a = 1 + sum(block.shape[1] for block in exact)
        b = sum(block.shape[1] for block in other)
        plan = None if values is None else _slice_plan(n, bound, values.shape[1])
        extra = 0 if plan is None else plan[1] * values.shape[1]
        full = work.x32(n, a + extra)
        full[:, 0] = 1.0
        col = 1
        for block in exact:
            full[:, col : col + block.shape[1]] = block
            col += block.shape[1]
        self._exponent = None if plan is None else _slices(values, plan[0], plan[1], full[:, a:])
        floats = None
        if b:
            floats = work.x64(n, b)
            col = 0
            for block in other:
                floats[:, col : col + block.shape[1]] = block
                col += block.shape[1]
        perm = np.concatenate([np.zeros(1, dtype=np.int64)] + exact_idx + other_idx).astype(np.int64)
        self._full = full
        self._values = values
        self._plan = plan
        self.x32 = full[:, :a]  # a strided view; BLAS takes it as is
        self.floats = floats
        self.perm = None if (b == 0 and (perm == np.arange(len(perm))).all()) else perm
        self.bound = bound

    def normal_equations(self) -> tuple[np.ndarray, np.ndarray]:
        """XᵀX (float64, symmetric; the small-integer block exact) and Xᵀv, in this design's column order."""
        a = self.x32.shape[1]
        p = a + (0 if self.floats is None else self.floats.shape[1])
        full = self._full.T @ self._full  # numpy runs BLAS syrk for a matrix times its own transpose
        if self._plan is None:
            rhs_top = _exact_product(self.x32.T, self._values, self.bound)
        else:
            rhs_top = _combine(full[:a, a:], self._exponent, *self._plan)
        if self.floats is None:
            return full[:a, :a].astype(np.float64), rhs_top
        gram = np.empty((p, p))
        gram[:a, :a] = full[:a, :a]
        gram[:a, a:] = _exact_product(self.x32.T, self.floats, self.bound)
        gram[a:, :a] = gram[:a, a:].T
        gram[a:, a:] = self.floats.T @ self.floats
        return gram, np.vstack([rhs_top, self.floats.T @ self._values])

    def dot(self, beta: np.ndarray) -> np.ndarray:
        """Xβ (n, m) in float64 accuracy, β in this design's column order."""
        a = self.x32.shape[1]
        out = _exact_product(self.x32, beta[:a], self.bound)
        if self.floats is not None:
            out += self.floats @ beta[a:]
        return out


class _Solver:
    """One Cholesky factorisation of a symmetric Gram matrix, shared by all value columns, with a ridge fallback.

    The factor is of the Jacobi-equilibrated matrix (unit diagonal), so the condition test and the ridge
    do not depend on the exposures' units.
    """

    def __init__(self, gram: np.ndarray):
        diag = np.diag(gram).copy()
        inv = 1.0 / np.sqrt(np.where(diag > 0, diag, 1.0))
        self.gram = gram
        self.inv = inv
        scaled = np.outer(inv, inv)
        scaled *= gram  # unit diagonal (a correlation matrix); a fresh array the factorisation may overwrite
        anorm = float(np.abs(scaled).sum(axis=0).max())
        self.ridge = 0.0
        factor = None
        try:
            # scaled.T is Fortran-ordered and (being symmetric) the same matrix: factorised in place, no copy
            factor = scipy.linalg.cho_factor(scaled.T, lower=False, overwrite_a=True, check_finite=False)
            rcond, info = scipy.linalg.lapack.dpocon(factor[0], anorm)  # via the module: a fortran object does not pickle
            if info != 0 or not np.isfinite(rcond) or rcond < _RCOND_MIN:
                factor = None
        except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
            factor = None
        ridge = _RIDGE
        while factor is None:
            try:
                ridged = np.outer(inv, inv)
                ridged *= gram
                ridged.flat[:: len(ridged) + 1] += ridge
                factor = scipy.linalg.cho_factor(ridged.T, lower=False, overwrite_a=True, check_finite=False)
                self.ridge = ridge
            except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
                ridge *= 100.0
                if ridge > 1.0:  # cannot happen for a Gram matrix with unit diagonal, kept as a guard
                    raise
        self.factor = factor

    def _apply(self, rhs: np.ndarray) -> np.ndarray:
        scale = self.inv[:, None]
        return scipy.linalg.cho_solve(self.factor, rhs * scale, check_finite=False) * scale

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """Least-squares coefficients for right-hand sides Xᵀv (p, m), refined on the normal equations."""
        beta = self._apply(rhs)
        steps = _RIDGE_REFINE_STEPS if self.ridge else _REFINE_STEPS
        for _ in range(steps):
            delta = self._apply(rhs - self.gram @ beta)
            beta += delta
            if self.ridge and np.abs(delta).max(initial=0.0) <= 1e-15 * np.abs(beta).max(initial=0.0):
                break
        return beta


def _solve_with_intercept(gram: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Coefficients (intercept first) from the symmetric [1, X]ᵀ[1, X] and [1, X]ᵀv.

    The intercept is eliminated exactly (Schur complement = centred Gram matrix), which removes the large
    "mean" eigenvalue of uncentred 0..4 features; columns without variance in the era get coefficient 0.
    """
    count = gram[0, 0]
    sums = gram[0, 1:]
    raw = np.diag(gram)[1:].copy()
    centred = gram[1:, 1:]  # a view: the caller's matrix is consumed
    centred -= np.outer(sums, sums / count)
    rhs_c = rhs[1:] - np.outer(sums, rhs[0] / count)
    live = np.diag(centred) > 1e-12 * np.where(raw > 0, raw, 1.0)
    beta_x = np.zeros_like(rhs_c)
    if live.all():
        beta_x = _Solver(centred).solve(rhs_c)
    elif live.any():
        beta_x[live] = _Solver(centred[np.ix_(live, live)]).solve(rhs_c[live])
    beta0 = (rhs[0] - sums @ beta_x) / count
    return np.vstack([beta0[None, :], beta_x])


def _era_index(eras: Any, n: int) -> EraIndex:
    if isinstance(eras, EraIndex):
        if len(eras) != n:
            raise ValueError(f"EraIndex has {len(eras)} rows but values have {n}")
        return eras
    if eras is None:
        return EraIndex(None, n_rows=n)
    index = EraIndex(eras.to_numpy() if isinstance(eras, (pd.Series, pd.Index)) else np.asarray(eras))
    if len(index) != n:
        raise ValueError(f"eras has {len(index)} entries but values have {n} rows")
    return index


def _as_array(values: Any, name: str, dtype: Any = None) -> np.ndarray:
    """`values` (array, Series or DataFrame) as an (n,) or (n, m) array; anything else is a ValueError naming it."""
    array = np.asarray(values.to_numpy() if isinstance(values, (pd.Series, pd.DataFrame)) else values, dtype=dtype)
    if array.ndim not in (1, 2):
        raise ValueError(f"{name} must be (n,) or (n, m); got shape {array.shape}")
    return array


def _workers(n_jobs: int | None, n_eras: int) -> int:
    """Worker threads for `n_jobs` (scikit-learn's convention, model.params.resolve_n_jobs), at most one per era."""
    return max(1, min(resolve_n_jobs(n_jobs), n_eras))


def _residualize_eras(
    out: np.ndarray, blocks: list[np.ndarray], index: EraIndex, eras: Sequence[int], proportion: float
) -> None:
    """Residualize `out` in place on the given eras (one workspace, reused era after era)."""
    p = 1 + sum(block.shape[1] for block in blocks)
    chunk_rows = max(1, _CHUNK_ELEMENTS // p)
    biggest = max((int(index.counts[era]) for era in eras), default=0)
    work = _Workspace(min(biggest, chunk_rows), p + _MAX_SLICE_COLUMNS)
    for era in eras:
        rows = _rows_of(index, era)
        v = out[rows]
        n = len(v)
        if n == 0:
            continue
        if n <= chunk_rows:
            design = _Design([block[rows] for block in blocks], work, v)
            beta = _solve_with_intercept(*design.normal_equations())  # the design's column order
            out[rows] = v - proportion * design.dot(beta)
            continue
        # a huge era: accumulate XᵀX and Xᵀv over bounded chunks of rows, solve once, then fit chunk by chunk
        positions = np.arange(rows.start, rows.stop) if isinstance(rows, slice) else rows
        gram = np.zeros((p, p))
        rhs = np.zeros((p, v.shape[1]))
        for start in range(0, n, chunk_rows):
            sub = positions[start : start + chunk_rows]
            design = _Design([block[sub] for block in blocks], work, out[sub])
            g, r = design.normal_equations()
            if design.perm is None:
                gram += g
                rhs += r
            else:
                gram[np.ix_(design.perm, design.perm)] += g
                rhs[design.perm] += r
        beta = _solve_with_intercept(gram, rhs)  # original order: intercept, exposures...
        for start in range(0, n, chunk_rows):
            sub = positions[start : start + chunk_rows]
            design = _Design([block[sub] for block in blocks], work)
            coef = beta if design.perm is None else beta[design.perm]
            out[sub] -= proportion * design.dot(coef)


def residualize(
    values: np.ndarray | pd.Series | pd.DataFrame,
    exposures: np.ndarray | pd.DataFrame,
    eras: Any,
    proportion: float = 1.0,
    n_jobs: int | None = 1,
) -> np.ndarray:
    """Per era, subtract `proportion` x the least-squares fit of values on [exposures, 1]; raw residual, float64, values' shape.

    `n_jobs` > 1 (or -1: every available CPU) residualizes eras in that many threads, each with its own buffers;
    give BLAS one thread per worker then (e.g. `threadpoolctl.threadpool_limits(1)`), or the workers' BLAS threads
    fight over the cores. Inside Numerai's one-CPU runtime -1 means one worker.
    """
    v_all = _as_array(values, "values")
    one_dim = v_all.ndim == 1
    v2 = v_all.reshape(len(v_all), -1)
    blocks, n_rows = _as_blocks(exposures)
    if n_rows != len(v2):
        raise ValueError(f"exposures have {n_rows} rows but values have {len(v2)}")
    if v2.dtype.kind not in "biuf":
        v2 = v2.astype(np.float64)
    if v2.dtype.kind == "f" and not np.isfinite(v2).all():
        raise ValueError("values hold NaN or infinite values; residualize needs finite values")
    proportion = float(proportion)
    out = np.array(v2, dtype=np.float64, copy=True)
    index = _era_index(eras, len(out))
    workers = _workers(n_jobs, index.n_eras)
    if proportion == 0.0 or out.size == 0:
        return out[:, 0] if one_dim else out
    if len(blocks) == 0:  # no exposures: only the era mean is removed
        blocks = [np.zeros((len(out), 0), dtype=np.int8)]
    if workers == 1:
        _residualize_eras(out, blocks, index, range(index.n_eras), proportion)
    else:
        # biggest eras first, dealt round-robin, so the workers finish together; rows of different eras are
        # disjoint, so the workers write `out` without locks
        by_size = np.argsort(-index.counts, kind="stable")
        with ThreadPoolExecutor(max_workers=workers) as pool:
            jobs = [pool.submit(_residualize_eras, out, blocks, index, by_size[w::workers].tolist(), proportion)
                    for w in range(workers)]
            for job in jobs:
                job.result()
    return out[:, 0] if one_dim else out


def residualize_predictions(
    predictions: np.ndarray | pd.Series | pd.DataFrame,
    exposures: np.ndarray | pd.DataFrame,
    eras: Any,
    proportion: float = 1.0,
) -> np.ndarray:
    """The estimator's postprocessor: per era gaussianize ranked predictions, residualize on exposures, rank to (0, 1]."""
    p_all = _as_array(predictions, "predictions", np.float64)
    if not np.isfinite(p_all).all():
        raise ValueError("predictions hold NaN or infinite values; the residualizer needs finite predictions")
    index = _era_index(eras, len(p_all))
    gauss = index.gaussianize(p_all)
    if float(proportion) != 0.0 and _n_columns(exposures) > 0:
        gauss = residualize(gauss, exposures, index, proportion)
    return index.rank(gauss)


def _n_columns(exposures: Any) -> int:
    if exposures is None:
        return 0
    shape = np.shape(exposures) if not isinstance(exposures, pd.DataFrame) else exposures.shape
    return 1 if len(shape) == 1 else int(shape[1])


RESIDUALIZE_FEATURES = ("riskiest", "all", None)
SHARPE_GAIN = 1.1
"""The gate keeps an exposure set only if it raises the linear proxy's second-half sharpe by this factor."""


def _riskiest(corr: np.ndarray | None, n_features: int) -> np.ndarray:
    """Indices of the `n_features` features whose per-era correlation with the target (`corr`, (eras, F)) moved
    most between the halves of those eras."""
    if corr is None or len(corr) // 2 < 1:
        return np.zeros(0, dtype=np.int64)
    half = len(corr) // 2
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN feature: no change
        change = np.abs(np.nanmean(corr[:half], axis=0) - np.nanmean(corr[half:], axis=0))
    change = np.nan_to_num(change, nan=0.0)
    n = min(int(n_features), corr.shape[1])
    return np.sort(np.argsort(-change, kind="stable")[:n]).astype(np.int64)


def _proxy_scores(values: np.ndarray, target: np.ndarray, eras: EraIndex) -> tuple[float, float]:
    """(mean, sharpe) of the per-era correlation of `values` with the target."""
    c = era_correlations(eras.standardize(values.reshape(-1, 1), dtype=np.float64), target, eras)[:, 0]
    c = c[~np.isnan(c)]
    return (float(c.mean()), float(c.mean() / c.std())) if len(c) > 2 and c.std() > 0 else (0.0, 0.0)


class Residualizer(BaseEstimator):
    """The residualization postprocessor: per era, removes `proportion` of the predictions' projection on the chosen
    exposures (the talk's "specific return"), then ranks them to (0, 1].

    Exposure sets: the features ("riskiest": the `n_features` whose correlation with the target moved most between
    the halves of training, or "all"), the cluster dummies (when cluster labels are given) and the benchmark column
    (when given). With `gate`, a set is used only if it raises a linear proxy's sharpe by 10 % without costing more
    than 10 % of its mean corr on the later training eras, the proxy (and the riskiest features) fitted on the first
    ones, an embargo apart (model.stats.evidence_blocks).

    Parameters
    ----------
    proportion : float in [0, 1], default=0.5
        Share of the projection removed.
    features : {"riskiest", "all", None}, default="riskiest"
        Which features are exposures.
    n_features : int, default=10
        How many riskiest features.
    clusters : bool, default=True
        Cluster dummies are exposures (when the fit is given cluster labels).
    benchmark : bool, default=False
        The benchmark column is an exposure (when predictions come with one).
    gate : bool, default=True
        Keep only the exposure sets that pass the evidence gate above.

    Attributes
    ----------
    riskiest_ : ndarray of int
        The riskiest features' positions.
    parts_ : tuple of str
        The exposure sets used: "features", "clusters".
    evidence_ : dict
        The proxy's (mean, sharpe) on the second training half, alone and after each set.
    n_clusters_ : int or None
        The number of clusters of the dummies.
    """

    def __init__(self, proportion: float = 0.5, features: str | None = "riskiest", n_features: int = 10,
                 clusters: bool = True, benchmark: bool = False, gate: bool = True):
        self.proportion = proportion
        self.features = features
        self.n_features = n_features
        self.clusters = clusters
        self.benchmark = benchmark
        self.gate = gate

    def _check(self) -> None:
        check_params(self, proportion=("real", 0.0, 1.0), features=("choice", *RESIDUALIZE_FEATURES),
                     n_features=("int", 0, None), clusters=("bool",), benchmark=("bool",), gate=("bool",))

    def _requested(self, with_clusters: bool) -> list[str]:
        parts = []
        if self.features == "all" or (self.features == "riskiest" and self.n_features):
            parts.append("features")
        if self.clusters and with_clusters:
            parts.append("clusters")
        return parts

    def fit(self, raw: np.ndarray, target: np.ndarray, eras: EraIndex,
            basis: Callable[[], np.ndarray] | np.ndarray | None = None, labels: np.ndarray | None = None,
            n_clusters: int | None = None, embargo: int = 5) -> Residualizer:
        """Choose the riskiest features and gate the exposure sets on the training eras.

        `basis` (composites (n, k), or a function returning them, called only when the gate needs them) is what
        the linear proxy regresses the target on; `labels` (n,) and `n_clusters` the rows' clusters; `embargo` the
        eras between the choosing and the judging eras (their targets overlap)."""
        self._check()
        corr = era_correlations(raw, target, eras) if self.features == "riskiest" else None
        self.riskiest_ = _riskiest(corr, self.n_features) if self.features == "riskiest" else np.zeros(0, dtype=np.int64)
        self.n_clusters_ = n_clusters if labels is not None else None
        requested = self._requested(labels is not None)
        self.evidence_: dict[str, tuple[float, float]] = {}
        select, later = evidence_blocks(eras.n_eras, embargo)
        if not requested or float(self.proportion) == 0.0:
            self.parts_ = ()
        elif not self.gate:  # not asked to: do as asked
            self.parts_ = tuple(requested)
        elif select.stop < 16 or later.stop - later.start < MIN_CONFIRM_ERAS:  # too few eras to show anything
            self.parts_ = ()
        else:
            self.parts_ = self._gated(raw, target, eras, basis() if callable(basis) else basis, labels, corr, requested,
                                      select, later)
        return self

    def _gated(self, raw: np.ndarray, target: np.ndarray, eras: EraIndex, basis: np.ndarray, labels: np.ndarray | None,
               corr: np.ndarray | None, requested: list[str], select: slice, later: slice) -> tuple[str, ...]:
        """The proxy is fitted on the choosing eras and every exposure set judged on the later, embargoed eras."""
        first = eras.codes < select.stop
        second = eras.codes >= later.start
        basis = np.asarray(basis, dtype=np.float64)
        valid = ~np.isnan(target)
        yc = target - eras.broadcast(eras.means(target))
        fit_rows = first & valid
        beta, *_ = np.linalg.lstsq(basis[fit_rows], yc[fit_rows], rcond=None)
        sub_b = eras.take(np.flatnonzero(second))
        proxy = basis[second] @ beta
        y_b = target[second]
        base_mean, base_sharpe = _proxy_scores(proxy, y_b, sub_b)
        self.evidence_["proxy"] = (base_mean, base_sharpe)
        kept = []
        for part in requested:
            if part == "features":
                if self.features == "all":
                    exposure = era_filled(raw[second], sub_b)
                else:
                    idx = _riskiest(None if corr is None else corr[select], self.n_features)
                    exposure = era_filled(raw[:, idx][second], sub_b)  # the chosen columns only, then rows
            else:
                exposure = cluster_dummies(labels[second], self.n_clusters_)[:, 1:]
            mean, sharpe = _proxy_scores(residualize(proxy, exposure, sub_b, float(self.proportion)), y_b, sub_b)
            self.evidence_[part] = (mean, sharpe)
            if sharpe > SHARPE_GAIN * base_sharpe and base_sharpe > 0 and mean >= 0.9 * base_mean:
                kept.append(part)
        return tuple(kept)

    def exposures(self, raw: np.ndarray, eras: EraIndex, labels: np.ndarray | None = None,
                  benchmark: np.ndarray | None = None) -> np.ndarray | None:
        """The exposure columns (n, m) of whole eras for the chosen sets, or None when there are none."""
        parts = []
        if "features" in self.parts_ and self.features == "all":
            parts.append(era_filled(raw, eras))
        elif "features" in self.parts_ and len(self.riskiest_):
            parts.append(era_filled(raw[:, self.riskiest_], eras))
        if "clusters" in self.parts_ and labels is not None and self.n_clusters_:
            parts.append(cluster_dummies(labels, self.n_clusters_)[:, 1:])  # the intercept is always included
        if self.benchmark and benchmark is not None:
            parts.append(np.asarray(benchmark, dtype=np.float32).reshape(-1, 1))
        return np.concatenate(parts, axis=1) if parts else None

    def transform(self, predictions: np.ndarray, raw: np.ndarray, eras: EraIndex, labels: np.ndarray | None = None,
                  benchmark: np.ndarray | None = None) -> np.ndarray:
        """Per era: gaussianize the predictions, residualize them on the exposures, rank to (0, 1]; only a rank when
        there are no exposures."""
        exposures = self.exposures(raw, eras, labels, benchmark)
        if exposures is None:
            return eras.rank(predictions)
        return residualize_predictions(predictions, exposures, eras, self.proportion)


class ResidualizedRegressor(MetaEstimatorMixin, RegressorMixin, BaseEstimator):
    """Any regressor, with its per-era predictions residualized on chosen exposures (a scikit-learn meta-estimator).

    `fit(X, y)` fits a clone of `estimator` and the residualizer on the training eras; `predict(X)` residualizes the
    estimator's predictions era by era (the `era` column of X; none means one era) and returns ranks in (0, 1].
    The estimator sees X without the `era` column unless it reads eras itself (a NumeraiModel does).

    Parameters
    ----------
    estimator : regressor
        A NumeraiModel, an LGBMRegressor, a Pipeline, ...
    proportion : float in [0, 1], default=0.5
        Share of the projection on the exposures that is removed.
    features : {"riskiest", "all"} or list of str, default="riskiest"
        The exposures: the riskiest features (see `Residualizer`), every feature, or these columns of X.
    n_features : int, default=10
        How many riskiest features.

    Attributes
    ----------
    estimator_ : regressor
        The fitted clone.
    residualizer_ : Residualizer
        The fitted residualizer (the same code NumeraiModel's residualizer runs).
    feature_names_in_ : list of str
        The feature columns of X at fit (without `era`).
    exposure_names_ : list of str
        The columns of X the residualizer reads.
    """

    reads_eras = True
    """The live function passes it the `era` column (it residualizes era by era, and hands its estimator X without
    `era` unless that one reads eras too)."""

    def __init__(self, estimator: Any = None, proportion: float = 0.5, features: Any = "riskiest", n_features: int = 10):
        self.estimator = estimator
        self.proportion = proportion
        self.features = features
        self.n_features = n_features

    def __sklearn_tags__(self):  # noqa: D105 - scikit-learn's tags
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True  # the era column
        return tags

    def fit(self, X: pd.DataFrame, y: Any) -> ResidualizedRegressor:
        """Fit the estimator on X (era and features) and y, and the residualizer on the training eras."""
        if self.estimator is None:
            raise ValueError("ResidualizedRegressor: parameter `estimator` is None; give it a regressor")
        X = as_frame(X, owner=type(self).__name__)
        check_params(self, proportion=("real", 0.0, 1.0), n_features=("int", 0, None))
        columns = [str(c) for c in X.columns if c != ERA_COLUMN]
        if isinstance(self.features, str):
            if self.features not in ("riskiest", "all"):
                raise ValueError(f"ResidualizedRegressor: parameter `features` is {self.features!r}; it must be "
                                 "'riskiest', 'all' or a list of columns of X")
            self.exposure_names_ = columns
            kind = self.features
        else:
            self.exposure_names_ = [str(c) for c in self.features]
            missing = [c for c in self.exposure_names_ if c not in X.columns]
            if missing:
                raise ValueError(f"ResidualizedRegressor: the exposure columns {missing[:5]} are not columns of X")
            kind = "all"
        self.feature_names_in_ = columns
        self.n_features_in_ = len(columns)
        target = np.asarray(y, dtype=np.float64).reshape(-1)
        eras = EraIndex.from_frame(X)
        self.estimator_ = clone(self.estimator).fit(_inner_X(self.estimator, X), y)
        raw = feature_matrix(X, self.exposure_names_)
        self.residualizer_ = Residualizer(self.proportion, kind, self.n_features, clusters=False, gate=False)
        self.residualizer_.fit(raw, target, eras)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The estimator's predictions residualized per era, as ranks in (0, 1]."""
        if not hasattr(self, "estimator_"):
            raise ValueError("this ResidualizedRegressor is not fitted yet: call fit(X, y) first")
        X = as_frame(X, owner=type(self).__name__)
        values = np.asarray(self.estimator_.predict(_inner_X(self.estimator_, X)), dtype=np.float64).reshape(-1)
        values = np.where(np.isfinite(values), values, np.nanmean(values) if np.isfinite(values).any() else 0.0)
        return self.residualizer_.transform(values, feature_matrix(X, self.exposure_names_), EraIndex.from_frame(X))


def _inner_X(estimator: Any, X: pd.DataFrame) -> pd.DataFrame:
    """X for the wrapped estimator: without `era` unless the estimator reads eras itself."""
    if getattr(estimator, "reads_eras", False) or ERA_COLUMN not in X.columns:
        return X
    return X.drop(columns=[ERA_COLUMN])
