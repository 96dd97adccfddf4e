"""Decoding settings live in the model config; N-best lists; a user's plan edits; plan states in training."""

import pytest
import torch

from cxreport.errors import InputError
from cxreport.labels import CHEXPERT_LABELS
from cxreport.models import create_model
from cxreport.models.decoding import DecodeOptions, resolve_decoding
from cxreport.models.finding_head import NEGATIVE, NOT_ASSESSED, POSITIVE, targets_to_states
from cxreport.text.tokenizer import WordTokenizer

from tests.fixtures.tiny_models import VOCAB


def _model(**decoder):
    torch.manual_seed(0)
    return create_model("tiny", **VOCAB, decoder=decoder).eval()


def test_decoding_defaults_come_from_the_config_and_calls_override():
    m = _model(default_beam=3, default_max_len=7, no_repeat_ngram=2)
    opts = DecodeOptions().resolve(m.cfg)
    assert (opts.beam, opts.max_len, opts.no_repeat_ngram, opts.faithful) == (3, 7, 2, True)
    assert DecodeOptions(beam=1, max_len=5, faithful=False).resolve(m.cfg).beam == 1
    with pytest.raises(InputError, match="beam=40"):
        DecodeOptions(beam=40).resolve(m.cfg)
    out = m.generate(None, findings=[{}])[0]
    assert len(out["token_ids"]) <= 7
    assert create_model("tiny", **VOCAB).cfg.decoder.no_repeat_ngram == 3  # every trained run blocks repeats


def test_suppressed_and_comparison_words_resolved_with_the_tokenizer():
    tok = WordTokenizer(["<pad>", "<bos>", "<eos>", "<unk>", "xxxx", "stable", "heart", "normal", "."])
    m = create_model("tiny", vocab_size=tok.vocab_size, pad_id=0, bos_id=1, eos_id=2)
    resolve_decoding(m, tok)
    assert m.cfg.decoder.suppress_ids == [3, 4] and m.cfg.decoder.comparison_ids == [5]
    for prior in (False, True):
        ids = [t for o in m.generate(None, findings=[{}] * 4, max_len=20, prior=prior) for t in o["token_ids"]]
        assert not {3, 4} & set(ids)
        if not prior:
            assert 5 not in ids


def test_a_word_never_follows_itself_when_blocking_is_on():
    from cxreport.models.generator import _block_ngrams

    logp = torch.zeros(2, 5)
    out = _block_ngrams(logp.clone(), torch.tensor([[1, 4], [1, 3]]), 3)
    assert out[0, 4] == float("-inf") and out[1, 3] == float("-inf") and out[0, 3] == 0
    assert (_block_ngrams(logp.clone(), torch.tensor([[1, 4]]), 0) == 0).all()  # blocking off: nothing banned


def test_beam_returns_an_n_best_list_best_first():
    m = _model()
    out = m.generate(None, findings=[{}, {"Edema": "positive"}], num_beams=4, num_return=4, max_len=6)
    for o in out:
        assert 1 <= len(o["candidates"]) <= 4 and o["candidates"][0]["token_ids"] == o["token_ids"]


def test_overrides_sit_on_top_of_the_plan_and_clear_no_finding():
    m = _model()
    out = m.generate(None, findings=[{"No Finding": "positive", "Edema": "negative"}],
                     overrides=[{"Pneumothorax": "positive"}], max_len=3)[0]["finding_states"]
    assert out["Pneumothorax"] == "positive" and out["Edema"] == "negative" and out["No Finding"] == "negative"
    assert out["Cardiomegaly"] == "not_assessed"


def test_training_states_make_unmentioned_findings_negative():
    t = torch.tensor([[1.0, float("nan"), 0.0]])
    assert targets_to_states(t).tolist() == [[POSITIVE, NOT_ASSESSED, NEGATIVE]]
    assert targets_to_states(t, NEGATIVE).tolist() == [[POSITIVE, NEGATIVE, NEGATIVE]]
    m = create_model("tiny", **VOCAB, findings={"unmentioned": "negative"})
    with pytest.raises(InputError, match="unmentioned"):
        create_model("tiny", **VOCAB, findings={"unmentioned": "maybe"})
    assert m.cfg.findings.unmentioned == "negative" and len(CHEXPERT_LABELS) == 14
