"""`nmu data download` against a loopback Numerai API that the real numerapi client talks to."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import numerapi
import numerapi.base_api
import pytest
from typer.testing import CliRunner

from tests.fake_numerai import FakeNumerai, dataset_files, fake_numerai  # noqa: F401  (fixture)
from tests.stand_in import python_of_its_own
from training.cli import app
from training.data import read_data_info
from training.download import REQUIRED_FILES, available_versions, download_data
from training.numerai_api import apply_api_url, make_client
from validation.errors import NmuError


def test_numerapi_itself_talks_to_the_fake_server(fake_numerai: FakeNumerai, tmp_path: Path) -> None:
    """The env override reaches numerapi's module constant; its real queries land on the loopback server."""
    assert apply_api_url() == fake_numerai.url
    assert numerapi.base_api.API_TOURNAMENT_URL == fake_numerai.url
    api = numerapi.NumerAPI(fake_numerai.public_id, fake_numerai.secret_key, show_progress_bars=False)
    assert api.list_datasets() == sorted(fake_numerai.files)
    assert api.get_models() == fake_numerai.models  # the signals model (tournament 11) is filtered by numerapi
    assert "Python 3.11" in api.model_upload_docker_images()
    calls = {c["field"]: c for c in fake_numerai.graphql}
    assert calls["listDatasets"]["authorization"] is None
    assert calls["account"]["authorization"] == f"Token {fake_numerai.public_id}${fake_numerai.secret_key}"
    # numerapi's own downloader follows the URL that the dataset query returned
    path = api.download_dataset("v5.2/features.json", str(tmp_path / "features.json"))
    assert Path(path).read_bytes() == fake_numerai.files["v5.2/features.json"]


def test_download_writes_the_served_bytes(fake_numerai: FakeNumerai, tmp_path: Path) -> None:
    out = tmp_path / "data"
    written = download_data(out, version="v5.2")
    names = [p.name for p in written]
    assert names == [*REQUIRED_FILES, "train_benchmark_models.parquet"]
    for path in written:
        assert path.read_bytes() == fake_numerai.files[f"v5.2/{path.name}"]
    # no temp files, no other version's files; the version is recorded for `nmu train` and `nmu upload`
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, "nmu-data.json"])
    assert read_data_info(out) == {"version": "v5.2", "source": "numerai", "version_from": "nmu-data.json"}
    assert fake_numerai.gets == [f"v5.2/{n}" for n in names]


def test_files_limits_the_download(fake_numerai: FakeNumerai, tmp_path: Path) -> None:
    written = download_data(tmp_path, version="v5.2", files=("features.json", "live.parquet"))
    assert [p.name for p in written] == ["features.json", "live.parquet"]
    assert fake_numerai.gets == ["v5.2/features.json", "v5.2/live.parquet"]
    with pytest.raises(ValueError, match="unknown data file"):
        download_data(tmp_path, version="v5.2", files=("trian.parquet",))


def test_optional_train_benchmark_is_skipped_when_not_listed(fake_numerai: FakeNumerai, tmp_path: Path) -> None:
    fake_numerai.files = dataset_files(train_benchmark=False)
    written = download_data(tmp_path, version="v5.2")
    assert [p.name for p in written] == list(REQUIRED_FILES)
    assert not (tmp_path / "train_benchmark_models.parquet").exists()


def test_other_version(fake_numerai: FakeNumerai, tmp_path: Path) -> None:
    written = download_data(tmp_path, version="v5.3")
    assert (tmp_path / "live.parquet").read_bytes() == fake_numerai.files["v5.3/live.parquet"]
    assert len(written) == 7
    assert read_data_info(tmp_path) == {"version": "v5.3", "source": "numerai", "version_from": "nmu-data.json"}


def test_newest_version_is_the_default_and_said(fake_numerai: FakeNumerai, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """Without --version the newest complete version is taken (v5.10 after v5.9), and the run says which."""
    fake_numerai.files = {**dataset_files("v5.9", extra_version=None), **dataset_files("v5.10", extra_version=None)}
    fake_numerai.files.pop("v5.10/live.parquet")  # incomplete: not a data directory
    caplog.set_level(logging.INFO, logger="training")
    download_data(tmp_path)
    assert (tmp_path / "live.parquet").read_bytes() == fake_numerai.files["v5.9/live.parquet"]
    assert "Data version v5.9: the newest" in caplog.text
    assert read_data_info(tmp_path)["version"] == "v5.9"
    fake_numerai.files = dataset_files()  # v5.3 and v5.2, both complete
    download_data(tmp_path / "b")
    assert (tmp_path / "b" / "train.parquet").read_bytes() == fake_numerai.files["v5.3/train.parquet"]
    assert available_versions(["v5.10/a", "v5.9/a", "v4.3/a"]) == ["v4.3", "v5.9", "v5.10"]


def test_unknown_version_lists_the_available_ones(fake_numerai: FakeNumerai, tmp_path: Path) -> None:
    with pytest.raises(NmuError, match=r"'v9\.9' is not offered.*v5\.2, v5\.3"):
        download_data(tmp_path / "data", version="v9.9")
    assert fake_numerai.gets == []
    assert not (tmp_path / "data").exists()


def test_server_error_midway_leaves_the_previous_file_intact(fake_numerai: FakeNumerai, tmp_path: Path) -> None:
    (tmp_path / "validation.parquet").write_bytes(b"previous validation")
    fake_numerai.file_status["v5.2/validation.parquet"] = 500
    with pytest.raises(NmuError) as info:
        download_data(tmp_path, version="v5.2")
    message = str(info.value)
    assert "v5.2/validation.parquet" in message and "HTTP 500" in message and "every file in" in message
    assert "after 4 attempts" in message and fake_numerai.gets.count("v5.2/validation.parquet") == 4
    assert "X-Amz-Signature" not in message
    # the files that had arrived before it are not put in place either, and no temporary file is left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["validation.parquet"]
    assert (tmp_path / "validation.parquet").read_bytes() == b"previous validation"


def test_a_passing_server_error_or_cut_is_retried(fake_numerai: FakeNumerai, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """An object store's occasional 503, or a connection that breaks once, costs a retry, not the download; each
    attempt asks Numerai for the file's address again (a pre-signed URL may have expired meanwhile)."""
    fake_numerai.file_faults = {"v5.2/train.parquet": [503, "cut"], "v5.2/live.parquet": [502]}
    caplog.set_level(logging.WARNING, logger="training")
    written = download_data(tmp_path, version="v5.2")
    for path in written:
        assert path.read_bytes() == fake_numerai.files[f"v5.2/{path.name}"]
    assert fake_numerai.gets.count("v5.2/train.parquet") == 3 and fake_numerai.gets.count("v5.2/live.parquet") == 2
    asked = [c["variables"]["filename"] for c in fake_numerai.graphql if c["field"] == "dataset"]
    assert asked.count("v5.2/train.parquet") == 3
    retries = [r.getMessage() for r in caplog.records]
    assert any("v5.2/train.parquet failed with HTTP 503" in m and "attempt 2 of 4" in m for m in retries), retries
    assert any("broke after" in m or "ended after" in m for m in retries), retries


def test_an_address_that_cannot_work_is_not_retried(fake_numerai: FakeNumerai, tmp_path: Path) -> None:
    """A file address no retry can mend (here an unknown scheme in Numerai's answer) fails at once."""
    fake_numerai.malformed_fields["dataset"] = f"htp://{fake_numerai.url.split('://', 1)[1]}/files/v5.2/features.json"
    with pytest.raises(NmuError, match=r"features\.json failed: InvalidSchema.*left as it was"):
        download_data(tmp_path, version="v5.2")
    assert [c["variables"]["filename"] for c in fake_numerai.graphql if c["field"] == "dataset"] == ["v5.2/features.json"]


def test_a_client_error_is_not_retried(fake_numerai: FakeNumerai, tmp_path: Path) -> None:
    fake_numerai.file_status["v5.2/live.parquet"] = 403
    with pytest.raises(NmuError, match=r"live\.parquet failed: HTTP 403 .*left as it was"):
        download_data(tmp_path, version="v5.2")
    assert fake_numerai.gets.count("v5.2/live.parquet") == 1


@pytest.mark.parametrize(("name", "body", "expected"), [
    ("live.parquet", b"<!DOCTYPE html><html><body>Sign in to continue</body></html>", "not a parquet file"),
    ("live.parquet", b"PAR1", "not a parquet file"),
    ("features.json", b"<Error>AccessDenied</Error>", "not JSON"),
])
def test_bytes_that_are_not_the_file_are_refused(fake_numerai: FakeNumerai, tmp_path: Path, name: str, body: bytes,
                                                 expected: str) -> None:
    """HTTP 200 with a proxy's login page (or a truncated stub) is not renamed into place as live.parquet: the
    error names the file and shows what arrived, and the previous files stay."""
    (tmp_path / name).write_bytes(b"last week's file")
    fake_numerai.files[f"v5.2/{name}"] = body
    with pytest.raises(NmuError) as info:
        download_data(tmp_path, version="v5.2")
    message = str(info.value)
    assert f"v5.2/{name}" in message and expected in message and repr(body[:40].decode())[:20] in message
    assert "left as it was" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    assert (tmp_path / name).read_bytes() == b"last week's file"


def test_a_failed_download_never_mixes_two_versions(fake_numerai: FakeNumerai, tmp_path: Path) -> None:
    """A directory holding a complete download keeps every file of it when the next download fails part-way: the
    files fetched before the failure are not renamed over theirs (a mix would pair one version's features with
    another's validation eras, and nmu-data.json would name neither)."""
    download_data(tmp_path, version="v5.3")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    fake_numerai.truncate_files.add("v5.2/validation_benchmark_models.parquet")
    with pytest.raises(NmuError, match="every file in .* was left as it was"):
        download_data(tmp_path, version="v5.2")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert read_data_info(tmp_path)["version"] == "v5.3"


def test_connection_cut_mid_file_leaves_the_previous_file_intact(fake_numerai: FakeNumerai, tmp_path: Path) -> None:
    (tmp_path / "live.parquet").write_bytes(b"last week's live")
    fake_numerai.truncate_files.add("v5.2/live.parquet")
    with pytest.raises(NmuError, match=r"v5\.2/live\.parquet") as info:
        download_data(tmp_path, version="v5.2")
    assert "left as it was" in str(info.value)
    assert (tmp_path / "live.parquet").read_bytes() == b"last week's live"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_connection_refused_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("NUMERAI_API_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(numerapi.base_api, "API_TOURNAMENT_URL", numerapi.base_api.API_TOURNAMENT_URL)
    with pytest.raises(NmuError, match=rf"list_datasets.*127\.0\.0\.1:{port}.*(Connection refused|Error Connecting)"):
        download_data(tmp_path, version="v5.2")
    assert list(tmp_path.iterdir()) == []


def test_cli_download_in_process(fake_numerai: FakeNumerai, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["data", "download", "--out", str(tmp_path / "d"), "--version", "v5.2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "d" / "features.json").read_bytes() == fake_numerai.files["v5.2/features.json"]
    bad = CliRunner().invoke(app, ["data", "download", "--out", str(tmp_path / "e"), "--version", "v0"])
    assert bad.exit_code == 2
    assert "available versions: v5.2, v5.3" in bad.output
    assert "Traceback" not in bad.output


def test_cli_download_subprocess_with_env_url(fake_numerai: FakeNumerai, tmp_path: Path) -> None:
    """`nmu data download --out DIR` in a fresh process, pointed at the loopback server by NUMERAI_API_URL only."""
    proc = python_of_its_own("-m", "training.cli", "data", "download", "--out", str(tmp_path),
                             env={"NUMERAI_API_URL": fake_numerai.url}, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in REQUIRED_FILES:
        assert (tmp_path / name).read_bytes() == fake_numerai.files[f"v5.3/{name}"]  # the newest by default
    assert "v5.3/train.parquet" in proc.stderr  # a line per file where no progress bar is drawn (not a terminal)
    assert "Data version v5.3: the newest Numerai offers" in proc.stderr  # progress lines go to stderr


def test_make_client_without_override_uses_numerais_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NUMERAI_API_URL", raising=False)
    monkeypatch.setattr(numerapi.base_api, "API_TOURNAMENT_URL", "http://stale.invalid")
    make_client()
    assert numerapi.base_api.API_TOURNAMENT_URL == "https://api-tournament.numer.ai"


def test_a_users_own_download_tells_its_version(tmp_path: Path) -> None:
    """A directory `nmu data download` did not write: the benchmark columns' prefix tells the version, else the
    directory's name; only when neither tells is it unknown (and `nmu upload` asks for --data-version)."""
    import pandas as pd

    own = tmp_path / "my_numerai_data"
    own.mkdir()
    pd.DataFrame({"v52_lgbm_ender20": [0.5], "v53_lgbm_ender20": [0.5], "v53_lgbm_ender60": [0.4]},
                 index=pd.Index(["n1"], name="id")).to_parquet(own / "live_benchmark_models.parquet")
    assert read_data_info(own) == {"version": "v5.3", "source": "numerai",
                                   "version_from": "the benchmark columns' prefix v53_"}
    named = tmp_path / "v5.2"
    named.mkdir()
    (named / "live_benchmark_models.parquet").write_bytes(b"not parquet")  # unreadable: the name still tells
    assert read_data_info(named) == {"version": "v5.2", "source": "numerai", "version_from": "the directory name v5.2"}
    unknown = read_data_info(tmp_path / "nothing")
    assert unknown["version"] == "unknown" and unknown["version_from"].startswith("nothing")
