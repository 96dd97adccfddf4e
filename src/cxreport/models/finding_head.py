"""CheXpert finding head (multi-label, from image tokens), its masked loss, and the finding
tokens that condition the decoder (finding-guided generation)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cxreport.errors import InputError
from cxreport.labels import FINDING_STATES
from cxreport.models.config import FindingsConfig
from cxreport.models.plan_edits import state_codes

# Finding-token states (indices into FINDING_STATES). Targets use CheXpert values: 1 positive,
# 0 negative, -1 uncertain, NaN not mentioned.
POSITIVE, NEGATIVE, UNCERTAIN, NOT_ASSESSED = 0, 1, 2, 3
UNKNOWN = NOT_ASSESSED  # the name before plans had explicit negatives; checkpoints store the same index
STATE_NAMES = FINDING_STATES
UNCERTAIN_POLICIES = ("ignore", "positive", "negative")


def targets_to_states(targets: torch.Tensor, unmentioned: int = NOT_ASSESSED) -> torch.Tensor:
    """B x L float CheXpert targets -> B x L long states; a finding the report does not mention
    (NaN) gets ``unmentioned`` (NEGATIVE when the plan's negatives are explicit)."""
    states = torch.full(targets.shape, unmentioned, dtype=torch.long, device=targets.device)
    states[targets == 1] = POSITIVE
    states[targets == 0] = NEGATIVE
    states[targets == -1] = UNCERTAIN
    return states


def probs_to_states(probs: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
    return torch.where(probs >= threshold, POSITIVE, NEGATIVE).long()


def dict_to_states(findings: dict, labels: list[str], default: int = NOT_ASSESSED) -> torch.Tensor:
    """User-given (oracle) findings -> L states. Values: 1/0/-1/None or a FINDING_STATES name;
    labels not given are ``default`` (not assessed)."""
    return torch.tensor(state_codes(findings, labels, default), dtype=torch.long)


class FindingHead(nn.Module):
    """``attention``: one learned query per finding attends over the image tokens, then a
    per-finding linear read-out. ``pooled``: masked mean of the tokens -> linear."""

    def __init__(self, cfg: FindingsConfig, d_model: int, heads: int = 4):
        super().__init__()
        if cfg.head not in ("attention", "pooled"):
            raise InputError(f"findings.head {cfg.head!r}: choose attention or pooled")
        if cfg.uncertain not in UNCERTAIN_POLICIES:
            raise InputError(f"findings.uncertain {cfg.uncertain!r}: choose one of {UNCERTAIN_POLICIES}")
        n = len(cfg.labels)
        self.kind = cfg.head
        self.norm = nn.LayerNorm(d_model)
        if self.kind == "attention":
            heads = heads if d_model % heads == 0 else 1
            self.queries = nn.Parameter(torch.randn(n, d_model) / math.sqrt(d_model))
            self.attn = nn.MultiheadAttention(d_model, heads, batch_first=True)
            self.weight = nn.Parameter(torch.randn(n, d_model) / math.sqrt(d_model))
            self.bias = nn.Parameter(torch.zeros(n))
        else:
            self.out = nn.Linear(d_model, n)
        self.n = n

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """tokens B x S x d, mask B x S (True = real). Rows with no real token get logits 0."""
        b = tokens.shape[0]
        has_any = mask.any(1)
        if tokens.shape[1] == 0:
            return tokens.new_zeros(b, self.n)
        x = self.norm(tokens)
        # Keep at least one key per row so softmax stays finite; such rows are zeroed below.
        safe = mask.clone()
        safe[~has_any, 0] = True
        if self.kind == "attention":
            q = self.queries.expand(b, -1, -1)
            # The padding as a per-head attn_mask, not key_padding_mask: the same masking, but
            # torch's key_padding_mask check imports sympy (~0.3 s of every CLI call's start-up).
            blocked = (~safe)[:, None, :].expand(b, q.shape[1], safe.shape[1])
            pooled, _ = self.attn(q, x, x, attn_mask=blocked.repeat_interleave(self.attn.num_heads, 0),
                                  need_weights=False)
            logits = (pooled * self.weight).sum(-1) + self.bias
        else:
            w = safe.unsqueeze(-1).to(x.dtype)
            logits = self.out((x * w).sum(1) / w.sum(1))
        return logits * has_any.unsqueeze(1).to(logits.dtype)


def finding_loss(logits: torch.Tensor, targets: torch.Tensor, row_mask: torch.Tensor, uncertain: str) -> torch.Tensor:
    """Masked BCE: NaN targets and rows outside ``row_mask`` are ignored; -1 follows ``uncertain``."""
    t = targets.to(logits.dtype)
    known = ~torch.isnan(t) & row_mask.unsqueeze(1)
    if uncertain == "ignore":
        known &= t != -1
    else:
        t = torch.where(t == -1, torch.ones_like(t) if uncertain == "positive" else torch.zeros_like(t), t)
    if not known.any():
        return logits.sum() * 0.0  # keeps the graph (and DDP) happy on batches without labels
    t = torch.where(known, t, torch.zeros_like(t))
    per = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    return (per * known).sum() / known.sum()


class FindingTokens(nn.Module):
    """One memory token per finding: finding embedding + state embedding."""

    def __init__(self, n_labels: int, d_model: int):
        super().__init__()
        self.label = nn.Parameter(torch.randn(n_labels, d_model) * 0.02)
        self.state = nn.Embedding(len(STATE_NAMES), d_model)
        nn.init.normal_(self.state.weight, std=0.02)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.norm(self.label.unsqueeze(0) + self.state(states))
