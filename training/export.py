"""Build model.pkl: Numerai's `predict(live_features, live_benchmark_models)` closing over a fitted model,
cloudpickled with the project's own modules pickled BY VALUE (Numerai's runtime does not have this project
installed), written atomically, and checked to reference no module the runtime lacks."""

from __future__ import annotations

import dis
import hashlib
import io
import pickle
import sys
import warnings
from pathlib import Path
import types
from typing import Any, Iterable, Optional

import cloudpickle

from model.live import make_predict
from validation.errors import NmuError
from validation.files import atomic_write_bytes
from validation.runtime import warn_version_mismatch

FORBIDDEN_MODULES = ("pandera", "numerapi", "typer", "rich", "matplotlib", "training", "validation", "pytest",
                     "platformdirs", "psutil")
"""Top-level modules a live pickle must never reference (absent from Numerai's runtime, or not for live)."""

def _site_dirs() -> list[Path]:
    """Directories of installed third-party packages and of the standard library (never the project)."""
    import site
    import sysconfig

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
            if "." in name or module is None:
                continue
            file = getattr(module, "__file__", None)
            if file and root in Path(file).resolve().parents and not _is_under(Path(file).resolve(), site_dirs):
                names.add(name)
    else:
        from importlib.metadata import packages_distributions

        names.update(top for top, dists in packages_distributions().items() if "numerai-uploads" in dists)
    for obj in extra:
        top = (getattr(type(obj), "__module__", None) or "").split(".")[0]
        module = sys.modules.get(top)
        file = getattr(module, "__file__", None) if module else None
        if top and top != "__main__" and file and not _is_under(Path(file).resolve(), site_dirs) \
                and top not in sys.stdlib_module_names:
            names.add(top)
    return sorted(n for n in names if n in sys.modules)


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
            if module.startswith("cloudpickle") and name in ("subimport", "dynamic_subimport"):
                return recording(obj)
            return obj

    Recorder(io.BytesIO(data)).load()
    return found


def forbidden_references(data: bytes, forbidden: Iterable[str] = FORBIDDEN_MODULES) -> list[str]:
    """The modules the pickle imports that belong to a forbidden top-level package."""
    bad = set(forbidden)
    return sorted(name for name in referenced_modules(data) if name.split(".")[0] in bad)


def dumps_by_value(obj: Any, modules: Iterable[str]) -> tuple[bytes, list[Any]]:
    """cloudpickle `obj` with `modules` registered by value (the registry is restored afterwards); returns the
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


class LazyImportWarning(UserWarning):
    """A by-value module imports a project module inside a function: that import fails in Numerai's runtime."""


def _nested(name: str, code: Any) -> Iterable[tuple[str, Any]]:
    yield name, code
    for const in code.co_consts:
        if hasattr(const, "co_code"):
            yield from _nested(f"{name}.{const.co_name}", const)


def lazy_project_imports(functions: Iterable[Any], module_names: Iterable[str]) -> list[str]:
    """Of the given functions (those pickled by value), the ones that import a project module at call time,
    as "module.function imports name". Such an import fails in Numerai's runtime, where the project is not
    installed; imports belong at module level (then they pickle by value)."""
    names = set(module_names)
    found: set[str] = set()
    for func in functions:
        if not isinstance(func, types.FunctionType):
            continue
        for qualname, code in _nested(func.__qualname__, func.__code__):
            level = 0
            for ins in dis.get_instructions(code):
                if ins.opname == "LOAD_CONST" and isinstance(ins.argval, int):
                    level = ins.argval
                elif ins.opname == "IMPORT_NAME":
                    target = str(ins.argval)
                    if level > 0 or target.split(".")[0] in names:
                        found.add(f"{func.__module__}.{qualname} imports {'.' * level}{target}")
    return sorted(found)


def export_pickle(fitted: Any, path: str | Path, *, pins: Optional[Path] = None) -> dict[str, Any]:
    """Write Numerai's predict function for `fitted` to `path` (by value, atomically); returns size and sha256.

    Warns when numpy/pandas/scikit-learn/lightgbm differ from the runtime's pins for this Python (`pins`
    overrides the pins file), and refuses a pickle that references a module the runtime lacks."""
    warn_version_mismatch(pins)
    predict = make_predict(fitted)
    modules = project_modules(extra=[fitted])
    data, by_value = dumps_by_value(predict, modules)
    lazy = lazy_project_imports(by_value, modules)
    if lazy:
        warnings.warn(
            f"{len(lazy)} function(s) import a project module at call time, which fails in Numerai's runtime where "
            f"the project is not installed (move the import to module level): {'; '.join(lazy[:5])}",
            LazyImportWarning, stacklevel=2,
        )
    bad = forbidden_references(data)
    bad += sorted({f"{o.__module__}.{o.__qualname__}" for o in by_value
                   if o.__module__.split(".")[0] in FORBIDDEN_MODULES})
    if bad:
        raise NmuError(
            f"the pickle for {Path(path).name} needs {', '.join(bad[:5])}, which must not run in Numerai's runtime "
            "(absent there, or not part of the live path): the fitted model must hold only numpy/pandas/lightgbm "
            "objects and classes of the model package."
        )
    atomic_write_bytes(path, data)
    return {"size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
