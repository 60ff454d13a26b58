"""Factor timing: point-in-time trailing returns (no leakage), target-free state features, planted effects found."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

from model.eras import EraIndex, era_number
from model.factors import factor_returns
from model.stats import CONFIRM_T, confirm, familywise_threshold, gate_embargo
from model.timing import Timing, momentum_products, pooled_momentum_stat, state_features, state_names
from tests.worlds import train_composites


@pytest.fixture(scope="module")
def planted(small_world):
    return train_composites(small_world)


def test_era_numbers():
    assert era_number("0042") == 42.0 and era_number("X") == float("inf")
    # a float era column read as text keeps its number; text that is no whole number has none
    assert era_number("481.0") == 481.0 and era_number(481.0) == 481.0
    assert era_number("nan") == era_number("-3") == era_number("4.5") == era_number("") == float("inf")


def test_trailing_window_and_lag_by_era_number():
    t = Timing(window=3, lag=2)
    eras = [f"{e:04d}" for e in range(1, 11)]
    returns = np.arange(1, 11, dtype=np.float64).reshape(-1, 1)  # return of era e is e
    t.set_history(eras, returns)
    trail = t.trailing(["0003", "0006", "0010", "0012", "0020", "X"])[:, 0]
    # era 3 knows era 1 only; era 6 knows eras 2..4; eras after as_of (10) use the latest window 8..10
    np.testing.assert_allclose(trail[:2], [1.0, 3.0])
    np.testing.assert_allclose(trail[2:], [7.0, 9.0, 9.0, 9.0])
    assert np.isnan(t.trailing(["0002"])[0, 0])  # nothing known yet
    assert t.as_of_era_ == "0010"
    t.update(["0011"], np.array([[100.0]]))
    assert t.as_of_era_ == "0011" and t.trailing(["0013"])[0, 0] == pytest.approx((9 + 10 + 100) / 3)
    assert t.trailing(["0012"])[0, 0] == pytest.approx(9.0)  # still point in time inside the history


def test_changing_later_targets_leaves_timing_features_of_era_t_unchanged(planted):
    z, comp_raw, y, eras, names, _ = planted
    lag, t_era = 5, 40
    timing = Timing(window=12, lag=lag)
    timing.fit(z, comp_raw, factor_returns(z, y, eras), eras, names)
    timing.momentum_keep_ = np.arange(len(names))  # every factor's momentum, whatever the evidence
    numbers = np.array([era_number(e) for e in eras.eras])
    rows = eras.codes == int(np.flatnonzero(numbers == t_era)[0])
    before = timing.transform(z, comp_raw, eras)[rows]
    assert before.shape[1] >= 2 * len(names)  # momentum and timed exposures of every factor
    y2 = y.copy()
    late = numbers[eras.codes] > t_era - lag
    y2[late] = np.random.default_rng(0).permutation(y2[late])
    changed = Timing(window=12, lag=lag)
    changed.fit(z, comp_raw, factor_returns(z, y2, eras), eras, names)
    changed.state_pairs_, changed.state_keep_ = timing.state_pairs_, timing.state_keep_  # same selection
    changed.momentum_keep_ = timing.momentum_keep_
    after = changed.transform(z, comp_raw, eras)[rows]
    np.testing.assert_array_equal(before, after)
    # ...while an era after t sees the change
    later = eras.codes == int(np.flatnonzero(numbers == t_era + lag + 3)[0])
    assert not np.array_equal(timing.transform(z, comp_raw, eras)[later], changed.transform(z, comp_raw, eras)[later])


def test_state_features_do_not_depend_on_targets(planted):
    z, comp_raw, y, eras, names, _ = planted
    a = Timing().fit(z, comp_raw, factor_returns(z, y, eras), eras, names)
    y2 = np.random.default_rng(1).permutation(y)
    b = Timing().fit(z, comp_raw, factor_returns(z, y2, eras), eras, names)
    np.testing.assert_array_equal(a.state(z, comp_raw, eras, None), b.state(z, comp_raw, eras, None))
    # and they come from each era's own cross-section: one era alone gives the same values
    rows = eras.codes == 3
    sub = EraIndex(eras.eras[eras.codes[rows]])
    np.testing.assert_allclose(state_features(z[rows], comp_raw[rows], sub)[0], state_features(z, comp_raw, eras)[3], atol=1e-12)


def test_trailing_returns_follow_the_planted_factor_return_process(planted):
    z, comp_raw, y, eras, names, truth = planted
    timing = Timing(window=12, lag=5).fit(z, comp_raw, factor_returns(z, y, eras), eras, names)
    measured = timing.trailing(eras.eras)
    payoff = np.array([[truth["eras"][e]["payoff"][g] for g in names] for e in eras.eras])
    known = Timing(window=12, lag=5)
    known.set_history(eras.eras, payoff)
    planted_trail = known.trailing(eras.eras)  # the planted process over the same point-in-time window
    ok = ~np.isnan(measured).any(axis=1)
    corr = np.corrcoef(measured[ok].ravel(), planted_trail[ok].ravel())[0, 1]
    assert corr > 0.4, corr


def test_state_features_separate_the_planted_regimes(planted):
    z, comp_raw, _, eras, names, truth = planted
    state = state_features(z, comp_raw, eras)
    a, b = sorted(truth["regime_pair"], key=names.index)
    column = state_names(names, benchmark=False).index(f"state_corr_{a}_{b}")
    regime = np.array([truth["eras"][e]["regime"] for e in eras.eras])
    assert 0 < regime.sum() < len(regime)
    s0, s1 = state[regime == 0, column], state[regime == 1, column]
    gap = abs(s1.mean() - s0.mean())
    assert gap > 3 * np.sqrt((s0.var() + s1.var()) / 2), (s0.mean(), s1.mean())


def test_benchmark_state_columns_exist_only_when_fitted_with_a_benchmark(planted):
    z, comp_raw, y, eras, names, _ = planted
    bench = np.random.default_rng(2).normal(size=len(z))
    returns = factor_returns(z, y, eras)
    without = Timing().fit(z, comp_raw, returns, eras, names)
    assert not any(n.startswith("state_bench") for n in without.state_names_)
    # a live benchmark cannot shift a model fitted without one
    np.testing.assert_array_equal(without.state(z, comp_raw, eras, None), without.state(z, comp_raw, eras, bench))
    with_bench = Timing().fit(z, comp_raw, returns, eras, names, benchmark=bench)
    assert sum(n.startswith("state_bench") for n in with_bench.state_names_) == len(names)
    missing = with_bench.state(z, comp_raw, eras, None)
    assert np.isnan(missing[:, -len(names):]).all()


def _factor_return_world(seed: int, phi: float, eras: int = 300, k: int = 8, rows: int = 20, noise: float = 1.5):
    """Composites of a few rows per era and per-era factor returns: an AR(1) with persistence `phi` (0: none) seen
    through estimation noise `noise` times the process's, so each factor's own momentum evidence is thin."""
    rng = np.random.default_rng(seed)
    index = EraIndex(np.repeat([f"{e + 1:04d}" for e in range(eras)], rows))
    z = rng.standard_normal((eras * rows, k))
    x = np.empty((eras, k))
    x[0] = rng.standard_normal(k)
    for t in range(1, eras):
        x[t] = phi * x[t - 1] + np.sqrt(1 - phi**2) * rng.standard_normal(k)
    returns = 0.01 * (x + noise * rng.standard_normal((eras, k)))
    return z, returns, index, [f"g{j}" for j in range(k)]


def test_pooled_momentum_keeps_the_factors_that_per_factor_evidence_misses():
    kept, alone = [], []
    for seed in range(3):
        z, returns, eras, names = _factor_return_world(seed, phi=0.9)
        pooled = Timing(window=4, pooled=True).fit(z, z, returns, eras, names)
        single = Timing(window=4, pooled=False).fit(z, z, returns, eras, names)
        assert pooled.momentum_pooled_ and pooled.momentum_pooled_t_ > pooled.threshold
        assert single.momentum_pooled_t_ is None and not single.momentum_pooled_
        assert set(single.momentum_keep_) <= set(pooled.momentum_factors_)
        np.testing.assert_array_equal(pooled.momentum_keep_, single.momentum_keep_)  # own columns: the gate's alone
        kept.append(len(pooled.momentum_factors_))
        alone.append(len(single.momentum_keep_))
    assert sum(kept) >= 2 * len(names) and sum(kept) > sum(alone) + len(names), (kept, alone)


POWER_SEEDS, POWER_NOISE = 8, 3.0  # momentum seen through noise 3x the process: the split rule kept it in 4 of 8 worlds


def _split_evidence(timing: Timing, returns: np.ndarray, eras: EraIndex):
    """The pooled gate's evidence before the whole-sample test (b219f2c): chosen on the first eras, confirmed on the
    later ones."""
    trail = timing.trailing(eras.eras)
    return confirm(lambda part: pooled_momentum_stat(trail[part], returns[part], timing.nw_lags), eras.n_eras,
                   familywise_threshold(1, timing.threshold * 0.8), gate_embargo(timing.nw_lags))


def _split_rule(timing: Timing, returns: np.ndarray, eras: EraIndex) -> bool:
    """The split rule's verdict: chosen with a positive t, confirmed above CONFIRM_T."""
    ev = _split_evidence(timing, returns, eras)
    return bool(ev.chosen[0] and ev.select_t[0] > 0 and ev.confirm_t[0] > CONFIRM_T)


def test_pooled_momentum_is_one_test_on_every_era_with_more_power_than_choosing_and_confirming():
    whole, split = [], []
    for seed in range(POWER_SEEDS):
        z, returns, eras, names = _factor_return_world(200 + seed, phi=0.9, noise=POWER_NOISE)
        timing = Timing(window=4, pooled=True).fit(z, z, returns, eras, names)
        t = pooled_momentum_stat(timing.trailing(eras.eras), returns, timing.nw_lags)[0][0]
        assert timing.momentum_pooled_t_ == pytest.approx(t) and timing.momentum_pooled_ == (t > timing.threshold)
        whole.append(timing.momentum_pooled_)
        split.append(_split_rule(timing, returns, eras))
    # where the evidence is marginal the whole-sample test keeps momentum more often than the split rule did
    assert sum(whole) > sum(split), (whole, split)


def test_a_pickle_from_before_the_whole_sample_test_keeps_its_verdict_and_its_columns():
    z, returns, eras, names = _factor_return_world(0, phi=0.9)
    timing = Timing(window=4, pooled=True).fit(z, z, returns, eras, names)
    columns = timing.transform(z, z, eras)
    old = copy.deepcopy(timing)  # as pickled at b219f2c: the split rule's evidence, no whole-sample t
    del old.momentum_pooled_t_
    old.momentum_pooled_evidence_ = _split_evidence(timing, returns, eras)
    assert old.momentum_pooled_ and _split_rule(timing, returns, eras)  # the split rule kept this world's momentum
    old.momentum_pooled_evidence_ = dataclasses.replace(old.momentum_pooled_evidence_, confirm_t=np.array([CONFIRM_T]))
    assert not old.momentum_pooled_  # ... and reads its own verdict: not confirmed above CONFIRM_T, not kept
    np.testing.assert_array_equal(old.transform(z, z, eras), columns)  # its columns come from momentum_pooled_keep_


def test_pooled_momentum_is_one_timed_column_that_is_zero_left_alone():
    z, returns, eras, names = _factor_return_world(0, phi=0.9)
    timing = Timing(window=4, pooled=True).fit(z, z, returns, eras, names)
    pooled = timing.momentum_pooled_keep_
    assert len(pooled) == len(names) and timing.feature_names_[-1] == "timed_momentum"
    assert sum(n.startswith("timed_") for n in timing.feature_names_) == len(timing.momentum_keep_) + 1
    columns = timing.transform(z, z, eras)
    assert columns.shape[1] == len(timing.feature_names_)
    trail = timing.trailing(eras.eras)
    expected = (z[:, pooled] * eras.broadcast(np.nan_to_num(trail[:, pooled] - returns.mean(axis=0)[pooled]))).sum(1)
    np.testing.assert_allclose(columns[:, -1], expected, rtol=1e-5, atol=1e-7)
    # eras past the history: the neutral policy's trailing return is the history's mean, so the column is 0 ...
    later = EraIndex(np.repeat([f"{len(eras.eras) + 10 + e:04d}" for e in range(3)], 20))
    zl = np.random.default_rng(5).standard_normal((60, z.shape[1]))
    assert not timing.transform(zl, zl, later, staleness="neutral")[:, -1].any()
    # ... and a refresh feeds it again
    timing.update([f"{len(eras.eras) + e:04d}" for e in range(1, 9)], 0.03 * np.ones((8, len(names))))
    assert timing.transform(zl, zl, later, staleness="neutral")[:, -1].any()


@pytest.mark.parametrize("phi", [0.0, -0.6])
def test_pooled_momentum_keeps_nothing_without_momentum_or_under_reversal(phi):
    for seed in range(12):
        z, returns, eras, names = _factor_return_world(10 + seed, phi=phi)
        timing = Timing(window=4, pooled=True).fit(z, z, returns, eras, names)
        single = Timing(window=4, pooled=False).fit(z, z, returns, eras, names)
        assert not timing.momentum_pooled_
        # the pooled test adds nothing: only the per-factor gate (either sign) can keep a factor
        np.testing.assert_array_equal(timing.momentum_keep_, single.momentum_keep_)
        assert not len(timing.momentum_pooled_keep_) and "timed_momentum" not in timing.feature_names_


def test_momentum_products_measure_covariance_per_factor_and_correlation_scaled_on_the_eras_both_are_known():
    rng = np.random.default_rng(7)
    trail, returns = rng.standard_normal((60, 3)), rng.standard_normal((60, 3))
    trail[:9] = np.nan  # the first eras have no trailing window yet
    returns[-4:] = np.nan  # the newest targets are unresolved
    returns[20:30, 1] = np.nan
    trail[:, 2] = 1.0  # a factor without spread: no evidence either way
    covariance, correlation = momentum_products(trail, returns), momentum_products(trail, returns, scale=True)
    for j in range(2):
        both = ~np.isnan(trail[:, j]) & ~np.isnan(returns[:, j])
        np.testing.assert_array_equal(np.isnan(covariance[:, j]), ~both)
        m, r = trail[both, j], returns[both, j]
        np.testing.assert_allclose(covariance[both, j].mean(), np.cov(m, r, ddof=0)[0, 1])
        np.testing.assert_allclose(correlation[both, j].mean(), np.corrcoef(m, r)[0, 1])
    assert np.isnan(correlation[:, 2]).all() and np.nanmax(np.abs(covariance[:, 2])) == 0.0
