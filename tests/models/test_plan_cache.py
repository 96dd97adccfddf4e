"""A decoder that reads only the plan decodes each distinct plan once, and writes what it would
have written without the cache."""

import torch

from cxreport.models import create_model

from tests.fixtures.tiny_models import VOCAB

PLANS = [{"Edema": "positive"}, {"No Finding": "positive"}, {"Edema": "positive"}, {"Pneumothorax": "positive"}]


def _model():
    torch.manual_seed(0)
    return create_model("tiny", **VOCAB, findings={"image_memory": False}).eval()


def _direct(m, plans, **kw):
    """The tokens decoding writes with no cache."""
    m.use_plan_cache = False
    try:
        return [o["token_ids"] for o in m.generate(None, findings=plans, max_len=12, **kw)]
    finally:
        m.use_plan_cache = True


def test_cached_reports_equal_decoded_ones_and_each_plan_is_decoded_once():
    m = _model()
    for kw in ({}, {"num_beams": 3, "method": "beam"}):
        want = _direct(m, PLANS, **kw)
        first = [o["token_ids"] for o in m.generate(None, findings=PLANS, max_len=12, **kw)]
        again = [o["token_ids"] for o in m.generate(None, findings=PLANS, max_len=12, **kw)]
        assert first == want and again == want
    # 3 distinct plans per setting were decoded; the second call of each was all hits
    assert len(m._plan_cache._store) == 6 and m._plan_cache.hits == 8


def test_a_weight_change_empties_the_cache_and_sampling_is_never_cached():
    m = _model()
    before = m.generate(None, findings=PLANS[:1], max_len=12)[0]["token_ids"]
    with torch.no_grad():
        m.decoder.head.weight.mul_(-1.0)
    after = m.generate(None, findings=PLANS[:1], max_len=12)[0]["token_ids"]
    assert [after] == _direct(m, PLANS[:1]) and m._plan_cache.hits == 0
    assert [before] == _direct(_model(), PLANS[:1])
    g = torch.Generator().manual_seed(0)
    m.generate(None, findings=PLANS, max_len=12, method="sample", generator=g)
    assert m._plan_cache.hits == 0
