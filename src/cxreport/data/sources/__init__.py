"""One adapter per dataset. Each turns a dataset's own files into `Study` rows.

An adapter is a function ``load(root, **options) -> list[Study]`` registered under a name with
``@register_source``; the dataset's quirks stay inside it.
"""

from __future__ import annotations

import importlib
from typing import Callable

from cxreport.errors import InputError

_SOURCES: dict[str, Callable] = {}
_MODULES = ["iu_xray", "openi", "r2gen", "csv_folder", "nih", "kermany", "mimic_cxr"]


def register_source(name: str):
    def deco(fn):
        _SOURCES[name] = fn
        return fn

    return deco


def _load_all():
    for mod in _MODULES:
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{mod}":
                raise


def list_sources() -> list[str]:
    _load_all()
    return sorted(_SOURCES)


def load_source(name: str, root, **options):
    """Load the studies of source ``name`` under ``root``."""
    _load_all()
    if name not in _SOURCES:
        raise InputError(f"unknown source {name!r}; choose one of {', '.join(sorted(_SOURCES))}")
    return _SOURCES[name](root, **options)
