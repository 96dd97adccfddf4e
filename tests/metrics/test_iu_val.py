"""On the real IU X-Ray val reports: `score` equals direct pycocoevalcap calls on the same texts."""

import shutil

import pytest

from cxreport.data.cache import prepare_cache
from cxreport.metrics.baselines import baseline_reports
from cxreport.metrics import nlg
from cxreport.metrics.scoring import protocol_texts, score
from cxreport.metrics.stats import bootstrap


@pytest.fixture(scope="module")
def iu_val(tmp_path_factory):
    from tests.conftest import SHARED

    root = SHARED / "data" / "iu_xray"
    if not root.is_dir():
        pytest.skip(f"shared IU X-Ray data not found at {root}")
    cache = prepare_cache("iu-xray", root, tmp_path_factory.mktemp("iu") / "cache", workers=1)
    refs, systems, info = baseline_reports(cache, "val", names=("random",))
    return refs, systems["random"]


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR needs java")
def test_iu_val_scores_equal_direct_pycocoevalcap(iu_val, our_meteor, direct_meteor):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    refs, hyps = iu_val
    assert len(refs) > 250
    # METEOR through the session shared with the other tests (one JVM start for the suite)
    res = score(hyps, refs, protocol="r2gen", dataset="iu", bootstrap=200, metrics="bleu,rouge,cider,ce")
    ids = list(refs)
    h, r, _ = protocol_texts([hyps[i] for i in ids], [refs[i] for i in ids], "r2gen", "iu")
    value, block, _ = nlg.meteor(h, r, session=our_meteor)
    ci = bootstrap([block], 200)["METEOR"]["ci95"]
    res["metrics"]["METEOR"] = {"value": value, "ci95": ci}
    gts, rs = {i: [t] for i, t in enumerate(r)}, {i: [t] for i, t in enumerate(h)}
    want = dict(zip(["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4"], Bleu(4).compute_score(gts, rs, verbose=0)[0]))
    want["METEOR"] = direct_meteor.compute_score(gts, rs)[0]
    want["ROUGE-L"] = Rouge().compute_score(gts, rs)[0]
    want["CIDEr-D"] = Cider().compute_score(gts, rs)[0]
    for name, value in want.items():
        assert res["metrics"][name]["value"] == value, name
        lo, hi = res["metrics"][name]["ci95"]
        assert lo <= value <= hi, name
    assert res["protocol"]["reference_truncation"].startswith("first 59 words")
    assert max(len(t.split()) for t in r) <= 59
