"""`nmu check`'s record is bound to what was checked and cannot be fooled: written only beside a pickle with a
manifest (or into --record), naming the data's hashes; data problems are reported as such and leave the earlier
record; a pass on heavily filled data carries a warning that `nmu upload` repeats."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.stand_in import fit_baseline
from training.check import FILL_WARN_SHARE, DataProblem, check_command
from training.cli import app
from training.export import export_pickle
from training.upload import check_pickle
from validation.artifacts import file_sha256, read_manifest

pytestmark = pytest.mark.network  # the replica's virtual environment


@pytest.fixture(scope="module")
def checked(small_world, tmp_path_factory):
    """A pickle with a manifest (export_pickle writes one) that passed `nmu check` on the small world."""
    out = tmp_path_factory.mktemp("checked")
    path = out / "model.pkl"
    export_pickle(fit_baseline(small_world), path)
    assert check_command(path, small_world, validation_eras=0).passed is True
    return path


def _data(small_world: Path, tmp_path: Path, live: pd.DataFrame) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(small_world / "live_benchmark_models.parquet", data)
    live.to_parquet(data / "live.parquet")
    return data


def test_an_unknown_pickle_gets_no_record_unless_asked(checked, small_world, tmp_path):
    lone = tmp_path / "lone" / "model.pkl"
    lone.parent.mkdir()
    shutil.copy(checked, lone)  # the same bytes, but no manifest beside it
    result = check_command(lone, small_world, validation_eras=0)
    assert result.passed is True and result.record_path is None
    assert "not recorded" in result.lines()[-1]
    assert list(lone.parent.iterdir()) == [lone]
    record = tmp_path / "elsewhere.json"
    assert check_command(lone, small_world, validation_eras=0, record=record).passed is True
    assert json.loads(record.read_text())["check"]["sha256"] == file_sha256(lone)


@pytest.mark.parametrize("problem", ["empty live file", "half the features missing"])
def test_a_data_problem_is_named_and_keeps_the_earlier_pass(checked, small_world, tmp_path, problem):
    before = read_manifest(checked)["check"]
    live = pd.read_parquet(small_world / "live.parquet")
    features = [c for c in live.columns if c.startswith("feature")]
    broken = live.iloc[0:0] if problem == "empty live file" else live.drop(columns=features[: len(features) // 2 + 1])
    data = _data(small_world, tmp_path, broken)
    with pytest.raises(DataProblem, match="data problem: .*earlier check record was left as it was"):
        check_command(checked, data, validation_eras=0)
    assert read_manifest(checked)["check"] == before
    result = CliRunner().invoke(app, ["check", str(checked), "--data", str(data), "--validation-eras", "0"])
    assert result.exit_code == 2 and "data problem" in result.output and "Traceback" not in result.output
    assert read_manifest(checked)["check"] == before


def test_diagnostics_eras_the_pickle_would_refuse_are_a_data_problem(checked, small_world, tmp_path):
    """More than half the trained features NaN in every validation row: the diagnostics run would fail on the data,
    so it is a data problem (exit 2) that keeps the earlier record, as for the live file (it was recorded as a FAIL)."""
    before = read_manifest(checked)["check"]
    data = tmp_path / "data"
    shutil.copytree(small_world, data)
    validation = pd.read_parquet(data / "validation.parquet")
    features = [str(f) for f in read_manifest(checked)["features"]]
    for name in features[: len(features) // 2 + 1]:
        validation[name] = np.float32("nan")
    validation.to_parquet(data / "validation.parquet")
    with pytest.raises(DataProblem, match=r"data problem: the 5 newest eras of .*validation.parquet holds \d+ of the "
                                          r"pickle's \d+ trained features with numbers"):
        check_command(checked, data, validation_eras=5)
    assert read_manifest(checked)["check"] == before


def test_a_pass_on_filled_data_warns_and_upload_repeats_it(checked, small_world, tmp_path, caplog):
    copy = tmp_path / "pkl" / "model.pkl"
    copy.parent.mkdir()
    shutil.copy(checked, copy)
    shutil.copy(checked.with_name("manifest.json"), copy.with_name("manifest.json"))
    live = pd.read_parquet(small_world / "live.parquet")
    features = [c for c in live.columns if c.startswith("feature")]
    holes = live.copy()
    for c in features[: len(features) // 8]:  # an eighth of the features all NaN: 12.5 % of the cells
        holes[c] = np.nan
    assert check_command(copy, _data(small_world, tmp_path, holes), validation_eras=0).passed is True
    check = read_manifest(copy)["check"]
    assert check["passed"] is True and check["fill_share"] > FILL_WARN_SHARE and "took the neutral value" in check["warning"]
    caplog.clear()
    check_pickle(copy, read_manifest(copy), skip_check=False)
    assert "passed with a caveat" in caplog.text


def test_the_fill_share_reads_a_column_of_text_as_the_pickle_does(small_world, tmp_path):
    """A feature column of text: numbers written as text count as values, anything else as filled (the pickle reads
    it so since model.live's text rule); it had ended `nmu check` in a traceback before the pickle ran."""
    from training.check import live_fill_share

    live = pd.read_parquet(small_world / "live.parquet")
    features = [c for c in live.columns if c.startswith("feature")]
    clean = live.copy()
    clean[features] = clean[features].fillna(2).astype(np.int8)
    text = clean.copy()
    text[features[0]] = clean[features[0]].astype(str).astype(object)
    text.iloc[:3, text.columns.get_loc(features[0])] = "x"
    for frame, name in ((clean, "clean"), (text, "text")):
        frame.to_parquet(tmp_path / f"{name}.parquet")
    assert live_fill_share(tmp_path / "clean.parquet", features) == 0
    assert live_fill_share(tmp_path / "text.parquet", features) == pytest.approx(3 / (len(features) * len(live)))
    # more than half the features with no number in any row: the pickle would refuse, so a data problem (exit 2, the
    # record kept), not the pickle's failed run (it had been recorded as a FAIL)
    words = clean.copy()
    for name in features[: len(features) // 2 + 1]:
        words[name] = None
    words.to_parquet(tmp_path / "words.parquet")
    with pytest.raises(DataProblem, match=rf"holds {len(features) - len(features) // 2 - 1} of the pickle's "
                                          rf"{len(features)} trained features with numbers .* with no number in any row"):
        live_fill_share(tmp_path / "words.parquet", features)


def test_a_manifest_that_is_not_an_object_is_one_line(checked, small_world, tmp_path):
    copy = tmp_path / "model.pkl"
    shutil.copy(checked, copy)
    (tmp_path / "manifest.json").write_text("[1, 2, 3]")
    result = CliRunner().invoke(app, ["check", str(copy), "--data", str(small_world), "--validation-eras", "0"])
    assert result.exit_code == 2 and "not an object" in result.output and "Traceback" not in result.output
