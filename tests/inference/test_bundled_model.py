"""The bundled default model: the README's main job works offline, from the installed package."""

import json

import numpy as np
import pytest
from PIL import Image

from cxreport.cli import main
from cxreport.inference import default_model_dir


@pytest.fixture(scope="module")
def bundled():
    if not (default_model_dir() / "model.safetensors").is_file():
        pytest.skip("no bundled default model in this checkout")
    from cxreport import load_model

    return load_model()


def test_model_card_and_small_fp16_weights():
    d = default_model_dir()
    if not (d / "model.safetensors").is_file():
        pytest.skip("no bundled default model in this checkout")
    assert (d / "model.safetensors").stat().st_size <= 25 * 2**20
    card = (d / "MODEL_CARD.md").read_text()
    assert "not for clinical use" in card.lower() and "CC BY-NC-ND 4.0" in card


def test_bundled_model_writes_a_report(bundled, tmp_path):
    y, x = np.mgrid[0:320, 0:300]
    film = (120 + 60 * np.sin(x / 40.0) * np.cos(y / 50.0)).astype(np.uint8)
    Image.fromarray(film).save(tmp_path / "pa.png")
    from cxreport.inference.gate import NotARadiograph

    # A sine pattern is no chest film: the bundled input gate refuses it ...
    with pytest.raises(NotARadiograph, match="pa.png: does not look like a chest radiograph"):
        bundled.generate([str(tmp_path / "pa.png")])
    gate, bundled.gate = bundled.gate, None  # ... and without the gate the model still writes
    try:
        out = bundled.generate([str(tmp_path / "pa.png")])
    finally:
        bundled.gate = gate
    assert out["report"].strip() and "<unk>" not in out["report"]
    assert len(out["findings"]) == 14
    assert {n for n, f in out["findings"].items() if not f["assessed"]} == {
        "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Lesion", "Consolidation", "Pneumothorax",
        "Pleural Other", "Fracture", "Support Devices"}


@pytest.mark.shared
def test_readme_main_job_on_a_real_iu_study(shared_data, capsys):
    if not (default_model_dir() / "model.safetensors").is_file():
        pytest.skip("no bundled default model in this checkout")
    imgs = [str(shared_data / "iu_xray" / "images" / f) for f in ("3_IM-1384-1001.dcm.jpg", "3_IM-1384-2001.dcm.jpg")]
    assert main(["generate", *imgs, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["report"].strip() and [v["view"] for v in out["views"]] == ["frontal", "lateral"]


@pytest.mark.shared
def test_the_nih_films_the_gate_refuses_read_with_skip_gate(bundled, shared_data, capsys):
    """Of NIH's 824 test films, the bundled gate (v0.5) refuses 3 (two children's films with wide
    white borders, one at 1.002x the limit); --skip-gate reads them, and the result says the check
    was skipped."""
    from cxreport.inference.gate import NotARadiograph

    for sid in ("00003176_001", "00005618_000", "00020499_000"):
        film = shared_data / "nih_cxr14" / "images" / f"{sid}.jpg"
        if not film.is_file():
            pytest.skip(f"{film} not in this copy of the data")
        with pytest.raises(NotARadiograph, match=f"^{sid}.jpg: does not look like a chest radiograph"):
            bundled.generate([film])
        assert main(["generate", str(film), "--skip-gate", "--json", "--threads", "1"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["report"] and out["input_check"] == "skipped"
        assert any(w.startswith(f"{sid}.jpg would have been refused") for w in out["warnings"])
