"""Mapping networks from encoder tokens (width in_dim) to decoder memory tokens (width d_model)."""

from __future__ import annotations

import math

import torch
from torch import nn

from cxreport.errors import InputError
from cxreport.models.config import ProjectorConfig
from cxreport.models.registry import PROJECTORS, register_projector


def sincos_2d(h: int, w: int, dim: int, device=None, dtype=None) -> torch.Tensor:
    """Fixed 2D sine-cosine position code, (h*w) x dim, row-major like a flattened feature map."""
    quarter = max(dim // 4, 1)
    omega = 1.0 / (10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter))
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    y = ys.reshape(-1, 1).float() * omega
    x = xs.reshape(-1, 1).float() * omega
    code = torch.cat([y.sin(), y.cos(), x.sin(), x.cos()], 1)
    if code.shape[1] < dim:
        code = torch.nn.functional.pad(code, (0, dim - code.shape[1]))
    return code[:, :dim].to(dtype or torch.float32)


class Projector(nn.Module):
    """``forward(tokens B x N x in_dim, grid) -> B x M x d_model``; ``num_tokens(N)`` gives M."""

    def __init__(self, cfg: ProjectorConfig, in_dim: int, d_model: int):
        super().__init__()
        self.grid_pos = cfg.grid_pos
        self.d_model = d_model

    def add_pos(self, x: torch.Tensor, grid) -> torch.Tensor:
        if self.grid_pos and grid is not None and grid[0] * grid[1] == x.shape[1]:
            x = x + sincos_2d(grid[0], grid[1], x.shape[-1], x.device, x.dtype)
        return x

    def num_tokens(self, n: int) -> int:
        return n


@register_projector("linear")
class LinearProjector(Projector):
    def __init__(self, cfg: ProjectorConfig, in_dim: int, d_model: int):
        super().__init__(cfg, in_dim, d_model)
        self.proj = nn.Linear(in_dim, d_model)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tokens, grid=None):
        return self.norm(self.add_pos(self.proj(tokens), grid))


@register_projector("mlp")
class MLPProjector(Projector):
    def __init__(self, cfg: ProjectorConfig, in_dim: int, d_model: int):
        super().__init__(cfg, in_dim, d_model)
        hidden = cfg.hidden or 2 * d_model
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(hidden, d_model))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tokens, grid=None):
        return self.norm(self.add_pos(self.net(tokens), grid))


@register_projector("transformer")
class TransformerMapper(Projector):
    """ClipCap-style mapper: ``num_prefix`` learned queries plus the image tokens go through a
    small transformer encoder; the outputs at the query positions are the memory tokens."""

    def __init__(self, cfg: ProjectorConfig, in_dim: int, d_model: int):
        super().__init__(cfg, in_dim, d_model)
        if d_model % cfg.heads:
            raise InputError(f"projector.heads={cfg.heads} must divide d_model={d_model}")
        self.proj = nn.Linear(in_dim, d_model)
        self.prefix = nn.Parameter(torch.randn(cfg.num_prefix, d_model) / math.sqrt(d_model))
        layer = nn.TransformerEncoderLayer(d_model, cfg.heads, 4 * d_model, cfg.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.mapper = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.m = cfg.num_prefix

    def num_tokens(self, n: int) -> int:
        return self.m

    def forward(self, tokens, grid=None):
        x = self.add_pos(self.proj(tokens), grid)
        x = torch.cat([self.prefix.expand(x.shape[0], -1, -1), x], 1)
        return self.norm(self.mapper(x)[:, : self.m])


def build_projector(cfg: ProjectorConfig, in_dim: int, d_model: int) -> Projector:
    return PROJECTORS.get(cfg.name)(cfg, in_dim, d_model)
