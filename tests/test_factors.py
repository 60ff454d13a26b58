"""Factor composites and factor returns: per-era group means z-scored within eras, PCA without groups, per-era correlations."""

from __future__ import annotations

import numpy as np
import pandas as pd

from model.eras import EraIndex
from model.factors import Factors, factor_returns


def _frame(seed: int = 0, eras: int = 5, rows: int = 80, features: int = 9) -> tuple[np.ndarray, EraIndex, list[str]]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 5, size=(eras * rows, features)).astype(np.int8)
    era = np.repeat([f"{e + 1:04d}" for e in range(eras)], rows)
    perm = rng.permutation(len(era))  # rows of an era are not contiguous
    return x[perm], EraIndex(era[perm]), [f"feature_{j}" for j in range(features)]


def test_group_composites_are_per_era_zscored_group_means():
    x, eras, names = _frame()
    groups = {"a": names[:3], "b": names[3:7], "empty": ["feature_missing"]}
    f = Factors(groups).fit(x, eras, names)
    assert f.names_ == ["a", "b"]  # a group with no known feature is dropped
    z = f.transform(x, eras)
    assert z.dtype == np.float32 and z.shape == (len(x), 2)
    for _era, rows in eras.rows():
        mean_a = x[rows][:, :3].mean(axis=1)
        expected = (mean_a - mean_a.mean()) / mean_a.std()
        np.testing.assert_allclose(z[rows, 0], expected, atol=1e-5)
        assert abs(z[rows, 1].mean()) < 1e-5 and abs(z[rows, 1].std() - 1) < 1e-4


def test_nan_features_take_the_era_mean():
    x, eras, names = _frame(1)
    xf = x.astype(np.float32)
    xf[0, :3] = np.nan  # no value at all in group a → composite at the era mean (0)
    xf[1, 0] = np.nan  # one missing value → mean of the others
    f = Factors({"a": names[:3]}).fit(xf, eras, names)
    raw = f.raw(xf, eras)
    assert np.isnan(raw[0, 0]) and raw[1, 0] == np.float64(xf[1, 1:3].mean())
    z = f.transform(xf, eras)
    assert np.isfinite(z).all() and z[0, 0] == 0.0


def test_pca_factors_without_groups_are_deterministic():
    x, eras, names = _frame(2, features=12)
    a = Factors(None, n_components=3, random_state=0).fit(x, eras, names)
    b = Factors(None, n_components=3, random_state=0).fit(x, eras, names)
    assert a.kind_ == "pca" and a.names_ == ["pc1", "pc2", "pc3"]
    np.testing.assert_array_equal(a.weights_, b.weights_)
    z = a.transform(x, eras)
    assert z.shape == (len(x), 3) and np.isfinite(z).all()
    # the leading factor carries more per-era variance of the raw features than a random direction
    centred = x - eras.broadcast(eras.means(x))
    lead = centred @ a.weights_[:, 0]
    rand = centred @ np.random.default_rng(0).normal(size=12) / np.sqrt(12)
    assert lead.var() > rand.var()


def test_factor_returns_are_per_era_correlations_in_one_pass():
    x, eras, names = _frame(3)
    rng = np.random.default_rng(3)
    z = eras.standardize(rng.normal(size=(len(x), 3)), dtype=np.float64)
    y = 0.3 * z[:, 0] + rng.normal(size=len(x))
    y[:5] = np.nan  # unresolved rows are skipped
    r = factor_returns(z, y, eras)
    assert r.shape == (eras.n_eras, 3)
    for e, (_era, rows) in enumerate(eras.rows()):
        ok = ~np.isnan(y[rows])
        for k in range(3):
            expected = np.corrcoef(z[rows][ok, k], y[rows][ok])[0, 1]
            assert abs(r[e, k] - expected) < 1e-10
    assert r[:, 0].mean() > 0.2
    # an era with no resolved target has no return
    y2 = y.copy()
    y2[eras.codes == 0] = np.nan
    assert np.isnan(factor_returns(z, y2, eras)[0]).all()


def test_factor_returns_accept_frame_order():
    x, eras, names = _frame(4)
    frame = pd.DataFrame(x, columns=names)
    f = Factors({"g": names[:4]}).fit(frame.to_numpy(), eras, names)
    assert f.transform(frame.to_numpy(), eras).shape == (len(x), 1)
