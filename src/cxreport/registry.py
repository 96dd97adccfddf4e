"""One name -> thing table for every pluggable part (encoders, decoders, projectors, dataset
sources, downloads, tokenizers, cleaning protocols).

    ENCODERS = Registry("encoder", loader=_import_encoder_modules)

    @ENCODERS.register("small-cnn")
    def build(cfg): ...

    ENCODERS.get("small-cnn")   # or InputError: unknown encoder 'x'; choose one of a, b, c

A name registers once (a second registration is a bug: ValueError). ``loader`` imports the
modules whose decorators fill the table; it runs on first lookup, so importing a registry stays
cheap, and it is the one place an import may point back up into the package (a lazy cycle).
"""

from __future__ import annotations

from typing import Callable, Iterator

from cxreport.errors import InputError


class Registry:
    def __init__(self, kind: str, loader: Callable[[], None] | None = None):
        self.kind = kind
        self._loader = loader
        self._loaded = loader is None
        self._items: dict[str, object] = {}

    def add(self, name: str, value) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._items[name] = value

    def register(self, name: str):
        """Decorator: register the decorated function or class under ``name``."""

        def deco(obj):
            self.add(name, obj)
            return obj

        return deco

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            self._loader()

    def get(self, name: str):
        self._load()
        if name not in self._items:
            raise InputError(f"unknown {self.kind} {name!r}; choose one of {', '.join(sorted(self._items))}")
        return self._items[name]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def __contains__(self, name) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._items)})"
