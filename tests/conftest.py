import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CXREPORT_SHARED", REPO.parent / "shared"))


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tests use tiny models: one intra-op thread is fastest, above all on a shared, busy CPU
    (measured ~10x faster than two threads fighting other processes on 2 cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def shared_data() -> Path:
    """The real data folder (../shared/data); tests using it skip where it is absent."""
    root = SHARED / "data"
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root}")
    return root
