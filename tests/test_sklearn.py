"""NumeraiModel as a scikit-learn citizen: tags, clone, Pipeline, cross_validate and GridSearchCV with the era
splitter and scorers, scikit-learn's own estimator checks, the residualizer as a meta-estimator, and any fitted
scikit-learn model through export and the runtime replica."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMRegressor
from sklearn.base import clone, is_regressor
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from model import NumeraiModel, ResidualizedRegressor, TargetEnsemble
from model.eras import EraIndex
from model.residualize import residualize_predictions
from tests.stand_in import replica_python
from tests.worlds import tiny_frame
from training.export import export_pickle
from validation.errors import NmuError
from validation.evaluation.scoring import era_corr_scorer, era_corrs, era_sharpe_scorer
from validation.evaluation.splits import EraTimeSeriesSplit, expanding_window_folds
from validation.runtime.replica import run_pickle

TINY = {"n_estimators": 30, "learning_rate": 0.1}
README = Path(__file__).resolve().parents[1] / "README.md"


def _frame(seed: int = 0, eras: int = 24, rows: int = 100, features: int = 12) -> tuple[pd.DataFrame, np.ndarray]:
    return tiny_frame(seed, eras, rows, features, interaction=0.0, noise=1.0)


def _small(**params) -> NumeraiModel:
    return NumeraiModel(n_clusters=3, lgbm_params=TINY, n_jobs=1, **params)


# ---- 1. a regressor that scikit-learn's machinery accepts ------------------------------------------------
def test_is_a_regressor_that_clones_and_sets_nested_params():
    model = _small()
    assert is_regressor(model) and model.__sklearn_tags__().estimator_type == "regressor"
    pipe = make_pipeline(model)
    pipe.set_params(numeraimodel__timing_lag=7)
    assert pipe.get_params()["numeraimodel__timing_lag"] == 7
    wrapped = ResidualizedRegressor(_small())
    wrapped.set_params(estimator__n_clusters=4)
    assert clone(wrapped).estimator.n_clusters == 4


def test_pipeline_cross_validate_and_grid_search_with_era_splits():
    X, y = _frame()
    pipe = make_pipeline(_small())
    pipe.fit(X, y)
    assert pipe.predict(X).shape == (len(X),)
    cv = EraTimeSeriesSplit(n_splits=3, embargo=2)
    scores = cross_validate(pipe, X, y, cv=cv, scoring={"corr": era_corr_scorer, "sharpe": era_sharpe_scorer})
    assert len(scores["test_corr"]) == 3 and np.isfinite(scores["test_corr"]).all()
    assert (scores["test_corr"] > 0).mean() >= 2 / 3  # the signal is there

    # GridSearchCV with the era splitter and scorer: each split's score is the one a fit on that fold's training eras
    # gets on its validation eras, and it picks the setting those scores favour. Two trees of two leaves against
    # TINY's 30 trees: the stronger model comes second, so a search that kept the first setting on a tie (a grid
    # whose settings all score the same) would fail here.
    weak = {"n_estimators": 2, "learning_rate": 0.02, "num_leaves": 2}
    grid = [weak, TINY]
    search = GridSearchCV(_small(), {"lgbm_params": grid}, cv=cv, scoring=era_corr_scorer).fit(X, y)
    by_hand = np.array([[era_corr_scorer(_small().set_params(lgbm_params=params).fit(X.iloc[train], y[train]),
                                         X.iloc[test], y[test]) for train, test in cv.split(X)] for params in grid])
    folds = np.array([search.cv_results_[f"split{i}_test_score"] for i in range(3)]).T
    np.testing.assert_allclose(folds, by_hand, rtol=1e-9)
    assert (by_hand[1] > by_hand[0] + 0.05).all()  # the stronger model wins every fold, by a margin
    assert search.best_params_ == {"lgbm_params": TINY} and search.best_index_ == int(np.argmax(by_hand.mean(axis=1)))
    assert search.best_score_ == pytest.approx(by_hand[1].mean())
    np.testing.assert_allclose(search.predict(X), _small().fit(X, y).predict(X))  # refitted on every era


def test_era_splitter_is_the_one_nmu_train_uses_and_reads_groups():
    X, _ = _frame(eras=30)
    cv = EraTimeSeriesSplit(n_splits=3, embargo=4)
    folds = expanding_window_folds(X["era"].unique(), 3, 4)
    eras = X["era"].to_numpy()
    for (train, test), fold in zip(cv.split(X), folds):
        assert sorted(set(eras[train])) == fold.train and sorted(set(eras[test])) == fold.validation
        assert int(eras[test].min()) - int(eras[train].max()) > 4  # the embargo
    by_groups = list(cv.split(X.drop(columns="era"), groups=eras))
    assert all((a == c).all() and (b == d).all() for (a, b), (c, d) in zip(by_groups, cv.split(X)))
    with pytest.raises(ValueError, match="needs the eras"):
        next(cv.split(X.drop(columns="era")))
    assert cv.get_n_splits() == 3 and repr(cv) == "EraTimeSeriesSplit(embargo=4, n_splits=3)"


def test_scorers_are_per_era_numerai_corr():
    X, y = _frame(1)
    model = _small().fit(X, y)
    per_era = era_corrs(model.predict(X), y, X["era"])
    assert list(per_era.index) == sorted(X["era"].unique())
    assert era_corr_scorer(model, X, y) == pytest.approx(per_era.mean())
    assert era_sharpe_scorer(model, X, y) == pytest.approx(per_era.mean() / per_era.std(ddof=0))


# ---- scikit-learn's own estimator checks ---------------------------------------------------------------
# The checks feed 2-D arrays without an `era` column: such input is one era, predictions are ranks in (0, 1] within
# it. The checks that cannot hold for that reason are declared on each estimator, each with why, in `_more_tags()`'s
# "_xfail_checks" (as LightGBM declares its own); scikit-learn 1.6.1 and later take them as expected failures here.
def _expected_failures(estimator) -> dict[str, str]:
    return estimator._more_tags().get("_xfail_checks", {})


def _checked_model() -> NumeraiModel:
    return NumeraiModel(n_clusters=2, cluster_components=2, lgbm_params={"n_estimators": 5, "min_data_in_leaf": 1},
                        n_jobs=1)


@parametrize_with_checks([_checked_model(), TargetEnsemble(_checked_model()),
                          ResidualizedRegressor(LGBMRegressor(n_estimators=5, min_child_samples=1, verbose=-1, n_jobs=1)),
                          ResidualizedRegressor(_checked_model())],
                         expected_failed_checks=_expected_failures)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_expected_failures_are_declared_with_their_reasons():
    for estimator in (_checked_model(), TargetEnsemble(), ResidualizedRegressor(Ridge())):
        declared = _expected_failures(estimator)
        assert set(declared) == {"check_methods_subset_invariance"} and "ranks" in declared["check_methods_subset_invariance"]


def test_unfitted_estimators_raise_not_fitted_error():
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    X, _ = _frame(eras=4, rows=20)
    for estimator in (_small(), TargetEnsemble(_small()), ResidualizedRegressor(Ridge())):
        with pytest.raises(NotFittedError):
            estimator.predict(X)
        with pytest.raises(NotFittedError):
            check_is_fitted(estimator)


def test_bad_parameters_name_the_parameter_value_and_what_is_allowed():
    X, y = _frame()
    cases = {"residualize_features": "Riskiest", "n_jobs": 0, "timing_window": 0, "residualize_proportion": 1.5,
             "clusters": "yes", "lgbm_params": [("n_estimators", 5)]}
    for name, value in cases.items():
        with pytest.raises(ValueError, match=rf"`{name}` is {re.escape(repr(value))}") as info:
            _small().set_params(**{name: value}).fit(X, y)
        assert "must be" in str(info.value)


# ---- 3. the residualizer wraps any regressor ------------------------------------------------------------
@pytest.mark.parametrize("inner", ["numerai", "lgbm", "pipeline"])
def test_residualized_regressor_wraps_any_regressor(inner):
    X, y = _frame(2)
    estimator = {"numerai": _small(residualizer=False),
                 "lgbm": LGBMRegressor(n_estimators=20, verbose=-1, n_jobs=1),
                 "pipeline": make_pipeline(StandardScaler(), Ridge())}[inner]
    wrapped = ResidualizedRegressor(estimator, proportion=1.0, features=["feature_00", "feature_01"]).fit(X, y)
    out = wrapped.predict(X)
    assert out.shape == (len(X),) and (out > 0).all() and (out <= 1).all()
    # the same code as NumeraiModel's residualizer: per era gaussianize, residualize, rank
    raw = wrapped.estimator_.predict(X if inner == "numerai" else X.drop(columns="era"))
    expected = residualize_predictions(raw, X[["feature_00", "feature_01"]].to_numpy(), EraIndex.from_frame(X), 1.0)
    np.testing.assert_allclose(out, expected)
    # fully residualized on feature_00: no linear exposure left in any era
    for _, rows in EraIndex.from_frame(X).rows():
        assert abs(np.corrcoef(out[rows], X["feature_00"].to_numpy()[rows])[0, 1]) < 0.1


# ---- 4. any scikit-learn model ships ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def world_frames(small_world):
    train = pd.read_parquet(small_world / "train.parquet")
    features = [c for c in train.columns if c.startswith("feature")]
    return train, features


@pytest.mark.network
@pytest.mark.parametrize("kind", ["lgbm", "pipeline", "residualized"])
def test_any_fitted_scikit_learn_model_ships_and_runs_in_the_replica(kind, world_frames, small_world, tmp_path):
    train, features = world_frames
    X, y = train[features], train["target"].to_numpy()
    estimator = {"lgbm": LGBMRegressor(n_estimators=20, verbose=-1, n_jobs=1),
                 "pipeline": make_pipeline(StandardScaler(), Ridge()),
                 "residualized": ResidualizedRegressor(LGBMRegressor(n_estimators=20, verbose=-1, n_jobs=1))}[kind]
    fitted = estimator.fit(train[["era", *features]] if kind == "residualized" else X, y)
    path = tmp_path / "model.pkl"
    export_pickle(fitted, path)
    result = run_pickle(replica_python(), path, small_world / "live.parquet",
                        small_world / "live_benchmark_models.parquet")
    assert result["status"] == "pass", result
    assert 0 < result["summary"]["min"] and result["summary"]["max"] <= 1


def test_export_refuses_a_module_the_runtime_lacks(world_frames, tmp_path, monkeypatch):
    train, features = world_frames
    fitted = make_pipeline(StandardScaler(), Ridge()).fit(train[features], train["target"])
    fitted.steps[0][1].helper = pytest.approx  # an object of pytest (imported by reference), absent in the runtime
    with pytest.raises(NmuError, match=r"needs _pytest, which Numerai's Python 3\.\d+ runtime image does not have"):
        export_pickle(fitted, tmp_path / "m.pkl")
    assert not (tmp_path / "m.pkl").exists()


def test_export_refuses_an_unfitted_or_array_fitted_model(tmp_path):
    with pytest.raises(NmuError, match="no feature_names_in_"):
        export_pickle(Ridge(), tmp_path / "m.pkl")
    with pytest.raises(NmuError, match="fit it on a DataFrame"):
        export_pickle(Ridge().fit(np.ones((4, 2)) * np.arange(4)[:, None], np.arange(4.0)), tmp_path / "m.pkl")


# ---- 6. the README's Python API section runs as written --------------------------------------------------
def test_readme_python_api_section_runs(small_world, monkeypatch, tmp_path):
    section = README.read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    [code] = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(code.strip().splitlines()) <= 16
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "synthetic").symlink_to(small_world)  # the README's path, on the small world
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    # cross_validate names its scores test_score for one scorer, test_<name> for a dict of them
    fold_scores = {k: v for k, v in namespace["scores"].items() if k.startswith("test_")}
    assert fold_scores and all(np.isfinite(v).all() for v in fold_scores.values()), fold_scores
    assert (tmp_path / "my_model.pkl").exists()
