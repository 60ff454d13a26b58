"""Build model.pkl: Numerai's `predict(live_features, live_benchmark_models)` closing over a fitted model,
cloudpickled with the project's own modules pickled BY VALUE (Numerai's runtime does not have this project
installed), written atomically, and checked to reference no module the runtime lacks."""

from __future__ import annotations

import dis
import hashlib
import importlib
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
            if "." in name or module is None or name == "__main__":  # cloudpickle pickles __main__ by value anyway
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
            if module.startswith("cloudpickle") and name == "subimport":  # dynamic_subimport builds, not imports
                return recording(obj)
            return obj

    Recorder(io.BytesIO(data)).load()
    return found


def forbidden_references(data: bytes, forbidden: Iterable[str] = FORBIDDEN_MODULES) -> list[str]:
    """The modules the pickle imports that belong to a forbidden top-level package."""
    bad = set(forbidden)
    return sorted(name for name in referenced_modules(data) if name.split(".")[0] in bad)


def _find_module_attribute(obj: Any, exclude: set[str]) -> Optional[tuple[types.ModuleType, str]]:
    """(module, name) with module.name is obj, among imported modules outside `exclude` (public names first)."""
    hits = []
    for mod_name, module in list(sys.modules.items()):
        if module is None or mod_name.split(".")[0] in exclude:
            continue
        for attr, value in list(getattr(module, "__dict__", {}).items()):
            if value is obj:
                private = sum(part.startswith("_") for part in [*mod_name.split("."), attr])
                hits.append((private, len(mod_name), mod_name, attr))
    if not hits:
        return None
    _, _, mod_name, attr = min(hits)
    return sys.modules[mod_name], attr


def dumps_by_value(obj: Any, modules: Iterable[str]) -> tuple[bytes, list[Any]]:
    """cloudpickle `obj` with `modules` registered by value (the registry is restored afterwards); returns the
    bytes and the functions and classes that were pickled by value."""
    modules = list(modules)
    tops = {m.split(".")[0] for m in modules}
    by_value: list[Any] = []

    class Recording(cloudpickle.Pickler):
        def reducer_override(self, o: Any) -> Any:
            if type(o).__name__ == "fortran":  # scipy's f2py BLAS/LAPACK wrappers: unpicklable, so by reference
                found = _find_module_attribute(o, tops)
                if found is not None:
                    return getattr, found
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


def lazy_project_imports(functions: Iterable[Any], module_names: Iterable[str]) -> dict[str, list[str]]:
    """Of the given functions (those pickled by value), the project modules they import at call time:
    {"module.function": ["package.module" (all of it) or "package.module:name" (one name of it)]}. Where the project is not installed (Numerai's runtime) such
    an import fails unless the pickle makes those modules importable (export_pickle does)."""
    import importlib.util

    names = set(module_names)
    found: dict[str, set[str]] = {}
    for func in functions:
        if not isinstance(func, types.FunctionType):
            continue
        package = func.__globals__.get("__package__") or func.__module__.rpartition(".")[0]
        for qualname, code in _nested(func.__qualname__, func.__code__):
            consts: list[Any] = []
            for ins in dis.get_instructions(code):
                if ins.opname == "LOAD_CONST":
                    consts = [*consts[-1:], ins.argval]
                elif ins.opname == "IMPORT_NAME":
                    level = consts[0] if len(consts) == 2 and isinstance(consts[0], int) else 0
                    fromlist = consts[1] if len(consts) == 2 and isinstance(consts[1], tuple) else ()
                    target = str(ins.argval)
                    try:
                        absolute = importlib.util.resolve_name("." * level + target, package) if level else target
                    except (ImportError, ValueError):
                        continue
                    if absolute.split(".")[0] in names:
                        if not fromlist or "*" in fromlist:
                            targets = {absolute}
                        else:  # `from m import a, b`: only m.a and m.b are needed (or submodule m.a)
                            targets = {f"{absolute}.{f}" if f"{absolute}.{f}" in sys.modules else f"{absolute}:{f}"
                                       for f in fromlist}
                        found.setdefault(f"{func.__module__}.{qualname}", set()).update(targets)
                    consts = []
                else:
                    consts = [] if ins.opname not in ("EXTENDED_ARG", "CACHE") else consts
    return {k: sorted(v) for k, v in sorted(found.items())}


class _InstallModules:
    """Pickles as `model.live.install_modules(modules, obj)`: on load, makes `modules` importable, returns obj."""

    def __init__(self, modules: dict[str, types.ModuleType], obj: Any):
        self.modules, self.obj = modules, obj

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        from model.live import install_modules

        return install_modules, (self.modules, self.obj)


def _importable(target: str) -> str:
    """Import a call-time import target of our own now so it can be shipped: "m" or "m:name" as given, "m.name"
    when name is a submodule, or "!" + target when it cannot be imported here."""
    module, _, attr = target.partition(":")
    try:
        real = importlib.import_module(module)
    except ImportError:
        return "!" + target
    if attr and not hasattr(real, attr):
        try:
            importlib.import_module(f"{module}.{attr}")
            return f"{module}.{attr}"
        except ImportError:
            return "!" + target
    return target


def _modules_for(targets: Iterable[str]) -> dict[str, types.ModuleType]:
    """Modules to ship for call-time imports: for "m:name" a light module holding only the names imported from
    m (never a module's other state, e.g. caches); for "m" the imported module itself (by value); and light
    placeholder packages for their parents, so the import system finds them."""
    wanted: dict[str, Optional[set[str]]] = {}
    for target in targets:
        if target.startswith("!"):
            continue
        module, _, attr = target.partition(":")
        if attr and wanted.get(module, set()) is not None:
            wanted.setdefault(module, set()).add(attr)
        elif not attr:
            wanted[module] = None
    out: dict[str, types.ModuleType] = {}
    for name, attrs in sorted(wanted.items()):
        real = sys.modules.get(name)
        if real is None:
            continue
        if attrs is None:
            out[name] = real
            continue
        light = types.ModuleType(name, real.__doc__)
        light.__package__ = real.__package__
        if hasattr(real, "__path__"):
            light.__path__ = []
        for attr in sorted(attrs):
            if hasattr(real, attr):
                setattr(light, attr, getattr(real, attr))
        out[name] = light
    for name in list(out):
        parts = name.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            if parent not in out:
                stub = types.ModuleType(parent)
                stub.__path__ = []  # a package, for the import system
                stub.__package__ = parent
                out[parent] = stub
    return out


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
        # Functions import project modules at call time: ship those modules in the pickle (by value, the same
        # objects as the rest of it) and make them importable when Numerai loads it.
        targets = [_importable(t) for ts in lazy.values() for t in ts]
        missing = sorted(t for t in targets if t.startswith("!"))
        if missing:
            warnings.warn(
                f"{', '.join(lazy)} import(s) {', '.join(m[1:] for m in missing)} at call time, which is not imported here and so "
                "cannot be shipped in the pickle: that import will fail in Numerai's runtime (import it at module "
                "level).", LazyImportWarning, stacklevel=2,
            )
        data, by_value = dumps_by_value(_InstallModules(_modules_for(targets), predict), modules)
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
