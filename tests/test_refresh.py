"""`nmu refresh`: newly resolved eras extend the pickle's timing history with the same trees, atomically, checked,
uploaded; nothing new means nothing written; any failure leaves the local files and the uploaded model as they
were; the scheduled workflow's command runs as written against the loopback API."""

from __future__ import annotations

import dataclasses
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

import training.refresh as refresh_module
import training.upload as upload_mod
from tests.fake_numerai import SEGFAULT, FakeNumerai, fake_numerai, pickle_record  # noqa: F401  (fixture)
from tests.stand_in import python_of_its_own
from training.check import CheckResult
from training.cli import app
from training.console import Reporter
from training.data import read_data_info
from training.pipeline import train_command
from training.refresh import fitted_model, refresh_command
from training.synthetic import SyntheticConfig, write_synthetic_world
from training.upload import NotAssigned
from validation.artifacts import file_sha256, read_manifest, update_manifest
from validation.errors import NmuError

pytestmark = pytest.mark.network  # the runtime check builds the replica's virtual environment
WORKFLOW = Path(__file__).resolve().parents[1] / "examples" / "refresh-weekly.yml"
CONFIG = "[lightgbm]\nn_estimators = 40\nlearning_rate = 0.1\n\n[components]\ntiming_threshold = 0.0\n"
NEW_ERAS = 12  # eras resolved since training: the 4 then unresolved are not in any file (the world writes no target
UNRESOLVED = 4  # for them), the 12 after them are, and the newest 4 are unresolved again


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    """The data at training time, the same data some weeks later (NEW_ERAS more resolved validation eras, the newest
    UNRESOLVED still without targets, as in Numerai's validation file), and a pickle trained on the first."""
    root = tmp_path_factory.mktemp("refresh")
    config = dataclasses.replace(SyntheticConfig.default(eras=120, stocks=600, features=60, seed=3),
                                 future_eras=NEW_ERAS + UNRESOLVED)
    then = write_synthetic_world(root / "then", config)
    later = root / "later"
    shutil.copytree(then, later)
    validation = pd.read_parquet(then / "validation.parquet")
    future = pd.read_parquet(then / "future.parquet").assign(data_type="validation")
    newest = sorted(future["era"].unique())[-UNRESOLVED:]
    for column in [c for c in future.columns if c.startswith("target")]:
        future.loc[future["era"].isin(newest), column] = np.nan
    pd.concat([validation[validation["target"].notna()], future]).to_parquet(later / "validation.parquet")
    bench = pd.read_parquet(then / "validation_benchmark_models.parquet")
    future_bench = pd.read_parquet(then / "future_benchmark_models.parquet")
    pd.concat([bench[bench.index.isin(validation.index[validation["target"].notna()])], future_bench]).to_parquet(
        later / "validation_benchmark_models.parquet")
    (root / "config.toml").write_text(CONFIG)
    out = root / "artifacts"
    train_command(data=then, out=out, config_path=root / "config.toml", console=Console(quiet=True))
    return then, later, out


@pytest.fixture
def artifacts(worlds, tmp_path):
    """A private copy of the trained artifacts."""
    out = tmp_path / "artifacts"
    shutil.copytree(worlds[2], out)
    return out / "model.pkl"


def _state(pkl: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(pkl.parent.iterdir())}


def test_new_eras_extend_the_history_with_the_same_trees(worlds, artifacts):
    then, later, _ = worlds
    before = fitted_model(artifacts)
    parent = file_sha256(artifacts)
    lines: list[str] = []
    reporter = Reporter(Console(quiet=True))
    reporter.say = lines.append  # what the command says, line by line
    result = refresh_command(artifacts, data=later, reporter=reporter)
    after = fitted_model(artifacts)
    assert result["changed"] and len(result["eras_added"]) == NEW_ERAS
    assert after.booster_.model_to_string() == before.booster_.model_to_string()  # byte for byte
    assert int(after.as_of_era_) == int(before.as_of_era_) + NEW_ERAS + UNRESOLVED  # (the 4 then unresolved: no file)
    # those 4 eras are skipped for good, and said so (the synthetic world never writes their targets)
    skipped = list(range(int(before.as_of_era_) + 1, int(before.as_of_era_) + UNRESOLVED + 1))
    assert any(f"no resolved rows of {UNRESOLVED} era(s) ({skipped[0]}-{skipped[-1]})" in line for line in lines), lines
    manifest = read_manifest(artifacts)
    assert manifest["refreshed"]["eras_skipped"] == skipped
    assert manifest["refreshed"]["parent_sha256"] == parent and manifest["as_of_era"] == after.as_of_era_
    assert manifest["check"]["passed"] is True and manifest["check"]["sha256"] == file_sha256(artifacts)
    assert manifest["pickle"]["sha256"] == file_sha256(artifacts)
    # idempotent: nothing new has resolved since
    state = _state(artifacts)
    again = refresh_command(artifacts, data=later, reporter=Reporter(Console(quiet=True)))
    assert not again["changed"] and _state(artifacts) == state


def test_an_ensemble_refreshes_every_member_with_its_own_target(worlds, tmp_path):
    # two targets x two seeds: each member's history takes its own target's new eras; no tree changes
    then, later, _ = worlds
    config = tmp_path / "ensemble.toml"
    config.write_text('[ensemble]\ntargets = ["target", "target_jasper_20"]\nseeds = 2\n\n' + CONFIG)
    out = tmp_path / "ensemble"
    # (no refit: the members fitted on the train eras take every resolved era after them; half the fits)
    train_command(data=then, out=out, config_path=config, no_baseline=True, no_refit=True, console=Console(quiet=True))
    before = fitted_model(out / "model.pkl")
    result = refresh_command(out / "model.pkl", data=later, reporter=Reporter(Console(quiet=True)))
    after = fitted_model(out / "model.pkl")
    assert result["changed"] and after.member_names_ == [
        "target (seed 1)", "target (seed 2)", "target_jasper_20 (seed 1)", "target_jasper_20 (seed 2)"]
    assert int(after.as_of_era_) > int(before.as_of_era_)
    newest = sorted(pd.read_parquet(later / "validation.parquet", columns=["era", "target"]).dropna()["era"].unique())[-1]
    for old, new in zip(before.members_, after.members_):
        assert new.booster_.model_to_string() == old.booster_.model_to_string()
        assert int(new.as_of_era_) == int(newest)  # each member's history runs to the newest resolved era
    assert read_manifest(out / "model.pkl")["check"]["passed"] is True


# The model `refresh = "weekly"` builds, its residualizer's benchmark exposure on (so the live path residualizes);
# timing_threshold 1.0 so that this small world's pooled momentum (whole-sample t 2.1) is kept as `timed_momentum`.
WEEKLY_CONFIG = ('refresh = "weekly"\nship = "full"\n\n[lightgbm]\nn_estimators = 40\nlearning_rate = 0.1\n\n'
                 '[components]\ntiming_threshold = 1.0\nresidualize_benchmark = true\n')


def test_a_pickle_built_by_another_process_is_refreshed_with_its_own_code_and_runs(worlds, tmp_path):
    """The weekly workflow: `nmu train` in one process, `nmu refresh` a week later in another. Loaded there, the
    model's classes are the pickle's own (cloudpickle makes them anew), so this installation's live function cannot
    run it: its EraIndex is another class, and a model whose residualizer has exposures failed in the replica with a
    TypeError (the check refused every such refresh). The refresh writes the pickle's own live function around the
    refreshed model and records whose code it is; export refuses the mix, saying why."""
    then, later, _ = worlds
    (tmp_path / "weekly.toml").write_text(WEEKLY_CONFIG)
    out = tmp_path / "weekly"
    train_command(data=then, out=out, config_path=tmp_path / "weekly.toml", no_baseline=True, no_refit=True,
                  console=Console(quiet=True))
    pkl = out / "model.pkl"
    before = fitted_model(pkl)
    assert "timed_momentum" in before.timing_.feature_names_  # the weekly model's pooled column
    assert before.residualizer_.benchmark  # the live era is residualized (on the benchmark column, at least)

    parent = file_sha256(pkl)
    done = python_of_its_own("-m", "training.cli", "refresh", str(pkl), "--data", str(later))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "same trees; runtime check PASS" in done.stdout + done.stderr
    after = fitted_model(pkl)
    assert after.booster_.model_to_string() == before.booster_.model_to_string()
    assert int(after.as_of_era_) == int(before.as_of_era_) + NEW_ERAS + UNRESOLVED
    manifest = read_manifest(pkl)
    assert manifest["refreshed"]["parent_sha256"] == parent and manifest["check"]["passed"] is True
    assert manifest["check"]["sha256"] == file_sha256(pkl) and manifest["code_from"] == parent
    # it runs as Numerai runs it, in a process of its own: the newest live era, every row, in (0, 1]
    run = python_of_its_own("-c", "import sys, pandas as pd; p = pd.read_pickle(sys.argv[1]); "
                              "out = p(pd.read_parquet(sys.argv[2]), pd.read_parquet(sys.argv[3])); "
                              "print(len(out), float(out['prediction'].min()), float(out['prediction'].max()))",
                              str(pkl), str(later / "live.parquet"), str(later / "live_benchmark_models.parquet"))
    assert run.returncode == 0, run.stdout + run.stderr
    rows, low, high = run.stdout.split()[-3:]
    assert int(rows) == len(pd.read_parquet(later / "live.parquet", columns=[])) and 0 < float(low) <= float(high) <= 1

    # this installation's live function around the model of a pickle another process built: refused, with the reason
    script = ("import sys; from pathlib import Path; from training.export import export_pickle; "
              "from training.refresh import fitted_model; from validation.errors import NmuError\n"
              "try:\n    export_pickle(fitted_model(Path(sys.argv[1])), Path(sys.argv[2]))\n"
              "except NmuError as exc:\n    print(exc)\n    sys.exit(3)\n")
    mixed = python_of_its_own("-c", script, str(pkl), str(tmp_path / "mixed.pkl"))
    assert mixed.returncode == 3, mixed.stdout + mixed.stderr
    assert "came from a pickle that another process built" in mixed.stdout and not (tmp_path / "mixed.pkl").exists()


def test_nothing_new_writes_nothing_and_says_so(worlds, artifacts):
    then, _, _ = worlds
    state = _state(artifacts)
    result = CliRunner().invoke(app, ["refresh", str(artifacts), "--data", str(then)])
    assert result.exit_code == 0 and "nothing new" in result.output
    assert _state(artifacts) == state


def test_a_failed_check_leaves_the_previous_files(worlds, artifacts, monkeypatch):
    _, later, _ = worlds
    state = _state(artifacts)
    def failing(path, *args, **kwargs):  # as a pickle that returns NaN would
        record = {"passed": False, "reason": "live run: simulated NaN"}
        update_manifest(path, check=record)
        return CheckResult(passed=False, reason=record["reason"], warning="", record=record, record_path=None)

    monkeypatch.setattr(refresh_module, "check_command", failing)
    with pytest.raises(NmuError, match="failed the runtime check.*simulated NaN.*left as it was"):
        refresh_command(artifacts, data=later, reporter=Reporter(Console(quiet=True)))
    assert _state(artifacts) == state


def _serve(server: FakeNumerai, world: Path, version: str = "v5.3") -> None:
    server.files = {f"{version}/{p.name}": p.read_bytes() for p in world.iterdir()
                    if p.suffix in (".json", ".parquet") and not p.name.startswith(("synthetic", "future", "nmu-"))}


@pytest.fixture
def server(fake_numerai: FakeNumerai, monkeypatch, tmp_path):
    monkeypatch.setenv("NUMERAI_PUBLIC_ID", fake_numerai.public_id)
    monkeypatch.setenv("NUMERAI_SECRET_KEY", fake_numerai.secret_key)
    monkeypatch.setattr(upload_mod, "POLL_INTERVAL", 0.01)
    return fake_numerai


def test_a_failed_upload_leaves_local_files_and_the_uploaded_model(worlds, artifacts, server, tmp_path):
    _, later, _ = worlds
    _serve(server, later)
    server.put_always_status = 500
    state = _state(artifacts)
    with pytest.raises(NmuError, match="step 2/3"):
        refresh_command(artifacts, data=tmp_path / "downloaded", download=True, upload=True, model_name="my_model",
                        reporter=Reporter(Console(quiet=True)))
    assert _state(artifacts) == state and server.uploads == []


def test_a_refreshed_pickle_that_numerai_fails_leaves_the_previous_one_assigned(worlds, artifacts, server, tmp_path):
    """Numerai's validation of the refreshed pickle fails: nothing is assigned, the model keeps the previous pickle,
    and the local pickle and manifest are as they were."""
    _, later, _ = worlds
    _serve(server, later)
    server.assign_existing("my_model", pickle_record("previous", "model-000000000000.pkl", server.models["my_model"]))
    server.validation_outcome = "failed"
    state = _state(artifacts)
    with pytest.raises(NotAssigned, match=r"failed; nothing was assigned: model my_model keeps pickle previous") as info:
        refresh_command(artifacts, data=tmp_path / "downloaded", download=True, upload=True, model_name="my_model",
                        reporter=Reporter(Console(quiet=True)))
    assert SEGFAULT in str(info.value)
    assert len(server.uploads) == 1 and server.assignments == [] and server.assigned["my_model"] == "previous"
    assert _state(artifacts) == state


def test_a_refreshed_pickle_whose_validation_times_out_says_to_refresh_again(worlds, artifacts, server, tmp_path):
    """The wait for Numerai's validation runs out: the earlier pickle is put back (the model keeps running it), and
    the advice is to refresh again, not to `nmu upload` a pickle that is no longer there."""
    _, later, _ = worlds
    _serve(server, later)
    server.assign_existing("my_model", pickle_record("previous", "model-000000000000.pkl", server.models["my_model"]))
    server.validation_outcome = "never"
    state = _state(artifacts)
    with pytest.raises(NotAssigned) as info:
        refresh_command(artifacts, data=tmp_path / "downloaded", download=True, upload=True, model_name="my_model",
                        reporter=Reporter(Console(quiet=True)), upload_options={"timeout": 0.05})
    message = str(info.value)
    assert "nothing was assigned: model my_model keeps pickle previous" in message
    assert "is the earlier pickle again" in message and "Run the same `nmu refresh` again" in message
    assert "nmu upload" not in message
    assert _state(artifacts) == state and server.assigned["my_model"] == "previous"


def test_an_assignment_numerai_accepted_but_could_not_be_verified_keeps_the_refreshed_pickle(
        worlds, artifacts, server, tmp_path):
    """Numerai accepted the assignment, then reading the models back failed: the model most likely runs the refreshed
    pickle, so the local files are the refreshed ones (putting the earlier ones back would leave the pickle Numerai
    runs with no local copy), and the message says so."""
    _, later, _ = worlds
    _serve(server, later)
    server.assign_existing("my_model", pickle_record("previous", "model-000000000000.pkl", server.models["my_model"]))
    server.fail_fields_after_assignment["account"] = "Service unavailable"
    before = file_sha256(artifacts)
    with pytest.raises(NmuError, match=r"accepted the assignment .* reading the models back to verify it failed") as info:
        refresh_command(artifacts, data=tmp_path / "downloaded", download=True, upload=True, model_name="my_model",
                        reporter=Reporter(Console(quiet=True)))
    assert f"kept as {artifacts}" in str(info.value)
    [upload] = server.uploads
    assert server.assigned["my_model"] == upload["id"] and file_sha256(artifacts) != before
    assert list(server.puts.values()) == [artifacts.read_bytes()]  # the local pickle is the one Numerai runs
    assert read_manifest(artifacts)["upload"]["outcome"] == "assigned, not verified"


def test_download_fetches_the_data_version_the_pickle_was_trained_on(worlds, artifacts, server, tmp_path):
    """Numerai offers a newer version than the pickle's: --download takes the pickle's (its features and eras), so the
    directory holds one version in every file and the refresh records it."""
    _, later, _ = worlds
    _serve(server, later, "v5.2")
    server.files.update({name.replace("v5.2/", "v5.3/"): data for name, data in server.files.items()})
    update_manifest(artifacts, data={"source": "numerai", "version": "v5.2", "version_from": "nmu-data.json"})
    result = refresh_command(artifacts, data=tmp_path / "downloaded", download=True,
                             reporter=Reporter(Console(quiet=True)))
    assert result["changed"] and read_data_info(tmp_path / "downloaded")["version"] == "v5.2"
    assert read_manifest(artifacts)["refreshed"]["data"]["version"] == "v5.2"


def test_the_scheduled_workflow_command_runs_as_written(worlds, artifacts, server, tmp_path, monkeypatch):
    _, later, _ = worlds
    _serve(server, later)
    [line] = [ln.strip() for ln in WORKFLOW.read_text().splitlines() if re.match(r"\s*run: nmu refresh ", ln)]
    argv = shlex.split(line.removeprefix("run: ").replace('"$NUMERAI_MODEL"', "my_model"))
    assert argv[:3] == ["nmu", "refresh", "artifacts/model.pkl"] and "--download" in argv and "--upload" in argv
    monkeypatch.chdir(artifacts.parent.parent)
    result = CliRunner().invoke(app, argv[1:])
    assert result.exit_code == 0, result.output
    [upload] = server.uploads
    assert upload["modelId"] == server.models["my_model"]
    assert server.assigned["my_model"] == upload["id"]  # validated by Numerai, assigned and verified
    assert "assigned and verified" in result.output
    assert list(server.puts.values()) == [artifacts.read_bytes()]
    # a refresh reads no training data: the multi-gigabyte train.parquet is not fetched
    assert server.gets and not any("train" in name for name in server.gets)
    assert read_manifest(artifacts)["upload"]["sha256"] == file_sha256(artifacts)
    assert read_manifest(artifacts)["upload"]["outcome"] == "assigned"


def test_refit_judges_on_the_unseen_eras_and_replaces_only_if_not_worse(worlds, artifacts, capsys):
    _, later, _ = worlds
    state = _state(artifacts)
    result = refresh_command(artifacts, data=later, refit=True, reporter=Reporter(Console(force_terminal=False)))
    captured = capsys.readouterr()
    printed = captured.out + captured.err
    assert "model never saw" in printed and "rule:" in printed
    # the decision follows the printed evidence and the rule: replaced exactly when not worse by more than one se
    found = re.search(r"difference ([+-][0-9.]+) \+- ([0-9.]+|inf)\)", printed)
    assert found, printed
    difference, se = float(found.group(1)), float(found.group(2))
    assert result["changed"] == (difference >= -se - 5e-5), printed  # 5e-5: the printed rounding
    manifest = read_manifest(artifacts)
    if result["changed"]:
        assert result["refit"] == "replaced" and manifest["refreshed"]["refit"] is True
        assert set(result["eras_added"]) <= set(manifest["eras"]["refit"])  # the new model learnt the new eras
        assert manifest["check"]["passed"] is True
    else:
        assert result["refit"] == "worse" and _state(artifacts) == state
