"""Helpers shared by the adapters: split files, image lookup (CSV reading is fsio.read_csv)."""

from __future__ import annotations

import logging
from pathlib import Path

from cxreport.data.study import seeded_split
from cxreport.errors import InputError
from cxreport.fsio import read_csv

log = logging.getLogger("cxreport.data")


def find_file(root: Path, name: str, explicit=None) -> Path | None:
    """An explicitly given file, else ``name`` in root or its parent (shared layouts keep it there)."""
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise InputError(f"{p}: file not found")
        return p
    for d in (root, root.parent):
        if (d / name).is_file():
            return d / name
    return None


def read_split_file(path: Path | None) -> dict[str, str]:
    """``uid,split`` CSV → {uid: split}; 'validate'/'valid' mean 'val'."""
    if path is None:
        return {}
    rows = read_csv(path, ["uid", "split"], "split file")
    fix = {"validate": "val", "valid": "val", "validation": "val"}
    return {r["uid"].strip(): fix.get(r["split"].strip().lower(), r["split"].strip().lower()) for r in rows}


def assign_split(key: str, splits: dict[str, str], seed: int) -> str:
    return splits.get(key) or seeded_split(key, seed)


def require_dir(root, what: str) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(f"{root}: folder not found ({what})")
    return root.resolve()
