"""training.export: model.pkl is the live predict pickled by value, loads where the project is absent, and
holds nothing the runtime lacks."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import cloudpickle
import numpy as np
import pandas as pd
import pytest

from model.live import make_predict
from tests.stand_in import (
    LazyImportModel,
    TrainingReachingModel,
    UnshippableImportModel,
    fit_baseline,
    fit_full,
    fit_stand_in_cached,
    python_of_its_own,
    replica_python,
)
from training.export import (
    call_time_imports,
    dumps_by_value,
    export_pickle,
    forbidden_references,
    project_modules,
    referenced_modules,
)
from validation.artifacts import file_sha256
from validation.errors import NmuError


@pytest.fixture(scope="module")
def baseline(small_world):
    return fit_baseline(small_world)


@pytest.fixture(scope="module")
def exported(baseline, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "model.pkl"
    info = export_pickle(baseline, path)
    return path, info


def test_export_reports_size_and_sha256(exported):
    path, info = exported
    assert info["size_bytes"] == path.stat().st_size > 0
    assert info["sha256"] == file_sha256(path)
    assert not list(path.parent.glob(".*.tmp"))  # atomic write left no temporary file


def test_pickle_imports_only_what_the_runtime_has(exported, small_world):
    path, _ = exported
    data = path.read_bytes()
    modules = referenced_modules(data)
    assert forbidden_references(data) == []
    runtime = set(sys.stdlib_module_names) | {"numpy", "pandas", "scipy", "lightgbm", "cloudpickle", "sklearn"}
    assert {m.split(".")[0] for m in modules} <= runtime, modules
    assert {"numpy", "pandas", "lightgbm"} <= {m.split(".")[0] for m in modules}
    assert not any(m.split(".")[0] in ("model", "training", "validation", "pandera", "numerapi") for m in modules)


def test_pickle_holds_no_training_frame(exported, small_world):
    path, _ = exported
    data = path.read_bytes()
    train = pd.read_parquet(small_world / "train.parquet", columns=["era"])
    assert len(data) < 2_000_000  # boosters and parameters, not 40k rows × 60 features
    sample = train.index.to_numpy()[:: max(1, len(train) // 200)]
    assert not any(str(i).encode() in data for i in sample)


def test_registry_is_restored_after_export(baseline, tmp_path):
    before = set(cloudpickle.list_registry_pickle_by_value())
    export_pickle(baseline, tmp_path / "a.pkl")
    assert set(cloudpickle.list_registry_pickle_by_value()) == before
    with pytest.raises(NmuError, match="validation"):
        export_pickle(_training_reaching(baseline), tmp_path / "b.pkl")
    assert set(cloudpickle.list_registry_pickle_by_value()) == before
    assert not (tmp_path / "b.pkl").exists()


def _training_reaching(baseline):
    """A fitted stand-in whose state holds a function of the `validation` package."""
    from validation.artifacts import atomic_write_text

    model = TrainingReachingModel()
    model.feature_names_in_ = baseline.feature_names_in_
    model.writer = atomic_write_text
    return model


def test_project_packages_are_detected_not_hard_coded(baseline):
    names = project_modules(extra=[baseline])
    assert {"model", "training", "validation"} <= set(names)
    assert "numpy" not in names and "pandas" not in names and "cloudpickle" not in names


def _pins_like_this_machine(path, **changed):
    """A pins file that pins the installed versions of the checked packages, except the `changed` ones."""
    from importlib.metadata import version

    lines = [f"{name}=={changed.get(name.replace('-', '_'), version(name))}"
             for name in ("numpy", "pandas", "scikit-learn", "lightgbm")]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_version_mismatch_is_one_line_naming_the_packages_once(baseline, tmp_path, caplog):
    numpy_pin = f"{np.__version__.split('.')[0]}.0.1"  # the same major: another major is refused, not warned
    pins = _pins_like_this_machine(tmp_path / "py3.X.txt", numpy=numpy_pin, lightgbm="0.0.2")
    export_pickle(baseline, tmp_path / "m.pkl", pins=pins)
    export_pickle(baseline, tmp_path / "n.pkl", pins=pins)
    lines = [r.getMessage() for r in caplog.records if r.name == "validation.runtime.replica"]
    assert len(lines) == 1, lines  # once per run, not per export
    line = lines[0]
    assert line.startswith("warning: ") and f"numpy {np.__version__} (runtime: {numpy_pin})" in line
    assert "lightgbm" in line and "0.0.2" in line
    assert "pandas" not in line and "scikit-learn" not in line
    assert f"pip install -e . -c {pins}" in line
    assert (tmp_path / "m.pkl").exists()  # a warning, not a refusal


@pytest.mark.parametrize("package", ["cloudpickle", "numpy"])
def test_a_pickle_the_runtime_cannot_read_is_refused_before_writing(baseline, tmp_path, package):
    """The runtime's cloudpickle of another major version, or its numpy of an older one, cannot read the pickle
    (the Python 3.10 image's cloudpickle 2.2.1 and numpy 1.26.4 against cloudpickle 3 and numpy 2)."""
    from importlib.metadata import version

    major = int(version(package).split(".")[0])
    runtime = f"{major - 1}.0.0" if package == "numpy" else f"{major + 1}.0.0"
    pins = tmp_path / "py3.X.txt"
    pins.write_text(f"{package}=={runtime}\n")
    (tmp_path / "m.pkl").write_bytes(b"the previous model")
    with pytest.raises(NmuError) as info:
        export_pickle(baseline, tmp_path / "m.pkl", pins=pins)
    message = str(info.value)
    assert f"{package} {version(package)} (runtime: {runtime})" in message and "cannot read" in message
    assert f"pip install '{package}=={runtime}'" in message
    assert (tmp_path / "m.pkl").read_bytes() == b"the previous model"  # nothing lost


def test_an_older_numpy_or_the_same_majors_export(baseline, tmp_path):
    """numpy 2 reads numpy 1's arrays: building with an older numpy than the runtime's is only warned."""
    from importlib.metadata import version

    pins = tmp_path / "py3.X.txt"
    numpy_major = int(version("numpy").split(".")[0])
    pins.write_text(f"numpy=={numpy_major + 1}.0.0\ncloudpickle=={version('cloudpickle').split('.')[0]}.9.9\n")
    export_pickle(baseline, tmp_path / "m.pkl", pins=pins)
    assert (tmp_path / "m.pkl").stat().st_size > 0


def test_the_full_model_pickle_carries_no_random_state(small_world, tmp_path):
    """No numpy RandomState or Generator travels in the pickle: numpy 1.26 cannot read numpy 2's bit generators
    (a scipy.stats distribution as a module global once brought one in)."""
    export_pickle(fit_full(small_world), tmp_path / "m.pkl")
    data = (tmp_path / "m.pkl").read_bytes()
    for constructor in (b"__bit_generator_ctor", b"__randomstate_ctor", b"__generator_ctor", b"MT19937", b"PCG64"):
        assert constructor not in data, constructor


def test_matching_versions_say_nothing(baseline, tmp_path, caplog, capsys):
    export_pickle(baseline, tmp_path / "m.pkl", pins=_pins_like_this_machine(tmp_path / "py3.Y.txt"))
    assert caplog.records == [] and capsys.readouterr() == ("", "")


def test_call_time_project_imports_are_found():
    found = call_time_imports([LazyImportModel, UnshippableImportModel.predict, fit_baseline, np.mean], ["tests", "model"])
    assert found == {
        "tests.stand_in.LazyImportModel.predict": ["tests.stand_in"],
        "tests.stand_in.UnshippableImportModel.predict": ["tests"],
        "tests.stand_in.fit_baseline": ["model"],
    }


def test_model_package_imports_nothing_of_its_own_at_call_time():
    """Numerai's runtime has model/ only by value: every import of a model module sits at module top level."""
    import model

    classes_and_functions = [obj for name, module in sys.modules.items() if name == "model" or name.startswith("model.")
                             for obj in vars(module).values()
                             if getattr(obj, "__module__", None) == name and callable(obj)]
    assert any(getattr(o, "__name__", "") == "NumeraiModel" for o in classes_and_functions)
    assert call_time_imports(classes_and_functions, ["model"]) == {}
    assert model.NumeraiModel  # imported for sys.modules


def test_residualizer_code_pickles_by_value_without_special_reducers():
    """model.residualize reaches LAPACK through scipy's module (pickled by reference), not a bound fortran object."""
    import pickle

    from model.residualize import residualize

    data, by_value = dumps_by_value(residualize, ["model"])
    assert residualize in by_value
    rng = np.random.default_rng(0)
    values, exposures, eras = rng.normal(size=60), rng.integers(0, 5, size=(60, 3)).astype(np.int8), np.repeat(["1", "2"], 30)
    np.testing.assert_allclose(pickle.loads(data)(values, exposures, eras), residualize(values, exposures, eras))


def test_export_refuses_a_call_time_project_import(small_world, tmp_path):
    """A function that imports a project module inside its body would fail in Numerai's runtime (the project is
    pickled by value, not installed): export names the function and the import and writes nothing."""
    fitted = fit_stand_in_cached(small_world, LazyImportModel)
    with pytest.raises(NmuError, match=r"tests\.stand_in\.LazyImportModel\.predict imports tests\.stand_in inside a function.*top level"):
        export_pickle(fitted, tmp_path / "lazy.pkl")
    assert not (tmp_path / "lazy.pkl").exists()


def test_a_model_from_a_pickle_another_process_built_is_written_with_its_own_live_function(small_world, tmp_path):
    """`nmu refresh`'s case: a model loaded from a pickle that another process built has the pickle's classes, which
    this installation's live function cannot run (its EraIndex is another class: a model that residualizes raised
    TypeError). Export refuses that mix, naming the classes, and writes the pickle's own function when given it;
    that pickle runs in a process of its own and predicts what the original does."""
    built, mixed, own = tmp_path / "built.pkl", tmp_path / "mixed.pkl", tmp_path / "own.pkl"
    full = fit_full(small_world)
    assert full.residualizer_.benchmark  # the live era is residualized (on the benchmark column, at least)
    export_pickle(full, built)
    script = textwrap.dedent(f"""
        from pathlib import Path
        from training.export import export_pickle
        from training.refresh import pickled_model
        from validation.errors import NmuError
        from model.live import make_predict
        predict, fitted = pickled_model(Path({str(built)!r}))
        for given in (None, make_predict(fitted)):  # none, or this installation's around it: both refused
            try:
                export_pickle(fitted, Path({str(mixed)!r}), predict=given)
            except NmuError as exc:
                print("refused:", exc)
        export_pickle(fitted, Path({str(own)!r}), predict=predict)
    """)
    proc = python_of_its_own("-c", script)
    assert proc.returncode == 0, proc.stderr[-2000:]
    refused = [line for line in proc.stdout.splitlines() if line.startswith("refused:")]
    assert len(refused) == 2 and not mixed.exists(), proc.stdout
    for line in refused:
        assert line.startswith("refused: cannot export mixed.pkl: the model's model.estimator.NumeraiModel")
        assert "came from a pickle that another process built" in line
    compare = textwrap.dedent(f"""
        import pandas as pd
        live = pd.read_parquet({str(small_world / 'live.parquet')!r})
        bench = pd.read_parquet({str(small_world / 'live_benchmark_models.parquet')!r})
        a = pd.read_pickle({str(own)!r})(live, bench)["prediction"]
        b = pd.read_pickle({str(built)!r})(live, bench)["prediction"]
        print(len(a), float((a - b).abs().max()))
    """)
    proc = python_of_its_own("-c", compare)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows, gap = proc.stdout.split()[-2:]
    assert int(rows) == len(pd.read_parquet(small_world / "live.parquet", columns=[])) and float(gap) == 0.0
    # a live function around another model is refused too
    with pytest.raises(NmuError, match="does not close over this model"):
        export_pickle(full, tmp_path / "other.pkl", predict=make_predict(fit_baseline(small_world)))


@pytest.mark.network
def test_pickle_loads_and_runs_in_the_replica_without_the_project(exported, small_world, tmp_path):
    path, _ = exported
    python = replica_python()
    script = textwrap.dedent(f"""
        import importlib.util, inspect, sys
        import pandas as pd
        for name in ("model", "training", "validation", "pandera"):
            assert importlib.util.find_spec(name) is None, name + " is importable in the replica"
        predict = pd.read_pickle({str(path)!r})
        assert len(inspect.signature(predict).parameters) == 2
        live = pd.read_parquet({str(small_world / 'live.parquet')!r})
        bench = pd.read_parquet({str(small_world / 'live_benchmark_models.parquet')!r})
        out = predict(live, bench)
        assert type(out) is pd.DataFrame and list(out.columns) == ["prediction"] and out.index.name == "id"
        out.to_csv({str(tmp_path / 'replica.csv')!r})
        print("ok", len(out))
    """)
    proc = subprocess.run([str(python), "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith(f"ok {len(pd.read_parquet(small_world / 'live.parquet'))}")
    # Same predictions as in this process.
    here = pd.read_pickle(path)(pd.read_parquet(small_world / "live.parquet"),
                                pd.read_parquet(small_world / "live_benchmark_models.parquet"))
    there = pd.read_csv(tmp_path / "replica.csv", index_col="id")
    np.testing.assert_allclose(there["prediction"].to_numpy(), here["prediction"].to_numpy(), rtol=0, atol=1e-12)


# ---- nmu predict ------------------------------------------------------------------------------------------


def test_predict_command_writes_validated_csv(exported, baseline, small_world, tmp_path):
    from training.predict import predict_command

    path, _ = exported
    live = pd.read_parquet(small_world / "live.parquet")
    out = tmp_path / "preds.csv"
    result = predict_command(path, small_world, out)
    printed = "\n".join(result.lines())
    assert f"{len(live):,} rows" in printed and "min" in printed and "mean" in printed and "predict" in printed
    n_nan = int(live[baseline.feature_names_in_].isna().sum().sum())
    assert f"note (live predict): filled {n_nan} NaN value(s)" in printed
    lines = out.read_text().splitlines()
    assert lines[0] == "id,prediction" and len(lines) == len(live) + 1
    written = pd.read_csv(out, index_col="id")
    expected = pd.read_pickle(path)(live, pd.read_parquet(small_world / "live_benchmark_models.parquet"))
    np.testing.assert_allclose(written["prediction"].to_numpy(), expected["prediction"].to_numpy(), atol=1e-12)
    assert set(written.index) == set(live.index)


def test_predict_cli_defaults_beside_the_pickle(exported, small_world):
    from typer.testing import CliRunner

    from training.cli import app

    path, _ = exported
    default_out = path.with_name("predictions.csv")
    result = CliRunner().invoke(app, ["predict", str(path), "--data", str(small_world)])
    assert result.exit_code == 0, result.output
    assert default_out.read_text().startswith("id,prediction\n")


def test_predict_command_rejects_bad_predictions(small_world, tmp_path):
    from training.export import dumps_by_value
    from training.predict import predict_command
    from validation.errors import DataValidationError

    def constant(live_features, live_benchmark_models):
        return pd.DataFrame({"prediction": 0.5}, index=live_features.index)

    path = tmp_path / "constant.pkl"
    path.write_bytes(dumps_by_value(constant, ["tests"])[0])
    with pytest.raises(DataValidationError):
        predict_command(path, small_world, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()
    with pytest.raises(NmuError, match="does not exist"):
        predict_command(tmp_path / "absent.pkl", small_world, None)
