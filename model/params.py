"""Parameter checks at `fit` (scikit-learn's rule: `__init__` stores, `fit` checks) and the meaning of `n_jobs`.

Every class declares the rules of its parameters as data, a class attribute `_parameter_rules` (name → rule), as
scikit-learn's estimators declare `_parameter_constraints`; `check_params(obj)` checks them at fit and raises a
ValueError that names the class, the parameter, the value and what is allowed. (scikit-learn's own validator,
`sklearn.utils._param_validation`, is private and may change between the runtime's 1.6.1 and a newer release: this
small checker keeps the model's behaviour the same across them.) A rule is a tuple:

- ("int", low, high) / ("real", low, high): a number within [low, high] (None: unbounded); bools are refused;
- ("bool",): True or False;
- ("choice", a, b, ...): one of the listed values;
- ("mapping",): a mapping (e.g. of feature groups or LightGBM parameters);
- ("regressor",): an object with `fit` and `predict`;
- ("n_jobs",): scikit-learn's `n_jobs` (see below);
- any rule with "none" appended, e.g. ("int", 1, None, "none"): also None.

`n_jobs` follows scikit-learn: None means 1, a positive number that many, -1 every CPU this process may use, -2
all but one, and so on; 0 is refused. Inside Numerai's one-CPU runtime -1 means 1.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["available_cpus", "check_params", "resolve_n_jobs"]


def _describe(rule: tuple) -> str:
    kind, *rest = rule
    nullable = bool(rest) and rest[-1] == "none"
    if nullable:
        rest = rest[:-1]
    if kind in ("int", "real"):
        low, high = (list(rest) + [None, None])[:2]
        noun = "an integer" if kind == "int" else "a number"
        bounds = [f">= {low}" if low is not None else "", f"<= {high}" if high is not None else ""]
        text = " ".join([noun, " and ".join(b for b in bounds if b)]).strip()
    elif kind == "bool":
        text = "True or False"
    elif kind == "mapping":
        text = "a mapping"
    elif kind == "regressor":
        text = "a regressor (an object with fit and predict)"
    elif kind == "n_jobs":
        text = "a non-zero integer or None (None: 1, -1: every CPU, -2: all but one)"
        nullable = False
    else:
        text = "one of " + ", ".join(repr(v) for v in rest)
    return text + (" or None" if nullable else "")


def _ok(value: Any, rule: tuple) -> bool:
    kind, *rest = rule
    if rest and rest[-1] == "none":
        if value is None:
            return True
        rest = rest[:-1]
    if kind == "bool":
        return isinstance(value, (bool,)) or type(value).__name__ == "bool_"
    if kind == "mapping":
        return isinstance(value, Mapping)
    if kind == "regressor":
        return hasattr(value, "fit") and hasattr(value, "predict")
    if kind == "n_jobs":
        return value is None or (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value != 0)
    if kind == "choice":
        return any(value is option or (type(value) is type(option) and value == option) for option in rest)
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return False
    if kind == "int" and not isinstance(value, numbers.Integral):
        return False
    if kind == "real" and not isinstance(value, numbers.Real):
        return False
    low, high = (list(rest) + [None, None])[:2]
    return (low is None or value >= low) and (high is None or value <= high) and value == value  # NaN fails


def check_params(estimator: Any, rules: Mapping[str, tuple] | None = None) -> None:
    """ValueError naming the first parameter of `estimator` whose value breaks its rule (see the module docstring):
    the rules declared on its class (`_parameter_rules`), or `rules`."""
    for name, rule in (type(estimator)._parameter_rules if rules is None else rules).items():
        value = getattr(estimator, name)
        if not _ok(value, rule):
            raise ValueError(
                f"{type(estimator).__name__}: parameter `{name}` is {value!r}; it must be {_describe(rule)}."
            )


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def resolve_n_jobs(n_jobs: Any, name: str = "n_jobs") -> int:
    """The number of workers `n_jobs` means (scikit-learn's convention, see the module docstring)."""
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0:
        raise ValueError(f"parameter `{name}` is {n_jobs!r}; it must be a non-zero integer or None "
                         "(None: 1, -1: every CPU, -2: all but one)")
    if n_jobs > 0:
        return int(n_jobs)
    return max(1, available_cpus() + 1 + int(n_jobs))
