import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # On a shared 2-core box intra-op threads fight other processes: one thread is ~10x faster here.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
