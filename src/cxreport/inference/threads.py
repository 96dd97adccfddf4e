"""CPU thread policy for the commands that run the model (serve, generate, evaluate).

The rule: never keep more threads busy than there are cores. A command has ``workers`` threads
that decode and letterbox images (Pillow and numpy release the GIL, so they really run in
parallel) and ONE model thread whose torch ops use ``threads`` intra-op threads. So

    workers = max(1, cores // 4)          (2 cores: 1, 8 cores: 2, 16 cores: 4)
    threads = max(1, cores - workers)     (2 cores: 1, 8 cores: 6, 16 cores: 12)

and torch's inter-op pool is 1 (nothing here runs independent ops in parallel). Work with no
image decoding beside the model (one study on the command line, ``evaluate`` reading the
prepared cache) has no workers, so ``threads = cores``. Why: when the
threads outnumber the cores, torch's intra-op threads wait for each other at every op whenever one
is descheduled; measured on 2 cores under load, one study took 1,106 ms with 2 threads and 118 ms
with 1 (docs/serving.md). ``cores`` is what this process may use (CPU affinity / cgroup cpuset),
not the machine's count. ``OMP_NUM_THREADS``, when set, is taken as the user's choice of
``threads``; an explicit option overrides both.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

log = logging.getLogger("cxreport.inference")


@dataclass(frozen=True)
class ThreadPlan:
    cores: int
    threads: int  # torch intra-op threads of the model thread
    workers: int  # image decoding threads

    def describe(self) -> str:
        return f"{self.cores} core(s): {self.threads} torch thread(s), {self.workers} decode worker(s)"


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def plan_threads(threads: int = 0, workers: int = 0, cores: int | None = None, *, decode: bool = True) -> ThreadPlan:
    """The policy above; a positive ``threads`` / ``workers`` is kept as given. ``decode=False``:
    nothing decodes images beside the model (no workers)."""
    from cxreport.errors import InputError

    if threads < 0 or workers < 0:
        raise InputError(f"threads={threads}, workers={workers}: use a positive count, or 0 for the default")
    cores = cores or available_cores()
    workers = (workers or max(1, cores // 4)) if decode else 0
    if not threads:
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        threads = int(env) if env.isdigit() and int(env) > 0 else max(1, cores - workers)
    return ThreadPlan(cores=cores, threads=threads, workers=workers)


def apply_threads(plan: ThreadPlan) -> ThreadPlan:
    """Set torch's thread pools to the plan (before any model work starts)."""
    import torch

    torch.set_num_threads(plan.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work already ran: harmless
        pass
    log.debug("thread policy: %s", plan.describe())
    return plan
