import pytest

from tests.inference.tiny_model import build_tiny_run, write_xray


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
