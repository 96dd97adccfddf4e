"""The inference pipeline end to end on a tiny trained checkpoint."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from cxreport.errors import ImageError, InputError
from cxreport.inference import Pipeline, detokenize, load_model
from cxreport.text.coverage import without_coverage

# what the tiny run saw positives and negatives of (its reports never say "not normal", so No
# Finding has no negative and is not assessed)
ASSESSED = {"Cardiomegaly", "Pleural Effusion"}


def _check_result(r, pipeline, n_views):
    assert set(r) >= {"report", "findings", "views", "model", "timing_ms", "threshold"}
    assert isinstance(r["report"], str) and r["report"].strip()
    assert list(r["findings"]) == pipeline.labels
    for f in r["findings"].values():
        if not f["assessed"]:  # no positive in the tiny run's training: no probability, never called
            assert f["state"] == "not_assessed" and f["probability"] is None and f["threshold"] is None
            continue
        assert 0.0 <= f["probability"] <= 1.0
        assert f["state"] in ("positive", "negative", "uncertain")
        assert (f["state"] == "positive") <= (f["probability"] >= f["threshold"])
    # the tiny run saw both classes of what the synthetic films draw, and of nothing else
    assert {k for k, f in r["findings"].items() if f["assessed"]} == ASSESSED
    assert len(r["views"]) == n_views and r["timing_ms"]["total"] > 0


def test_one_view_finds_what_is_drawn(pipeline, xrays):
    cardio = pipeline.generate([xrays["cardio"]])
    effusion = pipeline.generate(xrays["effusion"])  # a single path is one image
    _check_result(cardio, pipeline, 1)
    assert cardio["views"][0] == {"index": 0, "view": "frontal", "source": "cardio.png", "height": 300, "width": 300,
                                  "view_from": "position", "turned_upright_degrees": 0, "greys_inverted": False,
                                  "used": True}
    assert cardio["findings"]["Cardiomegaly"]["probability"] > effusion["findings"]["Cardiomegaly"]["probability"]
    assert effusion["findings"]["Pleural Effusion"]["probability"] > cardio["findings"]["Pleural Effusion"]["probability"]


def test_two_views_default_and_given_order(pipeline, xrays):
    r = pipeline.generate([xrays["cardio"], xrays["both"]])
    _check_result(r, pipeline, 2)
    assert [v["view"] for v in r["views"]] == ["frontal", "lateral"]
    r = pipeline.generate([xrays["cardio"], xrays["both"]], views=["LL", "PA"])
    assert [v["view"] for v in r["views"]] == ["lateral", "frontal"]


def test_preprocessing_is_the_cache_s(pipeline, tmp_path):
    """Same letterboxed pixels as `prepare_cache` stored, and the model batch comes from Collate."""
    from cxreport.data.cache import Cache, prepare_cache
    from tests.fixtures.synthetic_cxr import make_synthetic_cxr

    make_synthetic_cxr(tmp_path / "syn", n=6, n_test=2, size=300)
    # A JPEG too: the cache decodes JPEGs with a draft size, so must we.
    Image.open(tmp_path / "syn/images/s0000.png").save(tmp_path / "syn/images/s0000.png", format="JPEG")
    cache = Cache(prepare_cache("csv", tmp_path / "syn", tmp_path / "cache", size=256, workers=1))
    for row in cache.image_rows(None)[:3]:
        path = tmp_path / "syn" / "images" / row["study_id"]
        prepared = pipeline.prepare([path])
        np.testing.assert_array_equal(prepared.images[0], cache.images[row["image_index"][0]])
    images, mask, view_ids = pipeline.collate([prepared])
    assert images.shape == (1, 1, 1, pipeline.image_size, pipeline.image_size) and images.dtype == torch.float32
    assert mask.tolist() == [[True]] and view_ids.tolist() == [[0]]


def test_never_flipped(pipeline):
    img = np.zeros((200, 200), np.uint8)
    img[:, :60] = 255  # bright on the image's left only
    x = pipeline.prepare([img]).images[0]
    assert x[:, :100].mean() > 100 > x[:, 156:].mean()


def test_dicom_bytes_and_array_inputs(pipeline, xrays, tmp_path):
    pytest.importorskip("pydicom")
    from tests.fixtures.dicom import write_dicom

    gray = np.asarray(Image.open(xrays["cardio"]))
    # DICOM pixels are min-max scaled after the LUTs, so the reference film uses the full range.
    full = ((gray - gray.min()) * (255.0 / (gray.max() - gray.min())) + 0.5).astype(np.uint8)
    write_dicom(tmp_path / "a.dcm", full.astype(np.uint16) * 16, bits_stored=12)

    by_path = pipeline.generate([xrays["cardio"]])
    dicom = pipeline.generate([tmp_path / "a.dcm"])
    raw = pipeline.generate([xrays["cardio"].read_bytes()])
    arr = pipeline.generate([gray])
    full_range = pipeline.generate([full])
    assert dicom["views"][0]["source"] == "a.dcm" and raw["views"][0]["source"] == "image 1"
    assert pipeline.generate([xrays["cardio"].read_bytes()], names=["upload.png"]).views[0]["source"] == "upload.png"
    for a, b in ((dicom, full_range), (raw, by_path), (arr, by_path)):
        assert a["report"] == b["report"]
        for name, f in a["findings"].items():
            if name in ASSESSED:
                assert abs(f["probability"] - b["findings"][name]["probability"]) < 1e-3


def test_bad_inputs_name_the_problem(pipeline, xrays, tmp_path):
    (tmp_path / "text.png").write_text("not an image")
    data = xrays["cardio"].read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="text.png: not a readable image"):
        pipeline.generate([tmp_path / "text.png"])
    with pytest.raises(ImageError, match="cut.png: corrupt or truncated"):
        pipeline.generate([tmp_path / "cut.png"])
    with pytest.raises(ImageError, match="missing.png: file not found"):
        pipeline.generate([tmp_path / "missing.png"])
    with pytest.raises(ImageError, match="image 1: is empty"):
        pipeline.generate([b""])
    with pytest.raises(InputError, match="no images"):
        pipeline.generate([])
    with pytest.raises(InputError, match="view 'oblique'"):
        pipeline.generate([xrays["cardio"]], views=["oblique"])
    with pytest.raises(InputError, match="threshold"):
        pipeline.generate([xrays["cardio"]], threshold=1.5)
    with pytest.raises(InputError, match="max_len"):
        pipeline.generate([xrays["cardio"]], max_len=10_000)
    with pytest.raises(InputError, match="unsupported input"):
        pipeline.generate([3.14])


def test_batch_matches_single_and_records_bad_studies(pipeline, xrays):
    studies = [[xrays["cardio"]], {"images": [xrays["effusion"], xrays["both"]], "views": ["frontal", "lateral"]},
               [b"junk"], [xrays["both"]]]
    out = pipeline.generate_batch(studies, on_error="record")
    assert "image 1: not a readable image" in out[2]["error"]
    for study, r in zip([studies[0], studies[1], studies[3]], [out[0], out[1], out[3]]):
        single = pipeline.generate(**study) if isinstance(study, dict) else pipeline.generate(study)
        assert r["report"] == single["report"]
        assert r["findings"].keys() == single["findings"].keys()
        for name in ASSESSED:
            assert abs(r["findings"][name]["probability"] - single["findings"][name]["probability"]) < 1e-4
    with pytest.raises(ImageError):
        pipeline.generate_batch(studies)


def test_threshold_and_beam(pipeline, xrays):
    low = pipeline.generate([xrays["cardio"]], threshold=0.01)
    assert low["threshold"] == 0.01
    # every assessed finding is positive at 0.01; a finding the tiny run had too few positives or
    # negatives of stays not assessed whatever the threshold
    assert {k for k, f in low["findings"].items() if f["state"] == "positive"} == ASSESSED
    assert {k for k, f in low["findings"].items() if f["state"] == "not_assessed"} == set(low["findings"]) - ASSESSED
    beam = pipeline.generate([xrays["cardio"]], beam=3, max_len=12, faithful=False)
    # max_len bounds what the decoder wrote; the coverage line after it names what was not assessed
    assert beam["report"] and len(without_coverage(beam["report"]).split()) <= 12 and beam["plan_check"] is None
    # The faithful step may add a sentence per positive finding the decoder left out, past max_len.
    checked = pipeline.generate([xrays["cardio"]], beam=3, max_len=12)
    assert checked["plan_check"]["agrees"] and checked["plan_check"]["candidates"] == 3


def test_per_finding_thresholds_from_the_checkpoint(tiny_run, xrays):
    import dataclasses

    from cxreport.checkpoint import load_checkpoint

    model, tok, _ = load_checkpoint(tiny_run / "best")
    fc = dataclasses.replace(model.cfg.findings, thresholds={"Cardiomegaly": 0.999})
    model.cfg = dataclasses.replace(model.cfg, findings=fc)
    p = Pipeline(model, tok)
    r = p.generate([xrays["cardio"]])
    assert r["threshold"] is None and r["findings"]["Cardiomegaly"]["threshold"] == 0.999
    assert r["findings"]["Cardiomegaly"]["state"] != "positive" and r["findings"]["Pleural Effusion"]["threshold"] == 0.5
    assert p.describe()["thresholds"]["Cardiomegaly"] == 0.999
    r = p.generate([xrays["cardio"]], threshold=0.3)  # one threshold for every finding overrides them
    assert r["threshold"] == 0.3
    assert (r["findings"]["Cardiomegaly"]["state"] == "positive") == (r["findings"]["Cardiomegaly"]["probability"] >= 0.3)


def test_heatmaps_look_where_the_finding_is_drawn(pipeline, xrays):
    from cxreport.inference.heatmaps import BAR_WIDTH, gradcam

    r = pipeline.generate([xrays["effusion"], xrays["cardio"]], heatmaps=True)
    maps = r["heatmaps"]
    assert maps and {m["view"] for m in maps} == {"frontal", "lateral"}
    for m in maps:
        assert m["overlay"].shape == (256, 256 + BAR_WIDTH, 3) and m["overlay"].dtype == np.uint8 and m["has_signal"]
    positives = [k for k, f in r["findings"].items() if f["state"] == "positive"]
    assert {m["finding"] for m in maps} == set(positives or [max(ASSESSED, key=lambda k: r["findings"][k]["probability"])])
    # Fluid is drawn in the lower part of the image's left lung: the effusion map should sit there.
    images, mask, view_ids = pipeline.collate([pipeline.prepare([xrays["effusion"]])])
    cam = gradcam(pipeline.model, images, mask, view_ids, [pipeline.labels.index("Pleural Effusion")])[0, 0, 0]
    h, w = cam.shape
    assert cam[h // 2:, : w // 2].mean() > 1.5 * cam.mean()
    assert not pipeline.model.encoder._forward_hooks
    assert all(p.grad is None for p in pipeline.model.parameters())


def test_load_model_resolution(tiny_run, tmp_path, monkeypatch):
    import cxreport.inference.pipeline as inf
    from cxreport.checkpoint import load_checkpoint, save_checkpoint

    monkeypatch.setattr(inf, "PACKAGE_WEIGHTS", tmp_path / "weights")
    monkeypatch.delenv("CXREPORT_MODEL", raising=False)
    with pytest.raises(InputError, match="bundled default model is missing.*--model PATH"):
        load_model()
    with pytest.raises(InputError, match="no such model"):
        load_model(tmp_path / "nowhere")
    with pytest.raises(InputError, match="not a cxreport checkpoint"):
        load_model(tmp_path)
    # A bundled default stored in fp16, as the package ships it, loads as fp32 on CPU.
    model, tok, _ = load_checkpoint(tiny_run / "best")
    save_checkpoint(tmp_path / "weights" / "default", model, tokenizer=tok, half=True)
    (tmp_path / "weights" / "default" / "MODEL_CARD.md").write_text("# tiny\n")
    m = load_model()
    assert isinstance(m, Pipeline) and m.name == "default" and m.info.card.startswith("# tiny")
    assert all(p.dtype == torch.float32 for p in m.model.parameters())
    assert load_model("default").name == "default"
    assert load_model(tiny_run).info.path.endswith("best")  # a run folder means its best/
    monkeypatch.setenv("CXREPORT_MODEL", str(tiny_run / "last"))
    assert load_model().info.path.endswith("last")


def test_import_cxreport_stays_light():
    code = ("import sys, cxreport; assert 'torch' not in sys.modules and 'numpy' not in sys.modules; "
            "from cxreport import load_model; assert callable(load_model); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_detokenize():
    assert detokenize("the heart is enlarged . no effusion , no edema .") == \
        "The heart is enlarged. No effusion, no edema."
