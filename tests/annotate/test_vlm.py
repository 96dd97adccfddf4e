"""Qwen2-VL region annotator: image preprocessing parity, LoRA fine-tuning, adapter reload and
generation on a tiny randomly initialised Qwen2-VL built here (no download)."""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest
from PIL import Image

from cxreport.annotate.vlm import ImageSpec, chat_prompt, preprocess_image, smart_resize
from cxreport.cli import main
from cxreport.text.regions import split_regions

pytest.importorskip("peft")

REPORTS = [
    "The heart is normal in size. The lungs are clear.",
    "Heart size and mediastinal contours are normal. No pneumothorax. Degenerative changes of the spine.",
    "Cardiomegaly. Tortuous aorta. Small left pleural effusion.",
    "Lungs are clear without focal consolidation. No acute bony abnormality.",
]


def _image(rng, h, w, mode="L"):
    arr = rng.integers(0, 256, size=(h, w) if mode == "L" else (h, w, 3), dtype=np.uint8)
    return Image.fromarray(arr, mode=mode)


# --- preprocessing -------------------------------------------------------------------------------
@pytest.mark.parametrize("h, w, max_pixels", [(100, 130, 112 * 112), (256, 310, 256 * 28 * 28), (40, 600, 56 * 56 * 4),
                                              (300, 200, 28 * 28 * 40)])
def test_matches_hf_pil_processor(h, w, max_pixels):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    rng = np.random.default_rng(h * w)
    img = _image(rng, h, w, "RGB")
    ours, grid = preprocess_image(img, ImageSpec(max_pixels=max_pixels))
    ref = Qwen2VLImageProcessorPil(size={"shortest_edge": 56 * 56, "longest_edge": max_pixels})(
        images=[img], return_tensors="np")
    assert list(grid) == ref["image_grid_thw"][0].tolist()
    np.testing.assert_allclose(ours, ref["pixel_values"], atol=1e-5)


def test_matches_hf_torchvision_processor():
    pytest.importorskip("torchvision")  # HF's default (fast) processor; absent here
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    img = _image(np.random.default_rng(0), 200, 260, "RGB")
    ours, grid = preprocess_image(img, ImageSpec(max_pixels=256 * 28 * 28))
    ref = Qwen2VLImageProcessor(size={"shortest_edge": 56 * 56, "longest_edge": 256 * 28 * 28})(
        images=[img], return_tensors="np")
    assert list(grid) == ref["image_grid_thw"][0].tolist()
    # torchvision's bicubic differs from PIL's by a few grey levels at most
    assert np.abs(ours - np.asarray(ref["pixel_values"])).mean() < 0.05


def test_smart_resize_and_grayscale():
    assert smart_resize(256, 310, 28, 56 * 56, 10**9) == (252, 308)
    pv, grid = preprocess_image(_image(np.random.default_rng(1), 90, 70))
    assert grid == (1, 4, 2) or grid[1] * 14 * grid[2] * 14 >= 56 * 56
    assert pv.shape == (grid[1] * grid[2], 3 * 2 * 14 * 14) and pv.dtype == np.float32
    assert "<|image_pad|>" * 6 + "<|vision_end|>" in chat_prompt("x", [6])


# --- tiny model end to end -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.annotate.tiny_qwen2vl import build_tiny_qwen2vl

    root = tmp_path_factory.mktemp("vlm")
    corpus = REPORTS + [json.dumps(split_regions(r)) for r in REPORTS]
    base = build_tiny_qwen2vl(root / "base", corpus * 3)
    rng = np.random.default_rng(0)
    rows = []
    for i, text in enumerate(REPORTS):
        images = []
        if i % 2 == 0:  # half with an image, half text only (as in IU X-Ray here)
            p = root / f"img{i}.png"
            _image(rng, 80 + 10 * i, 100).save(p)
            images = [str(p)]
        rows.append({"id": f"s{i}", "text": text, "images": images, **split_regions(text)})
    train = root / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = root / "adapter"
    rc = main(["vlm", "finetune", "--base", str(base), "--train-jsonl", str(train), "--out", str(out),
               "--max-steps", "8", "--batch-size", "2", "--grad-accum", "1", "--lr", "3e-2", "--warmup-steps", "1",
               "--lora-r", "8", "--lora-dropout", "0"])
    assert rc == 0
    return {"root": root, "base": base, "train": train, "rows": rows, "out": out}


def test_lora_steps_lower_the_loss(tiny):
    log = [json.loads(x) for x in (tiny["out"] / "train_log.jsonl").read_text().splitlines()]
    losses = [x["loss"] for x in log]
    assert len(losses) == 8
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses
    for name in ("adapter_model.safetensors", "adapter_config.json", "cxreport_vlm.json", "loss.png"):
        assert (tiny["out"] / name).is_file(), name


def test_adapter_reloads_with_trained_weights(tiny):
    import torch

    from cxreport.annotate.vlm import Encoder, collate, load_annotator, load_base

    model, tok, spec = load_annotator(tiny["out"])
    base, _ = load_base(str(tiny["base"]))
    enc = Encoder(tok, spec)
    batch = collate([enc.encode(r["text"], r["images"], split_regions(r["text"])) for r in tiny["rows"]],
                    tok.pad_token_id, model.config.image_token_id)
    with torch.no_grad():
        tuned, untuned = model(**batch).loss.item(), base(**batch).loss.item()
    final = json.loads((tiny["out"] / "cxreport_vlm.json").read_text())["final_loss"]
    assert tuned < 0.7 * untuned
    assert tuned == pytest.approx(final, rel=0.5)  # the reloaded adapter is the trained one


def test_generation_runs_and_writes_rows(tiny, tmp_path):
    path = tmp_path / "in.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["uid", "findings", "images"])
        for r in tiny["rows"]:
            w.writerow([r["id"], r["text"], ";".join(r["images"])])
    out = tmp_path / "vlm.jsonl"
    assert main(["vlm", "annotate", "--adapter", str(tiny["out"]), "--input", str(path), "--image-column", "images",
                 "--out", str(out), "--max-new-tokens", "12", "--batch-size", "4"]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["uid"] for r in rows] == ["s0", "s1", "s2", "s3"]
    assert all(("error" in r and r["raw"]) or all(isinstance(r[k], str) for k in ("lung", "bone")) for r in rows)


def test_clear_errors(tiny, tmp_path, capsys, monkeypatch):
    bad = tmp_path / "t.jsonl"
    bad.write_text(json.dumps({"id": "a", "text": "Clear.", "images": ["/nope.png"]}) + "\n")
    assert main(["vlm", "finetune", "--base", str(tiny["base"]), "--train-jsonl", str(bad), "--out", str(tmp_path)]) == 2
    assert "/nope.png: image of a not found" in capsys.readouterr().err
    good = tmp_path / "r.csv"
    good.write_text("uid,findings\n1,Clear lungs.\n")
    assert main(["vlm", "annotate", "--adapter", str(tmp_path), "--input", str(good), "--out", str(tmp_path / "o")]) == 2
    assert "no cxreport_vlm.json" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "peft", None)
    from cxreport.annotate.vlm import _peft
    from cxreport.errors import MissingDependencyError

    with pytest.raises(MissingDependencyError, match=r"cxreport\[vlm\]"):
        _peft()


@pytest.mark.slow
@pytest.mark.skipif(not __import__("os").environ.get("CXREPORT_TEST_TORCHRUN"),
                    reason="two-process torchrun run (~20 s on 2 cores); set CXREPORT_TEST_TORCHRUN=1")
def test_torchrun_two_processes(tiny, tmp_path):
    import os
    import subprocess

    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "cxreport", "vlm", "finetune",
           "--base", str(tiny["base"]), "--train-jsonl", str(tiny["train"]), "--out", str(out), "--max-steps", "3",
           "--batch-size", "1", "--grad-accum", "2", "--lr", "1e-2", "--warmup-steps", "1"]
    subprocess.run(cmd, check=True, env=env, timeout=300)
    assert len((out / "train_log.jsonl").read_text().splitlines()) == 3
    assert (out / "adapter_model.safetensors").is_file()
