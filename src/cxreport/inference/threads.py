"""CPU thread policy for the commands that run the model (serve, generate, evaluate).

A command has ``workers`` threads that decode and letterbox images (Pillow and numpy release the
GIL, so they really run in parallel) and ONE model thread whose ops use ``threads`` intra-op
threads (torch's, or ONNX Runtime's in the runtime without PyTorch); torch's inter-op pool is 1
(nothing here runs independent ops in parallel):

    workers = max(1, cores // 4)          (2 cores: 1, 8 cores: 2, 16 cores: 4)
    threads = cores                       batch generate, evaluate, one study: the workers mostly
                                          wait for the model, so the model gets every core
    threads = max(1, cores - workers)     serve: uploads are decoded all the time, so the
                                          workers keep cores of their own

Measured on 2 idle cores (docs/serving.md): batch ``generate`` wrote 17-19 studies/s with 2 torch
threads + 1 worker against 13-15 with 1 + 1; ``serve`` under 50 clients answered 20.7 requests/s
with 1 torch thread and 16.3 with 2 (unbatched: 9.9 and 5.3). Work with no image decoding beside
the model (one study on the command line, ``evaluate`` reading the prepared cache) has no workers.

What the rule cannot see is other work on the machine: torch's intra-op threads wait for each
other at every op whenever one is descheduled, so on a busy CPU fewer threads are much faster
(measured on 2 cores at load average 15-20: one study 1,106 ms with 2 threads, 118 ms with 1).
When the load average already exceeds the cores at start, the log says so and suggests
``--threads``. ``cores`` is what this process may use (CPU affinity / cgroup cpuset), not the
machine's count. ``OMP_NUM_THREADS``, when set, is taken as the user's choice of ``threads``; an
explicit option overrides both.
"""

from __future__ import annotations

import logging
import os
import sys
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


def plan_threads(threads: int = 0, workers: int = 0, cores: int | None = None, *, decode: bool = True,
                 serving: bool = False) -> ThreadPlan:
    """The policy above; a positive ``threads`` / ``workers`` is kept as given. ``decode=False``:
    nothing decodes images beside the model (no workers); ``serving``: the workers decode
    uploads all the time and keep cores of their own."""
    from cxreport.errors import InputError

    if threads < 0 or workers < 0:
        raise InputError(f"threads={threads}, workers={workers}: use a positive count, or 0 for the default")
    cores = cores or available_cores()
    workers = (workers or max(1, cores // 4)) if decode else 0
    if not threads:
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        threads = int(env) if env.isdigit() and int(env) > 0 else max(1, cores - workers) if serving else cores
    return ThreadPlan(cores=cores, threads=threads, workers=workers)


def busy_warning(plan: ThreadPlan) -> str | None:
    """A hint when other work already keeps more than the cores busy (oversubscribed torch threads
    wait for each other), else None."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not available on this OS
        return None
    if plan.threads > 1 and load > plan.cores:
        return (f"the machine is busy (load average {load:.1f} on {plan.cores} cores): with {plan.threads} "
                f"threads each op waits for the slowest; --threads 1 (or fewer) is often much faster here")
    return None


_PLAN: ThreadPlan | None = None


def apply_threads(plan: ThreadPlan) -> ThreadPlan:
    """Make ``plan`` the process's thread policy (before any model work starts). torch's pools are
    set now when torch is loaded, else when a PyTorch model is loaded (``apply_to_torch``): the
    runtime without PyTorch never imports it."""
    global _PLAN
    _PLAN = plan
    if sys.modules.get("torch") is not None:
        apply_to_torch()
    log.debug("thread policy: %s", plan.describe())
    hint = busy_warning(plan)
    if hint:
        log.warning(hint)
    return plan


def apply_to_torch() -> None:
    """Set torch's thread pools to the applied plan (nothing when none was applied)."""
    if _PLAN is None:
        return
    import torch

    torch.set_num_threads(_PLAN.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work already ran: harmless
        pass


def model_threads() -> int:
    """Intra-op threads of the model thread: the applied plan's, else every core."""
    return _PLAN.threads if _PLAN is not None else available_cores()
