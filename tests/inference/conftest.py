"""The tiny model with an input gate fitted on drawn films, for the gate's tests."""

import shutil

import numpy as np
import pytest

from tests.fixtures.gate_films import films as drawn_films
from tests.fixtures.gate_films import lateral


@pytest.fixture(scope="session")
def gated(tiny_run, tmp_path_factory):
    """A copy of the tiny run with gate files fitted on drawn films (as scripts/fit_gate.py does)."""
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
