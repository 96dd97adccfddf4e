"""One adapter per dataset. Each turns a dataset's own files into `Study` rows.

An adapter is a function ``load(root, **options) -> list[Study]`` registered under a name with
``@register_source``; the dataset's quirks stay inside it. Its module docstring's first line says
what it reads, and its ``Options:`` docstring section explains each keyword option, one
``name: text`` line each: `cxreport data sources` prints both, and `load_source` checks and
converts the options a user gives (``-o key=value`` strings) against its signature.
"""

from __future__ import annotations

import importlib
import inspect
import sys

from cxreport.errors import InputError
from cxreport.registry import Registry

_MODULES = ["iu_xray", "openi", "r2gen", "csv_folder", "nih", "kermany", "mimic_cxr"]


def _load_all():
    for mod in _MODULES:
        importlib.import_module(f"{__name__}.{mod}")


SOURCES = Registry("source", _load_all)
register_source = SOURCES.register


def list_sources() -> list[str]:
    return SOURCES.names()


def _option_help(fn) -> dict[str, str]:
    """The ``Options:`` section of an adapter's docstring: {option: text}."""
    out, current, inside = {}, None, False
    for line in (inspect.getdoc(fn) or "").splitlines():
        if line.strip() == "Options:":
            inside = True
            continue
        if not inside or not line.strip():
            continue
        head, sep, text = line.strip().partition(": ")
        if sep and line.startswith("  ") and not line.startswith("    ") and head.isidentifier():
            current = head
            out[current] = text.strip()
        elif current:
            out[current] += " " + line.strip()
    return out


def describe_source(name: str) -> dict:
    """{"name", "about" (first docstring line of its module), "doc" (all of it), "options":
    [(option, default, help)]}."""
    fn = SOURCES.get(name)
    helps = _option_help(fn)
    params = [p for p in list(inspect.signature(fn).parameters.values())[1:] if p.kind is p.POSITIONAL_OR_KEYWORD
              or p.kind is p.KEYWORD_ONLY]
    doc = inspect.getdoc(sys.modules[fn.__module__]) or ""
    return {"name": name, "about": doc.splitlines()[0] if doc else "", "doc": doc,
            "options": [(p.name, p.default, helps.get(p.name, "")) for p in params]}


def _convert(name: str, option: str, value, default):
    """A ``-o key=value`` string as the type of the option's default (bool, int, float)."""
    if not isinstance(value, str) or default is None or isinstance(default, str):
        return value
    try:
        if isinstance(default, bool):
            if value.strip().lower() in ("1", "true", "yes", "on"):
                return True
            if value.strip().lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        return type(default)(value)
    except ValueError:
        raise InputError(f"source {name}: option {option}={value!r}: expected {type(default).__name__} "
                         f"(e.g. {option}={default!r})") from None


def load_source(name: str, root, **options):
    """Load the studies of source ``name`` under ``root``; an option the adapter does not take is an
    error listing those it does (a typo must not pass silently)."""
    fn = SOURCES.get(name)
    params = dict(list(inspect.signature(fn).parameters.items())[1:])
    named = {k: p for k, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    unknown = sorted(set(options) - set(named))
    if unknown:
        have = ", ".join(named) or "none"
        raise InputError(f"source {name}: unknown option(s) {', '.join(unknown)}; its options are: {have} "
                         "(`cxreport data sources` explains them)")
    options = {k: _convert(name, k, v, named[k].default) for k, v in options.items()}
    return fn(root, **options)
