"""Presets: a pasteable table; RadGraph through a stand-in package; missing weights listed as skipped."""

import json
import sys
import types

import pytest

from .chexbert_fixtures import randomise, tiny_config, write_vocab

HYPS = ["No pleural effusion. Normal heart size.", "Mild cardiomegaly. Small left effusion.",
        "The lungs are clear.", "Possible left lower lobe pneumonia."]
REFS = ["Normal heart size. No effusion.", "Cardiomegaly with a small left pleural effusion.",
        "Lungs are clear. No pneumothorax.", "Left lower lobe consolidation, likely pneumonia."]


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """An empty Hugging Face cache and no network: what CI and an offline machine see."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hub"


@pytest.fixture
def fake_radgraph(tmp_path, monkeypatch):
    """A stand-in for the radgraph package: same module layout and F1RadGraph call signature."""
    calls = []

    class F1RadGraph:
        def __init__(self, reward_level, model_type=None, **kw):
            calls.append((reward_level, model_type))

        def __call__(self, refs, hyps):
            # word-overlap rewards at three levels, 0 for an empty text (as the package)
            def one(h, r):
                a, b = set(h.lower().split()), set(r.lower().split())
                return 0.0 if not a or not b else 2 * len(a & b) / (len(a) + len(b))
            s = [one(h, r) for h, r in zip(hyps, refs)]
            rewards = (s, [x / 2 for x in s], [x / 4 for x in s])
            return tuple(sum(x) / len(x) for x in rewards), rewards, [], []

    pkg, sub = types.ModuleType("radgraph"), types.ModuleType("radgraph.radgraph")
    pkg.F1RadGraph, sub.CACHE_DIR = F1RadGraph, str(tmp_path / "radgraph-cache")
    (tmp_path / "radgraph-cache" / "radgraph-xl").mkdir(parents=True)
    (tmp_path / "radgraph-cache" / "radgraph-xl" / "weights.th").write_bytes(b"stand-in")
    monkeypatch.setitem(sys.modules, "radgraph", pkg)
    monkeypatch.setitem(sys.modules, "radgraph.radgraph", sub)
    from cxreport.metrics import radgraph

    monkeypatch.setattr(radgraph, "_SCORERS", {})
    return calls


@pytest.fixture(scope="module")
def tiny_chexbert(tmp_path_factory):
    import torch

    from cxreport.metrics.chexbert import build_model, save_published_format

    root = tmp_path_factory.mktemp("chexbert")
    tok = write_vocab(root / "tok")
    torch.manual_seed(1)
    model = randomise(build_model(tiny_config(len((tok / "vocab.txt").read_text().split()))), seed=1)
    return {"weights": str(save_published_format(model, root / "chexbert.pth")), "tokenizer": str(tok),
            "device": "cpu"}


def test_radgraph_scores_through_the_package_interface(fake_radgraph, empty_hub):
    from cxreport.metrics import score

    res = score(HYPS, REFS, metrics="radgraph", bootstrap=50)
    assert fake_radgraph == [("all", "radgraph-xl")]
    m = res["metrics"]
    assert m["F1-RadGraph-partial"]["value"] == pytest.approx(m["F1-RadGraph-simple"]["value"] / 2)
    assert m["F1-RadGraph-simple"]["ci95"][0] <= m["F1-RadGraph-simple"]["value"] <= m["F1-RadGraph-simple"]["ci95"][1]
    assert res["radgraph"]["model_type"] == "radgraph-xl" and "radgraph-xl" in res["radgraph"]["note"]
    assert len(res["per_study"]) == 4 and "F1-RadGraph-complete" in res["per_study"][0]


def test_radgraph_offline_without_weights_says_how_to_download(fake_radgraph, empty_hub):
    from cxreport.hub import HubUnavailable
    from cxreport.metrics.radgraph import get_scorer

    with pytest.raises(HubUnavailable, match=r"HF_HUB_OFFLINE=1.*F1RadGraph\(reward_level='all', model_type='radgraph'\)"):
        get_scorer("radgraph")


def test_rrg24_preset_table_lists_skipped_metrics(fake_radgraph, empty_hub, tiny_chexbert):
    from cxreport.metrics.presets import preset_table, run_preset

    out = run_preset(HYPS, REFS, "rrg24", bootstrap=20, labeler_opts=tiny_chexbert)
    names = [r["metric"] for r in out["rows"]]
    assert names == ["BLEU-4", "ROUGE-L", "F1-CheXbert micro-14", "F1-CheXbert macro-14", "F1-CheXbert micro-5",
                     "F1-CheXbert macro-5", "F1-RadGraph simple", "F1-RadGraph partial", "F1-RadGraph complete"]
    skipped = {s["metric"]: s["reason"] for s in out["skipped"]}
    assert list(skipped) == ["BERTScore-F1"]
    assert "distilbert-base-uncased" in skipped["BERTScore-F1"] or "bert_score" in skipped["BERTScore-F1"]
    table = preset_table(out)
    assert "| F1-CheXbert micro-14 |" in table and "uncertain -> positive" in table
    assert "Skipped (not computed):" in table and "- BERTScore-F1: " in table
    assert out["result"]["clinical"]["labeler"] == "chexbert"
    assert all(r["ci95"] is not None for r in out["rows"])


def test_rrg24_without_chexbert_weights_skips_f1_chexbert(fake_radgraph, empty_hub):
    from cxreport.metrics.presets import run_preset

    out = run_preset(HYPS, REFS, "rrg24", bootstrap=0)
    reasons = {s["metric"]: s["reason"] for s in out["skipped"]}
    assert "StanfordAIMI/RRG_scorers" in reasons["F1-CheXbert micro-14"] and "chexbert.pth" in reasons["F1-CheXbert micro-5"]
    assert [r["metric"] for r in out["rows"]][:2] == ["BLEU-4", "ROUGE-L"]


def test_unknown_preset():
    from cxreport.errors import InputError
    from cxreport.metrics.presets import run_preset

    with pytest.raises(InputError, match="rrg24"):
        run_preset(HYPS, REFS, "nope")
    with pytest.raises(InputError, match="F1-CheXbert"):  # rule labels never appear under CheXbert's name
        run_preset(HYPS, REFS, "rrg24", labeler="rules")


def test_cli_score_preset_and_label_with_chexbert(fake_radgraph, empty_hub, tiny_chexbert, tmp_path, capsys):
    import csv

    from cxreport.cli import main

    for name, texts in (("hyps", HYPS), ("refs", REFS)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n"
                                                        for i, t in enumerate(texts)))
    weights = ["--chexbert-weights", tiny_chexbert["weights"], "--chexbert-tokenizer", tiny_chexbert["tokenizer"]]
    assert main(["score", "--preset", "rrg24", "--hyps", str(tmp_path / "hyps.jsonl"), "--refs",
                 str(tmp_path / "refs.jsonl"), "--bootstrap", "20", "--out", str(tmp_path / "m.json"), *weights]) == 0
    table = capsys.readouterr().out
    assert "| F1-CheXbert macro-5 |" in table and "| F1-RadGraph partial |" in table and "- BERTScore-F1:" in table
    assert json.loads((tmp_path / "m.json").read_text())["skipped"][0]["metric"] == "BERTScore-F1"

    (tmp_path / "r.csv").write_text("uid,findings\n" + "".join(f'{i},"{t}"\n' for i, t in enumerate(REFS)))
    assert main(["label", str(tmp_path / "r.csv"), "--labeler", "chexbert", "--device", "cpu",
                 "--out", str(tmp_path / "l.csv"), *weights]) == 0
    rows = list(csv.DictReader(open(tmp_path / "l.csv")))
    assert len(rows) == 4 and set(rows[0]) >= {"uid", "No Finding", "Pleural Effusion"}


def test_r2gen_preset_rows_and_a_missing_java_is_a_reason(monkeypatch):
    from cxreport.metrics import presets

    monkeypatch.setattr(presets.shutil, "which", lambda name: None)  # as on a machine without Java
    out = presets.run_preset(HYPS, REFS, "r2gen", bootstrap=10)
    assert [r["metric"] for r in out["rows"]] == ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L",
                                                  "CE P", "CE R", "CE F1"]
    assert out["skipped"] == [{"metric": "METEOR", "reason": out["skipped"][0]["reason"]}]
    assert "java" in out["skipped"][0]["reason"].lower()
    assert out["protocol"]["name"] == "r2gen" and "rule labeler" in out["rows"][-1]["implementation"]
