"""`cxreport dicom listen`: the listener, a worker and the sender around one spool.

The worker reads a study once no instance of it has arrived for ``quiet`` seconds and no open
association is still sending it: the same pipeline call as `cxreport generate` on those files
(gate, views from the DICOM tags, finding states, plan-checked report), then an SR into the
outbox. A study the gate refuses, or whose films cannot be read, gets an SR that says it was not
read and why: the radiologist sees in the PACS that the AI did not read it, rather than nothing.
The sender thread delivers the outbox. On start, everything the spool says is unfinished is
picked up again: it is the only state (spool.py). Each step is appended to SPOOL/events.jsonl
(a log for people and benchmarks, not state).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

from cxreport.interop.sr import as_dict, build_sr, read_headers

log = logging.getLogger(__name__)
MAX_TRIES = 3  # an unexpected error this many times on one study: it gets a not-read SR


class Service:
    def __init__(self, pipeline, spool_dir, dest, *, ae_title: str = "CXREPORT", host: str = "127.0.0.1",
                 port: int = 11112, allow: list[str] | None = None, quiet: float = 5.0,
                 retry_min: float = 1.0, retry_max: float = 60.0):
        from cxreport.interop.listener import Listener
        from cxreport.interop.sender import Sender
        from cxreport.interop.spool import Spool

        self.pipeline, self.quiet = pipeline, float(quiet)
        self.spool = Spool(Path(spool_dir))
        self.events_path = self.spool.root / "events.jsonl"
        self._events_lock = threading.Lock()
        self.candidates: set[str] = set()
        self.tries: dict[str, int] = {}
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.listener = Listener(self.spool, ae_title=ae_title, host=host, port=port, allow=allow,
                                 on_instance=self._received, on_close=self.wake.set)
        self.sender = Sender(self.spool, dest, ae_title, min_wait=retry_min, max_wait=retry_max,
                             on_delivered=self._delivered)
        self.worker = threading.Thread(target=self._loop, name="cxreport-worker", daemon=True)

    # ---- life cycle ---------------------------------------------------------------------------
    def start(self) -> "Service":
        removed = self.spool.clean_temporaries()
        self.candidates.update(self.spool.studies())
        c = self.spool.counts()
        log.info("spool %s: %d studies, %d SR(s) to deliver, %d delivered%s", self.spool.root, c["studies"],
                 c["outbox"], c["sent"], f"; removed {removed} half-written file(s)" if removed else "")
        self.worker.start()
        self.sender.start()
        self.listener.start()
        self.event("started", port=self.listener.port)
        return self

    def stop(self) -> None:
        self.listener.stop()
        self.stopping.set()
        self.wake.set()
        self.worker.join(30)
        self.sender.stop()

    def serve_forever(self) -> None:
        try:
            while not self.stopping.wait(1.0):
                pass
        finally:
            self.stop()

    def event(self, kind: str, **fields) -> None:
        line = json.dumps({"t": round(time.time(), 4), "event": kind, **fields})
        with self._events_lock, open(self.events_path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def _delivered(self, path: Path) -> None:
        study, key = path.name[: -len(".dcm")].rsplit(".", 1)
        self.event("delivered", study=study, key=key)

    def _received(self, study: str) -> None:
        self.event("received", study=study)
        self.candidates.add(study)
        self.wake.set()

    # ---- the worker ---------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self.stopping.is_set():
            self.wake.wait(min(0.5, max(self.quiet / 4, 0.05)))
            self.wake.clear()
            busy = self.listener.busy()
            for study in sorted(self.candidates - busy):
                if self.stopping.is_set():
                    return
                state = self.spool.state(study)
                if state is None or state.done:
                    self.candidates.discard(study)
                    continue
                if time.time() - state.last_received < self.quiet:
                    continue
                try:
                    self.read_study(state)
                except Exception as exc:  # keep serving the other studies; retried, then a not-read SR
                    log.exception("study %s failed", study)
                    self.tries[study] = self.tries.get(study, 0) + 1
                    if self.tries[study] < MAX_TRIES:
                        continue
                    try:
                        self._not_read(state, f"cxreport could not read it ({type(exc).__name__}: {exc})")
                    except Exception:
                        log.exception("study %s: could not write its not-read SR either; left for a restart", study)
                self.candidates.discard(study)
                self.tries.pop(study, None)

    def read_study(self, state) -> Path:
        headers = read_headers(state.instances)
        order = sorted(range(len(headers)), key=lambda i: (int(headers[i].get("SeriesNumber") or 0),
                                                             int(headers[i].get("InstanceNumber") or 0),
                                                             state.instances[i].name))
        paths, headers = [state.instances[i] for i in order], [headers[i] for i in order]
        t0 = time.time()
        result = as_dict(self.pipeline.generate_batch([{"images": [str(p) for p in paths], "views": None}],
                                                      on_error="record")[0])
        if "error" in result:
            return self._not_read(state, result["error"], headers)
        path = self.spool.put_sr(state, build_sr(result, headers))
        self.event("sr", study=state.study_uid, key=state.key, read=True, instances=len(paths),
                   seconds=round(time.time() - t0, 3))
        self.sender.wake.set()
        return path

    def _not_read(self, state, why: str, headers=None) -> Path:
        headers = headers or read_headers(state.instances)
        path = self.spool.put_sr(state, build_sr(self.pipeline.identity, headers, not_read=why))
        log.warning("study %s not read: %s", state.study_uid, why)
        self.event("sr", study=state.study_uid, key=state.key, read=False, reason=why)
        self.sender.wake.set()
        return path
