"""scikit-learn's parameter conventions without scikit-learn: `get_params`, `set_params` and a short `__repr__`.

Every class of model/ that takes constructor parameters mixes in `Params`, so `sklearn.base.clone` works on it
(model/ may not subclass sklearn.base.BaseEstimator: the pickle must not need scikit-learn). The parameter
names are those of the class's `__init__` signature, which stores each one unchanged under its own name.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["Params"]


class Params:
    """Mixin: parameters are the `__init__` arguments, stored as attributes of the same name."""

    @classmethod
    def _param_names(cls) -> list[str]:
        """The constructor's parameter names, in signature order (no *args/**kwargs)."""
        return [
            name
            for name, p in inspect.signature(cls.__init__).parameters.items()
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters as stored (nested estimators included when `deep`, as sklearn does)."""
        params = {name: getattr(self, name) for name in self._param_names()}
        if deep:
            for name, value in list(params.items()):
                if hasattr(value, "get_params") and not isinstance(value, type):
                    params.update({f"{name}__{k}": v for k, v in value.get_params(deep=True).items()})
        return params

    def set_params(self, **params: Any) -> Any:
        """Set constructor parameters by name (`a__b` sets b of the nested parameter a); unknown names raise ValueError."""
        valid = self._param_names()
        nested: dict[str, dict[str, Any]] = {}
        for name, value in params.items():
            head, sep, rest = name.partition("__")
            if head not in valid:
                raise ValueError(
                    f"{type(self).__name__} has no parameter {head!r}; valid parameters: {', '.join(valid)}"
                )
            if sep:
                nested.setdefault(head, {})[rest] = value
            else:
                setattr(self, name, value)
        for head, sub in nested.items():
            getattr(self, head).set_params(**sub)
        return self

    def __repr__(self) -> str:
        """`Class(name=value, ...)` listing only the parameters that differ from their defaults."""
        signature = inspect.signature(type(self).__init__).parameters
        changed = []
        for name in self._param_names():
            value, default = getattr(self, name), signature[name].default
            if value is default or _equal(value, default):
                continue
            if isinstance(value, dict) and len(repr(value)) > 60:
                changed.append(f"{name}=<{len(value)} entries>")
            else:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"


def _equal(a: Any, b: Any) -> bool:
    """a == b as a plain bool (False when the comparison is not a bool, e.g. numpy arrays)."""
    try:
        return bool(a == b) if type(a) is type(b) else False
    except (TypeError, ValueError):
        return False
