"""Criteria by name: the built-in ones, and those of a module a config entry names.

A loss entry of the config is `{name: <criterion>, <its parameters>}`; `module:` (a Python
file or an importable module) brings a criterion that is not built in, so a new method is one
file plus one config entry.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from nmtkd.criteria.base import NEEDS, Criterion
from nmtkd.errors import NmtkdError

CRITERIA: dict[str, type[Criterion]] = {}
BUILT_IN = ("nmtkd.criteria.nll", "nmtkd.criteria.word_kd", "nmtkd.criteria.selective_kd",
            "nmtkd.criteria.annealing_kd", "nmtkd.criteria.soft_targets", "nmtkd.criteria.tie_kd",
            "nmtkd.criteria.knn_kd")


def register(cls: type[Criterion]) -> type[Criterion]:
    """Class decorator: make a criterion known under its `name`."""
    if not cls.name:
        raise TypeError(f"{cls.__qualname__} has no name")
    known = CRITERIA.get(cls.name)
    if known is not None and known.__qualname__ != cls.__qualname__:
        raise TypeError(f"two criteria are named {cls.name!r}: {known.__qualname__} and "
                        f"{cls.__qualname__}")
    CRITERIA[cls.name] = cls
    return cls


def load_built_in() -> None:
    for module in BUILT_IN:
        importlib.import_module(module)


def load_module(location: str) -> None:
    """Import the module that defines a criterion: a .py file or a dotted module name."""
    try:
        if location.endswith(".py"):
            path = Path(location).resolve()
            if not path.is_file():
                raise NmtkdError(f"loss.module: {location} not found")
            digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
            name = f"nmtkd_criterion_{path.stem}_{digest}"
            if name not in sys.modules:
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                spec.loader.exec_module(module)
        else:
            importlib.import_module(location)
    except NmtkdError:
        raise
    except Exception as error:  # a user's module: report whatever broke its import
        raise NmtkdError(f"loss.module: cannot import {location} "
                         f"({type(error).__name__}: {error})") from None


def criterion_class(name: str, module: str | None = None) -> type[Criterion]:
    load_built_in()
    if module:
        load_module(module)
    if name not in CRITERIA:
        raise NmtkdError(f"loss.name: unknown loss {name!r} (known: "
                         f"{', '.join(sorted(CRITERIA))})")
    return CRITERIA[name]


def build_criterion(spec: dict[str, Any]) -> Criterion:
    """A criterion from its config entry: {name, module (optional), <its parameters>}."""
    spec = dict(spec)
    name = spec.pop("name", "nll")
    cls = criterion_class(name, spec.pop("module", None))
    try:
        criterion = cls(**spec)
    except TypeError as error:
        raise NmtkdError(f"loss {name!r}: {error}") from None
    unknown = set(criterion.needs) - set(NEEDS)
    if unknown:
        raise NmtkdError(f"loss {name!r} needs {sorted(unknown)}, which the workflow cannot "
                         f"provide (known: {', '.join(NEEDS)})")
    return criterion


def known_criteria() -> list[str]:
    load_built_in()
    return sorted(CRITERIA)
