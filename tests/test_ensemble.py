"""Target ensembles: one NumeraiModel per target sharing the target-free work, averaged per era, residualized once,
in one pickle; nmu train scores every member and the ensemble."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from sklearn.base import clone

from model import NumeraiModel, TargetEnsemble
from model.eras import EraIndex
from model.live import make_predict
from training.pipeline import train_command

TARGETS = ["target", "target_jasper_20", "target_teager_60"]
FAST = {"n_estimators": 40, "learning_rate": 0.1}


@pytest.fixture(scope="module")
def frames(small_world):
    meta = json.loads((small_world / "features.json").read_text())
    features = meta["feature_sets"]["all"]
    groups = {k: v for k, v in meta["feature_sets"].items() if k not in ("small", "medium", "all")}
    train = pd.read_parquet(small_world / "train.parquet", columns=["era", *features, *TARGETS])
    return features, groups, train


def test_members_share_the_target_free_work_and_average_per_era(frames):
    features, groups, train = frames
    Y = train[TARGETS].copy()
    Y.iloc[::7, 2] = np.nan  # an auxiliary target's gaps: left out of its member only
    model = NumeraiModel(feature_groups=groups, lgbm_params=FAST, n_jobs=1, residualizer=False, clusters=True)
    ensemble = TargetEnsemble(model, TARGETS, weights=[2, 1, 1]).fit(train[["era", *features]], Y)
    first, second, third = ensemble.members_
    assert second.target_free_ is first.target_free_ is ensemble.target_free_  # fitted once, shared
    assert second.factors_ is first.factors_ and first.target_free_.clusters_ is not None
    assert second.clusters_ is not first.clusters_  # each target's own cluster gate
    assert not any(m.residualizer for m in ensemble.members_)
    X = train[["era", *features]]
    eras = EraIndex.from_frame(X)
    combined = 0.5 * first.predict(X) + 0.25 * second.predict(X) + 0.25 * third.predict(X)
    np.testing.assert_allclose(ensemble.predict(X), eras.rank(combined))
    # every member learnt its own target: their predictions differ
    assert not np.allclose(first.predict(X), second.predict(X))


def test_one_pickle_predicts_live_with_the_residualizer_applied_once(frames, small_world):
    features, groups, train = frames
    model = NumeraiModel(feature_groups=groups, lgbm_params=FAST, n_jobs=1)
    ensemble = TargetEnsemble(model, TARGETS[:2]).fit(train[["era", *features]], train[TARGETS[:2]])
    assert ensemble.residualizer_ is not None and not any(m.residualizer_ for m in ensemble.members_)
    live = pd.read_parquet(small_world / "live.parquet")
    bench = pd.read_parquet(small_world / "live_benchmark_models.parquet")
    out = make_predict(ensemble)(live, bench)
    assert out.index.equals(live.index) and out["prediction"].between(0, 1).all() and out["prediction"].std() > 0
    # without its residualizer (nmu train's no_residualizer candidate): the members' rank average, template untouched
    from training.experiment import without_residualizer

    ensemble.residualizer_.parts_ = ("features",)  # as if its gate had kept the riskiest features
    plain = without_residualizer(ensemble)
    assert plain.residualizer_ is None and plain.model.residualizer is False and ensemble.model.residualizer is True
    X = train[["era", *features]]
    combined = sum(0.5 * m.predict(X) for m in ensemble.members_)
    np.testing.assert_allclose(plain.predict(X), EraIndex.from_frame(X).rank(combined))
    assert not np.allclose(plain.predict(X), ensemble.predict(X))
    # and exactly the ensemble fitted without the residualizer
    fitted_plain = TargetEnsemble(clone(model).set_params(residualizer=False), TARGETS[:2]).fit(X, train[TARGETS[:2]])
    np.testing.assert_array_equal(plain.predict(X), fitted_plain.predict(X))


def test_members_fitted_one_by_one_make_the_same_ensemble(frames):
    # fit_member + assemble (what nmu train's executor runs as separate jobs) is fit, piece by piece
    features, groups, train = frames
    X, Y = train[["era", *features]], train[TARGETS[:2]]
    model = NumeraiModel(feature_groups=groups, lgbm_params=FAST, n_jobs=1)
    whole = TargetEnsemble(model, TARGETS[:2]).fit(X, Y)
    pieces = TargetEnsemble(model, TARGETS[:2])
    first = pieces.fit_member(0, X, Y)
    pieces.assemble([first, pieces.fit_member(1, X, Y, target_free=first.target_free_)], X, Y)
    np.testing.assert_array_equal(pieces.predict(X), whole.predict(X))
    with pytest.raises(ValueError, match="member 2 does not exist"):
        pieces.fit_member(2, X, Y)
    with pytest.raises(ValueError, match="lacks the target column 'target_jasper_20'"):
        pieces.fit_member(1, X, train[["target"]])
    with pytest.raises(ValueError, match="1 fitted member"):
        TargetEnsemble(model, TARGETS[:2]).assemble([first], X, Y)


def test_seeds_bag_each_target_with_its_own_lightgbm_seeds(frames):
    features, groups, train = frames
    X = train[["era", *features]]
    model = NumeraiModel(feature_groups=groups, lgbm_params=FAST, n_jobs=1, residualizer=False, random_state=5)
    bagged = TargetEnsemble(model, ["target"], seeds=3).fit(X, train["target"].to_numpy())
    assert bagged.member_names_ == ["target (seed 1)", "target (seed 2)", "target (seed 3)"]
    assert [m.random_state for m in bagged.members_] == [5, 6, 7]
    assert all(m.factors_ is bagged.members_[0].factors_ for m in bagged.members_)
    preds = [m.predict(X) for m in bagged.members_]
    assert not np.allclose(preds[0], preds[1])  # each tree samples other columns (colsample 0.1)
    combined = sum(w * p for w, p in zip(bagged.weights_, preds))  # the equal weights, summed in the same order
    np.testing.assert_allclose(bagged.weights_, [1 / 3] * 3)
    np.testing.assert_allclose(bagged.predict(X), EraIndex.from_frame(X).rank(combined))
    # weights are the targets', shared by their seeds
    two = TargetEnsemble(model, TARGETS[:2], weights=[3, 1], seeds=2)
    np.testing.assert_allclose(two._check()[2], [0.375, 0.375, 0.125, 0.125])
    with pytest.raises(ValueError, match="`seeds` is 0"):
        TargetEnsemble(model, ["target"], seeds=0).fit(X, train["target"])


@pytest.mark.slow  # a whole `nmu train` of a two-target ensemble with its refit (13 s); the default lane keeps the
# ensemble's fit, scores and live pickle in the tests around it
def test_nmu_train_scores_every_member_and_the_ensemble(small_world, tmp_path: Path):
    config = tmp_path / "ensemble.toml"
    config.write_text('[ensemble]\ntargets = ["target", "target_jasper_20"]\n\n[lightgbm]\nn_estimators = 40\n'
                      'learning_rate = 0.1\n')
    metrics = train_command(data=small_world, out=tmp_path / "out", config_path=config, console=Console(quiet=True))
    ensemble = metrics["ensemble"]
    assert ensemble["targets"] == ["target", "target_jasper_20"] and ensemble["mode"] == "refreshed"
    for variant in ("baseline", "full"):
        e = ensemble["variants"][variant]
        assert set(e["members"]) == {"target", "target_jasper_20"}
        assert e["member_correlation"]["target"]["target"] == pytest.approx(1.0)
        assert -1 <= e["member_correlation"]["target"]["target_jasper_20"] <= 1
        # each member is scored as the variants are: its BMC against the same benchmark
        assert all(member["bmc_mean"] is not None for member in e["members"].values())
        assert e["gain_over_best_member"] == pytest.approx(
            e["ensemble"]["corr_mean"] - e["members"][e["best_member"]]["corr_mean"])
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Ensemble members" in html
    n_eras = ensemble["variants"]["full"]["members"]["target"]["n_eras"]
    assert f"<td>{n_eras}</td>" in html and f"{n_eras}.0000" not in html  # a count, not a score
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["targets"] == ["target", "target_jasper_20"]
    predict = pd.read_pickle(tmp_path / "out" / "model.pkl")
    live = pd.read_parquet(small_world / "live.parquet")
    assert predict(live, pd.read_parquet(small_world / "live_benchmark_models.parquet"))["prediction"].std() > 0


@pytest.mark.slow  # a whole three-member experiment with its refit (11 s)
def test_each_member_is_a_job_of_its_own_on_the_executor(small_world, tmp_path: Path):
    # the executor sees every member of every variant as its own job (first members, then the others, which reuse
    # their first member's target-free work), then the jobs that assemble and score the ensembles
    from training.config import load_config
    from training.console import Silent
    from training.executor import InProcess
    from training.experiment import load_dataset, run_experiment

    class Recording(InProcess):
        def __init__(self):
            self.rounds: list[list[str]] = []
            self.results: dict[str, object] = {}

        def map(self, function, jobs):
            self.rounds.append([j.title for j in jobs])
            out = super().map(function, jobs)
            self.results.update({j.title: r for j, r in zip(jobs, out)})
            return out

    config_path = tmp_path / "ensemble.toml"
    config_path.write_text('[ensemble]\ntargets = ["target", "target_jasper_20", "target_teager_60"]\n\n'
                           '[lightgbm]\nn_estimators = 20\nlearning_rate = 0.1\n')
    config = load_config(config_path)
    ds = load_dataset(small_world, "synthetic", config, Silent())
    executor = Recording()
    result = run_experiment(config, ds, executor=executor)
    assert executor.rounds[:3] == [
        ["baseline (member 1)", "full (member 1)"],
        ["baseline (member 2)", "baseline (member 3)", "full (member 2)", "full (member 3)"],
        ["baseline", "full"],
    ]
    refit = f"refit {result.shipped_variant}"
    assert executor.rounds[3:] == [[f"{refit} (member 1)"], [f"{refit} (member 2)", f"{refit} (member 3)"], [refit]]
    shipped = result.shipped
    assert isinstance(shipped, TargetEnsemble) and len(shipped.members_) == 3
    # the refit ensemble is made of the members its own jobs fitted, the later ones sharing the first's work
    members = [executor.results[f"refit {result.shipped_variant} (member {i})"] for i in (1, 2, 3)]
    assert all(a is b for a, b in zip(shipped.members_, members))
    if members[0].target_free_ is not None:
        assert members[1].target_free_ is members[0].target_free_ and members[2].target_free_ is members[0].target_free_
    # every member keeps the template's n_jobs for predicting, not the fit's threads
    assert all(m.n_jobs == shipped.model.n_jobs for m in members)


@pytest.mark.slow  # a second whole nmu train (8 s); the default lane keeps the ensemble's fit and the seeds' bagging
def test_nmu_train_with_seeds_scores_every_seed(small_world, tmp_path: Path):
    config = tmp_path / "seeds.toml"
    config.write_text('[ensemble]\nseeds = 2\n\n[lightgbm]\nn_estimators = 30\nlearning_rate = 0.1\n')
    metrics = train_command(data=small_world, out=tmp_path / "out", config_path=config, console=Console(quiet=True),
                            no_baseline=True)
    assert metrics["ensemble"]["seeds"] == 2 and metrics["ensemble"]["targets"] == ["target"]
    members = metrics["ensemble"]["variants"]["full"]["members"]
    assert set(members) == {"target (seed 1)", "target (seed 2)"}
    predict = pd.read_pickle(tmp_path / "out" / "model.pkl")
    live = pd.read_parquet(small_world / "live.parquet")
    assert predict(live, pd.read_parquet(small_world / "live_benchmark_models.parquet"))["prediction"].std() > 0
