"""The input gate's words and its override, on the tiny model with a gate fitted on drawn films:
noise is called noise, a film with inverted greys is turned back with a warning, every refusal
names the image on every path (Python paths, bytes with names, CLI, HTTP upload), and skip_gate
(Python), --skip-gate (CLI) and skip_gate=true (HTTP) read a refused image as given, with warnings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxreport.inference.gate import NotARadiograph
from cxreport.inference.intake import SKIPPED
from tests.fixtures.gate_films import films, png


def _grey_photo(tmp_path: Path) -> Path:
    """A grey photograph: passes the pixel checks, refused by the learned score."""
    import matplotlib

    photo = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("L")
    return png(tmp_path / "hopper_grey.png", np.asarray(photo))


def test_noise_is_called_noise_also_when_shrinking_flattens_it(gated, tmp_path):
    rng = np.random.default_rng(0)
    big = png(tmp_path / "big_noise.png", rng.integers(0, 256, (2400, 2400)))  # averages to flat grey at 256 px
    faint = png(tmp_path / "faint_noise.png", np.clip(128 + rng.normal(0, 3, (512, 512)), 0, 255))
    flat = png(tmp_path / "flat.png", np.full((512, 512), 90))
    for path in (big, faint):
        with pytest.raises(NotARadiograph, match=f"{path.name}: looks like random noise"):
            gated.generate([path])
    with pytest.raises(NotARadiograph, match="flat.png: blank or nearly uniform"):
        gated.generate([flat])


def test_inverted_greys_are_turned_back_with_a_warning(gated, tmp_path):
    film = films(3)[1]
    upright = gated.generate([png(tmp_path / "film.png", film)])
    negative = gated.generate([png(tmp_path / "negative.png", 255 - film)])
    assert negative.views[0]["greys_inverted"] and not upright.views[0]["greys_inverted"]
    assert any(w.startswith("negative.png: its greys look inverted") and "inverted back" in w
               for w in negative.warnings)
    assert negative.report == upright.report
    for name, f in negative.findings.items():
        assert f.probability == pytest.approx(upright.findings[name].probability, abs=2e-3)
    narrow = film[:, 28:228]  # 256 x 200: the letterbox adds black borders left and right
    prepared = gated.prepare([png(tmp_path / "narrow_negative.png", 255 - narrow)])
    assert prepared.views[0]["greys_inverted"]
    assert prepared.images[0, :, :20].max() == 0  # the borders stay black: only the film is inverted back
    assert not gated.prepare([png(tmp_path / "narrow.png", narrow)]).views[0]["greys_inverted"]
    # read as given with skip_gate: not inverted, and the warning says what the gate saw
    as_given = gated.generate([tmp_path / "negative.png"], skip_gate=True)
    assert not as_given.views[0]["greys_inverted"]
    assert any("its greys look inverted" in w and "read as given" in w for w in as_given.warnings)


def test_refusals_name_the_image_on_every_python_path(gated, tmp_path):
    grey = _grey_photo(tmp_path)
    data = grey.read_bytes()
    with pytest.raises(NotARadiograph, match="^hopper_grey.png: does not look like a chest radiograph"):
        gated.generate([grey])
    with pytest.raises(NotARadiograph, match=r"^scan-7\.png: does not look like a chest radiograph.*--skip-gate"):
        gated.generate([data], names=["scan-7.png"])  # was "bytes: does not look like ..."
    with pytest.raises(NotARadiograph, match="^image 1: does not look like"):
        gated.generate([data])
    out = gated.generate_batch([{"images": [data], "names": ["upload.png"]},
                                [png(tmp_path / "film.png", films(1)[0])]], on_error="record")
    assert not out[0].ok and out[0].refused and out[0].error.startswith("upload.png: does not look like")
    assert out[0].to_dict()["refused"] is True and out[0]["error"] == out[0].error and out[1].ok


def test_skip_gate_reads_a_refused_image_and_says_so(gated, tmp_path):
    import matplotlib

    grey = _grey_photo(tmp_path)
    colour = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    for path, why in ((grey, "does not look like a chest radiograph"), (colour, "a colour picture")):
        r = gated.generate([path], skip_gate=True)
        assert r.ok and r.report and r.input_check == "skipped"
        assert r.warnings[0] == SKIPPED
        assert any(w.startswith(f"{path.name} would have been refused (read anyway, skip_gate): {why}")
                   for w in r.warnings)
    film = gated.generate([png(tmp_path / "film.png", films(1)[0])], skip_gate=True)
    assert film.input_check == "skipped" and film.warnings == [SKIPPED]  # nothing would have been refused
    assert gated.generate([tmp_path / "film.png"]).input_check == "passed"
    batch = gated.generate_batch([[grey], [colour]], skip_gate=True)
    assert all(r.ok and r.input_check == "skipped" for r in batch)


def test_cli_skip_gate(gated, tmp_path, capsys):
    from cxreport.cli import main

    grey = _grey_photo(tmp_path)
    model = gated.info.path
    assert main(["generate", "--model", model, str(grey), "--threads", "1"]) == 2
    assert "hopper_grey.png: does not look like a chest radiograph" in capsys.readouterr().err
    assert main(["generate", "--model", model, str(grey), "--threads", "1", "--skip-gate", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["input_check"] == "skipped" and out["report"]
    assert any(w.startswith("hopper_grey.png would have been refused") for w in out["warnings"])


def test_http_skip_gate_and_upload_names(gated, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from cxreport.serve.app import ServeConfig, create_app

    data = _grey_photo(tmp_path).read_bytes()
    client = TestClient(create_app(gated, ServeConfig()))
    files = [("images", ("my film.png", data, "image/png"))]
    refused = client.post("/v1/reports", files=files)
    assert refused.status_code == 422
    assert refused.json()["error"].startswith("images[0] ('my film.png'): does not look like a chest radiograph")
    read = client.post("/v1/reports", files=files, data={"skip_gate": "true"})
    assert read.status_code == 200, read.text
    body = read.json()
    assert body["input_check"] == "skipped" and body["views"][0]["source"] == "images[0] ('my film.png')"
    assert any(w.startswith("images[0] ('my film.png') would have been refused") for w in body["warnings"])
