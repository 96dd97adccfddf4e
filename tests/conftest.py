import os
from pathlib import Path

import pytest

from tests.fixtures.tiny_run import build_tiny_run, write_xray

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CXREPORT_SHARED", REPO.parent / "shared"))


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tests use tiny models: one intra-op thread is fastest, above all on a shared, busy CPU
    (measured ~10x faster than two threads fighting other processes on 2 cores). Without torch
    (the torch-free install that runs the lean runtime's tests) there is nothing to set."""
    try:
        import torch
    except ImportError:
        yield
        return
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


# ---- a trained tiny model, built once per session on disk (inference, cli, serve tests) --------
@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A run folder (best/ + last/) of the tiny model trained for a few seconds on drawn findings."""
    return build_tiny_run(tmp_path_factory.getbasetemp() / "tiny-model")


@pytest.fixture(scope="session")
def pipeline(tiny_run):
    from cxreport.inference import load_model

    return load_model(tiny_run)


@pytest.fixture(scope="session")
def xrays(tmp_path_factory):
    """Drawn films: cardiomegaly (PNG), effusion (PNG), both (JPEG), at sizes unlike the model's."""
    root = tmp_path_factory.mktemp("xrays")
    return {"cardio": write_xray(root / "cardio.png", 1, 0, 300, seed=1),
            "effusion": write_xray(root / "effusion.png", 0, 1, 280, seed=2),
            "both": write_xray(root / "both.jpg", 1, 1, 400, seed=3)}
