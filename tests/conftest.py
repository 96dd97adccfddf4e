import os
from pathlib import Path

import pytest

from tests.fixtures.gate_films import films as drawn_films
from tests.fixtures.gate_films import lateral
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


@pytest.fixture(scope="session")
def gated(tiny_run, tmp_path_factory):
    """A copy of the tiny run with gate files fitted on drawn films (as cxreport fit-gate does): the
    input gate's tests (inference, serve)."""
    import shutil

    import numpy as np
    import torch
    import torch.nn.functional as F

    from cxreport.inference import load_model
    from cxreport.inference.gate import (Gate, GateConfig, GateParams, fit_ood, fit_orientation, fit_polarity,
                                         mirror_symmetry)

    folder = tmp_path_factory.mktemp("gated") / "best"
    shutil.copytree(tiny_run / "best", folder)
    base = load_model(folder)
    films = drawn_films()
    laterals = [lateral(shift=s) for s in range(-12, 13, 3)]
    x = torch.from_numpy(np.stack(films + laterals)).unsqueeze(1).float() / 255
    x = F.interpolate(x, size=(base.image_size,) * 2, mode="bilinear", antialias=True)
    with torch.no_grad():
        pooled = base.model.encoder(x).pooled.numpy()
    mean, basis, var, resid = fit_ood(pooled, 4)
    w, b = fit_orientation(np.stack(films + laterals), 16)
    sym = min(mirror_symmetry(f) for f in films)
    params = GateParams(GateConfig(symmetry_threshold=sym - 0.05), w, b, mean, basis, var, resid)
    params.config.ood_threshold = float(Gate(params).ood_distance(pooled).max() * 3)
    params.invert_w, params.invert_b = fit_polarity(films + laterals, 16)
    params.save(folder)
    return load_model(folder)
