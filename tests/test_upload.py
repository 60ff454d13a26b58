"""`nmu upload` with the real numerapi client against a loopback Numerai API (tests/fake_numerai.py): the whole
lifecycle (upload, Numerai's validation, assignment, verification), and every way it fails."""

from __future__ import annotations

import json
import logging
import platform
import sys
from pathlib import Path

import numerapi
import pytest
from typer.testing import CliRunner

import training.upload as upload_mod
from tests.fake_numerai import SEGFAULT, FakeNumerai, fake_numerai, pickle_record  # noqa: F401  (fixture)
from training.cli import app
from training.numerai_api import KeysRejected, apply_api_url
from training.numerai_pickles import AssignedUnverified
from training.upload import NotAssigned, UploadResult, docker_image_name, read_dotenv, upload_command, upload_filename
from validation.artifacts import file_sha256, read_manifest, update_manifest
from validation.errors import NmuError

BUILD_IMAGE = f"Python {sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture
def pkl(tmp_path: Path) -> Path:
    """A small 'pickle' with a manifest saying this Python built it and `nmu check` passed on these bytes."""
    path = tmp_path / "artifacts" / "model.pkl"
    path.parent.mkdir()
    path.write_bytes(bytes(range(256)) * 300 + b"end")
    update_manifest(path, python=platform.python_version(), data={"source": "synthetic", "version": "v5.3"},
                    check={"passed": True, "sha256": file_sha256(path)})
    return path


@pytest.fixture
def server(fake_numerai: FakeNumerai, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeNumerai:
    """The fake API with the user's keys in the environment, fast polling, and a cwd without .env."""
    monkeypatch.setenv("NUMERAI_PUBLIC_ID", fake_numerai.public_id)
    monkeypatch.setenv("NUMERAI_SECRET_KEY", fake_numerai.secret_key)
    monkeypatch.setattr(upload_mod, "POLL_INTERVAL", 0.01)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return fake_numerai


def test_upload_success(server: FakeNumerai, pkl: Path) -> None:
    """Upload, wait for Numerai's validation (pending, then validated), assign, verify by reading the models."""
    old = server.assign_existing("my_model", pickle_record("old-pickle", "model-000000000000.pkl", server.models["my_model"]))
    server.validation_polls = 2
    result = upload_command(pkl, "my_model")
    assert isinstance(result, UploadResult) and result.outcome == "assigned"
    assert list(server.puts.values()) == [pkl.read_bytes()]
    [created] = server.uploads
    assert created["id"] == result.pickle_id
    assert created["modelId"] == server.models["my_model"]
    assert created["dockerImageId"] == server.docker_images[BUILD_IMAGE]
    assert created["dataVersionId"] == server.data_versions["v5.3"]  # the version the manifest records
    assert created["tournament"] == 8 and created["stored"]
    sha = file_sha256(pkl)
    assert created["filename"].endswith(f"/model-{sha[:12]}.pkl") and result.filename == upload_filename(pkl, sha)
    # the model runs the new pickle now, and only after Numerai validated it
    assert server.assigned["my_model"] == result.pickle_id and old["assignedModelSlots"] == []
    assert server.assignments == [{"modelId": server.models["my_model"], "pickleId": result.pickle_id}]
    assert result.validation_status == "validated" and result.previous_pickle_id == "old-pickle"
    record = read_manifest(pkl)["upload"]
    assert record["id"] == result.pickle_id and record["model"] == "my_model" and record["time"]
    assert record["sha256"] == sha and record["docker_image"] == BUILD_IMAGE
    assert record["outcome"] == "assigned" and record["validation_status"] == "validated" and record["assigned_time"]
    assert [a["outcome"] for a in read_manifest(pkl)["uploads"]] == ["assigned"]
    token = f"Token {server.public_id}${server.secret_key}"
    assert all(c["authorization"] == token for c in server.graphql)
    assert server.fields_called() == ["account", "computePickleDockerImages", "computePickleDataVersions",
                                      "computePickleUploadAuth", "createComputePickleUpload",
                                      "computePickles", "computePickles", "computePickles",
                                      "assignPickleToModel", "account"]


def test_docker_image_name() -> None:
    assert docker_image_name("3.11.7") == "Python 3.11"
    assert docker_image_name("3.10") == "Python 3.10"
    with pytest.raises(NmuError, match="not a version"):
        docker_image_name("cpython")


def test_put_500_fails_loudly_and_registers_nothing(server: FakeNumerai, pkl: Path) -> None:
    server.put_always_status = 500
    with pytest.raises(NmuError, match=r"step 2/3 \(PUT.*HTTP 500 after 4 attempt") as info:
        upload_command(pkl, "my_model")
    assert "X-Amz-Signature" not in str(info.value)
    assert server.put_attempts == 4  # first try + 3 retries
    assert server.uploads == [] and "createComputePickleUpload" not in server.fields_called()
    assert "upload" not in read_manifest(pkl)


def test_numerapi_model_upload_would_have_reported_success(server: FakeNumerai, pkl: Path) -> None:
    """Why upload does the steps itself: numerapi's model_upload ignores the PUT's status."""
    server.put_always_status = 500
    apply_api_url()
    api = numerapi.NumerAPI(server.public_id, server.secret_key, show_progress_bars=False)
    upload_id = api.model_upload(str(pkl), model_id=server.models["my_model"])
    assert upload_id and server.uploads[0]["stored"] is False and server.puts == {}


def test_transient_put_500_is_retried(server: FakeNumerai, pkl: Path) -> None:
    server.put_failures = 2
    result = upload_command(pkl, "my_model")
    assert server.put_attempts == 3
    assert list(server.puts.values()) == [pkl.read_bytes()]
    assert server.uploads[0]["id"] == result.pickle_id == server.assigned["my_model"]


def test_put_4xx_is_not_retried(server: FakeNumerai, pkl: Path) -> None:
    server.put_always_status = 403
    with pytest.raises(NmuError, match=r"HTTP 403; nothing was registered"):
        upload_command(pkl, "my_model")
    assert server.put_attempts == 1 and server.uploads == []


@pytest.mark.parametrize("status", [200, 401])
def test_bad_keys_are_rejected(server: FakeNumerai, pkl: Path, monkeypatch: pytest.MonkeyPatch, status: int) -> None:
    """Bad keys answered as a GraphQL error (HTTP 200) or as HTTP 401: the same one sentence."""
    server.bad_auth_status = status
    monkeypatch.setenv("NUMERAI_SECRET_KEY", "wrong-secret-value-123")
    with pytest.raises(KeysRejected, match="rejected the API keys") as info:
        upload_command(pkl, "my_model")
    assert "wrong-secret-value-123" not in str(info.value)
    assert server.fields_called() == ["account"] and server.put_attempts == 0


def test_unknown_model_lists_the_names(server: FakeNumerai, pkl: Path) -> None:
    with pytest.raises(NmuError, match=r"no Numerai Classic model named 'nope'; your models: my_model, other_model "
                                       r"\(pass --create-model to make it\)\.") as info:
        upload_command(pkl, "nope")
    assert "a_signals_model" not in str(info.value)
    assert server.put_attempts == 0


def test_unchecked_pickle_is_refused(server: FakeNumerai, pkl: Path) -> None:
    update_manifest(pkl, check=None)
    with pytest.raises(NmuError, match=r"no runtime check.*nmu check"):
        upload_command(pkl, "my_model")
    update_manifest(pkl, check={"passed": False, "sha256": file_sha256(pkl), "reason": "returns NaN"})
    with pytest.raises(NmuError, match=r"failed `nmu check` \(returns NaN\)"):
        upload_command(pkl, "my_model")
    assert server.graphql == []  # refused before any network call
    assert upload_command(pkl, "my_model", skip_check=True)
    assert list(server.puts.values()) == [pkl.read_bytes()]


def test_pickle_changed_after_check_is_refused(server: FakeNumerai, pkl: Path) -> None:
    with open(pkl, "ab") as fh:
        fh.write(b"changed")
    with pytest.raises(NmuError, match=r"changed since it passed `nmu check`"):
        upload_command(pkl, "my_model")
    assert server.graphql == []


def test_missing_pickle(server: FakeNumerai, tmp_path: Path) -> None:
    with pytest.raises(NmuError, match=r"does not exist"):
        upload_command(tmp_path / "none.pkl", "my_model", skip_check=True)
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(NmuError, match=r"does not end in \.pkl"):
        upload_command(tmp_path / "model.bin", "my_model", skip_check=True)
    assert server.graphql == []


def test_missing_keys_is_one_sentence(server: FakeNumerai, pkl: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NUMERAI_PUBLIC_ID")
    monkeypatch.delenv("NUMERAI_SECRET_KEY")
    with pytest.raises(NmuError) as info:
        upload_command(pkl, "my_model")
    message = str(info.value)
    assert "NUMERAI_PUBLIC_ID and NUMERAI_SECRET_KEY" in message and ".env" in message
    assert message.count(". ") == 0 and message.endswith(".")
    assert server.graphql == []


def test_keys_from_dotenv(server: FakeNumerai, pkl: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NUMERAI_PUBLIC_ID")
    monkeypatch.delenv("NUMERAI_SECRET_KEY")
    Path(".env").write_text(f"# numerai\nexport NUMERAI_PUBLIC_ID={server.public_id}\n"
                            f"NUMERAI_SECRET_KEY=\"{server.secret_key}\"\nOTHER=1 # comment\n")
    assert upload_command(pkl, "my_model")
    token = f"Token {server.public_id}${server.secret_key}"
    assert server.graphql[0]["authorization"] == token


def test_read_dotenv(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("A=1\n\n# c\nexport B = 'two words'\nC=x # trailing\nD=\"q#1\"\nnot a pair\n")
    assert read_dotenv(env) == {"A": "1", "B": "two words", "C": "x", "D": "q#1"}
    assert read_dotenv(tmp_path / "missing") == {}


def test_docker_image_never_defaults(server: FakeNumerai, pkl: Path) -> None:
    manifest = read_manifest(pkl)
    del manifest["python"]
    pkl.with_name("manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(NmuError, match=r"does not say which Python built model\.pkl"):
        upload_command(pkl, "my_model")
    assert server.graphql == []


def test_another_image_than_the_building_python_is_refused(server: FakeNumerai, pkl: Path) -> None:
    """Code pickled by value loads only in the Python minor version that built it: no other image is accepted."""
    other = "Python 3.12" if BUILD_IMAGE != "Python 3.12" else "Python 3.13"
    with pytest.raises(NmuError, match=rf"can run only in the image '{BUILD_IMAGE}', not '{other}'"):
        upload_command(pkl, "my_model", docker_image=other)
    upload_command(pkl, "my_model", docker_image=BUILD_IMAGE)
    assert server.uploads[0]["dockerImageId"] == server.docker_images[BUILD_IMAGE]


def test_a_python_without_a_runtime_image_is_never_uploaded(server: FakeNumerai, pkl: Path) -> None:
    update_manifest(pkl, python="3.14.0")
    with pytest.raises(NmuError, match=r"built with Python 3\.14\.0, which no Numerai model-upload image runs.*3\.10, 3\.11"):
        upload_command(pkl, "my_model")
    assert server.graphql == [] and server.put_attempts == 0


def test_data_version_defaults_to_the_manifest_and_can_be_pinned(server: FakeNumerai, pkl: Path) -> None:
    upload_command(pkl, "my_model", data_version="v5.2")
    assert server.uploads[-1]["dataVersionId"] == server.data_versions["v5.2"]
    update_manifest(pkl, data={"source": "somewhere", "version": "unknown"})
    with pytest.raises(NmuError, match=r"does not record the data version.*--data-version"):
        upload_command(pkl, "my_model")
    assert len(server.uploads) == 1


def test_unknown_data_version(server: FakeNumerai, pkl: Path) -> None:
    with pytest.raises(NmuError, match=r"no model-upload data version 'v9'; available: v4\.3, v5\.0, v5\.1, v5\.2, v5\.3"):
        upload_command(pkl, "my_model", data_version="v9")


def test_cli_upload_never_shows_the_secret(server: FakeNumerai, pkl: Path, caplog: pytest.LogCaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Success and failure through `nmu upload`, with numerapi logging at DEBUG: the secret appears nowhere."""
    caplog.set_level(logging.DEBUG)
    runner = CliRunner()
    ok = runner.invoke(app, ["upload", str(pkl), "--model", "my_model", "--poll-interval", "0"])
    assert ok.exit_code == 0, ok.output
    assert server.uploads[0]["id"] in ok.output and "assigned and verified" in ok.output
    server.put_always_status = 500
    failed = runner.invoke(app, ["upload", str(pkl), "--model", "my_model", "--force"])
    assert failed.exit_code == 2 and "step 2/3" in failed.output and "Traceback" not in failed.output
    monkeypatch.setenv("NUMERAI_SECRET_KEY", "another-secret-777")
    rejected = runner.invoke(app, ["upload", str(pkl), "--model", "my_model"])
    assert rejected.exit_code == 2 and "rejected the API keys" in rejected.output
    for text in (ok.output, failed.output, rejected.output, caplog.text):
        assert server.secret_key not in text and "another-secret-777" not in text


# ---- Numerai's side: validation, assignment, images --------------------------------------------------------------
def _old_pickle(server: FakeNumerai) -> dict:
    return server.assign_existing("my_model", pickle_record("old-pickle", "model-000000000000.pkl",
                                                            server.models["my_model"]))


def test_a_failed_validation_assigns_nothing_and_shows_numerais_reason(server: FakeNumerai, pkl: Path) -> None:
    _old_pickle(server)
    server.validation_outcome = "failed"
    result = CliRunner().invoke(app, ["upload", str(pkl), "--model", "my_model", "--poll-interval", "0"])
    assert result.exit_code == 1, result.output  # non-zero, and not the exit code of a bad input (2)
    out = result.output
    assert "validation of pickle" in out and "failed; nothing was assigned: model my_model keeps pickle old-pickle" in out
    assert SEGFAULT in out and "pending → running → failed: " + SEGFAULT in out      # the trigger's statuses
    assert "Fatal Python error: Segmentation fault" in out                            # the run's last log lines
    assert "likely cause: the pickle's Python or numpy does not match the image" in out
    assert "Traceback" not in out
    assert server.assigned["my_model"] == "old-pickle" and server.assignments == []
    record = read_manifest(pkl)["upload"]
    assert record["outcome"] == "failed" and record["validation_status"] == "failed" and record["reason"].endswith(SEGFAULT)


def test_a_validation_that_never_finishes_times_out_and_a_rerun_goes_on_waiting(server: FakeNumerai, pkl: Path) -> None:
    _old_pickle(server)
    server.validation_outcome = "never"
    with pytest.raises(NotAssigned, match=r"had not validated pickle .* after 0 s \(status pending\); nothing was "
                                          r"assigned: model my_model keeps pickle old-pickle") as info:
        upload_command(pkl, "my_model", timeout=0.2, poll_interval=0.05)
    assert info.value.exit_code == 1
    assert server.assigned["my_model"] == "old-pickle" and server.assignments == []
    [pending] = server.uploads
    assert read_manifest(pkl)["upload"]["outcome"] == "timed out"
    # Numerai finishes later: the same command picks the pending pickle up, uploads nothing twice, and assigns it
    server.validation_outcome = "validated"
    result = upload_command(pkl, "my_model")
    assert result.outcome == "assigned" and result.resumed and result.pickle_id == pending["id"]
    assert len(server.uploads) == 1 and server.put_attempts == 1
    assert server.assigned["my_model"] == pending["id"]
    assert [a["outcome"] for a in read_manifest(pkl)["uploads"]] == ["assigned"]  # one attempt, its last outcome


def test_no_wait_says_the_pickle_is_not_assigned(server: FakeNumerai, pkl: Path) -> None:
    _old_pickle(server)
    out = CliRunner().invoke(app, ["upload", str(pkl), "--model", "my_model", "--no-wait"])
    assert out.exit_code == 0, out.output
    assert "NOT assigned" in out.output and "still runs pickle old-pickle" in out.output
    assert server.assigned["my_model"] == "old-pickle" and "computePickles" not in server.fields_called()
    assert read_manifest(pkl)["upload"]["outcome"] == "not assigned"
    again = upload_command(pkl, "my_model")  # waits for the validation of the same upload, then assigns it
    assert again.outcome == "assigned" and again.resumed and len(server.uploads) == 1


def test_a_refused_assignment_says_the_model_keeps_its_pickle(server: FakeNumerai, pkl: Path) -> None:
    """Numerai validates the pickle but answers the assignment with an error: the user reads which pickle the model
    still runs (exit 1, the input was fine), the manifest records it, and a second `nmu upload` assigns the same
    upload without uploading again."""
    _old_pickle(server)
    server.fail_fields["assignPickleToModel"] = "Model is locked for the current round"
    out = CliRunner().invoke(app, ["upload", str(pkl), "--model", "my_model"])
    assert out.exit_code == 1, out.output
    assert "Model is locked" in out.output and "model my_model keeps pickle old-pickle" in out.output
    assert "again to assign it" in out.output and "Traceback" not in out.output
    assert server.assigned["my_model"] == "old-pickle"
    record = read_manifest(pkl)["upload"]
    assert record["outcome"] == "not assigned" and "Model is locked" in record["reason"]
    del server.fail_fields["assignPickleToModel"]
    again = upload_command(pkl, "my_model")
    assert again.outcome == "assigned" and again.resumed and len(server.uploads) == 1
    assert server.assigned["my_model"] == again.pickle_id


def test_a_lost_answer_to_the_assignment_is_settled_by_reading_the_model_back(server: FakeNumerai, pkl: Path) -> None:
    """The connection drops before Numerai's answer to assignPickleToModel arrives, though the assignment was made:
    reading the models back shows the new pickle, so the upload succeeded, and it is not reported as refused."""
    _old_pickle(server)
    server.lost_replies.add("assignPickleToModel")
    result = upload_command(pkl, "my_model")
    assert result.outcome == "assigned" and server.assigned["my_model"] == result.pickle_id
    assert read_manifest(pkl)["upload"]["outcome"] == "assigned"


def test_a_lost_answer_and_the_old_pickle_read_back_is_a_refusal(server: FakeNumerai, pkl: Path) -> None:
    """No answer, and the model read back still runs its earlier pickle: nothing changed, which the user is told."""
    _old_pickle(server)
    server.lost_replies.add("assignPickleToModel")
    server.fail_fields["assignPickleToModel"] = "Model is locked for the current round"  # not carried out
    with pytest.raises(NotAssigned, match=r"answer to the assignment .* was lost .* runs pickle old-pickle as before.*"
                                          r"keeps pickle old-pickle"):
        upload_command(pkl, "my_model")
    assert server.assigned["my_model"] == "old-pickle"


def test_a_lost_answer_and_no_reading_back_keeps_the_pickle_as_maybe_assigned(server: FakeNumerai, pkl: Path) -> None:
    _old_pickle(server)
    server.lost_replies.add("assignPickleToModel")
    server.fail_fields_after_assignment["account"] = "Service unavailable"
    with pytest.raises(AssignedUnverified, match=r"was lost .* reading the models back to verify it failed .* may run"):
        upload_command(pkl, "my_model")
    assert read_manifest(pkl)["upload"]["outcome"] == "assigned, not verified"


def test_the_assigned_bytes_are_not_uploaded_again_unless_forced(server: FakeNumerai, pkl: Path) -> None:
    first = upload_command(pkl, "my_model")
    calls = len(server.graphql)
    again = CliRunner().invoke(app, ["upload", str(pkl), "--model", "my_model"])
    assert again.exit_code == 0 and "already runs these bytes" in again.output and "nothing uploaded" in again.output
    assert server.fields_called()[calls:] == ["account"] and len(server.uploads) == 1
    forced = upload_command(pkl, "my_model", force=True)
    assert forced.outcome == "assigned" and forced.pickle_id != first.pickle_id and len(server.uploads) == 2
    assert forced.previous_pickle_id == first.pickle_id


def test_no_currently_open_rounds_is_not_a_failure(server: FakeNumerai, pkl: Path) -> None:
    server.no_open_round = True
    result = upload_command(pkl, "my_model")
    assert result.outcome == "assigned" and server.assigned["my_model"] == result.pickle_id
    trigger = server.pickles[result.pickle_id]["triggers"][-1]
    assert trigger["status"] == "failed" and trigger["statuses"][-1]["description"] == "No currently open rounds!"


def test_images_numerai_does_not_serve_or_marks_experimental(server: FakeNumerai, pkl: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="training")
    server.experimental_images = {BUILD_IMAGE}
    upload_command(pkl, "my_model")
    assert f"Numerai marks the image {BUILD_IMAGE} as experimental; its default is Python 3.12" in caplog.text
    del server.docker_images[BUILD_IMAGE]
    with pytest.raises(NmuError, match=rf"Numerai does not serve the image '{BUILD_IMAGE}'.*its default is Python 3\.12"):
        upload_command(pkl, "my_model", force=True)
    assert len(server.uploads) == 1 and server.put_attempts == 1


def test_create_model_makes_the_slot_before_uploading(server: FakeNumerai, pkl: Path) -> None:
    result = upload_command(pkl, "brand_new", create_model=True)
    assert result.created_model and server.models["brand_new"] == result.model_id
    assert server.fields_called()[:2] == ["account", "addModel"]
    assert server.assigned["brand_new"] == result.pickle_id


@pytest.mark.parametrize("command, option", [("upload", "--timeout"), ("upload", "--poll-interval"),
                                             ("refresh", "--upload-timeout")])
def test_the_cli_states_the_defaults_upload_command_uses(command: str, option: str) -> None:
    """The options default to None (upload_command's own default applies); their help states that default."""
    import typer.main
    from typer.testing import CliRunner

    params = {o: p for p in typer.main.get_command(app).commands[command].params for o in p.opts}
    assert params[option].default is None
    # the help as printed: Rich reads an unescaped "[default: ...]" as markup and drops it
    shown = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "300", "NO_COLOR": "1"}).output
    shown = " ".join(shown.replace("│", " ").split())
    if option == "--poll-interval" and command == "upload":
        assert f"[default: {upload_mod.POLL_INTERVAL:g}]" in shown, shown
    else:
        assert f"[default: {upload_mod.VALIDATION_TIMEOUT}, {upload_mod.VALIDATION_TIMEOUT // 60} minutes]" in shown, shown
