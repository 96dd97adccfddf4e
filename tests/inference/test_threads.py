"""The thread policy: never more busy threads than cores."""

import pytest

from cxreport.errors import InputError
from cxreport.inference.threads import available_cores, plan_threads


@pytest.mark.parametrize("cores, threads, workers", [(1, 1, 1), (2, 1, 1), (4, 3, 1), (8, 6, 2), (16, 12, 4)])
def test_default_plan_fills_the_cores_without_oversubscribing(cores, threads, workers, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    plan = plan_threads(cores=cores)
    assert (plan.threads, plan.workers) == (threads, workers)
    assert plan.threads + plan.workers <= max(cores, 2)
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
