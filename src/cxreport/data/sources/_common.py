"""Helpers shared by the adapters: CSV reading with column checks, split files, image lookup."""

from __future__ import annotations

import csv
import gzip
import logging
from pathlib import Path

from cxreport.data.study import seeded_split
from cxreport.errors import InputError

log = logging.getLogger("cxreport.data")


def iter_csv(path: Path, required, hint: str = ""):
    """Rows of a (possibly gzipped) CSV, streamed, after checking that ``required`` columns exist.

    Streaming matters: MIMIC's metadata CSV has 377k rows and adapters keep a few fields of each.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            found = reader.fieldnames or []
            missing = [c for c in required if c not in found]
            if missing:
                raise InputError(
                    f"{path}: missing column(s) {', '.join(map(repr, missing))}; found columns [{', '.join(found)}], "
                    f"expected at least [{', '.join(required)}]{' ' + hint if hint else ''}")
            yield from reader
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc}); save the CSV as UTF-8") from exc
    except (OSError, EOFError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read ({exc}); check or download the file again") from exc


def read_csv(path: Path, required: list[str], what: str = "", hint: str = "") -> list[dict]:
    """Read a whole CSV into dicts, failing clearly when it is missing or lacks required columns."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found{' (' + what + ')' if what else ''}")
    return list(iter_csv(path, required, hint))


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
