"""The DICOM C-STORE SCP (pynetdicom): chest radiographs into the spool, everything else skipped.

What is kept: CR and DX images (For Presentation and For Processing) and Secondary Captures whose
Modality says CR or DX, unless BodyPartExamined names a part other than the chest. Any other
storage SOP class or modality is acknowledged (a PACS routing rule that sends a CT by mistake
should not queue failures), logged and not kept. Calling AE titles outside ``allow`` are rejected
at association; C-ECHO answers. An instance is answered success (0x0000) only after it is on
disk (spool.Spool.store); a failed write answers 0xA700 (out of resources) and the sender retries.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from cxreport.errors import InputError, require

log = logging.getLogger(__name__)
CR = "1.2.840.10008.5.1.4.1.1.1"
DX_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
DX_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
CHEST_CLASSES = {CR, DX_PRESENTATION, DX_PROCESSING, SECONDARY_CAPTURE}
CHEST_MODALITIES = {"CR", "DX"}
CHEST_PARTS = {"", "CHEST", "THORAX", "LUNG", "CHEST_LAT"}
# What pydicom decodes without extra plug-ins: the routers (Orthanc, DCMTK) transcode to one of
# these when a film is stored otherwise (JPEG Lossless, JPEG 2000 need pylibjpeg or GDCM here).
DECODABLE = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2",
             "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.5"]


def is_chest_radiograph(ds) -> tuple[bool, str]:
    """(keep?, why not) from the header alone; the input gate judges the pixels later."""
    cls = str(ds.get("SOPClassUID", ""))
    modality = str(ds.get("Modality", "") or "").upper()
    part = str(ds.get("BodyPartExamined", "") or "").strip().upper()
    if cls not in CHEST_CLASSES:
        return False, f"SOP class {cls} is not a radiograph (CR, DX or secondary capture)"
    if modality not in CHEST_MODALITIES:
        return False, f"modality {modality or 'none'} (CR or DX expected)"
    if part not in CHEST_PARTS:
        return False, f"body part {part} is not the chest"
    return True, ""


class Listener:
    """``start()`` serves in background threads; ``on_instance(study_uid)`` is called after each
    kept instance is on disk and ``on_close()`` when an association ends; ``busy()`` names the
    studies an open association is still sending."""

    def __init__(self, spool, *, ae_title: str = "CXREPORT", host: str = "127.0.0.1", port: int = 11112,
                 allow: list[str] | None = None, on_instance: Callable[[str], None] | None = None,
                 on_close: Callable[[], None] | None = None):
        if not 0 < len(ae_title.strip()) <= 16:
            raise InputError(f"--ae-title {ae_title!r}: 1 to 16 characters")
        self.spool, self.ae_title, self.host, self.port = spool, ae_title.strip(), host, int(port)
        self.allow = [a.strip() for a in allow or [] if a.strip()]
        self.on_instance = on_instance or (lambda study: None)
        self.on_close = on_close or (lambda: None)
        self._open: dict[int, set[str]] = {}
        self._lock = threading.Lock()
        self.server = None
        self.received = self.skipped = 0

    def start(self) -> "Listener":
        require("pynetdicom", "interop", "the DICOM listener")
        from pynetdicom import AE, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification

        ae = AE(ae_title=self.ae_title)
        ae.require_called_aet = True
        if self.allow:
            ae.require_calling_aet = self.allow
        ae.add_supported_context(Verification)
        any_syntax = DECODABLE + ["1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.90",
                                  "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"]
        for cx in AllStoragePresentationContexts:
            # Films we read: only syntaxes we can decode. Others: anything, since they are dropped.
            ae.add_supported_context(cx.abstract_syntax, DECODABLE if cx.abstract_syntax in CHEST_CLASSES
                                     else any_syntax)
        ae.maximum_associations = 16
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_CONN_CLOSE, self._on_close)]
        try:
            self.server = ae.start_server((self.host, self.port), block=False, evt_handlers=handlers)
        except OSError as exc:
            raise InputError(f"cannot listen on {self.host}:{self.port} ({exc}): choose another --port or --host")
        self.port = self.server.server_address[1]  # the real one when 0 asked for any free port
        log.info("listening as %s on %s:%d%s", self.ae_title, self.host, self.port,
                 f" (calling AE titles allowed: {', '.join(self.allow)})" if self.allow else " (any calling AE title)")
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    def busy(self) -> set[str]:
        with self._lock:
            return set().union(*self._open.values()) if self._open else set()

    # ---- handlers (run in the association's thread) -----------------------------------------
    def _on_store(self, event) -> int:
        try:
            ds = event.dataset
        except Exception as exc:  # an undecodable dataset: tell the sender, keep nothing
            log.warning("undecodable instance from %s: %s", event.assoc.requestor.ae_title, exc)
            return 0xC210
        keep, why = is_chest_radiograph(ds)
        sop = str(ds.get("SOPInstanceUID", ""))
        if not keep:
            self.skipped += 1
            log.info("skipped %s from %s: %s", sop, event.assoc.requestor.ae_title, why)
            return 0x0000
        study = str(ds.get("StudyInstanceUID", ""))
        with self._lock:
            self._open.setdefault(id(event.assoc), set()).add(study)
        try:
            self.spool.store(study, sop, event.encoded_dataset(include_meta=True))
        except InputError as exc:  # bad UIDs: the instance cannot be filed
            log.warning("refused an instance from %s: %s", event.assoc.requestor.ae_title, exc)
            return 0xC211
        except OSError as exc:
            log.error("could not write %s to the spool: %s", sop, exc)
            return 0xA700
        self.received += 1
        self.on_instance(study)
        return 0x0000

    def _on_close(self, event) -> None:
        with self._lock:
            had = self._open.pop(id(event.assoc), None)
        if had:  # the sender is done with these studies: their quiet period may end now
            self.on_close()
