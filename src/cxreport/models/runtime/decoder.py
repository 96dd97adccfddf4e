"""cxreport's transformer decoder (``models.decoders.TransformerDecoder``) in NumPy, with its KV
cache: the memory's cross-attention keys and values are computed once in ``start``, each layer's
self-attention keys and values grow by one position per ``step``, and ``reorder`` follows beam
search. Same weights (state-dict names), same pre-LN arithmetic."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cxreport.errors import InputError
from cxreport.models.runtime.ops import attention, gelu, layer_norm, linear, merge_heads, split_heads
from cxreport.models.runtime.weights import take


@dataclass
class DecodeState:
    memory_mask: np.ndarray  # B x S bool
    kv: list  # per layer: (keys, values) of the memory, B x H x S x Dh
    cache: list = field(default_factory=list)  # per layer: [keys, values] of the tokens so far
    length: int = 0


def _t(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.T)


class Decoder:
    def __init__(self, cfg, weights: dict[str, np.ndarray], memory_dim: int):
        dc = cfg
        self.vocab_size, self.pad_id, self.bos_id, self.eos_id = dc.vocab_size, dc.pad_id, dc.bos_id, dc.eos_id
        self.max_len, self.heads, d = dc.max_len, dc.heads, dc.d_model
        w = lambda name: take(weights, "decoder." + name)  # noqa: E731
        self.embed, self.pos = w("embed.weight"), w("pos.weight")
        self.mem_proj = (_t(w("mem_proj.weight")), w("mem_proj.bias")) if memory_dim != d else None
        self.layers = []
        for i in range(dc.layers):
            p = f"layers.{i}."
            kv_w, kv_b = w(p + "cross_attn.kv.weight"), w(p + "cross_attn.kv.bias")
            self.layers.append({
                "ln": [(w(p + f"ln{j}.weight"), w(p + f"ln{j}.bias")) for j in (1, 2, 3)],
                "qkv": (_t(w(p + "self_attn.qkv.weight")), w(p + "self_attn.qkv.bias")),
                "self_out": (_t(w(p + "self_attn.out.weight")), w(p + "self_attn.out.bias")),
                "q": (_t(w(p + "cross_attn.q.weight")), w(p + "cross_attn.q.bias")),
                "k": (_t(kv_w[:d]), kv_b[:d]), "v": (_t(kv_w[d:]), kv_b[d:]),
                "cross_out": (_t(w(p + "cross_attn.out.weight")), w(p + "cross_attn.out.bias")),
                "ff1": (_t(w(p + "ff.0.weight")), w(p + "ff.0.bias")),
                "ff2": (_t(w(p + "ff.3.weight")), w(p + "ff.3.bias")),
            })
        self.ln_f = (w("ln_f.weight"), w("ln_f.bias"))
        # A tied head is the embedding itself (the checkpoint stores a copy under head.weight).
        self.head = _t(self.embed if dc.tie_embeddings else w("head.weight"))

    def start(self, memory: np.ndarray, memory_mask: np.ndarray) -> DecodeState:
        mem = linear(memory, *self.mem_proj) if self.mem_proj is not None else memory
        kv = [(split_heads(linear(mem, *L["k"]), self.heads), split_heads(linear(mem, *L["v"]), self.heads))
              for L in self.layers]
        return DecodeState(memory_mask.astype(bool), kv, [[None, None] for _ in self.layers])

    def step(self, state: DecodeState, tokens: np.ndarray) -> np.ndarray:
        """Logits (B x V) for the position after ``tokens`` (B x t, every token so far)."""
        new = tokens[:, state.length:]
        t, offset = new.shape[1], state.length
        if offset + t > self.max_len:
            raise InputError(f"sequence of {offset + t} tokens exceeds decoder.max_len={self.max_len}")
        x = self.embed[new] + self.pos[offset:offset + t]
        allowed = state.memory_mask[:, None, None, :]
        for L, kv, cache in zip(self.layers, state.kv, state.cache):
            h = layer_norm(x, *L["ln"][0])
            q, k, v = np.split(linear(h, *L["qkv"]), 3, axis=-1)
            q, k, v = (split_heads(a, self.heads) for a in (q, k, v))
            if cache[0] is not None:
                k, v = np.concatenate([cache[0], k], 2), np.concatenate([cache[1], v], 2)
            cache[0], cache[1] = k, v
            causal = None
            if t > 1:  # several new tokens: causal mask offset by the cached prefix
                causal = np.tril(np.ones((t, k.shape[2]), bool), k.shape[2] - t)
            x = x + linear(merge_heads(attention(q, k, v, causal)), *L["self_out"])
            h = layer_norm(x, *L["ln"][1])
            q = split_heads(linear(h, *L["q"]), self.heads)
            x = x + linear(merge_heads(attention(q, kv[0], kv[1], allowed)), *L["cross_out"])
            h = layer_norm(x, *L["ln"][2])
            x = x + linear(gelu(linear(h, *L["ff1"])), *L["ff2"])
        state.length = tokens.shape[1]
        return layer_norm(x[:, -1], *self.ln_f) @ self.head

    def reorder(self, state: DecodeState, index: np.ndarray) -> None:
        """Keep/duplicate batch rows ``index`` (beam search) in place."""
        state.memory_mask = state.memory_mask[index]
        state.kv = [(k[index], v[index]) for k, v in state.kv]
        for c in state.cache:
            if c[0] is not None:
                c[0], c[1] = c[0][index], c[1][index]
