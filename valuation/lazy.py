"""Package names that load on first use (PEP 562), so importing one light module of a package (its
errors, its settings) does not import the heavy ones (torch, LanceDB)."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_names(package: str, exports: dict[str, str], namespace: dict) -> tuple[Callable, Callable]:
    """``(__getattr__, __dir__)`` for ``package`` whose ``exports`` map a name to its module."""

    def getattr_(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return getattr_, dir_
