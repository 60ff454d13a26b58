"""model.clusters: data-driven industries recover the synthetic world's planted ones; sklearn conventions,
era-wise prediction, cluster-relative values, dummies, degenerate inputs, speed and memory at Numerai's width."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator
from sklearn.metrics import adjusted_rand_score

import model.clusters as clusters_module
from model.clusters import Clusters
from model.eras import EraIndex


def simulated(eras: int = 30, stocks: int = 300, features: int = 40, k: int = 6, seed: int = 0, shift: float = 0.7):
    """Features 0..4 (int8, binned per era) whose means are shifted by a latent industry; returns X, industry, era."""
    rng = np.random.default_rng(seed)
    loadings = rng.normal(0.0, shift, (k, features))
    industry = rng.integers(k, size=stocks)
    blocks, era = [], []
    for e in range(eras):
        raw = loadings[industry] + rng.normal(size=(stocks, features))
        ranks = raw.argsort(axis=0).argsort(axis=0)
        blocks.append((ranks * 5 // stocks).astype(np.int8))
        era.append(np.full(stocks, f"{e + 1:04d}"))
    return np.vstack(blocks), np.tile(industry, eras), np.concatenate(era)


@pytest.fixture(scope="module")
def world():
    return simulated()


def load_split(data_dir: Path, name: str) -> tuple[np.ndarray, EraIndex, pd.Index]:
    """Features (int8/float32), era index and ids of one parquet file of the synthetic world."""
    frame = pd.read_parquet(data_dir / f"{name}.parquet")
    features = [c for c in frame.columns if c.startswith("feature_")]
    return frame[features].to_numpy(), EraIndex(frame["era"].to_numpy()), frame.index


def test_recovers_planted_industries(small_world: Path) -> None:
    """Fitted on train features, the clusters of validation rows match the planted industries (ARI ≫ chance)."""
    x_train, eras_train, _ = load_split(small_world, "train")
    x_valid, eras_valid, ids = load_split(small_world, "validation")
    truth = pd.read_parquet(small_world / "synthetic_industries.parquet")["industry"].reindex(ids).to_numpy()
    assert not pd.isna(truth).any()

    fitted = Clusters(n_clusters=8).fit(x_train, eras_train)
    labels = fitted.predict(x_valid, eras_valid)
    ari = adjusted_rand_score(truth, labels)
    shuffled = adjusted_rand_score(np.random.default_rng(0).permutation(truth), labels)
    print(f"\nclusters vs planted industries on validation: ARI={ari:.3f} (shuffled baseline {shuffled:.3f})")
    assert ari > 0.3
    assert abs(shuffled) < 0.02


def test_recovers_simulated_industries(world) -> None:
    """On strongly separated simulated industries the recovery is near perfect on held-out eras."""
    x, industry, era = world
    train = era <= "0020"
    fitted = Clusters(n_clusters=6).fit(x[train], EraIndex(era[train]))
    labels = fitted.predict(x[~train], EraIndex(era[~train]))
    assert adjusted_rand_score(industry[~train], labels) > 0.9
    assert fitted.components_.shape == (10, x.shape[1]) and fitted.components_.dtype == np.float32
    assert fitted.centroids_.shape == (6, 10)
    assert labels.dtype == np.int16
    assert list(fitted.cluster_sizes_) == sorted(fitted.cluster_sizes_, reverse=True)


def test_fit_twice_gives_identical_state(world) -> None:
    x, _, era = world
    eras = EraIndex(era)
    a = Clusters(random_state=3).fit(x, eras)
    b = Clusters(random_state=3).fit(x, eras)
    np.testing.assert_array_equal(a.components_, b.components_)
    np.testing.assert_array_equal(a.centroids_, b.centroids_)
    np.testing.assert_array_equal(a.predict(x, eras), b.predict(x, eras))
    # a refit of the same object is the same too
    np.testing.assert_array_equal(a.fit(x, eras).centroids_, b.centroids_)


def test_a_plain_component_that_checks_its_settings(world) -> None:
    """Clusters is a plain class (its fit takes eras, not a target): settings stored as given, checked at fit."""
    x, _, era = world
    original = Clusters(n_clusters=5, n_components=4, sample_size=1234, n_init=2, max_iter=50, random_state=7)
    assert not isinstance(original, BaseEstimator) and original.n_clusters == 5 and not hasattr(original, "centroids_")
    with pytest.raises(ValueError, match="`n_clusters` is 0"):
        Clusters(n_clusters=0).fit(x, EraIndex(era))


def test_fit_samples_rows_spread_over_eras(world) -> None:
    """With sample_size below the rows available, fit standardises only a sample drawn from many eras."""
    x, _, era = world
    fitted = Clusters(sample_size=1000).fit(x, EraIndex(era))
    assert fitted.n_samples_fit_ <= 1000 + clusters_module.MIN_ROWS_PER_ERA
    groups = clusters_module._sample_rows(EraIndex(era), 5000, np.random.default_rng(0))
    sampled_eras = {era[g[0]] for g in groups}
    assert len(sampled_eras) >= 5 and min(sampled_eras) == "0001" and max(sampled_eras) == "0030"


def test_fitted_state_is_plain_numpy_and_pickles(world) -> None:
    """The fitted state is numpy arrays and plain values only, and a pickle round trip predicts the same."""
    import pickle

    x, _, era = world
    eras = EraIndex(era)
    fitted = Clusters(n_clusters=5).fit(x, eras)
    for name, value in vars(fitted).items():
        if name.endswith("_"):
            assert isinstance(value, (np.ndarray, int, float)), name
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict(x, eras), fitted.predict(x, eras))
    assert len(pickle.dumps(fitted)) < 10_000


def test_predict_multi_era_equals_era_by_era(world) -> None:
    x, _, era = world
    fitted = Clusters().fit(x, EraIndex(era))
    rng = np.random.default_rng(1)
    shuffled = rng.permutation(len(x))  # rows of eras interleaved: grouping must not depend on row order
    xs, es = x[shuffled], era[shuffled]
    together = fitted.predict(xs, EraIndex(es))
    for name in np.unique(es):
        rows = np.flatnonzero(es == name)
        np.testing.assert_array_equal(fitted.predict(xs[rows], EraIndex(None, n_rows=len(rows))), together[rows])


def test_transform_matches_full_standardisation(world, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunked per-era statistics give the same scores as EraIndex.standardize of the whole frame."""
    x, _, era = world
    x = x.astype(np.float32)
    x[np.random.default_rng(2).random(x.shape) < 0.05] = np.nan
    eras = EraIndex(era)
    fitted = Clusters().fit(x, eras)
    monkeypatch.setattr(clusters_module, "CLUSTER_CHUNK_ELEMENTS", 7 * x.shape[1])  # 7-row blocks: many per era
    chunked = fitted.transform(x, eras)
    reference = eras.standardize(x, dtype=np.float64) @ fitted.components_.T.astype(np.float64)
    np.testing.assert_allclose(chunked, reference, atol=1e-4)
    assert np.isfinite(chunked).all()


def test_randomized_pca_matches_exact_svd() -> None:
    """Above GRAM_SIZE rows and features the randomized range finder finds the exact principal axes."""
    rng = np.random.default_rng(0)
    n, f = 1200, 600
    latent = rng.standard_normal((n, 12)) * np.linspace(6, 2, 12)
    z = (latent @ (rng.standard_normal((12, f)) * 8 / np.sqrt(f)) + rng.standard_normal((n, f))).astype(np.float32)
    z -= z.mean(axis=0)
    assert min(n, f) > clusters_module.GRAM_SIZE
    axes, variances = clusters_module._pca(z, 10, np.random.default_rng(1))
    zd = z.astype(np.float64)
    eigval, eigvec = np.linalg.eigh(zd.T @ zd)  # exact reference (LAPACK's SVD is slow on a busy machine)
    top = np.argsort(-eigval)[:10]
    np.testing.assert_allclose(np.abs((axes * eigvec[:, top].T).sum(axis=1)), 1.0, atol=1e-4)
    np.testing.assert_allclose(variances, eigval[top] / (n - 1), rtol=1e-4)
    np.testing.assert_allclose(axes @ axes.T, np.eye(10), atol=1e-5)


def test_relative_has_zero_era_cluster_means(world) -> None:
    x, _, era = world
    eras = EraIndex(era)
    fitted = Clusters(n_clusters=4).fit(x, eras)
    labels = fitted.predict(x, eras)
    values = np.column_stack([x[:, :3].mean(axis=1), x[:, 3]]).astype(np.float32)
    values[5, 1] = np.nan
    rel = Clusters.relative(values, labels, eras)
    assert rel.shape == values.shape and rel.dtype == np.float32
    assert np.isnan(rel[5, 1]) and np.isfinite(np.delete(rel, 5, axis=0)).all()
    means = pd.DataFrame(rel).groupby([era, labels]).mean().to_numpy()
    np.testing.assert_allclose(means, 0.0, atol=1e-5)
    # within a group the differences are kept
    g = (era == era[0]) & (labels == labels[0])
    np.testing.assert_allclose(np.diff(rel[g, 0]), np.diff(values[g, 0]), atol=1e-5)
    one = Clusters.relative(values[:, 0], labels, eras)
    assert one.shape == (len(x),)
    np.testing.assert_allclose(one, rel[:, 0])


def test_dummies_are_one_hot(world) -> None:
    x, _, era = world
    eras = EraIndex(era)
    fitted = Clusters(n_clusters=5).fit(x, eras)
    labels = fitted.predict(x, eras)
    d = fitted.dummies(labels)
    assert d.shape == (len(x), 5) and d.dtype == np.float32
    np.testing.assert_array_equal(d.sum(axis=1), 1.0)
    np.testing.assert_array_equal(d.argmax(axis=1), labels)
    with pytest.raises(ValueError, match="0..4"):
        fitted.dummies(np.array([0, 5]))


def test_degenerate_inputs(world) -> None:
    x, _, era = world
    # fewer rows than clusters
    few = Clusters(n_clusters=8).fit(x[:3], EraIndex(era[:3]))
    assert few.centroids_.shape[0] == 8 and np.isfinite(few.centroids_).all()
    assert set(few.predict(x[:50], EraIndex(era[:50]))) <= set(range(8))
    # constant features, an all-NaN feature, and n_components > F (clipped)
    xc = x[:, :4].astype(np.float32)
    xc[:, 1] = 2.0
    xc[:, 2] = np.nan
    clipped = Clusters(n_clusters=3, n_components=10).fit(xc, EraIndex(era))
    assert clipped.components_.shape == (4, 4) and clipped.n_components_ == 4
    labels = clipped.predict(xc, EraIndex(era))
    assert labels.min() >= 0 and labels.max() < 3
    # everything constant: one point repeated, every cluster but one stays empty and is re-seeded
    flat = np.full((200, 6), 2, dtype=np.int8)
    same = Clusters(n_clusters=4).fit(flat, EraIndex(None, n_rows=200))
    assert np.isfinite(same.centroids_).all() and same.inertia_ == 0.0
    assert (same.predict(flat, EraIndex(None, n_rows=200)) == 0).all()
    # one row, one feature
    Clusters(n_clusters=2).fit(np.array([[1]], dtype=np.int8), EraIndex(["0001"]))
    # an all-NaN row is placed at the era mean: its scores are 0
    xn = x[:300].astype(np.float32)
    xn[0] = np.nan
    fitted = Clusters().fit(x, EraIndex(era))
    np.testing.assert_array_equal(fitted.transform(xn, EraIndex(None, n_rows=300))[0], 0.0)
    # user errors
    with pytest.raises(ValueError, match="fitted on 40 features"):
        fitted.predict(x[:, :5], EraIndex(era))
    with pytest.raises(ValueError, match="not fitted"):
        Clusters().predict(x, EraIndex(era))
    with pytest.raises(ValueError, match="at least one row"):
        Clusters().fit(x[:0], EraIndex(era[:0]))


def test_empty_cluster_is_reseeded() -> None:
    """Two far-apart blobs and a k-means++ start that leaves a cluster empty still end with k used centroids."""
    rng = np.random.default_rng(0)
    points = np.vstack([rng.normal(0, 0.01, (50, 2)), rng.normal(10, 0.01, (50, 2)), [[5.0, 5.0]]])
    centres, inertia = clusters_module.kmeans(points, 3, 100, 0.0, rng)
    labels = clusters_module._sq_distances(points, centres).argmin(axis=1)
    assert len(np.unique(labels)) == 3 and np.isfinite(inertia)


def test_speed_and_memory_at_numerai_width() -> None:
    """Predicting a 6,700-row live era of 2,748 int8 features takes well under a second and little memory."""
    rng = np.random.default_rng(0)
    f = 2748
    train = rng.integers(0, 5, size=(3000, f), dtype=np.int8)
    fitted = Clusters(sample_size=1500, n_init=1).fit(train, EraIndex(np.repeat(["0001", "0002", "0003"], 1000)))
    live = rng.integers(0, 5, size=(6700, f), dtype=np.int8)
    eras = EraIndex(None, n_rows=len(live))
    fitted.predict(live, eras)
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        fitted.predict(live, eras)
        best = min(best, time.perf_counter() - start)
    tracemalloc.start()
    fitted.predict(live, eras)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"\npredict 6700 x {f} int8: {best * 1000:.0f} ms, peak allocation {peak / 2**20:.0f} MiB")
    assert best < 1.0
    assert peak < 80 * 2**20  # a float64 copy of the era alone would be 147 MiB
