"""The float32 least-squares kernel of residualization: remove, per era, the part of values explained by exposures
(the talk's "specific return").

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
float32 peak (~31 ms of a ~45 ms era at 6,000 x 780, one BLAS thread), so a call gains speed only from more
cores. When there are fewer eras than threads (one live era), the threads split each era's rows instead: the
Gram matrix is summed from one syrk call per block of rows, bit-identical to one call since every product and
partial sum it keeps is an integer below 2**24.

Return value: the RAW residual `values - proportion * fit` as float64, which is what
`numerai_tools.scoring.neutralize` returns (0.4.3: it does not rescale). One difference, on purpose:
`neutralize` turns a values column that is constant (over all rows it is given) into NaN; `residualize`
returns its residual ((1 - proportion) x the constant), because the live path must never produce NaN.

`residualize_predictions` is the postprocessor: per era gaussianize the ranked predictions, residualize, rank to
(0, 1]. The layers above this kernel: `model.residualizer.Residualizer` (NumeraiModel's residualizer component:
which exposures, gated on the training eras) and `model.residualized_regressor.ResidualizedRegressor` (the same
behind any scikit-learn regressor).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.linalg.lapack

from .eras import EraIndex
from .features import DESIGN_CHUNK_ELEMENTS, rows_per_chunk
from .params import resolve_n_jobs

__all__ = ["residualize", "residualize_predictions"]

# float32 holds every integer up to 2**24 exactly: a Gram entry sum_i x_i*y_i of integers with
# |x|,|y| <= h over r rows is exact when r*h*h <= 2**24 (all partial sums are integers below that).
_FLOAT32_EXACT = float(2**24)
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
# the Gram matrix of an era is split over worker threads only in blocks of at least this many rows x columns²
# (multiply-adds; 2**26 is ~0.6 ms of one core's syrk here) and rows, so that handing a block to a worker (tens of
# microseconds) stays small beside the work it moves to another core.
_SPLIT_MIN_WORK = 2**26
_SPLIT_MIN_ROWS = 256


def _gram32(design: np.ndarray, pool: ThreadPoolExecutor | None = None, parts: int = 1) -> np.ndarray:
    """designᵀdesign in float32: one BLAS syrk call (numpy runs syrk for a matrix times its own transpose), or with
    a pool, one per block of rows on its workers, summed.

    The split is what lets one era use several cores when BLAS has one thread per worker: at 6,000 x 788 on the
    2-core development machine (numpy 2.4.6) the syrk takes 31 ms alone and 16-17 ms as two blocks on two workers. The sum equals
    the single call bit for bit in every entry whose products and partial sums are integers below 2**24 (the
    exposures' block and the exposures x value-slice block, the only ones read); the value slices' own block is
    inexact either way and never used.
    """
    n, p = design.shape
    parts = min(parts, n // _SPLIT_MIN_ROWS)
    if pool is None or parts < 2 or n * p * p < parts * _SPLIT_MIN_WORK:
        return design.T @ design
    edges = np.linspace(0, n, parts + 1).astype(np.int64)
    blocks = [design[start:stop] for start, stop in zip(edges[:-1], edges[1:])]
    grams = list(pool.map(lambda block: block.T @ block, blocks))
    total = grams[0]
    for gram in grams[1:]:
        total += gram
    return total


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

    def normal_equations(self, pool: ThreadPoolExecutor | None = None, parts: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """XᵀX (float64, symmetric; the small-integer block exact) and Xᵀv, in this design's column order; with a pool,
        the float32 Gram matrix is split over `parts` blocks of rows on its workers (`_gram32`)."""
        a = self.x32.shape[1]
        p = a + (0 if self.floats is None else self.floats.shape[1])
        full = _gram32(self._full, pool, parts)
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


def _workers(n_jobs: int | None, n_eras: int) -> tuple[int, int]:
    """(threads, era workers) for `n_jobs` (scikit-learn's convention, model.params.resolve_n_jobs): at most one era
    worker per era; threads beyond that split the eras' rows (`_gram32`)."""
    threads = max(1, resolve_n_jobs(n_jobs))
    return threads, max(1, min(threads, n_eras))


def _residualize_eras(
    out: np.ndarray, blocks: list[np.ndarray], index: EraIndex, eras: Sequence[int], proportion: float,
    pool: ThreadPoolExecutor | None = None, parts: int = 1,
) -> None:
    """Residualize `out` in place on the given eras (one workspace, reused era after era); with a pool, each era's
    Gram matrix is split over `parts` of its workers."""
    p = 1 + sum(block.shape[1] for block in blocks)
    chunk_rows = rows_per_chunk(DESIGN_CHUNK_ELEMENTS, p)
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
            beta = _solve_with_intercept(*design.normal_equations(pool, parts))  # the design's column order
            out[rows] = v - proportion * design.dot(beta)
            continue
        # a huge era: accumulate XᵀX and Xᵀv over bounded chunks of rows, solve once, then fit chunk by chunk
        positions = np.arange(rows.start, rows.stop) if isinstance(rows, slice) else rows
        gram = np.zeros((p, p))
        rhs = np.zeros((p, v.shape[1]))
        for start in range(0, n, chunk_rows):
            sub = positions[start : start + chunk_rows]
            design = _Design([block[sub] for block in blocks], work, out[sub])
            g, r = design.normal_equations(pool, parts)
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

    `n_jobs` > 1 (or -1: every available CPU) residualizes eras in that many threads, each with its own buffers; with
    fewer eras than threads (one era), the threads share each era's Gram matrix instead, row block by row block. Give
    BLAS one thread per worker then (e.g. `threadpoolctl.threadpool_limits(1)`), or the workers' BLAS threads fight
    over the cores. Inside Numerai's one-CPU runtime -1 means one worker.
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
    threads, workers = _workers(n_jobs, index.n_eras)
    if proportion == 0.0 or out.size == 0:
        return out[:, 0] if one_dim else out
    if len(blocks) == 0:  # no exposures: only the era mean is removed
        blocks = [np.zeros((len(out), 0), dtype=np.int8)]
    if workers == 1 and threads > 1:  # fewer eras than threads: they split each era's rows
        with ThreadPoolExecutor(max_workers=threads) as pool:
            _residualize_eras(out, blocks, index, range(index.n_eras), proportion, pool, threads)
    elif workers == 1:
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
