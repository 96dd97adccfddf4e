"""One adapter per dataset. Each turns a dataset's own files into `Study` rows.

An adapter is a function ``load(root, **options) -> list[Study]`` registered under a name with
``@register_source``; the dataset's quirks stay inside it.
"""

from __future__ import annotations

import importlib

from cxreport.registry import Registry

_MODULES = ["iu_xray", "openi", "r2gen", "csv_folder", "nih", "kermany", "mimic_cxr"]


def _load_all():
    for mod in _MODULES:
        importlib.import_module(f"{__name__}.{mod}")


SOURCES = Registry("source", _load_all)
register_source = SOURCES.register


def list_sources() -> list[str]:
    return SOURCES.names()


def load_source(name: str, root, **options):
    """Load the studies of source ``name`` under ``root``."""
    return SOURCES.get(name)(root, **options)
