"""Per-era residualization: remove the part of values explained by exposures (the talk's "specific return").

`residualize(values, exposures, eras, proportion)` does, per era, what numerai-tools' `neutralize` does
(least squares of the values on [exposures, 1], then subtract `proportion` x the fit) but batched:

- rows are grouped by era once (`model.eras.EraIndex`); exposures are touched one era (or one bounded
  chunk of rows of a huge era) at a time, so no float64 copy of a multi-era exposure matrix ever exists;
- per era the Gram matrix XᵀX is built with one BLAS syrk call. Columns holding small integers (Numerai's
  0..4 features, dummies, the intercept) go through float32, where every product and partial sum is an
  integer below 2**24 and therefore exact; any other column is handled in float64. Xᵀv and the fitted
  values are always float64;
- ONE Cholesky factorisation per era (of the Jacobi-equilibrated Gram matrix) is shared by every column
  of values, followed by iterative refinement on the normal equations (this is what brings the answer
  to ~1e-12 of numpy's SVD least squares);
- a singular or ill-conditioned era (a constant or duplicated exposure column, fewer rows than columns)
  falls back to a ridge factorisation (Gs + λI) iterated to convergence ("iterated Tikhonov"), which
  converges to lstsq's minimum-norm solution on the well-determined directions: results stay finite,
  never NaN.

Return value: the RAW residual `values - proportion * fit` as float64, exactly what
`numerai_tools.scoring.neutralize` returns (it does not rescale; 0.4.3 checked). One documented
difference: `neutralize` turns a values column that is constant (over all rows it is given) into NaN;
`residualize` returns its residual ((1 - proportion) x the constant), because the live path must never
produce NaN.

`residualize_predictions` / `Residualizer` is the postprocessor of `NumeraiModel`: per era gaussianize
the ranked predictions, residualize, rank to (0, 1].
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import scipy.linalg
from scipy.linalg.blas import dsyrk, ssyrk
from scipy.linalg.lapack import dpocon

from model.eras import EraIndex

__all__ = ["residualize", "residualize_predictions", "Residualizer"]

# float32 holds every integer up to 2**24 exactly: a Gram entry sum_i x_i*y_i of integers with
# |x|,|y| <= h over r rows is exact when r*h*h <= 2**24 (all partial sums are integers below that).
_FLOAT32_EXACT = float(2**24)
# rows of one era processed at once: bounds the per-chunk float32 + float64 design copies to ~100 MB.
_CHUNK_ELEMENTS = 2**23
# below this reciprocal condition estimate (1-norm, of the equilibrated Gram matrix) the plain Cholesky
# answer is not trusted and the ridge fallback is used. numpy's lstsq in `neutralize` drops singular
# values below 1e-6 x the largest, i.e. Gram eigenvalues below ~1e-12 x the largest.
_RCOND_MIN = 1e-11
# ridge added to the unit-diagonal (equilibrated) Gram matrix in the fallback, and refinement steps.
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


def _chunk_design(parts: Sequence[np.ndarray], n_exposures: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Design [exposures, 1] of one chunk of rows: float64 matrix (permuted columns), permutation, exact-where-possible Gram."""
    n = len(parts[0]) if parts else 0
    exact: list[np.ndarray] = []
    exact_idx: list[np.ndarray] = []
    other: list[np.ndarray] = []
    other_idx: list[np.ndarray] = []
    offset = 0
    for part in parts:
        width = part.shape[1]
        columns = np.arange(offset, offset + width)
        offset += width
        if part.dtype.kind == "b":
            ok = np.ones(width, dtype=bool)
        else:
            if part.dtype.kind == "f" and not np.isfinite(part).all():
                raise ValueError("exposures hold NaN or infinite values; fill them before residualizing")
            if n == 0:
                ok = np.ones(width, dtype=bool)
            else:
                high = np.maximum(np.abs(part.max(axis=0).astype(np.float64)), np.abs(part.min(axis=0).astype(np.float64)))
                ok = high * high * n <= _FLOAT32_EXACT
                if part.dtype.kind == "f":
                    ok &= (part == np.rint(part)).all(axis=0)
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

    a = 1 + sum(block.shape[1] for block in exact)  # exact exposures + the intercept
    b = sum(block.shape[1] for block in other)
    p = a + b
    x32 = np.empty((n, a), dtype=np.float32)
    col = 0
    for block in exact:
        x32[:, col : col + block.shape[1]] = block
        col += block.shape[1]
    x32[:, a - 1] = 1.0
    x64 = np.empty((n, p), dtype=np.float64)
    x64[:, :a] = x32
    col = a
    for block in other:
        x64[:, col : col + block.shape[1]] = block
        col += block.shape[1]

    gram = np.empty((p, p), dtype=np.float64)
    if n:
        upper = ssyrk(1.0, x32.T)  # x32.T is Fortran-ordered (a, n): no copy; upper triangle of x32ᵀx32
        gram[:a, :a] = upper
    else:
        gram[:a, :a] = 0.0
    if b:
        floats = x64[:, a:]
        gram[:a, a:] = x64[:, :a].T @ floats
        gram[a:, a:] = dsyrk(1.0, floats.T) if n else 0.0
    # symmetrise from the upper triangle
    gram = np.triu(gram)
    gram += np.triu(gram, 1).T

    perm = np.concatenate(exact_idx + [np.array([n_exposures])] + other_idx).astype(np.int64)
    if b == 0 and (perm == np.arange(p)).all():
        return x64, None, gram
    return x64, perm, gram


class _Solver:
    """One factorisation of an era's Gram matrix, shared by all value columns, with a ridge fallback."""

    def __init__(self, gram: np.ndarray):
        diag = np.diag(gram).copy()
        scale = np.sqrt(np.where(diag > 0, diag, 1.0))
        self.gram = gram
        self.scale = scale
        scaled = gram / scale[:, None] / scale[None, :]
        self.ridge = 0.0
        factor = None
        try:
            factor = scipy.linalg.cho_factor(scaled, lower=False, check_finite=False)
            anorm = float(np.abs(scaled).sum(axis=0).max())
            rcond, info = dpocon(factor[0], anorm)
            if info != 0 or not np.isfinite(rcond) or rcond < _RCOND_MIN:
                factor = None
        except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
            factor = None
        ridge = _RIDGE
        while factor is None:
            try:
                factor = scipy.linalg.cho_factor(scaled + ridge * np.eye(len(scaled)), lower=False, check_finite=False)
                self.ridge = ridge
            except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
                ridge *= 100.0
                if ridge > 1.0:  # cannot happen for a Gram matrix with unit diagonal, kept as a guard
                    raise
        self.factor = factor

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """Least-squares coefficients for right-hand sides Xᵀv (p, m), refined on the normal equations."""
        scale = self.scale[:, None]
        beta = scipy.linalg.cho_solve(self.factor, rhs / scale, check_finite=False) / scale
        steps = _RIDGE_REFINE_STEPS if self.ridge else _REFINE_STEPS
        for _ in range(steps):
            residual = rhs - self.gram @ beta
            delta = scipy.linalg.cho_solve(self.factor, residual / scale, check_finite=False) / scale
            beta += delta
            if self.ridge and np.abs(delta).max(initial=0.0) <= 1e-15 * np.abs(beta).max(initial=0.0):
                break
        return beta


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


def residualize(
    values: np.ndarray | pd.Series | pd.DataFrame,
    exposures: np.ndarray | pd.DataFrame,
    eras: Any,
    proportion: float = 1.0,
) -> np.ndarray:
    """Per era, subtract `proportion` x the least-squares fit of values on [exposures, 1]; raw residual, float64, values' shape."""
    v_all = np.asarray(values.to_numpy() if isinstance(values, (pd.Series, pd.DataFrame)) else values)
    if v_all.ndim not in (1, 2):
        raise ValueError(f"values must be (n,) or (n, m); got shape {v_all.shape}")
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
    if proportion == 0.0 or out.size == 0:
        return out[:, 0] if one_dim else out
    index = _era_index(eras, len(out))
    n_exposures = sum(block.shape[1] for block in blocks)
    p = n_exposures + 1
    chunk_rows = max(1, _CHUNK_ELEMENTS // p)

    for era in range(index.n_eras):
        rows = _rows_of(index, era)
        v = out[rows]
        n = len(v)
        if n == 0:
            continue
        if n <= chunk_rows:
            x64, perm, gram = _chunk_design([block[rows] for block in blocks], n_exposures)
            rhs = x64.T @ v
            solver = _Solver(gram)
            beta = solver.solve(rhs)  # permuted column order, same as x64
            out[rows] = v - proportion * (x64 @ beta)
            continue
        # a huge era: accumulate the Gram matrix and Xᵀv over bounded chunks of rows, then fit chunk by chunk
        positions = np.arange(rows.start, rows.stop) if isinstance(rows, slice) else rows
        gram = np.zeros((p, p))
        rhs = np.zeros((p, v.shape[1]))
        for start in range(0, n, chunk_rows):
            sub = positions[start : start + chunk_rows]
            x64, perm, g = _chunk_design([block[sub] for block in blocks], n_exposures)
            r = x64.T @ out[sub]
            if perm is None:
                gram += g
                rhs += r
            else:
                gram[np.ix_(perm, perm)] += g
                rhs[perm] += r
        beta = _Solver(gram).solve(rhs)  # original order: exposures..., intercept
        for start in range(0, n, chunk_rows):
            sub = positions[start : start + chunk_rows]
            fitted = np.full((len(sub), v.shape[1]), beta[-1])
            col = 0
            for block in blocks:
                width = block.shape[1]
                fitted += block[sub].astype(np.float64) @ beta[col : col + width]
                col += width
            out[sub] -= proportion * fitted
    return out[:, 0] if one_dim else out


def residualize_predictions(
    predictions: np.ndarray | pd.Series | pd.DataFrame,
    exposures: np.ndarray | pd.DataFrame,
    eras: Any,
    proportion: float = 1.0,
) -> np.ndarray:
    """The estimator's postprocessor: per era gaussianize ranked predictions, residualize on exposures, rank to (0, 1]."""
    p_all = np.asarray(predictions.to_numpy() if isinstance(predictions, (pd.Series, pd.DataFrame)) else predictions, dtype=np.float64)
    if p_all.ndim not in (1, 2):
        raise ValueError(f"predictions must be (n,) or (n, m); got shape {p_all.shape}")
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


class Residualizer:
    """Postprocessor with scikit-learn-style params: `transform(predictions, exposures, eras)` -> per-era ranks in (0, 1]."""

    def __init__(self, proportion: float = 1.0):
        self.proportion = proportion

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters (so `sklearn.base.clone` works on an estimator holding one)."""
        return {"proportion": self.proportion}

    def set_params(self, **params: Any) -> "Residualizer":
        """Set constructor parameters; unknown names raise ValueError."""
        for name, value in params.items():
            if name not in ("proportion",):
                raise ValueError(f"Residualizer has no parameter {name!r}")
            setattr(self, name, value)
        return self

    def fit(self, *args: Any, **kwargs: Any) -> "Residualizer":
        """Nothing to learn: the exposures are supplied at transform time."""
        return self

    def transform(self, predictions: Any, exposures: Any, eras: Any) -> np.ndarray:
        """Per era gaussianize, remove `proportion` of the projection on [exposures, 1], rank to (0, 1]."""
        return residualize_predictions(predictions, exposures, eras, self.proportion)

    def __repr__(self) -> str:
        return f"Residualizer(proportion={self.proportion!r})"
