"""Typed config trees: dataclasses loaded from JSON, overridden with dotted flags, saved resolved.

Any dataclass tree works (`from_dict(TrainConfig, json)`); the training config lives beside the
training code. Overrides look like ``train.lr=3e-4`` or ``model.decoder.layers=4``; the value is
parsed as JSON when it can be (numbers, booleans, lists, null) and kept as a string otherwise.

JSON has no comments, so a key that starts with ``#`` is one: config files may carry ``"#": "..."``
or ``"#lr": "..."`` beside the real keys, at any depth, and loading drops them. A dataclass may
keep an old key name working with ``_aliases = {"old_name": "new_name"}``.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, TypeVar

from cxreport.errors import InputError
from cxreport.fsio import atomic_write_text

T = TypeVar("T")


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(tp, value, where: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise InputError(f"config {where}: expected an object, got {value!r}")
        return from_dict(tp, value, _where=where)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, where)
            except (InputError, TypeError, ValueError):
                continue
        raise InputError(f"config {where}: {value!r} does not fit {tp}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise InputError(f"config {where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise InputError(f"config {where}: expected an object, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if tp in (int, str, bool) and not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise InputError(f"config {where}: expected {tp.__name__}, got {value!r}")
    return value


def strip_comments(data):
    """``data`` without the keys that start with ``#`` (comments), at any depth."""
    if isinstance(data, dict):
        return {k: strip_comments(v) for k, v in data.items() if not (isinstance(k, str) and k.startswith("#"))}
    if isinstance(data, list):
        return [strip_comments(v) for v in data]
    return data


def _renamed(cls, key: str) -> str:
    return getattr(cls, "_aliases", {}).get(key, key)


def from_dict(cls: type[T], data: dict, _where: str = "") -> T:
    """Build dataclass ``cls`` from a dict, rejecting unknown keys (typos must not pass silently)."""
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for old, new in getattr(cls, "_aliases", {}).items():
        if old in data:
            if new in data:
                raise InputError(f"config {_where or cls.__name__}: give {new!r} only ({old!r} is its old name)")
            data = {(new if k == old else k): v for k, v in data.items()}
    unknown = set(data) - names
    if unknown:
        where = _where or cls.__name__
        raise InputError(
            f"config {where}: unknown key(s) {sorted(unknown)}; valid keys are {sorted(names)}"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{_where}.{name}" if _where else name)
    return cls(**kwargs)


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise InputError(f"--set {text!r}: expected KEY=VALUE, e.g. train.lr=3e-4")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(cfg: T, overrides: list[str]) -> T:
    """Return a new config with ``a.b.c=value`` overrides applied and type-checked."""
    data = to_dict(cfg)
    for text in overrides or []:
        path, value = parse_override(text)
        node, cls = data, type(cfg)
        for i, key in enumerate(path[:-1]):
            key = path[i] = _renamed(cls, key)
            if not isinstance(node, dict) or key not in node:
                raise InputError(f"--set {text}: no config section {'.'.join(path[: i + 1])!r}")
            node, cls = node[key], _hints(cls).get(key) if dataclasses.is_dataclass(cls) else None
        path[-1] = _renamed(cls, path[-1])
        if not isinstance(node, dict) or path[-1] not in node:
            raise InputError(f"--set {text}: no config key {'.'.join(path)!r}")
        node[path[-1]] = value
    return from_dict(type(cfg), data)


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"{p}: config file not found")
        try:
            data = strip_comments(json.loads(p.read_text()))
        except json.JSONDecodeError as exc:
            raise InputError(f"{p}: not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise InputError(f"{p}: expected a JSON object of config sections, got {type(data).__name__}")
    cfg = from_dict(cls, data)
    return apply_overrides(cfg, overrides or [])


def save_config(cfg, path: str | Path) -> None:
    atomic_write_text(path, json.dumps(to_dict(cfg), indent=2, sort_keys=True) + "\n")
