"""Text decoders and the interface the model and generator use.

Every decoder maps ``memory`` (B x S x memory_dim, mask B x S, True = attend) plus right-padded
token ids to next-token logits, and supports incremental decoding through a ``DecodeState``
(``start`` / ``step`` / ``reorder``) so one generator serves all decoders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cxreport.errors import InputError
from cxreport.models.config import DecoderConfig
from cxreport.models.registry import DECODERS, register_decoder


@dataclass
class DecodeState:
    memory: torch.Tensor
    memory_mask: torch.Tensor
    use_cache: bool
    cache: Any = None
    extra: dict = field(default_factory=dict)


class Decoder(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.vocab_size, self.pad_id, self.bos_id, self.eos_id = cfg.vocab_size, cfg.pad_id, cfg.bos_id, cfg.eos_id
        self.max_len = cfg.max_len

    def forward(self, input_ids, attention_mask, memory, memory_mask) -> torch.Tensor:  # B x T x V
        raise NotImplementedError

    def start(self, memory, memory_mask, use_cache: bool = True) -> DecodeState:
        return DecodeState(memory, memory_mask, use_cache)

    def step(self, state: DecodeState, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B x V) for the position after ``tokens`` (B x t, every token so far)."""
        raise NotImplementedError

    def reorder(self, state: DecodeState, index: torch.Tensor) -> None:
        """Keep/duplicate batch rows ``index`` (beam search) in place."""
        state.memory = state.memory.index_select(0, index)
        state.memory_mask = state.memory_mask.index_select(0, index)


class _MHA(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.h, self.dh, self.dropout = heads, d // heads, dropout
        self.out = nn.Linear(d, d)

    def split(self, x):
        b, t, _ = x.shape
        return x.view(b, t, self.h, self.dh).transpose(1, 2)

    def attend(self, q, k, v, mask=None, causal=False):
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal)
        b, h, t, dh = y.shape
        return self.out(y.transpose(1, 2).reshape(b, t, h * dh))


class SelfAttention(_MHA):
    def __init__(self, d, heads, dropout):
        super().__init__(d, heads, dropout)
        self.qkv = nn.Linear(d, 3 * d)

    def forward(self, x, cache: list | None = None):
        q, k, v = (self.split(t) for t in self.qkv(x).chunk(3, -1))
        if cache is not None and cache[0] is not None:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        if cache is not None:
            cache[0], cache[1] = k, v
        t_new, t_all = q.shape[2], k.shape[2]
        if t_new == 1:
            return self.attend(q, k, v)
        if t_new == t_all:
            return self.attend(q, k, v, causal=True)
        # Several new tokens after a cached prefix: causal mask offset by the prefix length.
        mask = torch.ones(t_new, t_all, dtype=torch.bool, device=x.device).tril(t_all - t_new)
        return self.attend(q, k, v, mask=mask)


class CrossAttention(_MHA):
    def __init__(self, d, heads, dropout):
        super().__init__(d, heads, dropout)
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)

    def memory_kv(self, memory):
        k, v = self.kv(memory).chunk(2, -1)
        return self.split(k), self.split(v)

    def forward(self, x, kv, mask):
        return self.attend(self.split(self.q(x)), kv[0], kv[1], mask=mask[:, None, None, :])


class DecoderLayer(nn.Module):
    """Pre-LN: x += SelfAttn(LN x); x += CrossAttn(LN x, memory); x += FFN(LN x)."""

    def __init__(self, d, heads, ff_mult, dropout):
        super().__init__()
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attn = SelfAttention(d, heads, dropout)
        self.cross_attn = CrossAttention(d, heads, dropout)
        self.ff = nn.Sequential(nn.Linear(d, ff_mult * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_mult * d, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, kv, mask, cache=None):
        x = x + self.drop(self.self_attn(self.ln1(x), cache))
        x = x + self.drop(self.cross_attn(self.ln2(x), kv, mask))
        return x + self.drop(self.ff(self.ln3(x)))


@register_decoder("transformer")
class TransformerDecoder(Decoder):
    """Our own pre-LN decoder. KV cache: self-attention K/V grow per layer; the cross-attention
    K/V of the memory are computed once per generation in ``start``."""

    def __init__(self, cfg: DecoderConfig, memory_dim: int):
        super().__init__(cfg)
        d = cfg.d_model
        if d % cfg.heads:
            raise InputError(f"decoder.heads={cfg.heads} must divide decoder.d_model={d}")
        self.embed = nn.Embedding(cfg.vocab_size, d)
        self.pos = nn.Embedding(cfg.max_len, d)
        self.mem_proj = nn.Linear(memory_dim, d) if memory_dim != d else nn.Identity()
        self.layers = nn.ModuleList(DecoderLayer(d, cfg.heads, cfg.ff_mult, cfg.dropout) for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.vocab_size, bias=False)
        self.drop = nn.Dropout(cfg.dropout)
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight

    def _memory_kv(self, memory):
        mem = self.mem_proj(memory)
        return [layer.cross_attn.memory_kv(mem) for layer in self.layers]

    def _run(self, ids, offset, kvs, mask, caches=None):
        t = ids.shape[1]
        if offset + t > self.max_len:
            raise InputError(f"sequence of {offset + t} tokens exceeds decoder.max_len={self.max_len}")
        pos = torch.arange(offset, offset + t, device=ids.device)
        x = self.drop(self.embed(ids) + self.pos(pos))
        for i, layer in enumerate(self.layers):
            x = layer(x, kvs[i], mask, None if caches is None else caches[i])
        return self.head(self.ln_f(x))

    def forward(self, input_ids, attention_mask, memory, memory_mask):
        # Right padding + causal attention: real positions never see pads, so no key mask needed.
        return self._run(input_ids, 0, self._memory_kv(memory), memory_mask)

    def start(self, memory, memory_mask, use_cache=True):
        state = DecodeState(memory, memory_mask, use_cache)
        if use_cache:
            state.extra["kv"] = self._memory_kv(memory)
            state.cache = [[None, None] for _ in self.layers]
            state.extra["len"] = 0
        return state

    def step(self, state, tokens):
        if not state.use_cache:
            return self._run(tokens, 0, self._memory_kv(state.memory), state.memory_mask)[:, -1]
        done = state.extra["len"]
        new = tokens[:, done:]
        logits = self._run(new, done, state.extra["kv"], state.memory_mask, state.cache)
        state.extra["len"] = tokens.shape[1]
        return logits[:, -1]

    def reorder(self, state, index):
        super().reorder(state, index)
        if state.use_cache:
            state.extra["kv"] = [(k.index_select(0, index), v.index_select(0, index)) for k, v in state.extra["kv"]]
            for c in state.cache:
                if c[0] is not None:
                    c[0], c[1] = c[0].index_select(0, index), c[1].index_select(0, index)


def build_decoder(cfg: DecoderConfig, memory_dim: int) -> Decoder:
    return DECODERS.get(cfg.name)(cfg, memory_dim)
