"""From encoder tokens to image tokens, finding-head logits and the decoder's memory, in NumPy.

Mirrors ``ReportModel.encode_images`` / ``finding_logits`` / ``memory`` and the projector, finding
head and finding-token modules they call, weight for weight (same state-dict names).
"""

from __future__ import annotations

import numpy as np

from cxreport.errors import InputError
from cxreport.models.runtime.ops import (F32, attention, gelu, layer_norm, linear, merge_heads, sincos_2d,
                                         split_heads)
from cxreport.models.runtime.weights import take


def _t(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.T)


class ImageSide:
    def __init__(self, cfg, weights: dict[str, np.ndarray], encode):
        """``encode``: images N x 1 x S x S -> (tokens N x T x C, pooled N x C), grid via ``encode.grid``."""
        self.cfg, self.encode_films = cfg, encode
        self.d = int(cfg.d_model)
        w = lambda name: take(weights, name)  # noqa: E731
        pc = cfg.projector
        self.projector = pc.name
        if pc.name in ("linear", "pool"):
            self.proj = (_t(w("projector.proj.weight")), w("projector.proj.bias"))
        elif pc.name == "mlp":
            self.proj = (_t(w("projector.net.0.weight")), w("projector.net.0.bias"),
                         _t(w("projector.net.3.weight")), w("projector.net.3.bias"))
        elif pc.name == "transformer":
            self.proj = (_t(w("projector.proj.weight")), w("projector.proj.bias"))
            self.prefix = w("projector.prefix")
            self.mapper = [_mapper_layer(w, f"projector.mapper.layers.{i}.", self.d) for i in range(pc.layers)]
        if pc.name in ("linear", "mlp", "transformer"):
            self.proj_norm = (w("projector.norm.weight"), w("projector.norm.bias"))
        self.view_embed = w("view_embed.weight") if cfg.views.view_embedding else None
        fc = cfg.findings
        self.head_kind = fc.head
        self.head_norm = (w("finding_head.norm.weight"), w("finding_head.norm.bias"))
        if fc.head == "pooled":
            self.head_out = (_t(w("finding_head.out.weight")), w("finding_head.out.bias"))
        else:
            d = self.d
            self.head_heads = 4 if d % 4 == 0 else 1  # FindingHead's default
            in_w, in_b = w("finding_head.attn.in_proj_weight"), w("finding_head.attn.in_proj_bias")
            self.head_q = w("finding_head.queries")
            self.head_in = [(_t(in_w[i * d:(i + 1) * d]), in_b[i * d:(i + 1) * d]) for i in range(3)]
            self.head_attn_out = (_t(w("finding_head.attn.out_proj.weight")), w("finding_head.attn.out_proj.bias"))
            self.head_read = (w("finding_head.weight"), w("finding_head.bias"))
        self.n_labels = len(fc.labels)
        # Populations with a head of their own (``cxreport adapt``): models.probe.PooledProbe.
        self.population_heads = {}
        for name, entry in fc.populations.items():
            if entry.get("own_head"):
                p = f"population_heads.{name}."
                self.population_heads[name] = {
                    "proj": (_t(w(p + "projector.proj.weight")), w(p + "projector.proj.bias")),
                    "view": w(p + "view_embed.weight")[0] if cfg.views.view_embedding else None,
                    "norm": (w(p + "finding_head.norm.weight"), w(p + "finding_head.norm.bias")),
                    "out": (_t(w(p + "finding_head.out.weight")), w(p + "finding_head.out.bias"))}
        if fc.condition:
            self.label_embed = w("finding_tokens.label")
            self.state_embed = w("finding_tokens.state.weight")
            self.token_norm = (w("finding_tokens.norm.weight"), w("finding_tokens.norm.bias"))
            self.null = None
        else:
            self.null = w("null_memory")

    # ---- images -> tokens -------------------------------------------------------------
    def _project(self, tokens: np.ndarray, grid) -> np.ndarray:
        if self.projector == "pool":
            mean = tokens.astype(np.float64).mean(1, keepdims=True).astype(F32)
            return linear(mean, *self.proj)
        if self.projector in ("linear", "transformer"):
            x = linear(tokens, *self.proj[:2])
        else:
            w1, b1, w2, b2 = self.proj
            x = linear(gelu(linear(tokens, w1, b1)), w2, b2)
        if self.cfg.projector.grid_pos and grid is not None and grid[0] * grid[1] == x.shape[1]:
            x = x + sincos_2d(grid[0], grid[1], x.shape[-1])
        if self.projector == "transformer":  # ClipCap mapper: learned queries first, their outputs kept
            x = np.concatenate([np.broadcast_to(self.prefix, (x.shape[0], *self.prefix.shape)), x], 1)
            for layer in self.mapper:
                x = _mapper_forward(layer, x, self.cfg.projector.heads)
            x = x[:, :len(self.prefix)]
        return layer_norm(x, *self.proj_norm)

    def encode(self, images: np.ndarray, image_mask: np.ndarray, view_ids: np.ndarray):
        """images B x V x 1 x S x S -> (tokens B x V*M x d, mask B x V*M, pooled B x V x C or None)."""
        b, v = images.shape[:2]
        if v > self.cfg.views.max_views:
            raise InputError(f"{v} views per study, but this model takes at most views.max_views="
                             f"{self.cfg.views.max_views}")
        flat = image_mask.reshape(-1).astype(bool)
        if not flat.any():
            return np.zeros((b, 0, self.d), F32), np.zeros((b, 0), bool), None
        sel = images.reshape(b * v, *images.shape[2:])[flat]
        tokens, pooled = self.encode_films(sel)
        tok = self._project(tokens, getattr(self.encode_films, "grid", None))
        if self.view_embed is not None:
            ids = np.clip(view_ids.reshape(-1)[flat], 0, len(self.view_embed) - 1)
            tok = tok + self.view_embed[ids][:, None]
        m = tok.shape[1]
        full = np.zeros((b * v, m, self.d), F32)
        full[flat] = tok
        mask = np.repeat(flat[:, None], m, 1)
        pooled_full = np.zeros((b * v, pooled.shape[-1]), F32)
        pooled_full[flat] = pooled
        return full.reshape(b, v * m, self.d), mask.reshape(b, v * m), pooled_full.reshape(b, v, -1)

    # ---- finding head -----------------------------------------------------------------
    def finding_logits(self, tok: np.ndarray, mask: np.ndarray, view_ids: np.ndarray | None) -> np.ndarray:
        hv = self.cfg.views.head_views
        if hv == "frontal" and view_ids is not None and tok.shape[1]:
            v = view_ids.shape[1]
            frontal = np.repeat(view_ids == 0, tok.shape[1] // v, 1) & mask
            mask = np.where(frontal.any(1, keepdims=True), frontal, mask)
        elif hv not in ("all", "frontal"):
            raise InputError(f"views.head_views {hv!r}: choose all or frontal")
        b = tok.shape[0]
        has_any = mask.any(1)
        if tok.shape[1] == 0:
            return np.zeros((b, self.n_labels), F32)
        x = layer_norm(tok, *self.head_norm)
        safe = mask.copy()
        safe[~has_any, 0] = True
        if self.head_kind == "pooled":
            w = safe[..., None].astype(F32)
            logits = linear((x * w).sum(1) / w.sum(1), *self.head_out)
        else:
            h = self.head_heads
            q = split_heads(np.broadcast_to(linear(self.head_q, *self.head_in[0]), (b, *self.head_q.shape)), h)
            k = split_heads(linear(x, *self.head_in[1]), h)
            v = split_heads(linear(x, *self.head_in[2]), h)
            pooled = linear(merge_heads(attention(q, k, v, safe[:, None, None, :])), *self.head_attn_out)
            weight, bias = self.head_read
            logits = (pooled * weight).sum(-1) + bias
        return logits * has_any[:, None].astype(F32)

    def population_logits(self, logits: np.ndarray, pooled: np.ndarray, view_mask: np.ndarray,
                          view_ids: np.ndarray | None, populations: list) -> np.ndarray:
        """Logits of studies whose population owns a head, from the pooled features of their first
        frontal view (else first view), as ``ReportModel._population_logits``."""
        logits = logits.copy()
        for i, pop in enumerate(populations):
            head = self.population_heads.get(pop)
            if head is None or not view_mask[i].any():
                continue
            real = np.flatnonzero(view_mask[i]).tolist()
            front = [j for j in real if view_ids is not None and int(view_ids[i, j]) == 0]
            tok = linear(pooled[i, (front or real)[0]][None, None, :], *head["proj"])  # mean of one token: itself
            if head["view"] is not None:
                tok = tok + head["view"]
            logits[i] = linear(layer_norm(tok, *head["norm"])[:, 0], *head["out"])[0]
        return logits

    # ---- decoder memory ---------------------------------------------------------------
    def memory(self, tok: np.ndarray, mask: np.ndarray, states: np.ndarray | None):
        """[finding tokens | image tokens] (or [null | image tokens]), as ``ReportModel.memory``."""
        b = tok.shape[0]
        if self.null is None:
            if states is None:
                states = np.full((b, self.n_labels), 3, dtype=np.int64)
            prefix = layer_norm(self.label_embed[None] + self.state_embed[states], *self.token_norm)
        else:
            prefix = np.broadcast_to(self.null, (b, *self.null.shape[1:])).astype(F32)
        pmask = np.ones((b, prefix.shape[1]), bool)
        if self.null is None and not self.cfg.findings.image_memory:
            return prefix, pmask
        return np.concatenate([prefix, tok], 1), np.concatenate([pmask, mask], 1)


def _mapper_layer(w, p: str, d: int) -> dict:
    """One ``nn.TransformerEncoderLayer`` (pre-LN, GELU) of the ClipCap mapper."""
    in_w, in_b = w(p + "self_attn.in_proj_weight"), w(p + "self_attn.in_proj_bias")
    return {"in": [(_t(in_w[i * d:(i + 1) * d]), in_b[i * d:(i + 1) * d]) for i in range(3)],
            "out": (_t(w(p + "self_attn.out_proj.weight")), w(p + "self_attn.out_proj.bias")),
            "ff1": (_t(w(p + "linear1.weight")), w(p + "linear1.bias")),
            "ff2": (_t(w(p + "linear2.weight")), w(p + "linear2.bias")),
            "norm1": (w(p + "norm1.weight"), w(p + "norm1.bias")),
            "norm2": (w(p + "norm2.weight"), w(p + "norm2.bias"))}


def _mapper_forward(layer: dict, x: np.ndarray, heads: int) -> np.ndarray:
    h = layer_norm(x, *layer["norm1"])
    q, k, v = (split_heads(linear(h, *p), heads) for p in layer["in"])
    x = x + linear(merge_heads(attention(q, k, v)), *layer["out"])
    return x + linear(gelu(linear(layer_norm(x, *layer["norm2"]), *layer["ff1"])), *layer["ff2"])
