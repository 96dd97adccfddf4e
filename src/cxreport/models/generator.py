"""Decoding over the ``Decoder`` interface: greedy, beam search, sampling; batched; with or
without the KV cache. Returns token ids without bos/eos plus the sequence log-probability."""

from __future__ import annotations

import torch

from cxreport.errors import InputError
from cxreport.models.decoders import Decoder
from cxreport.models.decoding import banned_ngram_tokens as _banned_ngram_tokens, pack_candidates

METHODS = ("greedy", "beam", "sample")


def _block_ngrams(logp: torch.Tensor, tokens: torch.Tensor, n: int) -> torch.Tensor:
    """Ban tokens that would repeat an n-gram, and (with blocking on) a word right after itself:
    "mild mild cardiomegaly" is never English, and 3-gram blocking alone allows it."""
    if n <= 0:
        return logp
    if tokens.shape[1] > 1:
        logp[torch.arange(tokens.shape[0], device=logp.device), tokens[:, -1]] = float("-inf")
    if tokens.shape[1] - 1 < n - 1:
        return logp
    rows = tokens[:, 1:].tolist()  # skip bos
    for r, seq in enumerate(rows):
        banned = _banned_ngram_tokens(seq, n)
        if banned:
            logp[r, banned] = float("-inf")
    return logp


def _filter_top_k_top_p(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    if top_k and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, -1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # Drop tokens once the mass before them already exceeds top_p (the top token always stays).
        drop = probs.cumsum(-1) - probs > top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def _finish(tokens: torch.Tensor, eos: int) -> list[list[int]]:
    out = []
    for seq in tokens[:, 1:].tolist():
        out.append(seq[: seq.index(eos)] if eos in seq else seq)
    return out


@torch.no_grad()
def generate_tokens(decoder: Decoder, memory: torch.Tensor, memory_mask: torch.Tensor, *, max_len: int = 60,
                    method: str = "greedy", num_beams: int = 4, length_penalty: float = 1.0,
                    no_repeat_ngram: int = 0, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                    use_cache: bool = True, generator: torch.Generator | None = None,
                    suppress_ids: list[int] | tuple = (), num_return: int = 1) -> list[dict]:
    """Decode one sequence per memory row -> [{"token_ids": [...], "score": logprob}, ...].

    ``suppress_ids`` are never generated (e.g. ``<unk>``: a report should not say "unknown word").
    Beam search with ``num_return`` > 1 adds "candidates": the best ``num_return`` finished beams,
    best first (the N-best list a faithfulness check reranks)."""
    if method not in METHODS:
        raise InputError(f"generation method {method!r}: choose one of {METHODS}")
    if max_len < 1:
        raise InputError(f"max_len must be >= 1, got {max_len}")
    if method == "sample" and temperature <= 0:
        raise InputError("temperature must be > 0 for sampling (use method='greedy' for argmax)")
    max_len = min(max_len, decoder.max_len - 1)
    if method == "beam" and num_beams > 1:
        return _beam(decoder, memory, memory_mask, max_len, num_beams, length_penalty, no_repeat_ngram, use_cache,
                     suppress_ids, num_return)
    b = memory.shape[0]
    state = decoder.start(memory, memory_mask, use_cache)
    tokens = torch.full((b, 1), decoder.bos_id, dtype=torch.long, device=memory.device)
    done = torch.zeros(b, dtype=torch.bool, device=memory.device)
    score = torch.zeros(b, device=memory.device)
    for _ in range(max_len):
        logp = decoder.step(state, tokens).float().log_softmax(-1)
        logp = _block_ngrams(logp, tokens, no_repeat_ngram)
        if suppress_ids:
            logp[:, list(suppress_ids)] = float("-inf")
        if method == "sample":
            logits = _filter_top_k_top_p(logp / temperature, top_k, top_p)
            nxt = torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(1)
        else:
            nxt = logp.argmax(-1)
        score += torch.where(done, torch.zeros_like(score), logp.gather(1, nxt[:, None]).squeeze(1))
        nxt = torch.where(done, torch.full_like(nxt, decoder.pad_id), nxt)
        tokens = torch.cat([tokens, nxt[:, None]], 1)
        done |= nxt == decoder.eos_id
        if done.all():
            break
    return [{"token_ids": ids, "score": float(s)} for ids, s in zip(_finish(tokens, decoder.eos_id), score.tolist())]


def _beam(decoder, memory, memory_mask, max_len, k, length_penalty, no_repeat_ngram, use_cache, suppress_ids=(),
          num_return=1):
    b, dev = memory.shape[0], memory.device
    state = decoder.start(memory, memory_mask, use_cache)
    decoder.reorder(state, torch.arange(b, device=dev).repeat_interleave(k))
    tokens = torch.full((b * k, 1), decoder.bos_id, dtype=torch.long, device=dev)
    scores = torch.full((b, k), float("-inf"), device=dev)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first
    scores = scores.view(-1)
    done = torch.zeros(b * k, dtype=torch.bool, device=dev)
    lengths = torch.zeros(b * k, device=dev)
    base = (torch.arange(b, device=dev) * k)[:, None]
    for _ in range(max_len):
        logp = decoder.step(state, tokens).float().log_softmax(-1)
        logp = _block_ngrams(logp, tokens, no_repeat_ngram)
        if suppress_ids:
            logp[:, list(suppress_ids)] = float("-inf")
        # A finished hypothesis keeps its score and emits pad at no cost.
        logp[done] = float("-inf")
        logp[done, decoder.pad_id] = 0.0
        v = logp.shape[1]
        cand = (scores[:, None] + logp).view(b, k * v)
        top, idx = cand.topk(k, -1)
        src = (base + idx // v).view(-1)
        tok = (idx % v).view(-1)
        was_done = done[src]
        tokens = torch.cat([tokens[src], tok[:, None]], 1)
        lengths = lengths[src] + (~was_done).float()
        done = was_done | (tok == decoder.eos_id)
        scores = top.view(-1)
        decoder.reorder(state, src)
        if done.all():
            break
    norm = (scores / lengths.clamp(min=1) ** length_penalty).view(b, k)
    order = norm.argsort(-1, descending=True) + base
    return pack_candidates(order.tolist(), _finish(tokens, decoder.eos_id), scores.tolist(), num_return)
