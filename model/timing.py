"""Factor timing, all point-in-time.

(a) State features come from each era's own cross-section only: the correlation of every pair of composites,
    each composite's dispersion, and (when benchmark predictions are given at fit time) the benchmark's
    correlation with each composite. They never look at a target.
(b) Factor momentum: the trailing mean over `window` eras of factor returns lagged by `lag` eras, so the
    features of era t use only targets of eras <= t - lag. The history of factor returns is kept as numpy
    arrays keyed by era with `as_of_era_` (newest era with a resolved target); `update` extends the history
    without refitting anything else. An era whose window reaches past `as_of_era_` (a pickle left alone after
    upload) is handled by the staleness policy of `trailing`: neutral (the history's mean return), decay towards it, or
    hold the newest window.

Both are gated on evidence from the training eras: a state feature s is used (as `s` and as the conditional
exposure composite_k × s) only if the factor return of k depends on s with a family-wise significant
Newey-West t on the first training eras, confirmed on the later, embargoed ones (model.stats.confirm); a factor's
momentum is used (era-level trailing return and timed exposure composite × trailing return) only if its trailing
return predicts its next return likewise. When momentum pooled over all factors does (one test fixed in advance,
whose evidence is many factors' together, judged on every training era at once), all factors enter one timed column
with one coefficient: sum_k composite_k × (trailing_k − mean_k). A world without timing adds nothing.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from .eras import EraIndex, era_number, era_positions
from .params import check_params
from .stats import CONFIRM_T, confirm, evidence_blocks, familywise_threshold, gate_embargo, newey_west_t


def state_features(
    composites: np.ndarray,
    raw_composites: np.ndarray,
    eras: EraIndex,
    benchmark: np.ndarray | None = None,
) -> np.ndarray:
    """Era-level state (n_eras, S): pairwise composite correlations, composite dispersions, benchmark exposures."""
    z = np.asarray(composites, dtype=np.float64)
    k = z.shape[1]
    n = eras.counts.astype(np.float64)[:, None]
    iu, ju = np.triu_indices(k, 1)
    # pairs in triu order, one composite at a time: (n, k) temporaries instead of (n, k(k-1)/2)
    blocks = [eras.sums(z[:, i + 1 :] * z[:, i : i + 1]) / n for i in range(k - 1)]
    corr = np.concatenate(blocks, axis=1) if len(iu) else np.zeros((eras.n_eras, 0))
    raw = np.asarray(raw_composites, dtype=np.float64)
    mean = eras.means(raw)
    dev = raw - eras.broadcast(mean)
    dispersion = np.sqrt(eras.means(dev * dev))
    parts = [corr, dispersion]
    if benchmark is not None:
        b = eras.standardize(np.asarray(benchmark, dtype=np.float64).reshape(-1, 1), dtype=np.float64)
        parts.append(eras.sums(z * b) / n)
    return np.nan_to_num(np.concatenate(parts, axis=1), nan=0.0)


def state_names(names: Sequence[str], benchmark: bool) -> list[str]:
    """Column names of `state_features` in order."""
    k = len(names)
    iu, ju = np.triu_indices(k, 1)
    out = [f"state_corr_{names[i]}_{names[j]}" for i, j in zip(iu, ju)]
    out += [f"state_disp_{n}" for n in names]
    if benchmark:
        out += [f"state_bench_{n}" for n in names]
    return out


def momentum_products(trail: np.ndarray, returns: np.ndarray, scale: bool = False) -> np.ndarray:
    """(eras, factors): per era and factor, the trailing return times the next return, each centred over the eras
    where both are known (with `scale`, also divided by its standard deviation there, so the products of different
    factors are comparable); NaN where either is unknown or a factor has no spread. The momentum gates' one measure:
    per factor its mean is the covariance of trailing and next return, pooled its mean over factors a correlation."""
    trail, returns = np.asarray(trail, dtype=np.float64), np.asarray(returns, dtype=np.float64)
    both = ~np.isnan(trail) & ~np.isnan(returns)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # a factor without an era where both are known: all NaN
        m, r = np.where(both, trail, np.nan), np.where(both, returns, np.nan)
        m, r = m - np.nanmean(m, axis=0), r - np.nanmean(r, axis=0)
        if scale:
            m, r = m / np.nanstd(m, axis=0), r / np.nanstd(r, axis=0)
        product = m * r
    return np.where(np.isfinite(product), product, np.nan)


def pooled_momentum_stat(trail: np.ndarray, returns: np.ndarray, nw_lags: int) -> tuple[np.ndarray, np.ndarray]:
    """The pooled momentum test on some eras: per era the mean over factors of `momentum_products` scaled, its
    Newey-West t and mean, as one-candidate arrays; t 0 with fewer than 10 eras."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an era where no factor has both: NaN, left out
        series = np.nanmean(momentum_products(trail, returns, scale=True), axis=1)
    series = series[np.isfinite(series)]
    if len(series) < 10:
        return np.zeros(1), np.zeros(1)
    return np.array([newey_west_t(series, nw_lags)[0]]), np.array([series.mean()])


STALENESS_POLICIES = ("hold", "neutral", "decay")
"""What momentum does for an era past the factor-return history (a pickle left alone after upload)."""
WEEK_SECONDS = 7 * 24 * 3600


class Timing:
    """State features and lagged factor momentum, each kept only with evidence from the training eras.

    A plain class, not a scikit-learn estimator: its fit takes the composites, the factor returns and the rows' eras, not (X, y).

    Parameters
    ----------
    window : int, default=12
        Eras in the trailing mean of factor returns. With `pooled`, 4 measured best: over the six planted shapes with
        the seed + 3000 the pooled momentum test's t on every resolved era averaged 3.2, 3.9, 5.0, 5.1 and 4.6 at
        windows 1, 2, 4, 8 and 12, and its gate kept momentum in 3 of them at 4 and 8, none at 12; where nothing is
        planted a long window's trailing mean, demeaned over the same eras as the returns, runs against them
        (control-long-seed3000: t -3.1 at 8, -3.4 at 12, -0.3 at 4; tests/benchmarks/bench_momentum.py).
    lag : int, default=5
        Eras between an era and the newest factor return its momentum may use (more than the target's horizon).
    threshold : float, default=3.0
        Evidence threshold of the gates; 0 switches them off (every state and momentum feature is kept).
    nw_lags : int, default=4
        Newey-West lags.
    pooled : bool, default=False
        Also test momentum pooled over the factors (`pooled_momentum_stat`, its t over every training era against
        `threshold`); when the pooled test passes, every factor enters one timed column, the sum over the factors of
        composite x (trailing return - its history's mean): one test, one coefficient (the per-factor gate's factors
        keep their own columns as well).
        Off by default: the extra momentum columns pay when the history is fed weekly (refreshed) and cost a little
        when the pickle is left alone (docs/benchmarks.md, "Momentum pooled over the factors").

    Attributes
    ----------
    history_eras_, history_returns_ : ndarray
        The factor-return history (eras in era order; NaN rows: unresolved), extended by `update`.
    as_of_era_ : str or None
        The newest era with a resolved target in the history.
    state_pairs_, state_keep_, momentum_keep_ : ndarray of int
        The kept (state, factor) conditional exposures, state features and factors with their own momentum columns.
    momentum_pooled_keep_ : ndarray of int
        The factors in the pooled timed column `timed_momentum` (empty unless the pooled test passed).
    momentum_mean_ : ndarray
        Per factor, the mean factor return of the training eras, the pooled column's centre.
    momentum_pooled_t_ : float or None
        The pooled momentum test's Newey-West t over every training era (None when `pooled` is off or the gates are).
    feature_names_ : list of str
        Names of `transform`'s columns.
    """

    _parameter_rules: ClassVar[dict[str, tuple]] = {
        "window": ("int", 1, None), "lag": ("int", 0, None), "threshold": ("real", 0, None), "nw_lags": ("int", 0, None),
        "pooled": ("bool",)}

    def __init__(self, window: int = 12, lag: int = 5, threshold: float = 3.0, nw_lags: int = 4, pooled: bool = False):
        self.window = window
        self.lag = lag
        self.threshold = threshold
        self.nw_lags = nw_lags
        self.pooled = pooled

    # ---- history of factor returns -------------------------------------------------------------------
    def set_history(self, era_names: Sequence[str], returns: np.ndarray) -> None:
        """Replace the stored factor-return history (eras sorted, NaN rows = unresolved targets)."""
        names = np.asarray([str(e) for e in era_names])
        self.numeric_history_ = bool(all(np.isfinite(era_number(e)) for e in names))
        numbers = era_positions(list(names))  # eras without numbers: their era order stands in for time
        order = np.argsort(numbers, kind="stable")
        self.history_eras_ = names[order]
        self.history_numbers_ = numbers[order]
        self.history_returns_ = np.asarray(returns, dtype=np.float64)[order]
        resolved = ~np.isnan(self.history_returns_).all(axis=1)
        self.as_of_era_ = str(self.history_eras_[resolved][-1]) if resolved.any() else None
        self.as_of_number_ = float(self.history_numbers_[resolved][-1]) if resolved.any() else -np.inf
        self.history_time_ = time.time()  # dates a live era that has no number ("X"): weeks since then

    # ---- staleness: a pickle left alone after upload ------------------------------------------------------------
    def staleness(self, era_names: Sequence[str]) -> np.ndarray:
        """Per era, how many eras of factor returns its momentum lacks: era - lag - as_of (0 or less: current).

        A label without a number (Numerai's live "X") counts the weeks since the history was last extended, which is
        what is knowable; NaN when even that is unknown."""
        numbers = np.array([era_number(e) for e in era_names])
        out = numbers - self.lag - self.as_of_number_
        unnumbered = ~np.isfinite(numbers)
        if unnumbered.any():
            since = getattr(self, "history_time_", None)
            weeks = np.floor((time.time() - since) / WEEK_SECONDS) if since is not None else np.nan
            out[unnumbered] = weeks
        return out

    def _history_mean(self) -> np.ndarray:
        """Per factor, the mean factor return of the history (0 for a factor without a resolved era)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nan_to_num(np.nanmean(self.history_returns_, axis=0))

    def _long_run(self) -> tuple[np.ndarray, np.ndarray]:
        """Per factor, the mean factor return of the history and the era-to-era persistence (AR(1) coefficient in
        [0, 0.99]) of its trailing mean: where a stale trailing return decays to, and how fast."""
        mean = self._history_mean()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            trail = self._trailing(self.history_numbers_)
            phi = np.zeros(len(mean))
            for j in range(len(mean)):
                a, b = trail[1:, j], trail[:-1, j]
                ok = ~np.isnan(a) & ~np.isnan(b)
                if ok.sum() > 10 and np.std(a[ok]) > 0 and np.std(b[ok]) > 0:
                    phi[j] = np.corrcoef(a[ok], b[ok])[0, 1]
        return mean, np.clip(np.nan_to_num(phi), 0.0, 0.99)

    def update(self, era_names: Sequence[str], returns: np.ndarray) -> None:
        """Add (or replace) the factor returns of the given eras; other eras keep their history."""
        new = {str(e): np.asarray(r, dtype=np.float64) for e, r in zip(era_names, returns) if not np.isnan(r).all()}
        keep = [i for i, e in enumerate(self.history_eras_) if e not in new]
        names = list(self.history_eras_[keep]) + list(new)
        values = np.concatenate([self.history_returns_[keep], np.array(list(new.values())).reshape(-1, self.history_returns_.shape[1])])
        self.set_history(names, values)

    def trailing(self, era_names: Sequence[str], staleness: str = "hold") -> np.ndarray:
        """Trailing mean factor returns (n_eras, k) known at each era: history eras in (c − window, c], c = min(t − lag,
        as_of). For an era past the history (`staleness(era) > 0`) the policy decides: "hold" the newest window,
        "neutral" (the history's mean return) or "decay" (from the newest window towards the mean at the trailing
        mean's own persistence per era)."""
        numbers = np.array([era_number(e) for e in era_names])
        if not self.numeric_history_:
            position = {e: float(i) for i, e in enumerate(self.history_eras_)}
            numbers = np.array([position.get(str(e), np.inf) for e in era_names])
        trail = self._trailing(numbers)
        if staleness != "hold" and len(trail):
            stale = self.staleness(era_names)
            rows = np.nan_to_num(stale, nan=0.0) > 0
            if rows.any():
                mean, phi = self._long_run()
                if staleness == "neutral":
                    trail[rows] = mean
                else:
                    weight = phi[None, :] ** stale[rows][:, None]
                    trail[rows] = mean + weight * (np.where(np.isnan(trail[rows]), mean, trail[rows]) - mean)
        return trail

    def _trailing(self, numbers: np.ndarray) -> np.ndarray:
        cutoff = np.minimum(numbers - self.lag, self.as_of_number_)
        values = self.history_returns_
        valid = ~np.isnan(values)
        csum = np.vstack([np.zeros((1, values.shape[1])), np.cumsum(np.where(valid, values, 0.0), axis=0)])
        ccount = np.vstack([np.zeros((1, values.shape[1])), np.cumsum(valid, axis=0)])
        hi = np.searchsorted(self.history_numbers_, cutoff, side="right")
        lo = np.searchsorted(self.history_numbers_, cutoff - self.window, side="right")
        total = csum[hi] - csum[lo]
        count = ccount[hi] - ccount[lo]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / np.maximum(count, 1), np.nan)

    # ---- fit / transform ---------------------------------------------------------------------------
    def fit(
        self,
        composites: np.ndarray,
        raw_composites: np.ndarray,
        returns: np.ndarray,
        eras: EraIndex,
        names: Sequence[str],
        benchmark: np.ndarray | None = None,
        joint_returns: np.ndarray | None = None,
    ) -> Timing:
        """Store the factor-return history of the training eras and gate state and momentum on evidence.

        `returns` (per-era correlations) make the momentum history; `joint_returns` (per-era multiple-regression
        slopes on all composites, Fama-MacBeth style; default `returns`) are what the state features must
        explain: unlike marginal correlations they do not move mechanically with the composites' correlations."""
        check_params(self)
        k = composites.shape[1]
        self.names_ = list(names)
        self.benchmark_ = benchmark is not None
        self.set_history(eras.eras, returns)
        # (a) state: does factor k's return depend on state s across training eras?
        state = state_features(composites, raw_composites, eras, benchmark)
        self.state_names_ = state_names(self.names_, self.benchmark_)
        self.state_mean_ = state.mean(axis=0)
        std = state.std(axis=0)
        self.state_std_ = np.where(std > 1e-12, std, 1.0)
        s = (state - self.state_mean_) / self.state_std_
        live = std > 1e-12
        explained = returns if joint_returns is None else np.asarray(joint_returns, dtype=np.float64)
        embargo = gate_embargo(self.nw_lags)
        n_select = evidence_blocks(eras.n_eras, embargo)[0].stop
        # state features are many (pairs of composites): a family-wise 20 % level with Student-t tails for half the
        # choosing eras as degrees of freedom (overlapping targets); the later eras must confirm what was chosen
        self.state_threshold_ = familywise_threshold(s.shape[1] * k, self.threshold, alpha=0.2,
                                                     dof=max(1, n_select // 2 - 1))
        self.state_evidence_ = confirm(lambda part: self._state_stat(s[part], explained[part], (s.shape[1], k)),
                                       eras.n_eras, self.state_threshold_, embargo)
        tstat = np.where(live[:, None], self.state_evidence_.select_t, 0.0)
        self.state_tstats_ = tstat
        if self.threshold > 0:
            pairs = np.argwhere(self.state_evidence_.passed & live[:, None])
        else:  # threshold 0 switches the gates off: every state feature and conditional exposure is kept
            pairs = np.argwhere(np.broadcast_to(live[:, None], tstat.shape))
        self.state_pairs_ = pairs.astype(np.int64).reshape(-1, 2)  # (state index, factor index)
        self.state_keep_ = np.unique(self.state_pairs_[:, 0]).astype(np.int64)
        # (b) momentum: does the lagged trailing return of factor k predict its return?
        trail = self.trailing(eras.eras)

        def momentum_stat(part: slice) -> tuple[np.ndarray, np.ndarray]:
            products = momentum_products(trail[part], returns[part])
            t_out, size = np.zeros(k), np.zeros(k)
            for j in range(k):
                product = products[:, j][~np.isnan(products[:, j])]
                if len(product) < 10:
                    continue
                t_out[j], size[j] = newey_west_t(product, self.nw_lags)[0], product.mean()
            return t_out, size

        self.momentum_threshold_ = familywise_threshold(k, self.threshold * 0.8)
        self.momentum_evidence_ = confirm(momentum_stat, eras.n_eras, self.momentum_threshold_, embargo)
        self.momentum_tstats_ = self.momentum_evidence_.select_t
        gate = self.momentum_evidence_.passed if self.threshold > 0 else np.ones(k, bool)
        # (b') pooled: one test of whether trailing returns predict the next ones across all factors. Per factor the
        # evidence is thin (t 2 to 4 over a planted world's eras: 0 to 2 factors passed at a window of 4), pooled
        # it is not (t 2.5 to 8.6 where momentum is planted, at most 0.8 in the twelve null worlds of seed + 3000 at a
        # window of 4, at most 1.9 in 38 null worlds of four seed sets and benchmark 8's: tests/benchmarks/bench_momentum.py)
        # One test fixed in advance needs no choosing block: the split into choosing and confirming eras guards against
        # the winners among many candidates, and for one candidate it only costs power. The whole-sample t at the
        # gates' own threshold has the false-positive rate of the split rule it replaces (one-sided 0.13 % against
        # about 0.2 % for choosing at 1.9 then confirming at 1.5) and more power: on the seed + 3000 planted shapes
        # the split rule kept momentum in 3 of 6 at a window of 4, this one in 5 (tests/benchmarks/bench_momentum.py).
        self.momentum_pooled_t_ = None
        pooled_gate = np.zeros(k, bool)
        if self.pooled and self.threshold > 0:
            self.momentum_pooled_t_ = float(pooled_momentum_stat(trail, returns, self.nw_lags)[0][0])
            if self.momentum_pooled_:  # the test's evidence is every factor's together: so is the column
                pooled_gate[:] = True
        self.momentum_keep_ = np.flatnonzero(gate).astype(np.int64)
        # The pooled evidence is one test over all factors, so it earns one coefficient, not one per factor: the
        # factors enter through a single timed column, sum_k composite_k x (trailing_k - mean_k). On the reachable
        # oracle's future eras (tests/benchmarks/bench_momentum_coefficients.py, a window of 4) momentum weighed by
        # one coefficient was worth +0.0015, +0.0016 and +0.0016 pooled over the six planted shapes of the seed + 0,
        # + 4000 and + 5000, weighed by one coefficient per factor +0.0001, +0.0005 and +0.0005 (seed + 3000: +0.0028
        # and +0.0027).
        self.momentum_pooled_keep_ = np.flatnonzero(pooled_gate).astype(np.int64)
        self.momentum_mean_ = self._history_mean()
        return self

    @property
    def momentum_pooled_(self) -> bool:
        """Whether the pooled momentum test passed: its Newey-West t over every training era above `threshold`, with a
        positive sign (momentum, not reversal). False for a model fitted without the test. A model pickled before the
        whole-sample test (with `momentum_pooled_evidence_`, choosing and confirming eras) reports that rule's verdict."""
        t = getattr(self, "momentum_pooled_t_", None)
        if t is not None:
            return bool(t > self.threshold)
        ev = getattr(self, "momentum_pooled_evidence_", None)
        return bool(ev is not None and ev.chosen[0] and ev.select_t[0] > 0 and ev.confirm_t[0] > CONFIRM_T)

    def _state_stat(self, s: np.ndarray, returns: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(S, k) t-statistics and mean products of the state-return relation on some eras (each part demeaned on
        its own); a factor with fewer than 10 resolved eras there gets t 0, which no gate passes."""
        t_out, size = np.zeros(shape), np.zeros(shape)
        for j in range(shape[1]):
            r = returns[:, j]
            ok = ~np.isnan(r)
            if ok.sum() < 10:
                continue
            ss = s[ok]
            product = (ss - ss.mean(axis=0)) * (r[ok] - r[ok].mean())[:, None]
            t_out[:, j], size[:, j] = newey_west_t(product, self.nw_lags), product.mean(axis=0)
        return t_out, size

    @property
    def feature_names_(self) -> list[str]:
        """Names of the columns `transform` returns."""
        out = [self.state_names_[i] for i in self.state_keep_]
        out += [f"cond_{self.names_[j]}_by_{self.state_names_[i]}" for i, j in self.state_pairs_.tolist()]
        out += [f"mom_{self.names_[j]}" for j in self.momentum_keep_]
        out += [f"timed_{self.names_[j]}" for j in self.momentum_keep_]
        if len(self._pooled_keep()):
            out.append("timed_momentum")
        return out

    def _pooled_keep(self) -> np.ndarray:
        """The factors in the pooled timed column (none for a model pickled before it existed)."""
        return getattr(self, "momentum_pooled_keep_", np.zeros(0, dtype=np.int64))

    @property
    def momentum_factors_(self) -> np.ndarray:
        """Every factor whose momentum the model uses, in its own columns or in the pooled one."""
        return np.union1d(self.momentum_keep_, self._pooled_keep()).astype(np.int64)

    def state(self, composites: np.ndarray, raw_composites: np.ndarray, eras: EraIndex, benchmark: np.ndarray | None) -> np.ndarray:
        """Standardised state features (n_eras, S); benchmark columns NaN when fitted with a benchmark but given none."""
        if self.benchmark_ and benchmark is None:
            base = state_features(composites, raw_composites, eras, None)
            pad = np.full((eras.n_eras, len(self.names_)), np.nan)
            state = np.concatenate([base, pad], axis=1)
        else:
            state = state_features(composites, raw_composites, eras, benchmark if self.benchmark_ else None)
        return (state - self.state_mean_) / self.state_std_

    def transform(
        self,
        composites: np.ndarray,
        raw_composites: np.ndarray,
        eras: EraIndex,
        benchmark: np.ndarray | None = None,
        staleness: str = "hold",
    ) -> np.ndarray:
        """Kept state, conditional exposures, trailing returns and timed exposures (n, m) float32; `staleness` is the
        policy for eras past the history (see `trailing`)."""
        n = composites.shape[0]
        cols: list[np.ndarray] = []
        if len(self.state_keep_):  # era-level values go to rows one kept column at a time, never all S of them
            s = self.state(composites, raw_composites, eras, benchmark)
            cols += [eras.broadcast(s[:, i]) for i in self.state_keep_]
            cols += [composites[:, j] * eras.broadcast(np.nan_to_num(s[:, i])) for i, j in self.state_pairs_.tolist()]
        pooled = self._pooled_keep()
        if len(self.momentum_keep_) or len(pooled):
            trail = self.trailing(eras.eras, staleness)
            cols += [eras.broadcast(trail[:, j]) for j in self.momentum_keep_]
            cols += [composites[:, j] * eras.broadcast(np.nan_to_num(trail[:, j])) for j in self.momentum_keep_]
            if len(pooled):  # 0 wherever the trailing return is its history's mean (left alone, neutral) or unknown
                deviation = np.nan_to_num(trail - self.momentum_mean_)
                timed = np.zeros(n)
                for j in pooled:  # one factor at a time: (n,) temporaries, never (n, k) copies on the live path
                    timed += composites[:, j] * eras.broadcast(deviation[:, j])
                cols.append(timed)
        if not cols:
            return np.zeros((n, 0), dtype=np.float32)
        return np.stack(cols, axis=1).astype(np.float32)
