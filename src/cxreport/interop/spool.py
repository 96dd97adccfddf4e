"""The listener's only state: a folder whose files say what was received, made and delivered.

    SPOOL/incoming/<StudyInstanceUID>/<SOPInstanceUID>.dcm   every instance acknowledged
    SPOOL/outbox/<StudyInstanceUID>.<set>.dcm                an SR made, not yet delivered
    SPOOL/sent/<StudyInstanceUID>.<set>.dcm                  the same SR once the destination took it

``<set>`` hashes the SOP Instance UIDs the SR covers. Every file appears under its final name by
an atomic rename after an fsync (file and folder), so a kill -9 at any moment leaves whole files
only: an instance is on disk before its C-STORE is answered; a study with instances but no SR
for exactly that set of instances is read (again) after a restart; an SR in the outbox is sent
until the destination takes it, then moved to sent/. An SR sent twice (a kill between the
destination's answer and the move) keeps its SOP Instance UID (sr.sr_uids), so a PACS stores it
once. The same instances sent again map to the same set, which is already done: no second SR.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from cxreport.errors import InputError

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def check_uid(uid: str, what: str) -> str:
    """A UID safe to use as a file name: digits and dots, at most 64 characters (PS3.5 9.1)."""
    uid = str(uid or "").strip().rstrip("\0")
    if not _UID.match(uid) or len(uid) > 64:
        raise InputError(f"{what} {uid!r} is not a valid DICOM UID")
    return uid


def set_key(sop_uids) -> str:
    return hashlib.sha256("\n".join(sorted(sop_uids)).encode("ascii")).hexdigest()[:16]


@dataclass
class StudyState:
    study_uid: str
    instances: list[Path]  # this study's instance files, sorted by name
    key: str  # the set's hash
    last_received: float  # newest file's mtime (seconds since the epoch)
    done: bool  # an SR for exactly these instances is in the outbox or sent/


class Spool:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.incoming, self.outbox, self.sent = (self.root / d for d in ("incoming", "outbox", "sent"))
        for d in (self.incoming, self.outbox, self.sent):
            d.mkdir(parents=True, exist_ok=True)

    def clean_temporaries(self) -> int:
        """Remove half-written files a killed process left (their instances were never acknowledged)."""
        n = 0
        for folder in [self.outbox, self.sent, *[p for p in self.incoming.iterdir() if p.is_dir()]]:
            for tmp in folder.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)
                n += 1
        return n

    # ---- instances ------------------------------------------------------------------------
    def store(self, study_uid: str, sop_uid: str, data: bytes) -> Path:
        """Write one received instance durably; returns its path. Same UIDs again: replaced."""
        study_uid, sop_uid = check_uid(study_uid, "StudyInstanceUID"), check_uid(sop_uid, "SOPInstanceUID")
        folder = self.incoming / study_uid
        new_folder = not folder.is_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{sop_uid}.dcm"
        _durable_write(path, data)
        if new_folder:
            _fsync_dir(self.incoming)
        return path

    def studies(self) -> list[str]:
        return sorted(p.name for p in self.incoming.iterdir() if p.is_dir() and _UID.match(p.name))

    def state(self, study_uid: str) -> StudyState | None:
        folder = self.incoming / study_uid
        files = sorted(p for p in folder.glob("*.dcm") if not p.name.startswith(".")) if folder.is_dir() else []
        if not files:
            return None
        key = set_key(p.stem for p in files)
        last = max(p.stat().st_mtime for p in files)
        name = f"{study_uid}.{key}.dcm"
        done = (self.outbox / name).exists() or (self.sent / name).exists()
        return StudyState(study_uid, files, key, last, done)

    # ---- SRs ------------------------------------------------------------------------------
    def put_sr(self, state: StudyState, ds) -> Path:
        """Put a study's SR in the outbox (atomically); returns its path."""
        from cxreport.fsio import atomic_path

        path = self.outbox / f"{state.study_uid}.{state.key}.dcm"
        with atomic_path(path) as tmp:
            ds.save_as(str(tmp), enforce_file_format=True)
        _fsync_dir(self.outbox)
        return path

    def pending_srs(self) -> list[Path]:
        return sorted((p for p in self.outbox.glob("*.dcm") if not p.name.startswith(".")),
                      key=lambda p: p.stat().st_mtime)

    def mark_sent(self, path: Path) -> Path:
        target = self.sent / Path(path).name
        os.replace(path, target)
        _fsync_dir(self.sent)
        _fsync_dir(self.outbox)
        return target

    def counts(self) -> dict:
        return {"studies": len(self.studies()), "outbox": len(self.pending_srs()),
                "sent": sum(1 for _ in self.sent.glob("*.dcm"))}


def _durable_write(path: Path, data: bytes) -> None:
    from cxreport.fsio import atomic_path

    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)  # atomic_path fsyncs the file before the rename
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """The rename itself survives a power cut only once its folder is synced (POSIX)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def age(state: StudyState, now: float | None = None) -> float:
    return (now if now is not None else time.time()) - state.last_received
