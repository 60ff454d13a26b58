"""`nmu status` with the real numerapi client (3.x or the runtime's 2.20.8) against a loopback Numerai API."""

from __future__ import annotations

import logging
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numerapi.base_api
import pytest
from typer.testing import CliRunner

from tests.fake_numerai import SEGFAULT, FakeNumerai, fake_numerai, iso, pickle_record  # noqa: F401  (fixture)
from training.cli import app
from training.numerai_api import KeysRejected
from training.status import pickle_status, status_command, status_lines
from validation.artifacts import file_sha256, update_manifest
from validation.errors import NmuError

NOW = datetime.now(timezone.utc).replace(microsecond=0)
OPENED = NOW - timedelta(hours=3)


def shown(model: str, **kwargs) -> tuple[dict, str]:
    """What `status_command` found and the text `nmu status` shows for it."""
    status = status_command(model, **kwargs)
    return status, "\n".join(status_lines(status))


def score_rows(newest: int = 1233, count: int = 6) -> list[dict]:
    """Rows for the fake: three metrics scored on days 1 and 2 of each round; older rounds resolved."""
    rows = []
    for number in range(newest - count + 1, newest + 1):
        for day in (1, 2):
            for name, value in (("corr20v2", 0.01 * day), ("mmc", -0.001 * day), ("fnc_v4", 0.5)):
                rows.append({"round": number, "displayName": name, "value": value + number / 1e5, "day": day,
                             "resolved": number <= newest - 3})
    return rows


@pytest.fixture
def server(fake_numerai: FakeNumerai, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeNumerai:
    """The fake API with the user's keys in the environment, round 1234 open for 3 hours, and a cwd without .env."""
    monkeypatch.setenv("NUMERAI_PUBLIC_ID", fake_numerai.public_id)
    monkeypatch.setenv("NUMERAI_SECRET_KEY", fake_numerai.secret_key)
    fake_numerai.round_number = 1234
    fake_numerai.round_open_time = iso(OPENED)
    fake_numerai.submissions["my_model"] = [
        {"id": "s1", "filename": "live_predictions.csv", "insertedAt": iso(OPENED - timedelta(days=1, minutes=-7))},
        {"id": "s2", "filename": "live_predictions.csv", "insertedAt": iso(OPENED + timedelta(minutes=7))},
    ]
    fake_numerai.scores["my_model"] = score_rows()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return fake_numerai


@pytest.fixture
def pkl(server: FakeNumerai) -> Path:
    """artifacts/model.pkl (the default path) with a manifest as `nmu train` + `nmu upload` leave it."""
    path = Path("artifacts") / "model.pkl"
    path.parent.mkdir()
    path.write_bytes(b"a pickle" * 100)
    sha = file_sha256(path)
    update_manifest(path, pickle={"file": "model.pkl", "sha256": sha}, as_of_era="1180",
                    exported=(NOW - timedelta(days=23)).isoformat(timespec="seconds"),
                    upload={"id": "upload-1", "model": "my_model", "model_id": server.models["my_model"],
                            "time": (NOW - timedelta(days=20)).isoformat(), "docker_image": "Python 3.11",
                            "data_version": "v5.3", "sha256": sha})
    return path


def test_submitted_this_round(server: FakeNumerai, pkl: Path) -> None:
    status, out = shown("my_model")
    assert status["round"] == 1234 and status["round_open_time"] == OPENED
    assert status["submitted"] is True and status["submission_time"] == OPENED + timedelta(minutes=7)
    assert "round 1234: opened" in out
    assert f"submitted for round 1234 at {(OPENED + timedelta(minutes=7)):%Y-%m-%d %H:%M} UTC (7 min after it opened)" in out
    # the latest 4 rounds, newest first, corr-like metrics only, each at its latest day
    assert [entry["round"] for entry in status["scores"]] == [1233, 1232, 1231, 1230]
    assert status["scores"][0]["scores"] == {"corr20v2": pytest.approx(0.02 + 0.01233), "mmc": pytest.approx(-0.002 + 0.01233)}
    assert [entry["resolved"] for entry in status["scores"]] == [False, False, False, True]
    assert "round 1233  corr20v2 +0.0323  mmc +0.0103  pending" in out and "fnc_v4" not in out
    assert status["data_version"] == "v5.3" and status["docker_image"] == "Python 3.11"
    assert status["sha256"] == file_sha256(pkl) and status["as_of_era"] == "1180"
    assert status["weeks_since_refresh"] == 3
    assert f"sha256 {file_sha256(pkl)[:12]}…" in out and "as of era 1180" in out
    assert "about 3 weeks since its timing history was last extended" in out
    assert "data v5.3, image Python 3.11" in out and "warning" not in out
    fields = server.fields_called()
    assert fields[:3] == ["account", "rounds", "submissions"]
    assert fields[3] in ("submissionScores", "v2RoundModelPerformances")  # numerapi 3.x / 2.x
    token = f"Token {server.public_id}${server.secret_key}"
    assert [c["authorization"] for c in server.graphql if c["field"] in ("account", "submissions")] == [token, token]
    assert server.graphql[2]["variables"] == {"modelId": server.models["my_model"]}


def test_not_submitted_is_a_clear_line_not_an_error(server: FakeNumerai, pkl: Path) -> None:
    server.submissions["my_model"] = server.submissions["my_model"][:1]  # only yesterday's
    result = CliRunner().invoke(app, ["status", "--model", "my_model"])
    assert result.exit_code == 0, result.output
    yesterday = OPENED - timedelta(days=1, minutes=-7)
    assert f"NOT submitted for round 1234 yet; latest submission {yesterday:%Y-%m-%d %H:%M} UTC" in result.output
    status = status_command("my_model")
    assert status["submitted"] is False and status["submission_time"] is None
    assert status["latest_submission_time"] == yesterday


def test_a_model_that_never_submitted(server: FakeNumerai, pkl: Path) -> None:
    status, out = shown("other_model")
    assert status["submitted"] is False and status["scores"] == []
    assert "NOT submitted for round 1234 yet; this model has no submissions at all" in out
    assert "scores: none yet" in out
    # the local upload record is my_model's: it does not describe other_model
    assert status["data_version"] is None and status["docker_image"] is None
    assert "upload record of artifacts/model.pkl is for model my_model, not other_model" in out


def test_no_round_open(server: FakeNumerai, pkl: Path) -> None:
    server.round_number = None  # Numerai answers `rounds(number: 0)` with an error between rounds
    status, out = shown("my_model")
    assert status["round"] is None and status["submitted"] is False
    assert "no round is open right now; latest submission" in out


def test_old_numerapi_path_and_its_deprecation_is_silent(server: FakeNumerai, pkl: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without `submission_scores` (numerapi 2.x) the scores come from round_model_performances_v2, the same."""
    expected = status_command("my_model")["scores"]
    monkeypatch.delattr(numerapi.base_api.Api, "submission_scores", raising=False)
    server.graphql.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        status = status_command("my_model")
    assert "v2RoundModelPerformances" in server.fields_called()
    assert status["scores"] == expected


def test_scores_unavailable_do_not_hide_the_submission(server: FakeNumerai, pkl: Path) -> None:
    server.fail_fields = {"submissionScores": "Field removed", "v2RoundModelPerformances": "Field removed"}
    status, out = shown("my_model")
    assert status["submitted"] is True and status["scores"] == []
    assert "scores: not available (" in out and "Field removed" in out


def test_no_manifest_is_one_line_and_the_api_part_still_shows(server: FakeNumerai) -> None:
    status, out = shown("my_model")
    assert status["submitted"] is True and status["sha256"] is None and status["as_of_era"] is None
    assert [line for line in out.splitlines() if "manifest" in line] == [
        "no manifest for artifacts/model.pkl (artifacts/manifest.json): its sha256, as-of era, data version and image "
        "are unknown here (pass --pickle PATH for another pickle)"]
    assert "submitted for round 1234" in out


def test_pickle_option_and_a_changed_local_pickle(server: FakeNumerai, pkl: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere" / "refreshed.pkl"
    other.parent.mkdir()
    other.write_bytes(b"a refreshed pickle")
    update_manifest(other, pickle={"sha256": file_sha256(other)}, as_of_era="1185",
                    exported=(NOW - timedelta(days=30)).isoformat(),
                    refreshed={"time": (NOW - timedelta(days=8)).isoformat(), "as_of_era": "1185"},
                    upload={"id": "upload-0", "model": "my_model", "time": (NOW - timedelta(days=29)).isoformat(),
                            "docker_image": "Python 3.12", "data_version": "v5.2", "sha256": "0" * 64})
    status, out = shown("my_model", pickle_path=other)
    assert status["as_of_era"] == "1185" and status["weeks_since_refresh"] == 1  # the refresh is newer
    assert status["docker_image"] == "Python 3.12" and status["uploaded_sha256"] == "0" * 64
    [warning] = [line for line in out.splitlines() if line.startswith("warning")]
    assert "the local file is not what runs on Numerai" in warning and str(other) in warning


def test_pickle_status_without_an_upload_record(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(b"x")
    update_manifest(path, pickle={"sha256": "recorded"}, exported=(NOW - timedelta(days=6)).isoformat())
    info = pickle_status(path, "my_model", NOW)
    assert info["manifest"] and not info["uploaded"] and info["weeks_since_refresh"] == 0
    assert info["sha256"] == file_sha256(path)  # the file as it is now, not as recorded
    path.unlink()
    assert pickle_status(path, "my_model", NOW)["sha256"] == "recorded"


def test_broken_manifest_is_reported_before_any_network_call(server: FakeNumerai) -> None:
    Path("artifacts").mkdir()
    Path("artifacts/manifest.json").write_text("[1, 2]")
    with pytest.raises(NmuError, match=r"holds a JSON list"):
        status_command("my_model")
    assert server.graphql == []


@pytest.mark.parametrize("status", [200, 401])
def test_bad_keys_are_one_line_exit_2(server: FakeNumerai, pkl: Path, monkeypatch: pytest.MonkeyPatch,
                                      caplog: pytest.LogCaptureFixture, status: int) -> None:
    caplog.set_level(logging.DEBUG)
    server.bad_auth_status = status
    monkeypatch.setenv("NUMERAI_SECRET_KEY", "wrong-secret-value-123")
    with pytest.raises(KeysRejected):
        status_command("my_model")
    result = CliRunner().invoke(app, ["status", "--model", "my_model"])
    assert result.exit_code == 2
    assert "rejected the API keys" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    for text in (result.output, caplog.text):
        assert "wrong-secret-value-123" not in text and server.secret_key not in text
    assert set(server.fields_called()) == {"account"}


def test_unknown_model_is_one_line_listing_the_models(server: FakeNumerai, pkl: Path) -> None:
    result = CliRunner().invoke(app, ["status", "--model", "nope"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [
        "error: You have no Numerai Classic model named 'nope'; your models: my_model, other_model "
        "(`nmu upload --create-model` makes one)."]
    assert server.fields_called() == ["account"]


@pytest.mark.parametrize("root, answer", [
    ("submissions", "oops"),  # a list of submissions expected
    ("account", {"models": [{"id": "m1", "name": "my_model", "tournament": 8,
                             "computePickleUpload": {"id": "p1", "triggers": [{"id": "t", "statuses": "oops"}]}}]}),
])
def test_an_answer_of_another_shape_is_one_sentence(server: FakeNumerai, pkl: Path, root: str, answer) -> None:
    """A server answer that parses but is not shaped as Numerai's (a text where a list was) is one sentence naming
    the step, not an AttributeError from deep in the reading."""
    server.malformed_fields[root] = answer
    result = CliRunner().invoke(app, ["status", "--model", "my_model"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "unexpected answer (AttributeError" in " ".join(result.output.split()), result.output


def test_cli_status_never_shows_the_secret(server: FakeNumerai, pkl: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    result = CliRunner().invoke(app, ["status", "--model", "my_model"])
    assert result.exit_code == 0, result.output
    assert "submitted for round 1234" in result.output and "scores, latest 4 rounds:" in result.output
    for text in (result.output, caplog.text):
        assert server.secret_key not in text


# ---- Numerai's side: the assigned pickle, its runs, diagnostics --------------------------------------------------
def _trigger(server: FakeNumerai, statuses: list[tuple[str, str | None]], logs: list[str], hours_ago: float) -> dict:
    trigger_id = f"trigger-{len(server.trigger_logs)}"
    server.trigger_logs[trigger_id] = logs
    when = iso(NOW - timedelta(hours=hours_ago))
    return {"id": trigger_id, "status": statuses[-1][0], "insertedAt": when,
            "statuses": [{"status": st, "description": d, "insertedAt": when} for st, d in statuses]}


def test_a_failed_run_of_the_assigned_pickle_is_shown_with_numerais_reason(server: FakeNumerai, pkl: Path) -> None:
    sha = file_sha256(pkl)
    # the storage key's folder (as the stand-in's upload auth gives it) is not shown
    record = pickle_record("upload-1", f"0f3c9a/model-{sha[:12]}-Xy12.pkl", server.models["my_model"])
    record["triggerStatus"] = "failed"
    record["triggers"] = [
        _trigger(server, [("pending", None), ("failed", "No currently open rounds!")], ["no round"], 50),
        _trigger(server, [("pending", None), ("running", None), ("failed", SEGFAULT)],
                 ["Loading model.pkl", "Fatal Python error: Segmentation fault"], 2)]
    server.assign_existing("my_model", record)
    server.submissions["my_model"] = server.submissions["my_model"][:1]  # nothing this round
    result = CliRunner().invoke(app, ["status", "--model", "my_model"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"Numerai runs pickle model-{sha[:12]}-Xy12.pkl (id upload-1), image Python 3.11, data v5.3" in out
    assert "validation validated, latest run failed, diagnostics none" in out
    assert "it is the local artifacts/model.pkl" in out
    assert "pending → failed: No currently open rounds! (not a failure: the pickle ran, no round was open)" in out
    assert f"pending → running → failed: {SEGFAULT}" in out
    assert "last lines of the failed run's log:\n    Loading model.pkl\n    Fatal Python error: Segmentation fault" in out
    [next_line] = [line for line in out.splitlines() if line.startswith("next:")]
    assert next_line.startswith(f"next: the latest run of the assigned pickle failed (failed: {SEGFAULT}); likely "
                                "cause: the pickle's Python or numpy does not match the image")
    assert "`nmu upload artifacts/model.pkl --model my_model`" in next_line


def test_diagnostics_beside_the_local_validation_and_a_pickle_that_is_not_local(server: FakeNumerai, pkl: Path) -> None:
    record = pickle_record("someone-else", "model-ffffffffffff.pkl", server.models["my_model"])
    record.update(diagnosticsId="diag-1", diagnosticsStatus="succeeded")
    server.assign_existing("my_model", record)
    server.diagnostics_records["diag-1"] = {"id": "diag-1", "status": "succeeded", "erasAcceptedCount": 120,
                                            "validationCorrMean": 0.0211, "validationCorrSharpe": 1.12,
                                            "validationMmcMean": 0.004, "validationBmcMean": None}
    (pkl.parent / "metrics.json").write_text(
        '{"ship": {"shipped": "full"}, "models": {"full": {"corr_mean": 0.0339, "corr_sharpe": 1.5, "bmc_mean": 0.002}}}')
    status, out = shown("my_model")
    assert status["assigned_is_local"] is False and status["assigned_is_last_upload"] is False
    assert "it is NOT the local artifacts/model.pkl (nor the pickle its manifest last uploaded, upload-1)" in out
    assert ("Numerai's diagnostics (succeeded, 120 eras): corr mean +0.0211, corr sharpe +1.1200, mmc mean +0.0040"
            in out)
    assert "local validation (metrics.json, full): corr mean +0.0339, corr sharpe +1.5000, bmc mean +0.0020" in out
    assert out.splitlines()[-1] == ("next: Numerai runs pickle someone-else, not the local artifacts/model.pkl: "
                                    "`nmu upload artifacts/model.pkl --model my_model` if the local one should run")


def test_no_pickle_assigned_says_what_to_do(server: FakeNumerai, pkl: Path) -> None:
    status, out = shown("my_model")
    assert status["numerai_pickle"] is None
    assert "Numerai runs no pickle for this model (none is assigned)" in out
    assert out.splitlines()[-1].startswith("next: no pickle is assigned to my_model, so Numerai runs nothing for it")


def test_a_failed_last_upload_is_the_next_step(server: FakeNumerai, pkl: Path) -> None:
    server.assign_existing("my_model", pickle_record("old-pickle", "model-000000000000.pkl", server.models["my_model"]))
    update_manifest(pkl, upload={"id": "upload-9", "model": "my_model", "sha256": file_sha256(pkl), "outcome": "failed"})
    status, out = shown("my_model")
    assert "(pickle id upload-9, failed)" in out
    assert out.splitlines()[-1].startswith("next: the last upload of artifacts/model.pkl (pickle upload-9) ended failed, "
                                           "so my_model still runs pickle old-pickle")
