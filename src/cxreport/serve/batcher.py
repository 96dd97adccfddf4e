"""Dynamic micro-batching: studies from concurrent requests share one forward pass.

A request hands its prepared study (decoded and letterboxed in a worker thread) to
``MicroBatcher.submit`` and awaits its own result. One collector task on the event loop takes the
first waiting study, then whatever else arrives within ``window_ms`` (or is already queued while
the model was busy), up to ``max_batch``, and runs them through ``Pipeline.run`` in the single
model thread. Studies only share a batch when their options (beam, max_len, threshold, regions)
match; heatmap requests run one by one (Grad-CAM hooks and per-study backward passes). When a
batch fails, its studies are retried one at a time so that an error stays with the request that
caused it. ``max_batch=1`` turns batching off: every study runs alone, in arrival order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

log = logging.getLogger("cxreport.serve")


@dataclass
class _Job:
    prepared: object  # inference PreparedStudy
    opts: dict
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)

    @property
    def key(self) -> tuple:
        # Heatmap jobs get a key of their own (id), so they never share a batch.
        o = self.opts
        return (o.get("beam"), o.get("max_len"), o.get("threshold"), o.get("regions"),
                id(self) if o.get("heatmaps") else None)


class MicroBatcher:
    """Collects studies from concurrent requests into batches for one ``Pipeline``."""

    def __init__(self, pipeline, *, max_batch: int = 16, window_ms: float = 10.0):
        if max_batch < 1 or window_ms < 0:
            raise ValueError("max_batch must be >= 1 and window_ms >= 0")
        self.pipeline, self.max_batch, self.window = pipeline, int(max_batch), float(window_ms) / 1000
        # One model thread: batches run one after another, each using every torch thread.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="cxreport-model")
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._loop = None
        self.batches = 0  # counters for tests and logs
        self.studies = 0

    async def submit(self, prepared, **opts) -> dict:
        """Queue one prepared study; returns its result dict (or raises its own error)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first call, or a new event loop (test clients)
            self._loop, self._queue = loop, asyncio.Queue()
            self._task = loop.create_task(self._collect())
        job = _Job(prepared, opts, loop.create_future())
        self._queue.put_nowait(job)
        return await job.future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            deadline = loop.time() + self.window
            while len(jobs) < self.max_batch:
                if not self._queue.empty():
                    jobs.append(self._queue.get_nowait())
                    continue
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    jobs.append(await asyncio.wait_for(self._queue.get(), left))
                except asyncio.TimeoutError:
                    break
            jobs = [j for j in jobs if not j.future.done()]  # the client went away meanwhile
            for group in _groups(jobs):
                await self._run(group)

    async def _run(self, jobs: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self._forward, jobs)
        except Exception as exc:  # noqa: BLE001 - handed to the request(s) that caused it
            if len(jobs) > 1:
                for job in jobs:  # find out which study fails; the others still get their report
                    await self._run([job])
                return
            _settle(jobs[0].future, exc=exc)
            return
        self.batches += 1
        self.studies += len(jobs)
        ms = (time.perf_counter() - t0) * 1000
        log.debug("batch of %d studies: %.0f ms (oldest waited %.0f ms)", len(jobs), ms,
                  (t0 - min(j.queued for j in jobs)) * 1000)
        for job, result in zip(jobs, results):
            _settle(job.future, result=result)

    def _forward(self, jobs: list[_Job]) -> list[dict]:
        prepared = [j.prepared for j in jobs]
        # Options are shared by the batch; finding states a user set stay with their own study.
        return self.pipeline.run(prepared, findings=[getattr(p, "findings", None) for p in prepared], **jobs[0].opts)


def _groups(jobs: list[_Job]) -> list[list[_Job]]:
    """Jobs with the same options, in order of their first arrival."""
    groups: dict[tuple, list[_Job]] = {}
    for job in jobs:
        groups.setdefault(job.key, []).append(job)
    return list(groups.values())


def _settle(future: asyncio.Future, *, result=None, exc: BaseException | None = None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
