"""`nmu train` end to end on the small synthetic world, and each of its error paths (exit 2, one sentence,
previous artifacts left intact)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from training.cli import app
from validation.evaluation.scoring import SUMMARY_KEYS

# few trees: the test checks the plumbing, not the model's quality (the model's own tests do that)
FAST_CONFIG = """
[lightgbm]
n_estimators = 25
learning_rate = 0.1
"""
OUTPUTS = ("model.pkl", "manifest.json", "metrics.json", "report.html", "per_era_scores.csv",
           "cumulative_corr.png", "per_era_corr.png", "cumulative_bmc.png", "feature_exposure.png",
           "component_contribution.png")


def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / f"config{abs(hash(extra))}.toml"
    top, _, rest = FAST_CONFIG.partition("[lightgbm]")
    path.write_text(extra + "\n" + top + "[lightgbm]" + rest)
    return path


def _train(*args: str) -> CliRunner.invoke:
    return CliRunner().invoke(app, ["train", *args])


def _snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.fixture(scope="module")
def trained(small_world: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    """One successful `nmu train --data <small world> --out OUT` (shared by the tests below)."""
    tmp = tmp_path_factory.mktemp("train")
    out = tmp / "artifacts"
    result = _train("--data", str(small_world), "--out", str(out), "--config", str(_config(tmp)))
    assert result.exit_code == 0, result.output
    return out, tmp, result


def test_train_writes_every_output(trained: tuple[Path, Path, object], small_world: Path) -> None:
    out, _, result = trained
    for name in OUTPUTS:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".artifacts.staging")]
    metrics = json.loads((out / "metrics.json").read_text())
    shipped = metrics["ship"]["shipped"]
    for step in ("Loading data", "Fitting and scoring baseline", "Fitting and scoring full", f"Refitting {shipped}"):
        assert step in result.output
    assert f"shipping {shipped}" in result.output

    assert set(metrics) == {"data", "models", "modes", "ship"}
    assert set(metrics["data"]) == {"train_eras", "validation_eras", "features", "target", "embargo_eras", "mode"}
    assert metrics["data"]["target"] == "target" and metrics["data"]["embargo_eras"] == 4
    assert metrics["data"]["mode"] == "left_alone"  # refresh = "never" by default: judged as a pickle left alone
    assert metrics["models"] == metrics["modes"]["left_alone"] and set(metrics["modes"]) == {"left_alone", "refreshed"}
    ship = metrics["ship"]
    assert shipped in ("baseline", "full") and ship["rule"].startswith("ship the variant with the largest")
    assert set(ship["evidence"]) == {"full"} and {"gain", "t", "se", "n_eras"} <= set(ship["evidence"]["full"])
    choose, report = ship["choose_eras"], ship["report_eras"]
    assert choose[1] < report[0]  # the eras that choose are not the eras whose score is reported
    assert set(ship["report"]) == {"baseline", "full"}
    assert list(metrics["models"]) == ["baseline", "full"]
    for scores in metrics["models"].values():
        assert set(scores) == set(SUMMARY_KEYS)
        assert scores["n_eras"] == metrics["data"]["validation_eras"] > 0
        assert all(isinstance(scores[k], float) and np.isfinite(scores[k]) for k in SUMMARY_KEYS if k != "n_eras")
        assert isinstance(scores["n_eras"], int)

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["pickle"]["size_bytes"] == (out / "model.pkl").stat().st_size
    from validation.artifacts import file_sha256

    assert manifest["pickle"]["sha256"] == file_sha256(out / "model.pkl")
    assert manifest["target"] == "target" and manifest["data"]["source"] == "synthetic"
    assert len(manifest["features"]) == metrics["data"]["features"]
    assert {"numpy", "pandas", "lightgbm"} <= set(manifest["packages"])
    eras = manifest["eras"]
    # the embargo: no scored era within 4 eras of the last training era
    assert all(int(e) - int(eras["train"][-1]) > 4 for e in eras["validation"])
    assert len(eras["validation"]) == metrics["data"]["validation_eras"]
    # refit: train + every validation era with a resolved target
    val = pd.read_parquet(small_world / "validation.parquet", columns=["era", "target"])
    resolved = sorted(val.loc[val["target"].notna(), "era"].unique())
    assert eras["refit"] == sorted(set(eras["train"]) | set(resolved))
    assert manifest["scores"] == metrics["models"]

    per_era = pd.read_csv(out / "per_era_scores.csv", dtype={"era": str})
    assert set(per_era["mode"]) == {"left_alone", "refreshed"}
    per_era = per_era[per_era["mode"] == "left_alone"]
    assert set(per_era["variant"]) == {"baseline", "full"}
    assert sorted(per_era.loc[per_era["variant"] == "full", "era"]) == eras["validation"]
    full = per_era[per_era["variant"] == "full"]
    assert full["corr"].mean() == pytest.approx(metrics["models"]["full"]["corr_mean"])

    assert not (out / "cv_scores.csv").exists()
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5 and "<table" in html and 'src="http' not in html
    assert "The shipped model" in html and "paired t" in html


def test_pickle_predicts_live(trained: tuple[Path, Path, object], small_world: Path) -> None:
    out = trained[0]
    predict = pd.read_pickle(out / "model.pkl")
    live = pd.read_parquet(small_world / "live.parquet")
    bench = pd.read_parquet(small_world / "live_benchmark_models.parquet")
    preds = predict(live, bench)
    assert type(preds) is pd.DataFrame and list(preds.columns) == ["prediction"]
    assert preds.index.equals(live.index) and preds["prediction"].between(0, 1).all() and preds["prediction"].std() > 0


def test_print_config(tmp_path: Path) -> None:
    config = _config(tmp_path, 'target = "target_x_60"')
    result = CliRunner().invoke(app, ["train", "--config", str(config), "--ablation", "--no-refit", "--print-config"])
    assert result.exit_code == 0, result.output
    from training.config import tomllib

    printed = tomllib.loads(result.stdout)
    assert printed["target"] == "target_x_60" and printed["embargo"] == 13
    assert printed["ablation"] is True and printed["refit"] is False and printed["lightgbm"]["n_estimators"] == 25


def _broken_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize(
    "extra, message",
    [
        ('feature_set = "nope"', "nope"),
        ('target = "target_nope_20"', "unknown target 'target_nope_20'"),
        ("embargo = 1000", "embargo of 1000 eras"),
        ("[components]\nwarp_drive = true", "warp_drive"),
        ("colour = 3", "unknown key `colour`"),
    ],
)
def test_user_errors_exit_2_and_keep_artifacts(trained, small_world: Path, extra: str, message: str) -> None:
    out, tmp, _ = trained
    before = _snapshot(out)
    if extra.startswith("[components]"):
        config = tmp / "components.toml"
        config.write_text(FAST_CONFIG + "\n" + extra + "\n")
    else:
        config = _config(tmp, extra)
    result = _train("--data", str(small_world), "--out", str(out), "--config", str(config))
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert _snapshot(out) == before


def test_schema_failure_prints_table(trained, small_world: Path, tmp_path: Path) -> None:
    out, tmp, _ = trained
    before = _snapshot(out)
    world = _broken_copy(small_world, tmp_path / "bad_world")
    train = pd.read_parquet(world / "train.parquet")
    feature = [c for c in train.columns if c.startswith("feature_")][3]
    bad_ids = train.index[[5, 17, 400]]
    train.loc[bad_ids, feature] = 9
    train.to_parquet(world / "train.parquet")
    result = _train("--data", str(world), "--out", str(out), "--config", str(_config(tmp)))
    assert result.exit_code == 2, result.output
    assert "failed validation" in result.output and feature in result.output
    assert "column" in result.output and "check" in result.output  # the failure table's header
    assert bad_ids[0] in result.output or "9" in result.output
    assert "Traceback" not in result.output
    assert _snapshot(out) == before


def test_no_targets(small_world: Path, tmp_path: Path) -> None:
    world = _broken_copy(small_world, tmp_path / "no_targets")
    meta = json.loads((world / "features.json").read_text())
    meta["targets"] = []
    (world / "features.json").write_text(json.dumps(meta))
    result = _train("--data", str(world), "--out", str(tmp_path / "out"), "--config", str(_config(tmp_path)))
    assert result.exit_code == 2 and "lists no targets" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


# every component off: the cheapest fit, for the tests below that exercise the plumbing around fitting
NO_COMPONENTS = ("\n[components]\nclusters = false\ninteractions = false\ntiming = false\nresidualizer = false\n"
                 "linear = false\nstructural = false\n")


def test_cv_folds_respect_the_embargo(small_world: Path, tmp_path: Path) -> None:
    config = tmp_path / "cheap.toml"
    config.write_text(FAST_CONFIG + NO_COMPONENTS)
    out = tmp_path / "out"
    result = _train("--data", str(small_world), "--out", str(out), "--config", str(config), "--cv", "2",
                    "--no-baseline", "--no-refit")
    assert result.exit_code == 0, result.output
    cv = pd.read_csv(out / "cv_scores.csv", dtype=str)
    assert list(cv["fold"]) == ["1", "2"] and set(cv["variant"]) == {"full"}
    assert all(int(s) - int(t) > 4 for s, t in zip(cv["scored_first"], cv["train_last"]))
    assert cv["train_last"].iloc[0] < cv["train_last"].iloc[1]  # expanding window
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["eras"]["refit"] == manifest["eras"]["train"]  # --no-refit ships the train-eras model
    assert "Expanding-window cross-validation" in (out / "report.html").read_text()


def test_failure_while_writing_keeps_previous_artifacts(trained, small_world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that fails after fitting (here: the report cannot be drawn) leaves OUT exactly as it was."""
    out, tmp, _ = trained
    before = _snapshot(out)
    import training.pipeline

    def broken(*args, **kwargs):
        raise RuntimeError("disk full while drawing")

    monkeypatch.setattr(training.pipeline, "render_plots", broken)
    config = tmp / "cheap.toml"
    config.write_text(FAST_CONFIG + NO_COMPONENTS)
    result = _train("--data", str(small_world), "--out", str(out), "--config", str(config), "--no-baseline", "--no-refit")
    assert result.exit_code != 0 and isinstance(result.exception, RuntimeError)
    assert _snapshot(out) == before
    assert not [p for p in out.parent.iterdir() if ".staging-" in p.name]
