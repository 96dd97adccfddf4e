"""Our captioning metrics are pycocoevalcap's numbers, and their resampled values are exact."""

import os
import shutil
import stat
import time

import numpy as np
import pytest

from cxreport.metrics import nlg
from cxreport.metrics.meteor import MeteorSession, MetricError, meteor_from_stats, summable_stats

HYPS = ["the heart is normal in size . the lungs are clear .", "no pleural effusion or pneumothorax .",
        "there is a small left pleural effusion .", "", "heart size is enlarged . mild edema ."]
REFS = ["heart size is normal . lungs are clear .", "no pneumothorax or pleural effusion is seen .",
        "small left effusion . no pneumothorax .", "the lungs are clear .", "the heart is enlarged . there is edema ."]
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="METEOR needs java")


def _coco(hyps, refs):
    return {i: [r] for i, r in enumerate(refs)}, {i: [h] for i, h in enumerate(hyps)}


def test_bleu_rouge_cider_equal_direct_pycocoevalcap():
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    values, blocks, _ = nlg.nlg_scores(HYPS, REFS, ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr-D"])
    gts, res = _coco(HYPS, REFS)
    want_bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    assert [values[f"BLEU-{k}"] for k in range(1, 5)] == want_bleu
    assert values["ROUGE-L"] == Rouge().compute_score(gts, res)[0]
    assert values["CIDEr-D"] == Cider().compute_score(gts, res)[0]
    for b in blocks:  # the stats blocks reproduce the point values
        np.testing.assert_allclose(b.value(), [values[n] for n in b.names], rtol=1e-12, atol=1e-15)


def test_bleu_on_a_resample_equals_pycocoevalcap_on_the_resampled_texts():
    from pycocoevalcap.bleu.bleu import Bleu

    _, block, _ = nlg.bleu(HYPS, REFS)
    idx = [0, 0, 2, 4, 4]
    counts = np.bincount(idx, minlength=len(HYPS)).astype(float)
    got = block.reduce(counts[None] @ block.table, len(idx))[0]
    want, _ = Bleu(4).compute_score(*_coco([HYPS[i] for i in idx], [REFS[i] for i in idx]), verbose=0)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_pairs_are_one_line_and_references_non_empty():
    h, r = nlg.prepare_pairs(["a\nb  c ||| d"], ["x\ty"])
    assert h == ["a b c d"] and r == ["x y"]
    with pytest.raises(Exception, match="empty reference"):
        nlg.prepare_pairs(["a"], ["  "])


@needs_java
@pytest.mark.slow
def test_meteor_equals_pycocoevalcap_and_resamples_are_exact(our_meteor, direct_meteor):
    value, block, per = nlg.meteor(HYPS, REFS, session=our_meteor)
    want, want_per = direct_meteor.compute_score(*_coco(HYPS, REFS))
    assert value == want and list(per) == list(want_per)
    assert "exact corpus METEOR" in block.method
    idx = [1, 1, 3, 4, 0, 0]  # a bootstrap resample with duplicates, scored by the jar itself
    want_rs, _ = direct_meteor.compute_score(*_coco([HYPS[i] for i in idx], [REFS[i] for i in idx]))
    counts = np.bincount(idx, minlength=len(HYPS)).astype(float)
    assert block.reduce(counts[None] @ block.table, len(idx))[0, 0] == pytest.approx(want_rs, abs=1e-12)


def test_meteor_formula_on_recorded_jar_statistics():
    # Two real jar outputs (one perfect pair, one partial): per-pair values and the pooled value.
    stats = np.array([[48, 48, 19, 19, 29, 29, 19, 19] + [0] * 12 + [1, 48, 48],
                      [31, 14, 13, 7, 3, 3, 5, 5, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 6, 9, 9]], dtype=float)
    np.testing.assert_allclose(meteor_from_stats(stats), [1.0, 0.19532295], atol=1e-8)
    assert summable_stats(stats)[0, 20] == 0  # the jar leaves a one-chunk perfect pair's chunk out


def _fake_java(tmp_path, body: str) -> str:
    d = tmp_path / "bin"
    d.mkdir()
    f = d / "java"
    f.write_text("#!/bin/sh\n" + body + "\n")
    f.chmod(f.stat().st_mode | stat.S_IEXEC)
    return f"{d}{os.pathsep}{os.environ.get('PATH', '')}"


def test_missing_java_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MetricError, match="needs Java"):
        MeteorSession()


def test_dying_jvm_is_a_clear_error_not_a_hang(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", _fake_java(tmp_path, "echo 'Error: Could not reserve enough space' >&2; exit 1"))
    t = time.monotonic()
    with pytest.raises(MetricError, match="Could not reserve enough space"):
        nlg.meteor(HYPS, REFS, timeout_s=20)
    assert time.monotonic() - t < 10


def test_silent_jvm_times_out_with_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", _fake_java(tmp_path, "exec sleep 30"))
    t = time.monotonic()
    with pytest.raises(MetricError, match="no answer within 1 s"):
        nlg.meteor(HYPS, REFS, timeout_s=1)
    assert time.monotonic() - t < 5


def test_r2gen_protocol_cleans_truncates_and_maps_unk():
    from cxreport.metrics.scoring import protocol_texts, r2gen_vocabulary

    ref = "The heart is normal. " * 30 + "Tiny granuloma."
    h, r, info = protocol_texts(["The HEART is normal."], [ref], "r2gen", "iu")
    assert h == ["the heart is normal ."] and len(r[0].split()) == 59 and "not applied" in info["unk_mapping"]
    vocab = r2gen_vocabulary(["The heart is normal."] * 3 + ["Rare word."], "iu")
    assert vocab == {"the", "heart", "is", "normal", "."}
    _, r, info = protocol_texts(["x"], ["The heart is very normal."], "r2gen", "iu", vocab)
    assert r == ["the heart is <unk> normal ."] and info["unk_mapping"].startswith("applied")
    _, r, _ = protocol_texts(["x"], ["Heart: normal (2.5 cm)."], "full", "iu")
    assert r == ["heart : normal ( 2.5 cm ) ."]
