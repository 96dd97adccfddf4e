"""Greedy and beam search over the NumPy decoder: ``models.generator.generate_tokens`` step for
step (n-gram blocking, suppressed ids, finished beams emitting pad at no cost, float32 scores,
length-normalised ranking, the N-best list), so both runtimes choose the same tokens."""

from __future__ import annotations

import numpy as np

from cxreport.errors import InputError
from cxreport.models.decoding import banned_ngram_tokens, pack_candidates
from cxreport.models.runtime.ops import F32, log_softmax

METHODS = ("greedy", "beam")
NEG_INF = F32(-np.inf)


def _block_ngrams(logp: np.ndarray, tokens: np.ndarray, n: int) -> np.ndarray:
    """Ban tokens that would repeat an n-gram, and a word right after itself (``generator._block_ngrams``)."""
    if n <= 0:
        return logp
    if tokens.shape[1] > 1:
        logp[np.arange(len(tokens)), tokens[:, -1]] = NEG_INF
    if tokens.shape[1] - 1 < n - 1:
        return logp
    for r, seq in enumerate(tokens[:, 1:].tolist()):  # skip bos
        banned = banned_ngram_tokens(seq, n)
        if banned:
            logp[r, banned] = NEG_INF
    return logp


def _finish(tokens: np.ndarray, eos: int) -> list[list[int]]:
    out = []
    for seq in tokens[:, 1:].tolist():
        out.append(seq[: seq.index(eos)] if eos in seq else seq)
    return out


def _topk(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Largest ``k`` per row, best first (ties: lower index first)."""
    idx = np.argsort(-x, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(x, idx, 1), idx


def generate_tokens(decoder, memory: np.ndarray, memory_mask: np.ndarray, *, max_len: int = 60,
                    method: str = "greedy", num_beams: int = 4, length_penalty: float = 1.0,
                    no_repeat_ngram: int = 0, suppress_ids=(), num_return: int = 1, **ignored) -> list[dict]:
    """One sequence per memory row -> [{"token_ids", "score"(, "candidates")}]."""
    if method not in METHODS:
        raise InputError(f"generation method {method!r}: the runtime without PyTorch decodes with "
                         f"{' or '.join(METHODS)} (sampling runs in PyTorch: runtime='torch')")
    if max_len < 1:
        raise InputError(f"max_len must be >= 1, got {max_len}")
    max_len = min(max_len, decoder.max_len - 1)
    suppress = list(suppress_ids)
    if method == "beam" and num_beams > 1:
        return _beam(decoder, memory, memory_mask, max_len, num_beams, length_penalty, no_repeat_ngram, suppress,
                     num_return)
    b = memory.shape[0]
    state = decoder.start(memory, memory_mask)
    tokens = np.full((b, 1), decoder.bos_id, dtype=np.int64)
    done = np.zeros(b, dtype=bool)
    score = np.zeros(b, dtype=F32)
    rows = np.arange(b)
    for _ in range(max_len):
        logp = _block_ngrams(log_softmax(decoder.step(state, tokens).astype(F32)), tokens, no_repeat_ngram)
        if suppress:
            logp[:, suppress] = NEG_INF
        nxt = logp.argmax(-1)
        score = score + np.where(done, F32(0), logp[rows, nxt])
        nxt = np.where(done, decoder.pad_id, nxt)
        tokens = np.concatenate([tokens, nxt[:, None]], 1)
        done |= nxt == decoder.eos_id
        if done.all():
            break
    return [{"token_ids": ids, "score": float(s)} for ids, s in zip(_finish(tokens, decoder.eos_id), score.tolist())]


def _beam(decoder, memory, memory_mask, max_len, k, length_penalty, no_repeat_ngram, suppress, num_return):
    b = memory.shape[0]
    state = decoder.start(memory, memory_mask)
    decoder.reorder(state, np.repeat(np.arange(b), k))
    tokens = np.full((b * k, 1), decoder.bos_id, dtype=np.int64)
    scores = np.full((b, k), NEG_INF, dtype=F32)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first
    scores = scores.reshape(-1)
    done = np.zeros(b * k, dtype=bool)
    lengths = np.zeros(b * k, dtype=F32)
    base = (np.arange(b) * k)[:, None]
    for _ in range(max_len):
        logp = _block_ngrams(log_softmax(decoder.step(state, tokens).astype(F32)), tokens, no_repeat_ngram)
        if suppress:
            logp[:, suppress] = NEG_INF
        # A finished hypothesis keeps its score and emits pad at no cost.
        logp[done] = NEG_INF
        logp[done, decoder.pad_id] = 0.0
        v = logp.shape[1]
        top, idx = _topk((scores[:, None] + logp).reshape(b, k * v), k)
        src = (base + idx // v).reshape(-1)
        tok = (idx % v).reshape(-1)
        was_done = done[src]
        tokens = np.concatenate([tokens[src], tok[:, None]], 1)
        lengths = lengths[src] + (~was_done).astype(F32)
        done = was_done | (tok == decoder.eos_id)
        scores = top.reshape(-1)
        decoder.reorder(state, src)
        if done.all():
            break
    norm = (scores / np.maximum(lengths, F32(1)) ** F32(length_penalty)).reshape(b, k)
    order = np.argsort(-norm, axis=-1, kind="stable") + base
    return pack_candidates(order.tolist(), _finish(tokens, decoder.eos_id), scores.tolist(), num_return)
