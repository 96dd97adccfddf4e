"""The image side above a frozen encoder, read from its pooled features: the linear probe that the
finding-head fit trains (``training.head_fit``) and that a population of films may own
(``findings.populations[name]["own_head"]``, written by ``cxreport adapt``).

Its modules are those of a ReportModel with the ``pool`` projector and the ``pooled`` head
(``projector``, ``view_embed``, ``finding_head``), so its state dict drops into one unchanged.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from cxreport.models.config import ModelConfig
from cxreport.models.finding_head import FindingHead
from cxreport.models.projectors import build_projector


def probe_config(cfg: ModelConfig) -> ModelConfig:
    """``cfg`` with the probe's image side: ``pool`` projector, ``pooled`` head."""
    return dataclasses.replace(cfg, projector=dataclasses.replace(cfg.projector, name="pool"),
                               findings=dataclasses.replace(cfg.findings, head="pooled"))


class PooledProbe(nn.Module):
    """pooled encoder features N x C -> finding logits N x L (every film read as frontal: the head
    is fitted on frontal films)."""

    def __init__(self, cfg: ModelConfig, in_dim: int):
        super().__init__()
        cfg = probe_config(cfg)
        self.projector = build_projector(cfg.projector, in_dim, cfg.d_model)
        self.view_embed = nn.Embedding(cfg.views.num_view_types, cfg.d_model) if cfg.views.view_embedding else None
        self.finding_head = FindingHead(cfg.findings, cfg.d_model)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        tok = self.projector(pooled[:, None, :])
        if self.view_embed is not None:
            tok = tok + self.view_embed.weight[0]
        return self.finding_head(tok, torch.ones(tok.shape[:2], dtype=torch.bool, device=tok.device))
