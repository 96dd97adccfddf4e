import pytest
import torch

from cxreport.errors import InputError
from cxreport.models import create_model
from cxreport.models.generator import _banned_ngram_tokens, _filter_top_k_top_p, generate_tokens

from tests.fixtures.tiny_models import TINY_GPT2, VOCAB, make_batch

DECODERS = {
    "transformer": {},
    "gpt2-cross": {"decoder": {"name": "gpt2", "hf_config": TINY_GPT2, "mode": "cross"}},
    "gpt2-prefix": {"decoder": {"name": "gpt2", "hf_config": TINY_GPT2, "mode": "prefix"}},
    # Prefix mode takes any HF causal LM, e.g. BioGPT.
    "biogpt-prefix": {"decoder": {"name": "gpt2", "mode": "prefix", "hf_config": {
        "model_type": "biogpt", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 128}}},
}


def _model(kind: str, seed: int = 0):
    torch.manual_seed(seed)
    # Untrained tiny models put near-uniform mass everywhere; a hotter head makes decoding decisive.
    model = create_model("tiny", **VOCAB, **DECODERS[kind]).eval()
    with torch.no_grad():
        head = model.decoder.head if kind == "transformer" else model.decoder.lm.get_output_embeddings()
        head.weight.mul_(8.0)
    return model


@pytest.mark.parametrize("kind", list(DECODERS))
def test_kv_cache_gives_the_same_greedy_output(kind):
    model = _model(kind)
    batch = make_batch(b=3, views=2)
    kw = dict(images=batch["images"], image_mask=batch["image_mask"], view_ids=batch["view_ids"], max_len=12)
    with_cache = model.generate(use_cache=True, **kw)
    without = model.generate(use_cache=False, **kw)
    assert [g["token_ids"] for g in with_cache] == [g["token_ids"] for g in without]
    for a, b in zip(with_cache, without):
        assert a["score"] == pytest.approx(b["score"], abs=1e-3)
    beam_c = model.generate(method="beam", num_beams=3, use_cache=True, **kw)
    beam_n = model.generate(method="beam", num_beams=3, use_cache=False, **kw)
    assert [g["token_ids"] for g in beam_c] == [g["token_ids"] for g in beam_n]


@pytest.mark.parametrize("kind", ["transformer", "gpt2-cross"])
def test_beam_search_scores_at_least_greedy(kind):
    model = _model(kind, seed=1)
    images = make_batch(b=3, views=1)["images"]
    greedy = model.generate(images=images, max_len=8)
    beam = model.generate(images=images, max_len=8, method="beam", num_beams=4, length_penalty=0.0)
    for g, b in zip(greedy, beam):
        assert b["score"] >= g["score"] - 1e-4


def test_step_logits_match_teacher_forced_forward():
    model = _model("transformer")
    batch = make_batch(b=2, views=1)
    tok, mask = model.encode_images(batch["images"])
    mem, mem_mask = model.memory(tok, mask, None)
    ids = batch["input_ids"][:, :5]
    full = model.decoder(ids, torch.ones_like(ids, dtype=torch.bool), mem, mem_mask)
    state = model.decoder.start(mem, mem_mask, use_cache=True)
    for t in range(1, 6):
        step = model.decoder.step(state, ids[:, :t])
        torch.testing.assert_close(step, full[:, t - 1], atol=1e-4, rtol=1e-4)


def test_sampling_is_seeded_and_respects_top_k():
    model = _model("transformer")
    images = make_batch(b=2, views=1)["images"]
    kw = dict(images=images, max_len=10, method="sample", temperature=0.9, top_k=5, top_p=0.95)
    a = model.generate(generator=torch.Generator().manual_seed(3), **kw)
    b = model.generate(generator=torch.Generator().manual_seed(3), **kw)
    assert [x["token_ids"] for x in a] == [x["token_ids"] for x in b]
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]])
    assert torch.isfinite(_filter_top_k_top_p(logits, 2, 1.0)).sum() == 2
    kept = torch.isfinite(_filter_top_k_top_p(logits, 0, 0.7))  # top token has 0.64
    assert kept.tolist() == [[False, False, False, True, True]]
    with pytest.raises(InputError):
        model.generate(images=images, method="sample", temperature=0.0)
    with pytest.raises(InputError):
        model.generate(images=images, method="nucleus")


def test_no_repeat_ngram_blocking():
    assert sorted(_banned_ngram_tokens([5, 6, 5], 2)) == [6]
    assert _banned_ngram_tokens([5, 6, 7], 2) == []
    model = _model("transformer")
    images = make_batch(b=2, views=1)["images"]
    for method in ("greedy", "beam"):
        out = model.generate(images=images, max_len=20, method=method, num_beams=3, no_repeat_ngram=2)
        for o in out:
            seq = o["token_ids"]
            grams = list(zip(seq, seq[1:]))
            assert len(grams) == len(set(grams)), (method, seq)


def test_generation_stops_at_eos_and_pads_finished_rows():
    model = _model("transformer")
    tok, mask = model.encode_images(make_batch(b=2, views=1)["images"])
    mem, mem_mask = model.memory(tok, mask, None)
    with torch.no_grad():  # force eos as the best token everywhere
        model.decoder.head.weight.zero_()
        model.decoder.head.weight[VOCAB["eos_id"]] = 1.0
    model.decoder.ln_f.bias.data.fill_(1.0)
    out = generate_tokens(model.decoder, mem, mem_mask, max_len=10)
    assert [o["token_ids"] for o in out] == [[], []]


@pytest.mark.parametrize("kind", ["transformer", "gpt2-cross"])
def test_tiny_model_overfits_two_studies_and_generates_them_back(kind):
    torch.manual_seed(0)
    model = create_model("tiny", **VOCAB, **DECODERS[kind], findings={"state_dropout": 0.0})
    batch = make_batch(b=2, views=2, seed=5)
    opt = torch.optim.AdamW(model.parameter_groups(3e-3, weight_decay=0.0))
    model.train()
    for _ in range(120):
        opt.zero_grad()
        loss = model(batch)["loss"]
        loss.backward()
        opt.step()
    assert model(batch)["lm_loss"].item() < 0.05
    oracle = [{name: (None if v != v else int(v)) for name, v in zip(model.labels, row.tolist())}
              for row in batch["finding_targets"]]
    out = model.generate(images=batch["images"], image_mask=batch["image_mask"], view_ids=batch["view_ids"],
                         findings=oracle, max_len=10)
    for row, o in zip(range(2), out):
        ids = batch["input_ids"][row][batch["attention_mask"][row]].tolist()
        assert o["token_ids"] == ids[1:-1]  # without bos / eos


def test_suppressed_ids_are_never_generated():
    import torch

    from cxreport.models import create_model

    torch.manual_seed(0)
    m = create_model("tiny", vocab_size=12, decoder={"suppress_ids": [3, 4, 5]}).eval()
    for method in ("greedy", "beam"):
        out = m.generate(images=torch.rand(2, 1, 1, 64, 64), max_len=20, method=method, num_beams=3)
        assert all(t not in (3, 4, 5) for o in out for t in o["token_ids"])
