"""Files in and out: atomic writes (a final name always holds a complete file: write temp, fsync,
rename) and the one checked CSV and JSONL readers (errors name the file, the line and the fix)."""

from __future__ import annotations

import contextlib
import csv
import gzip
import json
import math
import os
import tempfile
from pathlib import Path

from cxreport.errors import InputError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; final files get the usual permissions
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_ready(obj):
    """``obj`` with every NaN / infinite number replaced by None: JSON has no NaN, and a bare ``NaN``
    written by Python's json module breaks every strict reader (jq, browsers, other languages)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj


def dumps_json(obj, indent: int | None = None, **kw) -> str:
    """Strict JSON text (non-finite numbers as null, see ``json_ready``): the one writer of JSON
    files, JSON lines and printed JSON."""
    return json.dumps(json_ready(obj), indent=indent, ensure_ascii=False, allow_nan=False, **kw)


def atomic_write_json(path: str | Path, obj, indent: int | None = 2) -> None:
    atomic_write_text(path, dumps_json(obj, indent=indent) + "\n")


def atomic_write_jsonl(path: str | Path, rows) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(dumps_json(row) + "\n")


def append_jsonl(path: str | Path, row) -> None:
    """Append one strict JSON line (a log); not atomic, as a log line only ever adds to the end."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(dumps_json(row) + "\n")


def iter_jsonl(path: str | Path, what: str = ""):
    """(line number, value) for every JSON line of a file, blank lines skipped; a missing file or a
    bad line is an ``InputError`` naming the file and the line."""
    path = Path(path)
    try:
        fh = open(path, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read{' the ' + what + ' file' if what else ''} ({exc.strerror})") from exc
    with fh:
        for no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield no, json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{no}: not valid JSON ({exc.msg}); each line must be one JSON value"
                                 + (f" ({what})" if what else "")) from exc


def read_jsonl(path: str | Path, what: str = "") -> list[dict]:
    """Every JSON line of a file (see ``iter_jsonl`` for the errors)."""
    return [row for _, row in iter_jsonl(path, what)]


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
