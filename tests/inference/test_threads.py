"""The thread policy: the model thread gets every core, a few workers decode images beside it."""

import pytest

from cxreport.errors import InputError
from cxreport.inference.threads import available_cores, plan_threads


@pytest.mark.parametrize("cores, threads, workers", [(1, 1, 1), (2, 2, 1), (4, 4, 1), (8, 8, 2), (16, 16, 4)])
def test_default_plan_gives_the_model_every_core(cores, threads, workers, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    plan = plan_threads(cores=cores)
    assert (plan.threads, plan.workers) == (threads, workers)
    served = plan_threads(cores=cores, serving=True)  # uploads decode all the time: workers keep their cores
    assert (served.threads, served.workers) == (max(1, cores - workers), workers)
    alone = plan_threads(cores=cores, decode=False)  # nothing decodes beside the model
    assert (alone.threads, alone.workers) == (cores, 0)


def test_explicit_choices_and_omp_num_threads_win(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert plan_threads(cores=16).threads == 3
    assert plan_threads(threads=5, workers=2, cores=16).threads == 5
    assert plan_threads(threads=5, workers=2, cores=16).workers == 2
    with pytest.raises(InputError, match="positive count"):
        plan_threads(threads=-1)
    assert available_cores() >= 1


def test_a_busy_machine_gets_a_hint_and_an_idle_one_none(monkeypatch):
    from cxreport.inference import threads

    plan = plan_threads(threads=2, workers=1, cores=2)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (17.5, 15.0, 12.0))
    assert "--threads 1" in threads.busy_warning(plan)
    assert threads.busy_warning(plan_threads(threads=1, workers=1, cores=2)) is None
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (0.3, 0.2, 0.1))
    assert threads.busy_warning(plan) is None
