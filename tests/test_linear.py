"""The linear layer (model.linear): its gate, its blend with the trees, and what it costs where it finds nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import model.linear as linear_module
from model import NumeraiModel
from model.eras import EraIndex
from model.linear import LinearLayer
from model.stats import evidence_blocks

FAST = {"n_estimators": 30, "learning_rate": 0.1}
ERAS, ROWS, FEATURES = 100, 300, 20


def _frame(seed: int, linear: bool) -> tuple[pd.DataFrame, np.ndarray]:
    """Integer features 0..4; the target pure noise, or noise plus a small linear signal in five features."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 5, (ERAS * ROWS, FEATURES)).astype(np.int8)
    X = pd.DataFrame(values, columns=[f"feature_{i}" for i in range(FEATURES)])
    X.insert(0, "era", np.repeat([f"{e:04d}" for e in range(1, ERAS + 1)], ROWS))
    y = rng.normal(size=len(X))
    if linear:
        y += 0.08 * values[:, :5].sum(axis=1)
    return X, y


def _model(**params) -> NumeraiModel:
    return NumeraiModel(interactions=False, timing=False, residualizer=False, lgbm_params=FAST, n_jobs=1, **params)


def test_nothing_linear_the_gate_refuses_and_predictions_are_the_trees_alone():
    X, y = _frame(0, linear=False)
    with_layer, without = _model().fit(X, y), _model(linear=False).fit(X, y)
    assert with_layer.linear_.coef_ is None and abs(with_layer.linear_.confirm_t_) < 3
    assert without.linear_ is None
    np.testing.assert_array_equal(with_layer.predict(X.iloc[:3000]), without.predict(X.iloc[:3000]))


def test_a_linear_signal_is_kept_and_blended_by_rank():
    X, y = _frame(1, linear=True)
    fitted = _model().fit(X, y)
    layer = fitted.linear_
    assert layer.confirm_t_ > 3 and layer.confirm_corr_ > 0.05
    assert np.all(layer.coef_[:5] > 0.05) and np.all(np.abs(layer.coef_[5:]) < 0.03), layer.coef_
    rows = X.iloc[: 4 * ROWS]
    blended = fitted.predict(rows)
    trees = fitted.set_params(linear_weight=0.0).predict(rows)
    assert not np.allclose(blended, trees)
    np.testing.assert_array_equal(trees, _model(linear=False).fit(X, y).predict(rows))  # same trees: w=0 is them
    # the blend by hand: rank(trees) + 0.5 rank(ridge) per era, ranked again
    eras = EraIndex.from_frame(rows)
    raw = rows.drop(columns="era").to_numpy(np.float32)
    expected = eras.rank(eras.rank(trees) + 0.5 * eras.rank(raw @ layer.coef_))
    np.testing.assert_allclose(blended, expected, atol=1e-12)
    # the blend scores better than the trees alone on later eras of the same world
    X_new, y_new = _frame(2, linear=True)
    corr = {w: np.mean([np.corrcoef(p, t)[0, 1] for p, t in zip(
        np.split(fitted.set_params(linear_weight=w).predict(X_new), ERAS), np.split(y_new, ERAS))]) for w in (0.0, 2.0)}
    assert corr[2.0] > corr[0.0], corr


def test_the_fit_in_small_chunks_gives_the_same_ridge():
    X, y = _frame(3, linear=True)
    raw, eras = X.drop(columns="era").to_numpy(np.int8), EraIndex.from_frame(X)
    big = LinearLayer(3.0, 4, 5).fit(raw, y, eras, chunk=10**7)
    small = LinearLayer(3.0, 4, 5).fit(raw, y, eras, chunk=ROWS * 3 + 1)
    np.testing.assert_allclose(small.coef_, big.coef_, rtol=1e-4, atol=1e-6)
    assert small.confirm_t_ == pytest.approx(big.confirm_t_, rel=1e-6)


def test_the_gate_ridge_sees_the_choosing_eras_only(monkeypatch):
    """The embargoed eras between the blocks overlap the first confirming eras' targets: the gate's ridge must not
    learn from them."""
    X, y = _frame(7, linear=True)
    raw, eras = X.drop(columns="era").to_numpy(np.int8), EraIndex.from_frame(X)
    solved_rows = []
    real = linear_module._solve
    def recording(gram, moment, rows, *standardised):
        solved_rows.append(rows)
        return real(gram, moment, rows, *standardised)

    # both dicts: after another test loads a by-value pickle in this process, cloudpickle may have rebound the class's
    # methods to a copy of the module's globals
    for namespace in {id(g): g for g in (vars(linear_module), LinearLayer.fit.__globals__)}.values():
        monkeypatch.setitem(namespace, "_solve", recording)
    layer = LinearLayer(3.0, 4, 5).fit(raw, y, eras, chunk=ROWS * 7)
    select, later = evidence_blocks(ERAS, 5)
    assert solved_rows == [select.stop * ROWS, ERAS * ROWS]  # the gate's ridge, then the layer's on every era
    assert layer.coef_ is not None


def test_missing_targets_and_features_are_handled():
    X, y = _frame(4, linear=True)
    y = y.copy()
    y[::7] = np.nan
    fitted = _model().fit(X, y)
    layer = fitted.linear_
    assert layer.coef_ is not None
    live = X[X["era"] == "0100"].drop(columns="era").to_numpy(np.float32).copy()
    complete = layer.scores(live, EraIndex(None, n_rows=ROWS))
    original = live.copy()
    live[::3, 2] = np.nan
    live[:, 4] = np.nan  # a feature missing in the whole era: FILL_VALUE (2) for every row
    scores = layer.scores(live, EraIndex(None, n_rows=ROWS))
    assert np.isfinite(scores).all()
    kept = np.arange(ROWS) % 3 != 0  # feature 2 present: only feature 4's term changed
    expected = complete - layer.coef_[4] * (original[:, 4] - 2.0)
    np.testing.assert_allclose(scores[kept], expected[kept], rtol=1e-5, atol=1e-5)
    out = fitted.predict_eras(live, EraIndex(None, n_rows=ROWS))  # the array-level predict, NaN and all
    assert out.shape == (ROWS,) and np.isfinite(out).all() and out.min() > 0 and out.max() <= 1


def test_a_negative_weight_is_refused_at_fit():
    X, y = _frame(5, linear=False)
    with pytest.raises(ValueError, match="linear_weight"):
        _model(linear_weight=-1.0).fit(X, y)


def test_a_model_pickled_before_the_layer_existed_predicts_as_before():
    X, y = _frame(6, linear=True)
    fitted = _model().fit(X, y)
    trees = fitted.set_params(linear_weight=0.0).predict(X.iloc[:ROWS])
    old = _model().fit(X, y)
    del old.linear_, old.linear_weight, old.linear  # what an older pickle's __dict__ lacks
    np.testing.assert_array_equal(old.predict(X.iloc[:ROWS]), trees)


# ---- the structural layer: the same ridge over the engineered columns --------------------------------------------
GROUPS = {g: [f"feature_{g}{i}" for i in range(5)] for g in "abcd"}


def _styled_frame(seed: int, product: float) -> tuple[pd.DataFrame, np.ndarray]:
    """Four feature groups, each five noisy quintiles of one style per stock and era; the target pure noise, or
    noise plus `product` x style a x style b (an interaction the composites carry and a product column can show)."""
    rng = np.random.default_rng(seed)
    styles = rng.normal(size=(ERAS * ROWS, 4))
    columns = {}
    for j, group in enumerate(GROUPS.values()):
        for name in group:
            noisy = styles[:, j] + rng.normal(scale=0.7, size=len(styles))
            ranks = pd.Series(noisy).groupby(np.repeat(np.arange(ERAS), ROWS)).rank(pct=True).to_numpy()
            columns[name] = np.minimum((ranks * 5).astype(np.int8), 4)
    X = pd.DataFrame(columns)
    X.insert(0, "era", np.repeat([f"{e:04d}" for e in range(1, ERAS + 1)], ROWS))
    return X, product * styles[:, 0] * styles[:, 1] + rng.normal(size=len(X))


def _structural_model(**params) -> NumeraiModel:
    return NumeraiModel(**{"feature_groups": GROUPS, "timing": False, "residualizer": False, "linear": False,
                           "lgbm_params": FAST, "n_jobs": 1, **params})


def test_a_structural_signal_is_kept_on_its_product_column_and_blended_by_rank():
    X, y = _styled_frame(11, product=0.3)
    fitted = _structural_model().fit(X, y)
    layer, names = fitted.structural_, fitted.engineered_names_
    assert any("_x_" in n for n in names), names  # the interactions component kept the planted product
    assert layer.coef_ is not None and layer.confirm_t_ > 3, layer.confirm_t_
    assert layer.coef_.shape == (len(names),)
    product = next(i for i, n in enumerate(names) if "_x_" in n)
    assert np.argmax(np.abs(layer.coef_)) == product, dict(zip(names, layer.coef_))
    rows = X.iloc[: 4 * ROWS]
    blended = fitted.predict(rows)
    trees = fitted.set_params(structural_weight=0.0).predict(rows)
    np.testing.assert_array_equal(trees, _structural_model(structural=False).fit(X, y).predict(rows))
    # by hand: rank(trees) + 2 x rank(the layer's scores of the engineered columns) per era (the default weight),
    # ranked again
    eras = EraIndex.from_frame(rows)
    raw = rows.drop(columns="era").to_numpy(np.int8)
    engineered, _ = fitted._engineer(raw, eras, None)
    expected = eras.rank(eras.rank(trees) + 2.0 * eras.rank(engineered @ layer.coef_))
    np.testing.assert_allclose(blended, expected, atol=1e-12)
    # later eras of the same world, never seen: the blend beats the trees alone
    X_new, y_new = _styled_frame(12, product=0.3)
    corr = {w: np.mean([np.corrcoef(p, t)[0, 1] for p, t in zip(np.split(
        fitted.set_params(structural_weight=w).predict(X_new), ERAS), np.split(y_new, ERAS))]) for w in (0.0, 2.0)}
    assert corr[2.0] > corr[0.0], corr


def test_both_layers_blend_with_the_trees_in_one_rank_sum():
    X, y = _styled_frame(17, product=0.3)
    y = y + 0.05 * X["feature_c0"].to_numpy()  # static signal in one raw feature, for the raw layer
    fitted = _structural_model(linear=True).fit(X, y)
    assert fitted.linear_.coef_ is not None and fitted.structural_.coef_ is not None
    rows = X.iloc[: 3 * ROWS]
    eras = EraIndex.from_frame(rows)
    raw = rows.drop(columns="era").to_numpy(np.int8)
    engineered, _ = fitted._engineer(raw, eras, None)
    trees = fitted.set_params(linear_weight=0.0, structural_weight=0.0).predict(rows)
    expected = eras.rank(eras.rank(trees) + 0.5 * eras.rank(raw.astype(np.float32) @ fitted.linear_.coef_)
                         + 0.25 * eras.rank(engineered @ fitted.structural_.coef_))
    blended = fitted.set_params(linear_weight=0.5, structural_weight=0.25).predict(rows)
    np.testing.assert_allclose(blended, expected, atol=1e-12)


def test_nothing_structural_the_gate_refuses_and_costs_nothing():
    X, y = _styled_frame(13, product=0.0)
    with_layer, without = _structural_model().fit(X, y), _structural_model(structural=False).fit(X, y)
    assert with_layer.structural_.coef_ is None and abs(with_layer.structural_.confirm_t_) < 3
    assert without.structural_ is None
    np.testing.assert_array_equal(with_layer.predict(X.iloc[:3000]), without.predict(X.iloc[:3000]))


def test_the_standardised_ridge_is_the_ridge_of_standardised_columns():
    rng = np.random.default_rng(14)
    columns = rng.normal(size=(2000, 4)) * np.array([0.01, 1.0, 30.0, 1.0])
    columns[:, 3] = 0.0  # a column without variance stays solvable, its coefficient 0
    y = columns[:, :3] @ np.array([20.0, 0.3, 0.01]) + rng.normal(size=2000)
    gram, moment, rows = columns.T @ columns, columns.T @ y, len(y)
    sd = np.sqrt(np.diag(gram)[:3] / rows)
    scaled = columns[:, :3] / sd
    penalised = scaled.T @ scaled + linear_module.RIDGE_ALPHA_PER_1000_ROWS * rows / 1000 * np.eye(3)
    expected = np.linalg.solve(penalised, scaled.T @ y) / sd
    solved = linear_module._solve(gram, moment, rows, standardised=True)
    np.testing.assert_allclose(solved[:3], expected, rtol=1e-10)
    assert solved[3] == 0.0


def test_the_structural_layer_skips_the_cluster_label_and_refuses_a_negative_weight():
    X, y = _styled_frame(15, product=0.3)
    with pytest.raises(ValueError, match="structural_weight"):
        _structural_model(structural_weight=-0.5).fit(X, y)
    model = _structural_model()
    model.engineered_names_ = ["factor_a", "cluster_id", "rel_a", "ix_a_x_b"]  # as clusters names them
    engineered = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_array_equal(model._structural_columns(engineered), engineered[:, [0, 2, 3]])
    model.engineered_names_ = ["factor_a", "ix_a_x_b"]
    every = engineered[:, :2]
    assert model._structural_columns(every) is every  # no cluster label: the columns as they are, no copy


def test_a_model_pickled_before_the_structural_layer_predicts_as_before():
    X, y = _styled_frame(16, product=0.3)
    fitted = _structural_model().fit(X, y)
    trees = fitted.set_params(structural_weight=0.0).predict(X.iloc[:ROWS])
    old = _structural_model().fit(X, y)
    del old.structural_, old.structural_weight, old.structural  # what an older pickle's __dict__ lacks
    np.testing.assert_array_equal(old.predict(X.iloc[:ROWS]), trees)
