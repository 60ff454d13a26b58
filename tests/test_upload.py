"""`nmu upload` with the real numerapi client against a loopback Numerai API (tests/fake_numerai.py)."""

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
from tests.fake_numerai import FakeNumerai, fake_numerai  # noqa: F401  (fixture)
from training.cli import app
from training.numerai_api import KeysRejected, apply_api_url
from training.upload import docker_image_name, read_dotenv, upload_command
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
    """The fake API with the user's keys in the environment, fast PUT backoff, and a cwd without .env."""
    monkeypatch.setenv("NUMERAI_PUBLIC_ID", fake_numerai.public_id)
    monkeypatch.setenv("NUMERAI_SECRET_KEY", fake_numerai.secret_key)
    monkeypatch.setattr(upload_mod, "PUT_BACKOFF_SECONDS", 0.01)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return fake_numerai


def test_upload_success(server: FakeNumerai, pkl: Path, capsys: pytest.CaptureFixture[str]) -> None:
    upload_id = upload_command(pkl, "my_model")
    assert list(server.puts.values()) == [pkl.read_bytes()]
    [created] = server.uploads
    assert created["id"] == upload_id
    assert created["modelId"] == server.models["my_model"]
    assert created["dockerImageId"] == server.docker_images[BUILD_IMAGE]
    assert created["dataVersionId"] == server.data_versions["v5.3"]  # the version the manifest records
    assert created["tournament"] == 8 and created["stored"]
    assert created["filename"].endswith("/model.pkl")
    assert upload_id in capsys.readouterr().out
    record = read_manifest(pkl)["upload"]
    assert record["id"] == upload_id and record["model"] == "my_model" and record["time"]
    assert record["sha256"] == file_sha256(pkl) and record["docker_image"] == BUILD_IMAGE
    token = f"Token {server.public_id}${server.secret_key}"
    assert all(c["authorization"] == token for c in server.graphql)
    assert server.fields_called() == ["account", "computePickleDockerImages", "computePickleDataVersions",
                                      "computePickleUploadAuth", "createComputePickleUpload"]


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
    upload_id = upload_command(pkl, "my_model")
    assert server.put_attempts == 3
    assert list(server.puts.values()) == [pkl.read_bytes()]
    assert server.uploads[0]["id"] == upload_id


def test_put_4xx_is_not_retried(server: FakeNumerai, pkl: Path) -> None:
    server.put_always_status = 403
    with pytest.raises(NmuError, match=r"HTTP 403 after 1 attempt"):
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
    with pytest.raises(NmuError, match=r"no Numerai Classic model named 'nope'; your models: my_model, other_model\.") as info:
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
    ok = runner.invoke(app, ["upload", str(pkl), "--model", "my_model"])
    assert ok.exit_code == 0, ok.output
    assert server.uploads[0]["id"] in ok.output
    server.put_always_status = 500
    failed = runner.invoke(app, ["upload", str(pkl), "--model", "my_model"])
    assert failed.exit_code == 2 and "step 2/3" in failed.output and "Traceback" not in failed.output
    monkeypatch.setenv("NUMERAI_SECRET_KEY", "another-secret-777")
    rejected = runner.invoke(app, ["upload", str(pkl), "--model", "my_model"])
    assert rejected.exit_code == 2 and "rejected the API keys" in rejected.output
    for text in (ok.output, failed.output, rejected.output, caplog.text):
        assert server.secret_key not in text and "another-secret-777" not in text
