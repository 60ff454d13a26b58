"""Build model.pkl: Numerai's `predict(live_features, live_benchmark_models)` closing over a fitted model.

Numerai's runtime does not have this project installed, so the project's own modules are pickled BY VALUE
(cloudpickle's registry, restored afterwards). Two things would still break there, and export refuses both
instead of writing a pickle that fails on Numerai's machine:
- a function pickled by value that imports a project module at call time (`from .x import y` inside a
  function): by value, the module it names does not exist in the runtime — import it at module level;
- a reference to a module the runtime lacks or that has no place on the live path (FORBIDDEN_MODULES).
The file is written atomically; numpy/pandas/scikit-learn/lightgbm versions that differ from the runtime's pins
are named in one warning line.
"""

from __future__ import annotations

import dis
import hashlib
import importlib.util
import inspect
import io
import pickle
import platform
import site
import sys
import sysconfig
import types
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import cloudpickle

from model.live import make_predict, trained_columns
from validation.artifacts import atomic_write_bytes, atomic_write_json, manifest_path
from validation.errors import NmuError
from validation.runtime.replica import note_version_mismatch, pickle_format_mismatch, pins_file, python_tag, read_pins

FORBIDDEN_MODULES = ("pandera", "numerapi", "typer", "rich", "matplotlib", "training", "validation", "pytest",
                     "platformdirs", "psutil")
"""Top-level modules a live pickle must never reference (absent from Numerai's runtime, or not for live)."""


# ---- which modules are ours -------------------------------------------------------------------------------
def _site_dirs() -> list[Path]:
    """Directories of installed third-party packages and of the standard library (never the project)."""
    dirs = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        try:
            dirs.add(Path(sysconfig.get_paths()[key]).resolve())
        except (KeyError, OSError):
            pass
    for d in [*getattr(site, "getsitepackages", lambda: [])(), site.getusersitepackages()]:
        dirs.add(Path(d).resolve())
    return sorted(dirs)


def _is_under(path: Path, dirs: Iterable[Path]) -> bool:
    return any(path == d or d in path.parents for d in dirs)


def project_root() -> Path:
    """The directory holding this project's top-level packages (the parent of `training/`)."""
    return Path(__file__).resolve().parents[1]


def project_modules(extra: Iterable[Any] = ()) -> list[str]:
    """Top-level modules of this project (imported ones), to be pickled by value.

    From a source checkout (editable install): every imported top-level module whose file lies under the
    project root. From a site-packages install: the top-level packages of the `numerai-uploads`
    distribution. Plus the top-level module of each object in `extra` (e.g. the fitted model's class) when it
    is not an installed or standard-library module."""
    root = project_root()
    site_dirs = _site_dirs()
    names: set[str] = set()
    if root.name not in ("site-packages", "dist-packages"):
        for name, module in list(sys.modules.items()):
            if "." in name or module is None or name == "__main__":  # cloudpickle pickles __main__ by value anyway
                continue
            file = getattr(module, "__file__", None)
            if file and root in Path(file).resolve().parents and not _is_under(Path(file).resolve(), site_dirs):
                names.add(name)
    else:
        names.update(top for top, dists in metadata.packages_distributions().items() if "numerai-uploads" in dists)
    for obj in extra:
        top = (getattr(type(obj), "__module__", None) or "").split(".")[0]
        module = sys.modules.get(top)
        file = getattr(module, "__file__", None) if module else None
        if top and top != "__main__" and file and not _is_under(Path(file).resolve(), site_dirs) \
                and top not in sys.stdlib_module_names:
            names.add(top)
    return sorted(n for n in names if n in sys.modules)


# ---- pickling by value ------------------------------------------------------------------------------------
def dumps_by_value(obj: Any, modules: Iterable[str]) -> tuple[bytes, list[Any]]:
    """Cloudpickle `obj` with `modules` registered by value (the registry is restored afterwards); returns the
    bytes and the functions and classes that were pickled by value."""
    modules = list(modules)
    tops = {m.split(".")[0] for m in modules}
    by_value: list[Any] = []

    class Recording(cloudpickle.Pickler):
        def reducer_override(self, o: Any) -> Any:
            if isinstance(o, (types.FunctionType, type)) and (getattr(o, "__module__", None) or "").split(".")[0] in tops:
                by_value.append(o)
            return super().reducer_override(o)

    added = []
    try:
        for name in modules:
            if name not in cloudpickle.list_registry_pickle_by_value():
                cloudpickle.register_pickle_by_value(sys.modules[name])
                added.append(name)
        buffer = io.BytesIO()
        Recording(buffer, protocol=5).dump(obj)
        return buffer.getvalue(), by_value
    finally:
        for name in added:
            cloudpickle.unregister_pickle_by_value(sys.modules[name])


def _functions_of(objects: Iterable[Any]) -> Iterator[types.FunctionType]:
    """The functions among `objects`, and the methods defined in the classes among them."""
    for obj in objects:
        if isinstance(obj, types.FunctionType):
            yield obj
        elif isinstance(obj, type):
            for value in vars(obj).values():
                value = getattr(value, "__func__", value)  # staticmethod / classmethod
                if isinstance(value, property):
                    value = value.fget
                if isinstance(value, types.FunctionType):
                    yield value


def _code_objects(name: str, code: types.CodeType) -> Iterator[tuple[str, types.CodeType]]:
    """A function's code and the code of the functions, lambdas and comprehensions nested in it."""
    yield name, code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(f"{name}.{const.co_name}", const)


def call_time_imports(objects: Iterable[Any], project: Iterable[str]) -> dict[str, list[str]]:
    """{"module.function": [project modules it imports when called]} over the functions (and the methods of
    the classes) in `objects`; an `import` statement inside a function body compiles to IMPORT_NAME, preceded
    by the LOAD_CONSTs of its level (dots) and its from-list."""
    tops = set(project)
    found: dict[str, set[str]] = {}
    seen: set[int] = set()
    for func in _functions_of(objects):
        if id(func.__code__) in seen:
            continue
        seen.add(id(func.__code__))
        package = func.__globals__.get("__package__") or func.__module__.rpartition(".")[0]
        for qualname, code in _code_objects(func.__qualname__, func.__code__):
            consts: list[Any] = []
            for ins in dis.get_instructions(code):
                if ins.opname == "LOAD_CONST":
                    consts = [*consts[-1:], ins.argval]
                    continue
                if ins.opname == "IMPORT_NAME":
                    level = consts[0] if len(consts) == 2 and isinstance(consts[0], int) else 0
                    try:
                        name = importlib.util.resolve_name("." * level + str(ins.argval), package) if level else str(ins.argval)
                    except (ImportError, ValueError):
                        name = "." * level + str(ins.argval)
                    if name.split(".")[0] in tops or name.startswith("."):
                        found.setdefault(f"{func.__module__}.{qualname}", set()).add(name)
                consts = []
    return {k: sorted(v) for k, v in sorted(found.items())}


# ---- what the pickle needs when it is loaded --------------------------------------------------------------
def referenced_modules(data: bytes) -> set[str]:
    """Dotted names of the modules a pickle imports when loaded (its globals and cloudpickle's module imports).

    Loads the pickle here with an Unpickler that records every `find_class` module and every module that
    cloudpickle's `subimport` brings in; plain strings (docstrings, LightGBM's "training" data name) do not
    count."""
    found: set[str] = set()

    def recording(real: Any) -> Any:
        def wrapper(name: str, *args: Any) -> Any:
            found.add(name)
            return real(name, *args)
        return wrapper

    class Recorder(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            found.add(module)
            obj = super().find_class(module, name)
            if module.startswith("cloudpickle") and name == "subimport":  # dynamic_subimport builds, not imports
                return recording(obj)
            return obj

    Recorder(io.BytesIO(data)).load()
    return found


def forbidden_references(data: bytes, forbidden: Iterable[str] = FORBIDDEN_MODULES) -> list[str]:
    """The modules the pickle imports that belong to a forbidden top-level package."""
    bad = set(forbidden)
    return sorted(name for name in referenced_modules(data) if name.split(".")[0] in bad)


IMAGE_EXTRAS = ("torch", "xgboost", "catboost", "polars", "numerblox")
"""Packages Numerai's images hold beyond the pins this project ships (numerai-predict's poetry.lock); their
versions are not pinned here, so a pickle that needs them is allowed but not version-checked."""
_IMPORT_NAMES = {"scikit-learn": "sklearn", "python-dateutil": "dateutil"}


def runtime_modules(pins: Path | None = None) -> set[str]:
    """Top-level modules a pickle may import in Numerai's runtime: the standard library, the pinned packages of
    this Python's image (by import name) and the image's known extras."""
    path = pins or pins_file()
    names = {_IMPORT_NAMES.get(n, n.replace("-", "_")) for n in read_pins(path)}
    return set(sys.stdlib_module_names) | names | set(IMAGE_EXTRAS)


def missing_in_runtime(data: bytes, pins: Path | None = None, by_value: Iterable[str] = ()) -> list[str]:
    """The top-level modules the pickle imports that Numerai's runtime image does not have."""
    have = runtime_modules(pins) | set(by_value)
    return sorted({name.split(".")[0] for name in referenced_modules(data)} - have)


def _estimators_in(fitted: Any) -> list[Any]:
    """The fitted object and every estimator nested in its parameters (a Pipeline's steps, a meta-estimator's
    inner model), whose modules may need pickling by value."""
    found = [fitted]
    if hasattr(fitted, "get_params"):
        try:
            found += [v for v in fitted.get_params(deep=True).values() if hasattr(v, "fit") and not isinstance(v, type)]
        except Exception:  # noqa: BLE001 - get_params of an odd object: the object itself is enough
            pass
    return found


# ---- export -----------------------------------------------------------------------------------------------
BUILD_PACKAGES = ("numpy", "pandas", "scipy", "lightgbm", "scikit-learn", "pyarrow", "cloudpickle", "numerai-tools",
                  "pandera")
"""The packages whose versions the manifest records."""


def build_packages() -> dict[str, str]:
    """Versions of the packages that built the pickle."""
    out = {}
    for name in BUILD_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def closed_over_model(predict: Callable[..., Any]) -> Any:
    """The model a live function closes over (model.live.make_predict's `fitted`), or None."""
    try:
        return inspect.getclosurevars(predict).nonlocals.get("fitted")
    except (TypeError, ValueError):
        return None


def _classes_of_a_loaded_pickle(fitted: Any, modules: Iterable[str], depth: int = 3) -> list[str]:
    """The classes from this project's `modules` in the model (its own first, then those of the objects it holds,
    through lists, tuples and dicts, `depth` levels down) that are not this installation's class of that name:
    cloudpickle made them anew while loading a pickle that another process built. A project class whose module is
    not loaded here counts too."""
    tops = {m.split(".")[0] for m in modules}
    foreign: list[str] = []
    seen: set[int] = set()

    def visit(obj: Any, level: int) -> None:
        if id(obj) in seen or level > depth:
            return
        seen.add(id(obj))
        if isinstance(obj, (list, tuple)):
            for item in obj:
                visit(item, level)
            return
        if isinstance(obj, dict):
            for item in obj.values():
                visit(item, level)
            return
        cls = type(obj)
        name = getattr(cls, "__module__", None) or ""
        if name.split(".")[0] not in tops:
            return
        found: Any = sys.modules.get(name)
        if "<" not in cls.__qualname__:  # a class made inside a function is nobody's to compare with
            for part in cls.__qualname__.split("."):
                found = getattr(found, part, None)
            label = f"{name}.{cls.__qualname__}"
            if found is not cls and label not in foreign:
                foreign.append(label)
        for value in getattr(obj, "__dict__", {}).values():
            visit(value, level + 1)

    visit(fitted, 0)
    return foreign


def export_pickle(fitted: Any, path: str | Path, *, pins: Path | None = None,
                  predict: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Write Numerai's predict function for a fitted estimator to `path` (by value, atomically); returns its size
    and sha256, and records them with the building Python and package versions in its manifest.

    `fitted` is a NumeraiModel or any fitted scikit-learn estimator (fitted on a DataFrame, so it has
    `feature_names_in_`) that takes a frame of its training columns. The live function around it normalises
    Numerai's frames, fills gaps and ranks the output per era (model.live). This project's code, and the module of
    any estimator that is not installed, are pickled by value. Prints one warning line (once per process) when
    numpy/pandas/scikit-learn/lightgbm differ from the runtime's pins for this Python (`pins` overrides the pins
    file). Refuses (NmuError) a pickle the runtime's cloudpickle or numpy could not read, and (naming the module) one that
    imports a project module at call time, references a module that must not run live, or needs a module
    Numerai's runtime image lacks.

    `predict`: the live function to write instead of a new `make_predict(fitted)`; it must close over `fitted`.
    `nmu refresh` passes the loaded pickle's own, so the refreshed pickle keeps the code it was built with. A model
    loaded from a pickle that another process built carries that pickle's classes, and this installation's live
    function does not run it (its `EraIndex` is another class), so such a model without its own `predict` is
    refused."""
    note_version_mismatch(pins)
    unreadable = pickle_format_mismatch(pins)
    if unreadable:
        raise NmuError(f"cannot export {Path(path).name}: {unreadable}.")
    modules = project_modules(extra=_estimators_in(fitted))
    foreign = _classes_of_a_loaded_pickle(fitted, modules)
    if foreign and (predict is None or getattr(predict, "__globals__", None) is make_predict.__globals__):
        raise NmuError(
            f"cannot export {Path(path).name}: the model's {', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}"
            " came from a pickle that another process built (its code travels in that pickle), and this "
            "installation's live function cannot run it. Export it with the live function loaded from the same "
            "pickle (`nmu refresh` does; training.refresh.pickled_model returns both), or retrain it.")
    if predict is None:
        try:
            predict = make_predict(fitted)
        except ValueError as exc:
            raise NmuError(f"cannot export {Path(path).name}: {exc}.") from None
    elif closed_over_model(predict) is not fitted:
        raise NmuError(f"cannot export {Path(path).name}: the live function given does not close over this model; "
                       "pass the function loaded with it from its pickle (training.refresh.pickled_model).")
    data, by_value = dumps_by_value(predict, modules)
    lazy = call_time_imports(by_value, modules)
    if lazy:
        where = "; ".join(f"{func} imports {', '.join(names)}" for func, names in list(lazy.items())[:5])
        raise NmuError(
            f"cannot export {Path(path).name}: {where} inside a function, which fails in Numerai's runtime "
            "(the project is pickled by value, not installed there); move the import to the module's top level."
        )
    bad = forbidden_references(data)
    bad += sorted({f"{o.__module__}.{o.__qualname__}" for o in by_value if o.__module__.split(".")[0] in FORBIDDEN_MODULES})
    if bad:
        raise NmuError(
            f"the pickle for {Path(path).name} needs {', '.join(bad[:5])}, which must not run in Numerai's runtime "
            "(absent there, or not part of the live path): the fitted model must hold only numpy/pandas/lightgbm/"
            "scikit-learn objects and classes of the model package."
        )
    absent = missing_in_runtime(data, by_value=modules)
    if absent:
        raise NmuError(
            f"the pickle for {Path(path).name} needs {', '.join(absent[:5])}, which Numerai's Python "
            f"{python_tag()[2:]} runtime image does not have (it has the standard library, "
            f"{', '.join(sorted(read_pins(pins_file()))[:6])}, ... and {', '.join(IMAGE_EXTRAS)})."
        )
    atomic_write_bytes(path, data)
    info = {"file": Path(path).name, "size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    # a new pickle gets a new record (the previous pickle's check and upload no longer describe it)
    atomic_write_json(manifest_path(path), {
        "pickle": info, "python": platform.python_version(), "packages": build_packages(),
        "features": [f for f in trained_columns(fitted) if f != "era"],
        "model": f"{type(fitted).__module__}.{type(fitted).__qualname__}", "written_by": "export_pickle",
        "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    return info
