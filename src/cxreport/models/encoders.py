"""Image encoders: grayscale B x 1 x H x W in [0, 1] -> EncoderOutput(tokens B x N x D, pooled B x D).

Each encoder owns its input normalisation so the data pipeline stays model-agnostic. Backbones
with their own modules: ``efficientnet.py``, ``densenet.py``, ``hf_backbones.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cxreport.models.config import EncoderConfig
from cxreport.models.registry import ENCODERS, register_encoder

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class EncoderOutput:
    tokens: torch.Tensor  # B x N x D
    pooled: torch.Tensor  # B x D
    grid: tuple[int, int] | None = None  # (h, w) when tokens are a flattened CNN map


class Encoder(nn.Module):
    """Base: subclasses set ``out_dim`` and implement ``forward(x) -> EncoderOutput``."""

    out_dim: int
    frozen: bool = False

    def freeze(self) -> None:
        """No gradients, and BatchNorm statistics stay fixed (the module stays in eval mode)."""
        self.frozen = True
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        return super().train(mode and not self.frozen)


def to_rgb_normalised(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Replicate grayscale to 3 channels and standardise with per-channel mean/std."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x.expand(-1, 3, -1, -1) - m) / s


def check_images(x: torch.Tensor) -> None:
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"encoder expects grayscale images B x 1 x H x W, got {tuple(x.shape)}")


def map_to_output(fmap: torch.Tensor) -> EncoderOutput:
    """B x C x h x w feature map -> row-major tokens + mean-pooled vector."""
    b, c, h, w = fmap.shape
    tokens = fmap.flatten(2).transpose(1, 2)
    return EncoderOutput(tokens=tokens, pooled=tokens.mean(1), grid=(h, w))


def build_encoder(cfg: EncoderConfig) -> Encoder:
    enc = ENCODERS.get(cfg.name)(cfg)
    if cfg.freeze:
        enc.freeze()
    return enc


class _ConvStage(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )


@register_encoder("small-cnn")
class SmallCNN(Encoder):
    """Conv + pool stacks trained from scratch; the last map becomes the patch tokens.

    A stride-2 stem first, then one stage per entry of ``channels`` (each halves the size):
    224 px with 4 stages -> 7 x 7 = 49 tokens.
    """

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        if not cfg.channels:
            raise ValueError("small-cnn needs at least one entry in encoder.channels")
        c0 = cfg.channels[0]
        self.stem = nn.Sequential(
            nn.Conv2d(1, c0, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(c0), nn.ReLU(inplace=True)
        )
        stages, cin = [], c0
        for cout in cfg.channels:
            stages.append(_ConvStage(cin, cout))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.out_dim = cin

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        check_images(x)
        # Chest films are mostly mid-grey; centre them so the first BN sees zero-mean input.
        return map_to_output(self.stages(self.stem((x - 0.5) / 0.25)))
