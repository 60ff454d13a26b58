"""`nmu tune`: the study on the small world's train eras (never a validation era), its store (resume, a changed
search space refused, a killed run's trials rerun), pruning fold by fold, the best config that `nmu train` takes,
the report, and bad input as one sentence with exit 2."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from model.eras import sort_eras
from training.cli import app
from training.config import TrainConfig, config_from_dict, load_config
from training.console import Silent
from training.executor import InProcess
from training.experiment import benchmark_for, build_model, fit_model, load_dataset, make_variant
from training.synthetic import SyntheticConfig, write_synthetic_world
from training.tune import (
    FoldJob,
    apply_params,
    default_trial,
    enqueue_default,
    load_study,
    open_storage,
    requeue_orphans,
    run_trials,
    score_fold,
    search_space,
    study_signature,
    tune_command,
    tune_settings,
    tuned_variant,
)
from validation.errors import NmuError
from validation.evaluation.selection import split_eras
from validation.evaluation.splits import expanding_window_folds

optuna = pytest.importorskip("optuna", reason='the tune extra is not installed: pip install -e ".[tune]"')

CONFIG = """
[lightgbm]
n_estimators = 15
learning_rate = 0.1

[compute]
threads = 1  # no sampling of the free cores before each fit (0.5 s): the tests check the plumbing

[tune]
folds = 2

[tune.lightgbm]
num_leaves = [4, 16]

[tune.components]
residualize_proportion = [0.0, 1.0]
"""


def _config(tmp_path: Path, text: str = CONFIG, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _tune(world: Path, out: Path, config: Path, trials: int, **kwargs) -> dict:
    return tune_command(data=world, out=out, config_path=config, trials=trials, console=Console(quiet=True), **kwargs)


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny world (60 eras of 300 stocks, 30 features): 36 train eras, so two folds of 12 eras each."""
    out = tmp_path_factory.mktemp("tiny_world")
    write_synthetic_world(out, SyntheticConfig.default(eras=60, stocks=300, features=30, seed=2))
    return out


@pytest.fixture(scope="module")
def tuned(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """Four trials of `nmu tune` on the tiny world (two parameters, two folds, 15 trees)."""
    tmp = tmp_path_factory.mktemp("tune")
    config = _config(tmp)
    return tmp / "out", config, _tune(tiny_world, tmp / "out", config, trials=4)


def _study(out: Path, name: str = "nmu-tune"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'tune.db'}")


def test_tune_writes_the_best_config_and_the_report(tuned, tiny_world: Path) -> None:
    out, config_path, summary = tuned
    for name in ("best_config.toml", "tune_report.html", "tune.json", "tune_trials.csv", "tune_history.png",
                 "tune_importance.png", "tune_best_trials.png", "tune.db"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert summary["trials"]["complete"] + summary["trials"]["pruned"] == 4
    best = load_config(out / "best_config.toml")  # what `nmu train --config` reads
    assert best.tune == {}  # the written config is one to train with
    assert best == dataclasses.replace(apply_params(load_config(config_path), summary["best_params"]), embargo=4)
    assert best.lightgbm["num_leaves"] == summary["best_params"]["lightgbm.num_leaves"]
    assert best.lightgbm["n_estimators"] == 15 and best.components["residualize_proportion"] == pytest.approx(
        summary["best_params"]["components.residualize_proportion"])
    assert json.loads((out / "tune.json").read_text())["best_value"] == pytest.approx(summary["best_value"])
    # the default config ran first, on the same folds; its num_leaves (31) is outside [4, 16], so that one is sampled
    first = _study(out).trials[0]
    assert first.user_attrs.get("nmu_default") and first.params["components.residualize_proportion"] == 0.5
    assert 4 <= first.params["lightgbm.num_leaves"] <= 16
    assert [t.number for t in _study(out).trials if t.user_attrs.get("nmu_default")] == [0]
    assert summary["default_trial"]["number"] == 0 and summary["default_trial"]["state"] == "complete"  # never pruned
    assert summary["default_trial"]["label"] == "the default config with lightgbm.num_leaves sampled"
    page = (out / "tune_report.html").read_text()
    for text in ("After the choice", "never saw these eras", "The default config with lightgbm.num_leaves sampled, "
                 "trial 0", "Optimisation history", "Parameter importance",
                 "Best trials", "data:image/png;base64,"):
        assert text in page, text


def test_the_tuner_never_sees_a_validation_era(tuned, tiny_world: Path) -> None:
    out, _, summary = tuned
    validation = pd.read_parquet(tiny_world / "validation.parquet", columns=["era"])["era"].unique()
    train = sort_eras(pd.read_parquet(tiny_world / "train.parquet", columns=["era"])["era"].unique())
    folds = expanding_window_folds(train, 2, 4)
    for trial in _study(out).trials:
        for k in (1, 2):
            eras = trial.user_attrs.get(f"fold{k}_eras")
            if eras is None:
                continue  # pruned after fold 1
            assert eras == [folds[k - 1].validation[0], folds[k - 1].validation[-1]]
            assert eras[1] in train and eras[1] not in validation
    # the scores after the choice are on the report eras `nmu train` reports on, for both configs
    frame = pd.read_parquet(tiny_world / "validation.parquet", columns=["era", "target"])
    scored = sort_eras(frame.loc[frame["target"].notna(), "era"].unique())
    kept = [e for e in scored if int(e) - int(train[-1]) > 4]
    report = split_eras(kept)[1]
    after = summary["after_choice"]
    assert after["eras"] == [report[0], report[-1]]
    assert after["default"]["n_eras"] == after["tuned"]["n_eras"] == len(report)


def test_a_second_run_resumes_the_study(tuned, tiny_world: Path) -> None:
    out, config, _ = tuned
    before = [(t.number, t.params, t.value) for t in _study(out).trials]
    summary = _tune(tiny_world, out, config, trials=5)
    trials = _study(out).trials
    assert [(t.number, t.params, t.value) for t in trials[:len(before)]] == before  # kept, not redone
    assert len(trials) == len(before) + 1 and summary["this_run"]["started"] == 1


def test_a_study_made_with_another_space_is_refused(tuned, tiny_world: Path, tmp_path: Path) -> None:
    out, _, _ = tuned
    other = _config(tmp_path, CONFIG.replace("num_leaves = [4, 16]", "num_leaves = [4, 32]"))
    with pytest.raises(NmuError, match=r"another search space.*lightgbm.num_leaves.*'high': 16.*'high': 32"):
        _tune(tiny_world, out, other, trials=5)
    result = CliRunner().invoke(app, ["tune", "--data", str(tiny_world), "--out", str(out), "--config", str(other)])
    assert result.exit_code == 2 and "another search space" in result.output and "Traceback" not in result.output
    # another study name in the same storage is a new study; here one judged as the model will run: refreshed
    weekly = _config(tmp_path, 'refresh = "weekly"\n' + CONFIG.replace("folds = 2", "folds = 1"), "weekly.toml")
    summary = _tune(tiny_world, out, weekly, trials=1, study_name="weekly")
    assert summary["trials"]["complete"] == 1 and summary["mode"] == "refreshed"
    assert _study(out, "weekly").user_attrs["nmu_objective"]["mode"] == "refreshed"


def test_a_killed_runs_trials_run_again_first(tmp_path: Path) -> None:
    config = config_from_dict({"tune": {"lightgbm": {"num_leaves": [4, 16]}}})
    space = search_space(config)
    storage = open_storage(f"sqlite:///{tmp_path / 'tune.db'}")
    study = load_study("s", storage, study_signature(config, tune_settings(config), space, {"version": "x"}), 0)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = study.ask()
    orphan.set_user_attr("nmu_process", f"{socket.gethostname()}:{dead.stdout.strip()}")
    params = {d.name: d.suggest(orphan) for d in space}
    alive = study.ask()  # a trial of a process that still runs (this one) is left alone
    alive.set_user_attr("nmu_process", f"{socket.gethostname()}:{os.getpid()}")
    assert requeue_orphans(study, storage, lambda line: None) == 1
    states = {t.number: t.state.name for t in study.trials}
    assert states[orphan.number] == "FAIL" and states[alive.number] == "RUNNING"
    rerun = study.ask()  # the queued trial comes first, with the orphan's parameters
    assert {d.name: d.suggest(rerun) for d in space} == params
    # killed again (out of memory, say): marked failed, not queued a third time
    rerun.set_user_attr("nmu_process", f"{socket.gethostname()}:{dead.stdout.strip()}")
    lines: list[str] = []
    assert requeue_orphans(study, storage, lines.append) == 0
    assert study.trials[rerun.number].state.name == "FAIL" and "not queued again" in lines[0]
    assert not [t for t in study.trials if t.state.name == "WAITING"]


def test_unpromising_trials_are_pruned_fold_by_fold(tmp_path: Path) -> None:
    """Trials whose first fold is below the earlier trials' median stop there: their second fold is never fitted."""
    config = config_from_dict({"tune": {"folds": 3, "lightgbm": {"num_leaves": [2, 64]}}})
    space = search_space(config)
    storage = open_storage(f"sqlite:///{tmp_path / 'tune.db'}")
    study = load_study("p", storage, study_signature(config, tune_settings(config), space, {"version": "x"}), 0)
    fitted: list[FoldJob] = []

    def fold(job: FoldJob) -> pd.DataFrame:  # a fold's per-era scores: more leaves, better (no fit needed)
        fitted.append(job)
        leaves = dict(job.params)["lightgbm.num_leaves"]
        eras = [f"{job.fold * 10 + i:04d}" for i in range(5)]
        return pd.DataFrame({"corr": np.full(5, leaves / 1000), "bmc": np.nan, "feature_exposure": 0.1},
                            index=pd.Index(eras, name="era"))

    train = [f"{i:04d}" for i in range(100)]
    run_trials(study, space, tune_settings(config), 12, None, InProcess(), fold, lambda line: None, train)
    trials = study.trials
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert len(trials) == 12 and pruned
    for t in pruned:  # stopped after fold 1 or 2, below the median of the trials before it at that fold
        step = max(t.intermediate_values)
        assert step < 3 and len([j for j in fitted if j.trial == t.number]) == step
        earlier = [o.intermediate_values[step] for o in trials if o.number < t.number and o.state.name == "COMPLETE"]
        assert t.intermediate_values[step] < np.median(earlier)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert all(t.value == pytest.approx(t.params["lightgbm.num_leaves"] / 1000) for t in complete)


def _fake_study(tmp_path: Path, name: str):
    config = config_from_dict({"tune": {"folds": 2, "lightgbm": {"num_leaves": [2, 64]}}})
    space = search_space(config)
    storage = open_storage(f"sqlite:///{tmp_path / 'tune.db'}")
    return load_study(name, storage, study_signature(config, tune_settings(config), space, {"version": "x"}), 0), \
        space, tune_settings(config)


def _scores(job: FoldJob) -> pd.DataFrame:
    eras = [f"{job.fold * 10 + i:04d}" for i in range(3)]
    return pd.DataFrame({"corr": 0.01, "bmc": np.nan, "feature_exposure": 0.1}, index=pd.Index(eras, name="era"))


def test_the_timeout_starts_no_new_trial(tmp_path: Path) -> None:
    study, space, settings = _fake_study(tmp_path, "t")

    def slow(job: FoldJob) -> pd.DataFrame:
        time.sleep(0.1)
        return _scores(job)

    timing = run_trials(study, space, settings, 50, 0.25, InProcess(), slow, lambda line: None,
                        [f"{i:04d}" for i in range(100)])
    assert 1 <= timing["started"] < 5
    assert all(t.state.name == "COMPLETE" for t in study.trials)  # the trial in flight ran to its end


def test_an_interrupted_runs_trial_in_flight_runs_again_first(tmp_path: Path) -> None:
    study, space, settings = _fake_study(tmp_path, "i")

    def interrupted(job: FoldJob) -> pd.DataFrame:
        if job.trial == 1 and job.fold == 2:
            raise KeyboardInterrupt
        return _scores(job)

    with pytest.raises(KeyboardInterrupt):
        run_trials(study, space, settings, 5, None, InProcess(), interrupted, lambda line: None,
                   [f"{i:04d}" for i in range(100)])
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "WAITING"]
    rerun = study.ask()
    assert {d.name: d.suggest(rerun) for d in space} == study.trials[1].params


def test_an_interrupted_default_trial_stays_the_default(tmp_path: Path) -> None:
    """Ctrl-C during the default config's trial: its re-run carries the default's mark (never pruned, reported as
    the default), and the report names the completed re-run, not the stopped trial."""
    study, space, settings = _fake_study(tmp_path, "d")
    config = config_from_dict({"tune": {"folds": 2, "lightgbm": {"num_leaves": [2, 64]}}})
    assert enqueue_default(study, config, space, lambda line: None)

    def interrupted(job: FoldJob) -> pd.DataFrame:
        if job.trial == 0 and job.fold == 2:
            raise KeyboardInterrupt
        return _scores(job)

    train = [f"{i:04d}" for i in range(100)]
    with pytest.raises(KeyboardInterrupt):
        run_trials(study, space, settings, 3, None, InProcess(), interrupted, lambda line: None, train)
    assert [t.state.name for t in study.trials] == ["FAIL", "WAITING"]
    assert not enqueue_default(study, config, space, lambda line: None)  # queued once: the re-run is the default
    run_trials(study, space, settings, 3, None, InProcess(), _scores, lambda line: None, train)
    rerun = default_trial(study)
    assert rerun.number == 1 and rerun.state.name == "COMPLETE" and rerun.user_attrs["nmu_rerun_of"] == 0
    assert rerun.params == study.trials[0].params


def test_a_trial_whose_folds_score_no_era_fails_alone(tmp_path: Path) -> None:
    """A trial whose predictions cannot be scored on any era (say min_data_in_leaf above the fold's rows: constant
    predictions) fails with a sentence, and the study goes on."""
    study, space, settings = _fake_study(tmp_path, "e")
    lines: list[str] = []

    def empty_for_trial_1(job: FoldJob) -> pd.DataFrame:
        return _scores(job).iloc[:0] if job.trial == 1 else _scores(job)

    run_trials(study, space, settings, 3, None, InProcess(), empty_for_trial_1, lines.append,
               [f"{i:04d}" for i in range(100)])
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert any("trial 1 failed in fold 1: no test era could be scored" in line for line in lines)


def test_an_error_of_nmu_re_runs_its_trial_once_not_for_ever(tmp_path: Path) -> None:
    """An error that stops the run (not a trial's own failure) queues the trials in flight again, once: the next
    resume that meets it again does not queue them a third time, so a study can always finish."""
    study, space, settings = _fake_study(tmp_path, "r")
    train = [f"{i:04d}" for i in range(100)]

    def broken(job: FoldJob) -> pd.DataFrame:
        raise RuntimeError("a bug")

    for _ in range(2):
        with pytest.raises(RuntimeError):
            run_trials(study, space, settings, 2, None, InProcess(), broken, lambda line: None, train)
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]
    assert study.trials[1].user_attrs["nmu_rerun_of"] == 0
    run_trials(study, space, settings, 2, None, InProcess(), _scores, lambda line: None, train)
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL", "COMPLETE", "COMPLETE"]


def test_a_resumed_study_draws_new_points(tmp_path: Path) -> None:
    """Each process makes its own sampler: seeded as the run before, it would draw that run's start-up points
    again. It is seeded with the seed plus the trials the study holds."""
    config = config_from_dict({"tune": {"folds": 2, "lightgbm": {"learning_rate": {"low": 0.01, "high": 0.1}}}})
    space, settings = search_space(config), tune_settings(config)
    signature = study_signature(config, settings, space, {"version": "x"})
    storage = open_storage(f"sqlite:///{tmp_path / 'tune.db'}")
    train = [f"{i:04d}" for i in range(100)]
    for total in (2, 4):  # two runs, as two `nmu tune` commands would load the study
        study = load_study("n", storage, signature, 0)
        run_trials(study, space, settings, total, None, InProcess(), _scores, lambda line: None, train)
    values = [t.params["lightgbm.learning_rate"] for t in study.trials]
    assert len(values) == 4 and len(set(values)) == 4, values


def test_a_database_that_is_not_optunas_is_refused_untouched(tiny_world: Path, tmp_path: Path) -> None:
    import sqlite3

    other = tmp_path / "mlruns.db"
    with sqlite3.connect(other) as db:
        db.execute("create table experiments (id integer)")
        db.execute("create table alembic_version (version_num text)")
    result = CliRunner().invoke(app, ["tune", "--data", str(tiny_world), "--out", str(tmp_path / "out"),
                                      "--storage", f"sqlite:///{other}", "--config", str(_config(tmp_path))])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "is not an Optuna storage (its tables: alembic_version, experiments)" in " ".join(result.output.split())
    with sqlite3.connect(other) as db:
        assert sorted(r[0] for r in db.execute("select name from sqlite_master where type='table'")) == [
            "alembic_version", "experiments"]


def test_too_many_folds_name_the_setting(tiny_world: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, CONFIG.replace("folds = 2", "folds = 100"))
    with pytest.raises(NmuError, match=r"config.toml: `tune.folds` = 100 needs at least 101 training eras, found 36"):
        _tune(tiny_world, tmp_path / "out", config, trials=1)


def test_the_default_space_follows_the_config() -> None:
    names = [d.name for d in search_space(TrainConfig())]
    assert {"lightgbm.learning_rate", "lightgbm.num_leaves", "components.residualize_proportion",
            "components.timing_window", "components.interaction_threshold"} <= set(names)
    no_timing = [d.name for d in search_space(config_from_dict({"components": {"timing": False}}))]
    assert "components.timing_window" not in no_timing and "components.residualize_proportion" in no_timing
    ensemble = config_from_dict({"ensemble": {"targets": ["target", "target_jasper_20"]}})
    assert "ensemble.weights.target_jasper_20" in [d.name for d in search_space(ensemble)]
    tuned = apply_params(ensemble, {"ensemble.weights.target_jasper_20": 0.25})
    assert tuned.ensemble["weights"] == [1.0, 0.25]


def test_a_tuned_lightgbm_name_replaces_its_alias() -> None:
    config = config_from_dict({"lightgbm": {"colsample_bytree": 0.1, "n_estimators": 50}})
    tuned = apply_params(config, {"lightgbm.feature_fraction": 0.3})
    assert tuned.lightgbm == {"n_estimators": 50, "feature_fraction": 0.3}
    assert config.lightgbm == {"colsample_bytree": 0.1, "n_estimators": 50}  # the given config is left as it was


def test_the_doc_examples_are_valid_search_spaces() -> None:
    page = Path(__file__).resolve().parents[1] / "docs" / "tuning.md"
    import re

    from training.config import tomllib

    blocks = [b for b in re.findall(r"```toml\n(.*?)```", page.read_text(), flags=re.S) if "[tune" in b]
    assert blocks
    for block in blocks:
        config = config_from_dict(tomllib.loads(block), source="docs/tuning.md")
        tune_settings(config)
        assert search_space(config)


@pytest.mark.parametrize("text, phrase", [
    ("[tune.lightgbm]\nlerning_rate = [0.01, 0.1]\n",
     "`lightgbm.lerning_rate` is not a LightGBM parameter (did you mean `learning_rate`?)"),
    ("[tune.components]\ntiming_windw = [4, 20]\n",
     "`components.timing_windw` is not a NumeraiModel setting (did you mean `timing_window`?)"),
    ("[tune.lightgbm]\nnum_leaves = [64, 8]\n", "`tune.lightgbm.num_leaves` is an empty range: low 64 must be below high 8"),
    ("[tune.components]\ntiming_staleness = []\n", "`tune.components.timing_staleness` has an empty list of choices"),
    ("[tune.components]\nresidualize_proportion = [0.5, 2.0]\n", "residualize_proportion"),
    ("[tune.lightgbm]\nlearning_rate = {low = 0, high = 0.1, log = true}\n", "a log-scale range needs low > 0"),
    ("[tune]\nmetric = \"mmc\"\n", "`tune.metric` must be one of corr, sharpe, bmc; got 'mmc'"),
    ("[tune]\nfold = 3\n", "`tune.fold` is not a [tune] setting"),
    ("[tune.ensemble]\nweights = [0.0, 1.0]\n", "needs [ensemble] targets with more than one target"),
    ("[components]\ntiming = false\n[tune.components]\ntiming_window = [4, 26]\n",
     "`tune.components.timing_window` tunes the timing component, which the config switches off"),
    ("[tune.components]\ninteraction_threshold = {low = 3.5, high = 6.0, step = 0.7}\n",
     "`step` 0.7 does not divide the range 3.5..6.0"),
])
def test_bad_tune_tables_are_one_sentence(tiny_world: Path, tmp_path: Path, text: str, phrase: str) -> None:
    config = _config(tmp_path, text)
    result = CliRunner().invoke(app, ["tune", "--data", str(tiny_world), "--out", str(tmp_path / "out"),
                                      "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert phrase in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_refused_data_makes_no_study_so_the_corrected_run_goes_on(tiny_world: Path, tmp_path: Path) -> None:
    """Data the study cannot use is refused before the study is made: no directory is left, and the rerun on the
    right data is not refused as "another search space" (the study had been signed with the refused data)."""
    out = tmp_path / "out" / "tune"
    refused = CliRunner().invoke(app, ["tune", "--data", str(tmp_path / "nodata"), "--out", str(out), "--trials", "1",
                                       "--config", str(_config(tmp_path))])
    assert refused.exit_code == 2 and "Traceback" not in refused.output, refused.output
    assert not (tmp_path / "out").exists()
    elsewhere = tmp_path / "studies.db"  # a storage of the user's that this run would have made: not left either
    refused = CliRunner().invoke(app, ["tune", "--data", str(tmp_path / "nodata"), "--out", str(out), "--trials", "1",
                                       "--storage", f"sqlite:///{elsewhere}", "--config", str(_config(tmp_path))])
    assert refused.exit_code == 2 and not elsewhere.exists() and not (tmp_path / "out").exists(), refused.output
    result = CliRunner().invoke(app, ["tune", "--data", str(tiny_world), "--out", str(out), "--trials", "1",
                                      "--config", str(_config(tmp_path))])
    assert result.exit_code == 0, result.output


def test_a_storage_that_cannot_be_opened_is_one_sentence(tiny_world: Path, tmp_path: Path) -> None:
    for storage, phrase in ((f"sqlite:///{tmp_path}/no/such/dir/tune.db", "cannot be opened"),
                            ("tune.db", "is not a storage URL"), ("nosuchdb://host/x", "cannot be opened")):
        result = CliRunner().invoke(app, ["tune", "--data", str(tiny_world), "--out", str(tmp_path / "out" / "tune"),
                                          "--storage", storage, "--config", str(_config(tmp_path))])
        assert result.exit_code == 2, result.output
        assert phrase in " ".join(result.output.split()) and "Traceback" not in result.output, result.output
        assert not (tmp_path / "out").exists()  # the directories made for the study are gone with it


@pytest.mark.slow
def test_trials_run_in_parallel_on_local_workers(tiny_world: Path, tmp_path: Path) -> None:
    """--scheduler local:2: two folds at once, one per worker process, each fit with its worker's share of the cores;
    the study ends with the trials asked for and the same files."""
    pytest.importorskip("distributed")
    config = _config(tmp_path)
    summary = _tune(tiny_world, tmp_path / "out", config, trials=4, scheduler="local:2")
    assert summary["this_run"]["slots"] == 2
    assert summary["trials"]["complete"] + summary["trials"]["pruned"] == 4
    assert (tmp_path / "out" / "best_config.toml").is_file()
    assert dataclasses.asdict(load_config(tmp_path / "out" / "best_config.toml"))["compute"].get("scheduler") is None


def test_the_bmc_objective_is_the_folds_mean_bmc(tiny_world: Path, tmp_path: Path) -> None:
    """metric = "bmc", end to end: each complete trial's value is the mean BMC (against the train benchmark) of the
    per-era scores of its folds, refitted here fold by fold; not the corr, which the folds also score."""
    import numerai_tools.scoring as nt  # noqa: PLC0415 - a test dependency

    text = CONFIG.replace("folds = 2", "folds = 2\nmetric = \"bmc\"")
    summary = _tune(tiny_world, tmp_path / "out", _config(tmp_path, text), trials=3)
    assert summary["metric"] == "bmc"
    config = load_config(_config(tmp_path, text))
    ds = load_dataset(tiny_world, "synthetic", config, Silent())
    settings = tune_settings(config)
    complete = [t for t in _study(tmp_path / "out").trials if t.state.name == "COMPLETE"]
    fold_eras = expanding_window_folds(ds.split.train, 2, config.resolved_embargo)
    assert complete
    for trial in complete:
        folds = [score_fold(FoldJob(trial.number, k, tuple(sorted(trial.params.items()))), ds, config, settings,
                            config.compute) for k in (1, 2)]
        scores = pd.concat(folds)
        assert scores["bmc"].notna().all() and list(scores.index) == [e for f in fold_eras for e in f.validation]
        assert trial.value == pytest.approx(scores["bmc"].mean(), abs=1e-12)
        assert trial.value != pytest.approx(scores["corr"].mean(), abs=1e-6)
    # one era's BMC, recomputed from the model's predictions with numerai-tools: the column is BMC, not a proxy
    best = apply_params(config, summary["best_params"])
    fold = expanding_window_folds(ds.split.train, 2, best.resolved_embargo)[0]
    fit_rows = ds.train.loc[ds.train["era"].isin(fold.train)]
    era_rows = ds.train.loc[ds.train["era"] == fold.validation[0]]
    model = make_variant(build_model(best, ds.groups), tuned_variant(best), best)
    model = fit_model(model, fit_rows, ds, Silent(), "check", benchmark_for(fit_rows, ds.train_benchmark),
                      config.compute)
    bench = benchmark_for(era_rows, ds.train_benchmark)
    preds = pd.DataFrame({"p": model.predict(ds.X(era_rows), benchmark=bench)}, index=era_rows.index)
    expected = nt.correlation_contribution(preds, bench[ds.benchmark_column], era_rows[ds.target]).iloc[0]
    got = score_fold(FoldJob(summary["best_trial"], 1, tuple(sorted(summary["best_params"].items()))), ds, config,
                     settings, config.compute)
    assert got.loc[fold.validation[0], "bmc"] == pytest.approx(expected, abs=1e-9)
