"""C-STORE SCU: the SRs in the outbox go to the destination AE; a destination that is down is
retried with back-off, and an SR leaves the outbox (for sent/) only once the destination answered
success."""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from cxreport.errors import InputError, require

log = logging.getLogger(__name__)
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
# Success, and the warnings that still mean "stored" (coercion, elements discarded, mismatch).
STORED = {0x0000, 0xB000, 0xB006, 0xB007}


@dataclass(frozen=True)
class Destination:
    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, spec: str) -> "Destination":
        """'AE@HOST:PORT', e.g. 'ORTHANC@pacs.example.org:4242'."""
        m = re.fullmatch(r"([^@\s]{1,16})@(\[[^\]]+\]|[^:\s]+):(\d{1,5})", str(spec or "").strip())
        if not m or not 0 < int(m.group(3)) < 65536:
            raise InputError(f"--send-to {spec!r}: give AE@HOST:PORT, e.g. ORTHANC@127.0.0.1:4242")
        return cls(m.group(1), m.group(2).strip("[]"), int(m.group(3)))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def send_files(paths: list[Path], dest: Destination, calling_ae: str, timeout: float = 30.0) -> list[bool]:
    """C-STORE each file over one association; [stored?] per file. Raises ConnectionError when
    no association can be made (destination down, or it rejected us)."""
    require("pynetdicom", "interop", "sending DICOM")
    import pydicom
    from pynetdicom import AE

    datasets = [pydicom.dcmread(str(p)) for p in paths]
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.connection_timeout = min(timeout, 10.0)
    for cls_uid in sorted({str(ds.SOPClassUID) for ds in datasets}):
        ae.add_requested_context(cls_uid, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title)
    if not assoc.is_established:
        raise ConnectionError(f"no association with {dest} (down, or it rejected AE title {calling_ae})")
    out = []
    try:
        for p, ds in zip(paths, datasets):
            status = assoc.send_c_store(ds)
            code = int(status.Status) if status and "Status" in status else None
            if code not in STORED:
                log.warning("%s: %s answered status %s", p.name, dest, "none" if code is None else f"0x{code:04X}")
            out.append(code in STORED)
            if not assoc.is_established:
                raise ConnectionError(f"{dest} dropped the association")
    finally:
        if assoc.is_established:
            assoc.release()
    return out + [False] * (len(paths) - len(out))


class Sender:
    """A thread that drains the spool's outbox to ``dest``, waiting ``min_wait`` .. ``max_wait``
    seconds (doubling) between tries while the destination fails."""

    def __init__(self, spool, dest: Destination, calling_ae: str, *, min_wait: float = 1.0, max_wait: float = 60.0,
                 on_delivered=None):
        self.spool, self.dest, self.calling_ae = spool, dest, calling_ae
        self.on_delivered = on_delivered or (lambda path: None)
        self.min_wait, self.max_wait = min_wait, max_wait
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.delivered = 0
        self.thread = threading.Thread(target=self._loop, name="cxreport-sender", daemon=True)

    def start(self) -> "Sender":
        self.thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        self.wake.set()
        self.thread.join(timeout)

    def _loop(self) -> None:
        wait = self.min_wait
        while not self.stopping.is_set():
            pending = self.spool.pending_srs()
            if not pending:
                self.wake.wait(5.0)  # the worker sets it when an SR arrives; the timeout is a safety net
                self.wake.clear()
                continue
            try:
                ok = send_files(pending[:50], self.dest, self.calling_ae)
            except Exception as exc:  # network errors come in many types; the SRs stay in the outbox
                log.warning("sending %d SR(s) to %s failed (%s); next try in %.0f s", len(pending), self.dest, exc, wait)
                ok = []
            for path, stored in zip(pending, ok):
                if stored:
                    self.spool.mark_sent(path)
                    self.delivered += 1
                    self.on_delivered(path)
                    log.info("delivered %s to %s", path.name, self.dest)
            if ok and all(ok):
                wait = self.min_wait
                continue
            self.stopping.wait(wait)
            wait = min(self.max_wait, wait * 2)
