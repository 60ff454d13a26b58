"""`nmu train --plan` (training.plan): the plan's rows, columns and fits are what the pipeline then does, it fits
nothing, and it refuses a run whose estimated peak exceeds the memory available."""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import training.experiment as experiment
from training.cli import app
from training.config import load_config
from training.pipeline import train_command
from training.plan import (
    MEMORY_ENV,
    PROBE_ENV,
    DataShape,
    available_memory,
    duration,
    load_scale_model,
    make_plan,
    parse_bytes,
)
from validation.errors import NmuError

FAST = """
[lightgbm]
n_estimators = 5
learning_rate = 0.1
"""


@pytest.fixture(autouse=True)
def _no_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """The timed probe only where a test asks for it (it costs about a second)."""
    monkeypatch.setenv(PROBE_ENV, "0")
    monkeypatch.delenv(MEMORY_ENV, raising=False)


def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(extra + "\n" + FAST)
    return path


@pytest.mark.parametrize("extra, flags", [
    ("", {}),
    # the ablation's variants and two folds end to end: 18 s of the default lane's 238 s (2026-12-05), so slow
    pytest.param('era_step = 3\nfeature_set = "small"', {"ablation": True, "cv": 2}, marks=pytest.mark.slow),
])
def test_the_plan_is_what_the_pipeline_does(small_world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            extra: str, flags: dict) -> None:
    config_path = _config(tmp_path, extra)
    config = load_config(config_path)
    config = experiment.dataclasses.replace(config, ablation=flags.get("ablation", False), cv=flags.get("cv", 0))
    plan = make_plan(config, small_world)

    fitted: list[tuple[str, int, int]] = []
    loaded = {}
    real_fit, real_load = experiment.fit_model, experiment.load_dataset

    def counting_fit(model, frame, ds, reporter, title, *args, **kwargs):
        fitted.append((title, len(frame), len(ds.features)))
        return real_fit(model, frame, ds, reporter, title, *args, **kwargs)

    def counting_load(*args, **kwargs):
        loaded["ds"] = ds = real_load(*args, **kwargs)
        return ds

    monkeypatch.setattr(experiment, "fit_model", counting_fit)
    monkeypatch.setattr("training.pipeline.load_dataset", counting_load)
    train_command(data=small_world, out=tmp_path / "out", config_path=config_path, **flags)
    ds = loaded["ds"]

    assert plan.n_fits == len(fitted)
    assert Counter(f.rows for f in plan.fits) == Counter(rows for _, rows, _ in fitted)
    assert {columns for _, _, columns in fitted} == {plan.features} == {len(ds.features)}
    assert plan.train_rows == len(ds.train) and plan.train_eras == ds.train["era"].nunique()
    assert plan.validation_rows == len(ds.validation)
    assert plan.scored_eras == len(ds.split.validation)
    assert plan.refit_rows == max(rows for _, rows, _ in fitted)


def test_an_ensemble_counts_each_member(small_world: Path) -> None:
    config = load_config(None)
    config.ensemble.update(targets=["target", "target_jasper_20"], seeds=2)
    plan = make_plan(config, small_world)
    assert plan.members == 4
    assert plan.n_fits == 4 * 3  # baseline, full and the refit, four members each


def test_plan_fits_nothing_and_prints_the_shape(small_world: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fit(*args, **kwargs):
        raise AssertionError("--plan fitted a model")

    monkeypatch.setattr(experiment, "fit_model", no_fit)
    monkeypatch.setattr("model.booster.train_booster", no_fit)
    start = time.perf_counter()
    result = CliRunner().invoke(app, ["train", "--plan", "--data", str(small_world), "--out", str(tmp_path / "out"),
                                      "--config", str(_config(tmp_path)), "--cv", "2"])
    assert result.exit_code == 0, result.output
    assert time.perf_counter() - start < 10
    assert not (tmp_path / "out").exists()
    text = result.output
    for words in ("features (all)", "rows in", "fits: 7 of 5 trees", "fold 2 full", "memory: peak", "time: ~",
                  "uncalibrated"):
        assert words in text, text


def test_the_probe_calibrates_quickly(small_world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PROBE_ENV, "1")
    start = time.perf_counter()
    plan = make_plan(load_config(None), small_world)
    assert time.perf_counter() - start < 10  # about 1 s on the development machine, alone
    assert plan.speed > 0 and "probe" in plan.speed_note


def test_a_run_too_large_for_the_memory_is_refused(small_world: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MEMORY_ENV, "50M")
    for argv in (["train", "--plan"], ["train"]):
        result = CliRunner().invoke(app, [*argv, "--data", str(small_world), "--out", str(tmp_path / "out"),
                                          "--config", str(_config(tmp_path))])
        assert result.exit_code == 2, result.output
        error = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(error) == 1 and "needs an estimated" in error[0] and MEMORY_ENV in error[0], result.output
    assert not (tmp_path / "out").exists()


def test_the_refusal_names_a_change_that_fits(small_world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from training.plan import check_memory
    from validation.errors import NmuError

    config = load_config(None)
    shape = DataShape(small_world, config.target)
    plan = make_plan(config, small_world, shape)
    smaller = make_plan(experiment.dataclasses.replace(config, era_step=4), small_world, shape)
    assert smaller.peak_bytes < plan.peak_bytes
    monkeypatch.setenv(MEMORY_ENV, str(int((plan.peak_bytes + smaller.peak_bytes) / 2)))
    plan = make_plan(config, small_world, shape)
    with pytest.raises(NmuError, match=r"feature_set = \"(medium|small)\"|era_step = \d+"):
        check_memory(plan, config, shape)


def test_plain_train_starts_with_the_estimate(small_world: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--data", str(small_world), "--out", str(tmp_path / "out"),
                                      "--config", str(_config(tmp_path)), "--no-refit", "--no-baseline"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith("plan: 1 fit(s) of 5 trees"), result.output


def test_memory_limits_parse() -> None:
    assert parse_bytes("16G") == 16 * 2**30 and parse_bytes("900M") == 900 * 2**20
    assert parse_bytes("1024") == 1024 and parse_bytes("1.5 GB") == int(1.5 * 2**30)
    with pytest.raises(ValueError):
        parse_bytes("lots")
    assert available_memory()[0] > 0
    assert duration(30) == "30 s" and duration(600) == "10 min" and duration(3 * 3600 + 600) == "3 h 10 min"


def test_the_curves_are_shipped() -> None:
    model = load_scale_model()
    assert model.fit_seconds(675_000, 780, 2000) > model.fit_seconds(675_000, 780, 1000)
    assert model.fit_peak_bytes(2_700_000, 2748) > model.fit_peak_bytes(675_000, 780) > 0
    assert model.predict_era_seconds(2000, 4) > model.predict_era_seconds(2000, 1) > 0


def test_the_linear_layer_is_counted_where_it_runs(small_world: Path, tmp_path: Path) -> None:
    """The linear layer's cost (its era centring and Gram matrix) is in the estimate of the fits that run it: full's
    and the refit's, not the baseline's, `no_linear`'s or any fit of a config that switches it off."""
    config = experiment.dataclasses.replace(load_config(None), ablation=True)
    linear = {f.title: f.linear for f in make_plan(config, small_world).fits}
    assert linear["full"] and linear["refit of the shipped variant"] and linear["no_timing"]
    assert not linear["baseline"] and not linear["no_linear"]
    off = load_config(_config(tmp_path, "[components]\nlinear = false"))
    assert not any(f.linear for f in make_plan(off, small_world).fits)
    model = load_scale_model()
    layer = {features: model.fit_seconds(675_000, features, 2000, True, linear=True)
             - model.fit_seconds(675_000, features, 2000, True) for features in (780, 2748)}
    # its era centring grows with rows x features, its Gram matrix with rows x features squared
    per_fit = model.data["linear_layer_seconds"]["per_fit"]
    assert 0 < layer[780] and layer[2748] - per_fit >= 0.999 * 2748 / 780 * (layer[780] - per_fit), layer


def test_the_plan_refuses_what_training_would_refuse(small_world: Path, tmp_path: Path) -> None:
    """--plan reads only the eras and the targets, but it says no where `nmu train` would: a target the data lacks,
    a main target with holes in the train eras (it counted those rows as resolved and planned a run that fails)."""
    config = load_config(None)
    config.ensemble.update(targets=["target", "target_nope_20"])
    with pytest.raises(NmuError, match=r"train.parquet has no column target_nope_20; check the target names"):
        make_plan(config, small_world)
    world = tmp_path / "holes"
    shutil.copytree(small_world, world)
    train = pd.read_parquet(world / "train.parquet")
    eras = sorted(train["era"].unique())
    train.loc[train["era"] == eras[5], "target"] = np.nan
    train.to_parquet(world / "train.parquet")
    with pytest.raises(NmuError, match=rf"rows without a value of target 'target' in 1 era\(s\) \({eras[5]}-{eras[5]}\)"):
        make_plan(load_config(None), world)
    every_second = load_config(None)  # `nmu train` loads every era_step-th era and checks those: so does the plan
    every_second.era_step = 2
    assert make_plan(every_second, world, probe=False).n_fits > 0


def test_local_workers_count_in_the_memory_estimate(small_world: Path) -> None:
    """local:N starts N worker processes here, each loading the data: the plan counts N + 1 processes."""
    one = make_plan(load_config(None), small_world, probe=False)
    config = load_config(None)
    config.compute["scheduler"] = "local:2"
    two = make_plan(config, small_world, probe=False)
    assert two.peak_bytes == pytest.approx(3 * one.peak_bytes)
    assert any("2 worker processes on this machine" in line for line in two.lines())


@pytest.mark.slow  # a whole `nmu train` in a child process at a shape where the frames and the steps count (20 s)
def test_the_memory_estimate_holds_for_a_small_world(tmp_path: Path) -> None:
    """The estimate is within its stated +-20 % of the peak `nmu train` reaches (a child's ru_maxrss, read by a small
    wrapper process so that pytest's own pages are not counted). Here it counted a full predict chunk (480 MB) where
    the scored rows hold 2.3M cells: 940 MB against 597 MB measured."""
    import subprocess
    import sys

    from training.synthetic import SyntheticConfig, write_synthetic_world

    world = write_synthetic_world(tmp_path / "world", SyntheticConfig.default(eras=120, stocks=1000, features=60))
    config = tmp_path / "config.toml"
    config.write_text("[lightgbm]\nn_estimators = 200\n")
    plan = make_plan(load_config(config), world)
    nmu = Path(sys.executable).with_name("nmu")
    wrapper = ("import resource, subprocess, sys; proc = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "print(proc.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024); "
               "print(proc.stderr[-2000:], file=sys.stderr)")
    run = subprocess.run([sys.executable, "-c", wrapper, str(nmu), "train", "--data", str(world), "--out",
                          str(tmp_path / "out"), "--config", str(config)], capture_output=True, text=True, timeout=600)
    returncode, peak = (int(v) for v in run.stdout.split())
    assert returncode == 0, run.stderr
    assert 0.8 * peak <= plan.peak_bytes <= 1.2 * peak, (plan.peak_bytes / 2**20, peak / 2**20)
