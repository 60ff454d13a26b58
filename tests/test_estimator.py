"""NumeraiModel: scikit-learn conventions, determinism, chunked/era-wise predict, NaN features, point-in-time
timing through the estimator, and validation scores of full vs baseline on the planted and the control world."""

from __future__ import annotations

import copy
import json
import pickle
import re

import numpy as np
import pandas as pd
import pytest
from numerai_tools.scoring import numerai_corr
from sklearn.base import clone

import model
from model import COMPONENTS, NumeraiModel
from model.eras import EraIndex
from tests.worlds import tiny_frame

# A few hundred trees keep every fit in this file to seconds; the comparison uses the same budget for both.
FAST = {"n_estimators": 300, "learning_rate": 0.04}
EMBARGO = 4


def _load(world):
    meta = json.loads((world / "features.json").read_text())
    features = meta["feature_sets"]["all"]
    groups = {k: v for k, v in meta["feature_sets"].items() if k not in ("small", "medium", "all")}
    train = pd.read_parquet(world / "train.parquet", columns=["era", "target"] + features)
    valid = pd.read_parquet(world / "validation.parquet", columns=["era", "target"] + features)
    return features, groups, train, valid


def _tiny(seed: int = 0, eras: int = 12, rows: int = 120, features: int = 12) -> tuple[pd.DataFrame, np.ndarray]:
    return tiny_frame(seed, eras, rows, features)


def _groups(frame: pd.DataFrame) -> dict[str, list[str]]:
    names = [c for c in frame.columns if c.startswith("feature")]
    return {"g1": names[:4], "g2": names[4:8], "g3": names[8:]}


TINY = {"n_estimators": 40, "learning_rate": 0.1}


# ---- scikit-learn conventions -------------------------------------------------------------------------
def test_params_round_trip_and_clone():
    m = NumeraiModel(feature_groups={"a": ["feature_1"]}, timing_lag=7, lgbm_params={"n_estimators": 5})
    params = m.get_params()
    assert params["timing_lag"] == 7 and params["lgbm_params"] == {"n_estimators": 5}
    assert set(COMPONENTS) <= set(params) and model.COMPONENTS == ("clusters", "interactions", "timing", "residualizer", "linear",
                                                                   "structural")
    c = clone(m)
    assert c is not m and c.get_params() == params
    assert c.set_params(timing_lag=3) is c and c.timing_lag == 3 and m.timing_lag == 7
    with pytest.raises(ValueError):
        m.set_params(no_such_parameter=1)
    assert not hasattr(c, "booster_")


def test_estimators_are_scikit_learn_estimators_and_components_plain_classes():
    """The estimators get scikit-learn's parameter protocol from BaseEstimator; the components, whose fit takes eras
    and engineered arrays rather than (X, y), are plain classes that do not pretend to keep that contract."""
    from sklearn.base import BaseEstimator

    from model import TargetEnsemble
    from model.clusters import ClusterGate, Clusters
    from model.factors import Factors
    from model.interactions import Interactions
    from model.residualize import ResidualizedRegressor, Residualizer
    from model.target_free import TargetFree
    from model.timing import Timing

    for cls in (Clusters, ClusterGate, Factors, Interactions, Timing, Residualizer, TargetFree):
        assert not isinstance(cls(), BaseEstimator), cls
    for cls, changed in [(ResidualizedRegressor, {"n_features": 3}), (NumeraiModel, {"timing_lag": 7}),
                         (TargetEnsemble, {"seeds": 2})]:
        original = cls(**changed)
        assert isinstance(original, BaseEstimator)
        copy = clone(original)
        assert type(copy) is cls and copy is not original and copy.get_params() == original.get_params()
        assert repr(original) == f"{cls.__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"
        assert repr(cls()) == f"{cls.__name__}()"
        with pytest.raises(ValueError, match="Invalid parameter 'bogus'"):
            copy.set_params(bogus=1)


def test_the_target_free_work_is_one_fitted_object_a_fit_can_be_given():
    """factors and the clusters' structure: fitted once (`target_free_`), and a fit given it uses it as it is; one made
    with other settings (clusters on or off) is refused."""
    from sklearn.exceptions import NotFittedError

    frame, y = _tiny()
    m = NumeraiModel(feature_groups=_groups(frame), clusters=True, n_clusters=3, lgbm_params=TINY, n_jobs=1).fit(frame, y)
    assert m.factors_ is m.target_free_.factors_ and m.target_free_.n_clusters_ == 3
    other = clone(m).fit(frame, y[::-1].copy(), target_free=m.target_free_)
    assert other.target_free_ is m.target_free_ and other.clusters_ is not m.clusters_  # the gate is this target's
    np.testing.assert_array_equal(clone(m).fit(frame, y, target_free=m.target_free_).predict(frame), m.predict(frame))
    with pytest.raises(ValueError, match="lacks the clusters' structure"):
        clone(m).fit(frame, y, target_free=clone(m).set_params(clusters=False).make_target_free().fit(
            frame.drop(columns="era").to_numpy(), EraIndex.from_frame(frame), list(m.feature_names_in_)))
    with pytest.raises(NotFittedError):
        clone(m).fit(frame, y, target_free=m.make_target_free())
    assert NumeraiModel(feature_groups=_groups(frame), lgbm_params=TINY).variant("baseline").fit(frame, y).target_free_ \
        is None


def test_variants():
    m = NumeraiModel(timing_window=9)
    base = m.variant("baseline")
    assert not any(getattr(base, c) for c in COMPONENTS) and base.timing_window == 9
    assert all(getattr(m.variant("full"), c) for c in COMPONENTS)
    for c in COMPONENTS:
        v = m.variant(f"no_{c}")
        assert getattr(v, c) is False and all(getattr(v, o) for o in COMPONENTS if o != c)
    with pytest.raises(ValueError):
        m.variant("no_such")


@pytest.mark.parametrize("variant,threads", [("baseline", 2), ("full", 1)])
def test_refit_is_deterministic_and_state_is_plain(variant, threads):
    frame, y = _tiny()
    m = NumeraiModel(feature_groups=_groups(frame), n_clusters=3, lgbm_params=TINY, n_jobs=threads).variant(variant)
    a = m.fit(frame, y).predict(frame)
    b = clone(m).fit(frame, y).predict(frame)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, m.fit(frame, y).predict(frame))
    assert (a > 0).all() and (a <= 1).all()
    assert list(m.feature_names_in_) == [c for c in frame.columns if c.startswith("feature")]
    assert m.as_of_era_ == "0012"
    # no training frame and no foreign objects in the fitted state
    for name, value in vars(m).items():
        assert not isinstance(value, (pd.DataFrame, pd.Series)), name
        assert type(value).__module__.split(".")[0] in ("builtins", "numpy", "lightgbm", "model"), (name, type(value))
    again = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(again.predict(frame), a)
    np.testing.assert_array_equal(copy.deepcopy(m).predict(frame), a)  # a copied booster knows all its trees


def test_predictions_are_per_era_ranks_and_era_by_era_equals_multi_era():
    frame, y = _tiny(1)
    m = NumeraiModel(feature_groups=_groups(frame), n_clusters=3, lgbm_params=TINY, n_jobs=1).fit(frame, y)
    whole = m.predict(frame)
    eras = EraIndex.from_frame(frame)
    for _era, rows in eras.rows():
        one = m.predict(frame.iloc[rows])
        np.testing.assert_allclose(whole[rows], one, atol=1e-12)
        assert one.max() == 1.0 and one.min() > 0
    # shuffled rows: the same prediction per row
    perm = np.random.default_rng(0).permutation(len(frame))
    np.testing.assert_allclose(m.predict(frame.iloc[perm]), whole[perm], atol=1e-12)


def test_predict_without_era_and_with_nan_features():
    frame, y = _tiny(2)
    m = NumeraiModel(feature_groups=_groups(frame), n_clusters=3, lgbm_params=TINY, n_jobs=1).fit(frame, y)
    live = frame[frame["era"] == "0012"].drop(columns="era")
    p = m.predict(live)
    assert p.shape == (len(live),) and np.isfinite(p).all() and (p > 0).all() and (p <= 1).all()
    holey = live.astype(np.float32)
    holey.iloc[::7, 2] = np.nan
    holey.iloc[3, :] = np.nan
    q = m.predict(holey)
    assert np.isfinite(q).all() and (q > 0).all() and (q <= 1).all() and q.std() > 0
    # NaN while fitting works too
    train = frame.copy()
    train[train.columns[1:]] = train[train.columns[1:]].astype(np.float32)
    train.iloc[::11, 3] = np.nan
    fitted = NumeraiModel(feature_groups=_groups(frame), n_clusters=3, lgbm_params=TINY, n_jobs=1).fit(train, y)
    assert np.isfinite(fitted.predict(train)).all()
    # unknown extra columns are ignored
    extra = live.assign(feature_new=np.int8(1), data_type="live")
    np.testing.assert_allclose(m.predict(extra[list(live.columns) + ["data_type"]]), p)


def test_benchmark_at_fit_and_predict():
    frame, y = _tiny(3)
    rng = np.random.default_rng(3)
    bench = pd.DataFrame({"era": frame["era"], "v52_lgbm_ender20": rng.random(len(frame)).astype(np.float32)}, index=frame.index)
    m = NumeraiModel(feature_groups=_groups(frame), n_clusters=3, lgbm_params=TINY, n_jobs=1, residualize_benchmark=True)
    m.fit(frame, y, benchmark=bench)
    assert m.benchmark_columns_ == ["v52_lgbm_ender20"]
    with_b = m.predict(frame, benchmark=bench)
    without = m.predict(frame)
    assert np.isfinite(with_b).all() and np.isfinite(without).all()
    assert np.abs(with_b - without).max() > 0.01  # the benchmark given at predict time is residualized away
    # a model fitted without a benchmark is not moved by one at predict time (residualize_benchmark off)
    plain = NumeraiModel(feature_groups=_groups(frame), n_clusters=3, lgbm_params=TINY, n_jobs=1).fit(frame, y)
    np.testing.assert_array_equal(plain.predict(frame), plain.predict(frame, benchmark=bench))


def test_update_factor_returns_is_point_in_time():
    frame, y = _tiny(4, eras=30)
    train = frame["era"] <= "0020"
    m = NumeraiModel(feature_groups=_groups(frame), clusters=False, interactions=False, residualizer=False,
                     timing_window=4, timing_lag=3, timing_threshold=0.0, lgbm_params=TINY, n_jobs=1)
    m.fit(frame[train], y[train])  # threshold 0: every timing feature is used, whatever the evidence
    assert any(n.startswith("timed_") for n in m.engineered_names_)
    assert m.as_of_era_ == "0020"
    later = ~train.to_numpy()
    m.update_factor_returns(frame[later], y[later])
    assert m.as_of_era_ == "0030"
    era25 = (frame["era"] == "0025").to_numpy()
    before = m.predict(frame[era25])
    y2 = y.copy()
    y2[(frame["era"] > "0022").to_numpy()] = np.random.default_rng(0).permutation(y2[(frame["era"] > "0022").to_numpy()])
    m.update_factor_returns(frame[later], y2[later])
    np.testing.assert_array_equal(before, m.predict(frame[era25]))  # era 25 only knows targets of eras <= 22
    trail_a = m.timing_.trailing(["0029"])
    m.update_factor_returns(frame[later], y[later])
    assert not np.array_equal(trail_a, m.timing_.trailing(["0029"]))


def test_pooled_momentum_column_is_zero_left_alone_and_fed_by_a_refresh(monkeypatch):
    import pickle

    from model.timing import Timing

    frame, y = _tiny(4, eras=30)
    train = (frame["era"] <= "0020").to_numpy()
    monkeypatch.setattr(Timing, "momentum_pooled_", property(lambda self: True))  # as if the pooled test passed
    m = NumeraiModel(feature_groups=_groups(frame), clusters=False, interactions=False, residualizer=False,
                     timing_window=4, timing_lag=3, timing_pooled=True, lgbm_params=TINY, n_jobs=1)
    m.fit(frame[train], y[train])
    monkeypatch.undo()
    m = pickle.loads(pickle.dumps(m))  # what the pickle keeps is enough: no class-level switch needed at predict
    assert m.engineered_names_[-1] == "timed_momentum"
    assert len(m.timing_.momentum_pooled_keep_) == len(m.factors_.names_)
    era30 = (frame["era"] == "0030").to_numpy()
    # left alone (neutral) the trailing returns past the history are its mean: the column's deviations are 0
    np.testing.assert_allclose(m.timing_.trailing(["0030"], "neutral")[0], m.timing_.momentum_mean_)
    left_alone = m.predict(frame[era30])
    m.update_factor_returns(frame[~train], y[~train])
    refreshed = m.predict(frame[era30])
    assert np.isfinite(refreshed).all() and not np.array_equal(left_alone, refreshed)


# ---- does it work? validation eras after the embargo, numerai_corr per era ---------------------------
def _validation_scores(world, variant: str) -> pd.Series:
    features, groups, train, valid = _load(world)
    m = NumeraiModel(feature_groups=groups, lgbm_params=FAST, n_jobs=2).variant(variant)
    m.fit(train[["era"] + features], train["target"])
    m.update_factor_returns(valid[["era"] + features], valid["target"])  # as known live: point in time
    pred = m.predict(valid[["era"] + features])
    frame = valid[["era", "target"]].assign(prediction=pred)
    last = int(train["era"].max())
    frame = frame[(frame["era"].astype(int) > last + EMBARGO) & frame["target"].notna()]
    return frame.groupby("era")[["prediction", "target"]].apply(
        lambda g: float(numerai_corr(g[["prediction"]], g["target"])["prediction"])
    )


@pytest.fixture(scope="module")
def planted_scores(long_world):
    return {v: _validation_scores(long_world, v) for v in ("baseline", "full")}


@pytest.fixture(scope="module")
def null_scores(null_world):
    return {v: _validation_scores(null_world, v) for v in ("baseline", "full")}


def _sharpe(s: pd.Series) -> float:
    return float(s.mean() / s.std())


def test_full_beats_baseline_on_the_planted_world(planted_scores):
    base, full = planted_scores["baseline"], planted_scores["full"]
    assert len(base) >= 30
    assert full.mean() > base.mean(), (full.mean(), base.mean())
    assert _sharpe(full) > _sharpe(base), (_sharpe(full), _sharpe(base))


def test_full_is_not_worse_than_baseline_on_the_null_world(null_scores):
    base, full = null_scores["baseline"], null_scores["full"]
    diff = full - base  # paired per era: the same eras and targets
    se = diff.std() / np.sqrt(len(diff))
    # Tolerance: two standard errors of the paired per-era difference (a one-sided 2.5 % test): a model that
    # is truly as good as the baseline fails this about 1 time in 40; the control world plants nothing the
    # components can use, so "not worse beyond noise" is all that can be asked.
    assert diff.mean() > -2 * se, (full.mean(), base.mean(), se)


def test_predict_in_bounded_chunks_of_eras_equals_one_chunk(monkeypatch):
    import model.booster as booster
    import model.features as features

    frame, y = _tiny(5)
    m = NumeraiModel(feature_groups=_groups(frame), n_clusters=3, lgbm_params=TINY, n_jobs=1).fit(frame, y)
    whole = m.predict(frame)
    monkeypatch.setattr(features, "CHUNK_CELLS", 300 * 40)  # about two eras per chunk
    assert len(list(EraIndex.from_frame(frame).chunks(features.chunk_rows(12)))) > 1
    np.testing.assert_allclose(m.predict(frame), whole, atol=1e-12)
    monkeypatch.setattr(booster, "PREDICT_CELLS", 1_000)  # the booster also sees small row batches
    np.testing.assert_allclose(m.predict(frame), whole, atol=1e-12)


def test_booster_scores_summed_over_blocks_of_trees_equal_one_call(monkeypatch):
    """Predicting in blocks of trees (fast for deep forests) gives the booster's own scores, with or without early stopping."""
    import model.booster as booster

    frame, y = _tiny(6)
    m = NumeraiModel(clusters=False, interactions=False, timing=False, residualizer=False,
                     lgbm_params={**TINY, "n_estimators": 23}, n_jobs=1).fit(frame, y)
    x = frame.drop(columns="era").to_numpy()
    rows = booster.Rows(x, np.zeros((len(x), 0), dtype=np.float32), None)
    expected = m.booster_.predict(x.astype(np.float32))
    monkeypatch.setattr(booster, "PREDICT_TREES", 5)  # 23 trees: blocks of 5, 5, 5, 5 and 3
    np.testing.assert_allclose(booster.predict_raw(m.booster_, rows, 1), expected, rtol=0, atol=1e-12)
    m.booster_.best_iteration = -1  # as a booster loaded from a model string, or deep-copied: every tree
    np.testing.assert_allclose(booster.predict_raw(m.booster_, rows, 1), expected, rtol=0, atol=1e-12)
    m.booster_.best_iteration = 11  # as after early stopping: predict uses the first 11 trees only
    np.testing.assert_allclose(booster.predict_raw(m.booster_, rows, 1),
                               m.booster_.predict(x.astype(np.float32), num_iteration=11), rtol=0, atol=1e-12)


def test_fit_temporaries_are_bounded_and_exact(monkeypatch):
    """The memory-bounded pieces of fit (column blocks of the per-era feature correlations behind the riskiest
    features, per-era Gram matrices in era_coefficients) give what the one-shot formulas give."""
    import model.stats as stats
    from model.factors import factor_returns
    from model.residualizer import _riskiest
    from model.stats import era_coefficients, era_correlations

    frame, y = _tiny(7)
    raw, eras = frame.drop(columns="era").to_numpy(), EraIndex.from_frame(frame)
    holes = raw.astype(np.float32)
    holes[::17, 2] = np.nan  # a missing value takes its era mean
    y_holes = y.astype(np.float64)
    y_holes[::13] = np.nan  # rows without a target are left out
    for values, target in ((raw, y), (holes, y_holes)):
        corr = era_correlations(values, target, eras)
        expected = factor_returns(eras.standardize(values, dtype=np.float64), target, eras)
        np.testing.assert_allclose(corr, expected, rtol=1e-9, atol=1e-12)
        monkeypatch.setattr(stats, "CORRELATION_CHUNK_CELLS", 3 * len(raw))  # blocks of 3 features
        np.testing.assert_allclose(era_correlations(values, target, eras), corr, rtol=1e-12, atol=1e-15)
        monkeypatch.undo()
    riskiest = _riskiest(corr, 4)
    assert len(riskiest) == 4 and (np.diff(riskiest) > 0).all()
    z = eras.standardize(raw[:, :3], dtype=np.float64)
    corr = factor_returns(z, y, eras)
    beta = era_coefficients([z[:, 0]], y, eras)[:, 0]  # one column: slope per unit target sd = corr x sd(z)=1
    np.testing.assert_allclose(beta, corr[:, 0], rtol=1e-7)  # era_coefficients adds a 1e-8 ridge
    yc = y - eras.broadcast(eras.means(y))
    for e, rows in enumerate(r for _, r in eras.rows()):
        zc = z[rows] - z[rows].mean(axis=0)
        expected = np.linalg.lstsq(zc, yc[rows], rcond=None)[0] / np.sqrt((yc[rows] ** 2).mean())
        np.testing.assert_allclose(era_coefficients([z[:, j] for j in range(3)], y, eras)[e], expected, rtol=1e-6)


def test_fit_through_lightgbm_sequence_for_large_data(monkeypatch):
    import model.estimator as estimator

    frame, y = _tiny(6)
    monkeypatch.setattr(estimator, "CHUNK_CELLS", 5_000)  # forces the Sequence path (no float copy)
    m = NumeraiModel(feature_groups=_groups(frame), n_clusters=3, lgbm_params=TINY, n_jobs=1).fit(frame, y)
    p = m.predict(frame)
    assert np.isfinite(p).all() and (p > 0).all() and (p <= 1).all()
    np.testing.assert_array_equal(p, clone(m).fit(frame, y).predict(frame))
    assert np.corrcoef(p, y)[0, 1] > 0.1  # it learned the planted signal


@pytest.mark.parametrize("how, phrase", [
    ("two ways", "writes the same era in two ways ('0001' and '1')"),
    ("unnumbered", "mixes labels with a whole number ('0003', '0004', ...) and labels without one ('week0001', "),
])
def test_fit_refuses_era_labels_without_one_order(how, phrase):
    """One era written two ways, or unnumbered labels beside numbered ones: either would put eras out of time order
    (the timing history, the embargo), so fit refuses, naming labels; all-unnumbered labels order as text."""
    frame, y = _tiny(1)
    era = frame["era"].to_numpy().copy()
    if how == "two ways":
        era[:10] = "1"  # ten rows of era "0001" written "1"
    else:
        era[np.isin(era, ["0001", "0002"])] = np.char.add("week", era[np.isin(era, ["0001", "0002"])].astype(str))
    with pytest.raises(ValueError, match=re.escape(phrase)):
        NumeraiModel(feature_groups=_groups(frame), lgbm_params=TINY, n_jobs=1).fit(frame.assign(era=era), y)
    text = frame.assign(era="week" + frame["era"])
    NumeraiModel(feature_groups=_groups(frame), lgbm_params=TINY, n_jobs=1).fit(text, y)
