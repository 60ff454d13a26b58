"""Interactions: per-era product coefficients, Newey-West t, the planted pair ranked first, nothing kept in a null world."""

from __future__ import annotations

import json

import numpy as np

from model.eras import EraIndex
from model.interactions import Interactions
from model.stats import familywise_threshold, newey_west_t, product_coefficients
from tests.worlds import train_composites


def test_product_coefficient_recovers_a_planted_interaction():
    rng = np.random.default_rng(0)
    n_eras, rows = 40, 500
    eras = EraIndex(np.repeat([f"{e:04d}" for e in range(n_eras)], rows))
    a, b = rng.normal(size=(2, n_eras * rows))
    y = 0.2 * a - 0.1 * b + 0.15 * a * b + rng.normal(size=n_eras * rows)
    coef = product_coefficients(a, b, y, eras)
    assert coef.shape == (n_eras,)
    assert abs(np.nanmean(coef) * np.std(y) - 0.15) < 0.03
    assert newey_west_t(coef, 4)[0] > 5


def test_newey_west_t_and_threshold():
    rng = np.random.default_rng(1)
    noise = rng.normal(size=(400, 50))
    assert np.abs(newey_west_t(noise, 4)).max() < 4.5
    # overlapping (autocorrelated) values: the corrected t is smaller than the naive one
    smooth = np.convolve(rng.normal(size=403) + 0.15, np.ones(4) / 4, mode="valid")
    naive = smooth.mean() / (smooth.std() / np.sqrt(len(smooth)))
    assert newey_west_t(smooth, 4)[0] < naive
    assert familywise_threshold(1, 3.0) == 3.0 and familywise_threshold(1000, 3.0) > 4.0


def test_planted_pair_ranks_first_and_is_kept(long_world):
    truth = json.loads((long_world / "synthetic_truth.json").read_text())
    z, _, y, eras, names, _ = train_composites(long_world)
    ix = Interactions(max_pairs=4, threshold=3.0).fit(z, y, eras, names)
    a, b, kind, t = ix.ranking(names)[0]
    assert {a, b} == set(truth["interaction"]) and kind == "composite"
    ev = ix.evidence_  # chosen on the first training eras, confirmed on the later ones
    assert ev.chosen[np.argmax(np.abs(ix.tstats_))] and abs(ev.confirm_t[np.argmax(np.abs(ix.tstats_))]) > 1.5
    assert len(ix.pairs_) >= 1 and {names[ix.pairs_[0, 0]], names[ix.pairs_[0, 1]]} == set(truth["interaction"])
    products = ix.transform(z)
    assert products.shape == (len(z), len(ix.pairs_)) and products.dtype == np.float32
    np.testing.assert_allclose(products[:, 0], z[:, ix.pairs_[0, 0]] * z[:, ix.pairs_[0, 1]], rtol=1e-6)


def test_null_world_keeps_no_interaction(null_world):
    z, _, y, eras, names, _ = train_composites(null_world)
    rng = np.random.default_rng(0)
    relative = z - rng.normal(scale=0.1, size=z.shape).astype(np.float32)
    ix = Interactions(max_pairs=4, threshold=3.0).fit(z, y, eras, names, relative)
    assert len(ix.pairs_) == 0, ix.ranking(names)[:3]
    assert ix.transform(z, relative).shape == (len(z), 0)
