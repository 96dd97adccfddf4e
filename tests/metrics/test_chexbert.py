"""CheXbert labeler: parity with the reference ``f1chexbert`` package on a tiny random checkpoint.

The reference runs unmodified except where it would reach the network: its weights download
(``CACHE_DIR`` points at our file), ``AutoConfig.from_pretrained('bert-base-uncased')`` (gives the
tiny config) and ``BertTokenizer.from_pretrained('bert-base-uncased')`` (loads the test vocabulary).
Two shims adapt it to today's libraries without changing what it computes: under transformers 5
its tokenizer has no ``encode_plus`` (added with transformers 4's meaning for a list of tokens,
[CLS] + ids + [SEP], which is what it calls), and scikit-learn >= 1.6's private ``_check_targets``
returns more than the three values it unpacks (used only for its per-sample accuracy, not F1).
"""

import pytest

from cxreport.metrics import chexbert
from cxreport.metrics.clinical import clinical_scores

from .chexbert_fixtures import REPORTS, randomise, tiny_config, write_vocab

ref_mod = pytest.importorskip("f1chexbert.f1chexbert", reason="the reference f1chexbert package ([dev] extra)")


class _Transformers4Tokenizer:
    def __init__(self, tok):
        self._tok = tok

    def __getattr__(self, name):
        return getattr(self._tok, name)

    def encode_plus(self, tokens):
        return {"input_ids": [self._tok.cls_token_id, *self._tok.convert_tokens_to_ids(tokens), self._tok.sep_token_id]}


def _three_values(checked):
    """(y_type, y_true, y_pred) from scikit-learn's newer 4- or 5-tuple (..., y_true, y_pred, sample_weight)."""
    return checked[0], checked[-3], checked[-2]


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """(reference F1CheXbert, weights path, tokenizer folder) for one tiny random checkpoint."""
    import torch
    from transformers import BertTokenizer

    root = tmp_path_factory.mktemp("chexbert")
    tok_dir = write_vocab(root / "tokenizer")
    config = tiny_config(len((tok_dir / "vocab.txt").read_text().split()))
    mp = pytest.MonkeyPatch()
    mp.setattr(ref_mod, "CACHE_DIR", str(root))
    mp.setattr(ref_mod, "AutoConfig", type("C", (), {"from_pretrained": staticmethod(lambda name: config)}))
    mp.setattr(ref_mod, "BertTokenizer", type("T", (), {"from_pretrained": staticmethod(
        lambda name: _Transformers4Tokenizer(BertTokenizer.from_pretrained(str(tok_dir))))}))
    check = ref_mod._check_targets
    mp.setattr(ref_mod, "_check_targets", lambda *a: _three_values(check(*a)))
    torch.manual_seed(0)
    # The checkpoint comes from the reference's own module class, saved as the published file is.
    labeler = randomise(ref_mod.bert_labeler(inference=True))
    weights = root / "chexbert.pth"
    torch.save({"model_state_dict": {f"module.{k}": v for k, v in labeler.state_dict().items()}}, weights)
    ref = ref_mod.F1CheXbert(device="cpu")
    yield ref, weights, tok_dir
    mp.undo()


def test_labels_match_the_reference_state_for_state(published):
    ref, weights, tok_dir = published
    ours = chexbert.CheXbertLabeler(weights, tok_dir, device="cpu", batch_size=4)  # padded batches
    expected = [ref.get_label(t.strip(), mode="classification") for t in REPORTS]
    got = [[{None: "", 1: 1, 0: 0, -1: -1}[d[k]] for k in chexbert.HEAD_LABELS] for d in ours.label_many(REPORTS)]
    assert got == expected
    states = {v for row in got for v in row}
    assert states >= {"", 1, 0}, "the random model should give varied labels, or the test proves little"


def test_f1_matches_the_reference_report(published):
    ref, weights, tok_dir = published
    ours = chexbert.CheXbertLabeler(weights, tok_dir, device="cpu", batch_size=3)
    refs, hyps = REPORTS, REPORTS[7:] + REPORTS[:7]
    _, _, cr14, cr5 = ref(hyps=hyps, refs=refs)
    values, _, info = clinical_scores(ours.label_many(hyps), ours.label_many(refs), "positive", "chexbert")
    for n, cr in ((14, cr14), (5, cr5)):
        for avg, key in (("micro", "micro avg"), ("macro", "macro avg"), ("example", "samples avg")):
            for m, name in (("P", "precision"), ("R", "recall"), ("F1", "f1-score")):
                if avg == "example":  # a mean of per-study ratios, summed in another order: last bit only
                    assert values[f"CE{n}-{avg}-{m}"] == pytest.approx(cr[key][name], rel=1e-12), (n, avg, m)
                else:  # the F1-CheXbert figures papers report: identical floats
                    assert values[f"CE{n}-{avg}-{m}"] == cr[key][name], (n, avg, m)
    per_label = {r["label"]: r for r in info["label_sets"]["chexpert14"]["per_label"]}
    for label in chexbert.HEAD_LABELS:
        assert per_label[label]["f1"] == cr14[label]["f1-score"]
        assert per_label[label]["support"] == cr14[label]["support"]
    assert 0 < values["CE14-micro-F1"] < 1


def test_rrg_mode_is_uncertain_as_positive(published):
    ref, weights, tok_dir = published
    from cxreport.metrics.clinical import binarise

    ours = chexbert.CheXbertLabeler(weights, tok_dir, device="cpu")
    pos = binarise(ours.label_many(REPORTS), list(chexbert.HEAD_LABELS), "positive").astype(int).tolist()
    assert pos == [ref.get_label(t.strip()) for t in REPORTS]


def test_head_labels_are_our_chexpert_labels():
    from cxreport.labels import CHEXPERT_LABELS

    assert sorted(chexbert.HEAD_LABELS) == sorted(CHEXPERT_LABELS)
