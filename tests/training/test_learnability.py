"""A tiny model learns to see drawn findings and write the matching sentences (< 60 s on CPU)."""

import numpy as np
import torch

from cxreport.data.cache import Cache, prepare_cache
from cxreport.data.dataset import Collate, StudyDataset
from cxreport.metrics.classification import auroc
from cxreport.text.labeler import label_reports
from cxreport.training.config import DataConfig, LoopConfig, ModelSection, RunConfig, SourceConfig
from cxreport.training.loop import load_trained, train
from tests.fixtures.synthetic_cxr import make_synthetic_cxr


def test_tiny_model_learns_findings_and_sentences(tmp_path):
    torch.manual_seed(0)
    make_synthetic_cxr(tmp_path / "syn", n=288, n_test=48)
    cache = prepare_cache("csv", tmp_path / "syn", tmp_path / "cache", size=64, workers=1)
    cfg = RunConfig(
        out_dir=str(tmp_path / "run"),
        data=DataConfig(sources=[SourceConfig(cache=str(cache))], augment=False, max_tokens=40),
        model=ModelSection(name="tiny", overrides={"findings": {"state_dropout": 0.5}}),
        train=LoopConfig(stage=2, epochs=12, batch_size=16, lr=3e-3, encoder_lr=3e-3, warmup_steps=10,
                         eval_every=60, metric="val_loss", patience=0, progress=False),
    )
    result = train(cfg)
    assert result["step"] > 0 and (tmp_path / "run" / "best" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "curves.png").is_file() and (tmp_path / "run" / "log.jsonl").is_file()

    model, tok = load_trained(tmp_path / "run")
    c = Cache(cache)
    test = StudyDataset(c, "test", tokenizer=tok)
    truth = {r["study_id"]: r for r in c.image_rows("test")}
    batch = Collate(pad_id=tok.pad_id, bos_id=tok.bos_id, eos_id=tok.eos_id, image_size=64)(
        [test[i] for i in range(len(test))])
    outs = model.generate(batch["images"], batch["image_mask"], batch["view_ids"], max_len=30)
    texts = [tok.decode(o["token_ids"]) for o in outs]
    gen_labels = label_reports(texts)
    ref_labels = label_reports([truth[s]["findings"] for s in batch["study_id"]])
    for name in ("Cardiomegaly", "Pleural Effusion"):
        y = np.array([r[name] == 1 for r in ref_labels])
        p = np.array([o["finding_probs"][name] for o in outs])
        assert auroc(p, y) > 0.95, name  # the finding head sees the drawing
        agree = np.mean([(g[name] == 1) == t for g, t in zip(gen_labels, y)])
        assert agree > 0.85, (name, agree, texts[:4])  # chance is about 0.5
    assert len(set(texts)) >= 3  # not one template for every image


def test_evaluate_findings_cli_on_a_trained_run(tmp_path):
    from cxreport.cli import main

    make_synthetic_cxr(tmp_path / "syn", n=96, n_test=16)
    cache = prepare_cache("csv", tmp_path / "syn", tmp_path / "cache", size=64, workers=1)
    cfg = RunConfig(out_dir=str(tmp_path / "run"),
                    data=DataConfig(sources=[SourceConfig(cache=str(cache))], augment=False, max_tokens=40),
                    model=ModelSection(name="tiny"),
                    train=LoopConfig(stage=2, max_steps=30, batch_size=16, lr=3e-3, encoder_lr=3e-3, warmup_steps=5,
                                     eval_every=30, patience=0, progress=False))
    train(cfg)
    assert main(["evaluate-findings", "--checkpoint", str(tmp_path / "run" / "best"), "--cache", str(cache),
                 "--split", "test"]) == 2  # test needs --allow-test
    assert main(["evaluate-findings", "--checkpoint", str(tmp_path / "run" / "best"), "--cache", str(cache),
                 "--split", "val", "--out", str(tmp_path / "ev")]) == 0
    import json

    res = json.loads((tmp_path / "ev" / "findings_auroc.json").read_text())
    assert {"Cardiomegaly", "Pleural Effusion"} <= set(res["per_label"]) and res["macro_auroc"] > 0.5
