"""HF ``transformers`` vision backbones (ResNet, ConvNeXt, ViT, Swin, DINOv2) as encoders.

Built from ``encoder.hf_config`` (``AutoConfig.for_model`` kwargs, untrained) or loaded from
``encoder.hf_model`` (hub id or local folder). We normalise ourselves: HF image processors would
pull in torchvision.
"""

from __future__ import annotations

import torch
from torch import nn

from cxreport.errors import InputError, require
from cxreport.models.config import EncoderConfig
from cxreport.models.encoders import IMAGENET_MEAN, IMAGENET_STD, Encoder, EncoderOutput
from cxreport.models.encoders import check_images, to_rgb_normalised
from cxreport.models.registry import register_encoder

NORMS = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "half": ((0.5,) * 3, (0.5,) * 3), "none": ((0.0,) * 3, (1.0,) * 3)}
# Families whose last_hidden_state starts with a CLS token (DINOv2 may add register tokens after it).
CLS_FAMILIES = {"vit", "dinov2", "dinov2_with_registers", "deit"}


def load_hf_backbone(cfg: EncoderConfig) -> nn.Module:
    transformers = require("transformers", "hf", "HF vision backbones")
    # Weights from hf_model only when pretrained; otherwise the architecture from hf_config (which
    # ReportModel fills in after a pretrained load, so checkpoints rebuild without the hub).
    try:
        if cfg.hf_model and (cfg.pretrained or not cfg.hf_config):
            if cfg.pretrained:
                return transformers.AutoModel.from_pretrained(cfg.hf_model)
            return transformers.AutoModel.from_config(transformers.AutoConfig.from_pretrained(cfg.hf_model))
    except (OSError, ValueError) as exc:
        raise InputError(f"encoder.hf_model {cfg.hf_model!r}: cannot load ({exc})") from exc
    if not cfg.hf_config.get("model_type"):
        raise InputError("encoder 'hf' needs encoder.hf_model (hub id / folder) or encoder.hf_config with a model_type")
    kwargs = dict(cfg.hf_config)
    hf_cfg = transformers.AutoConfig.for_model(kwargs.pop("model_type"), **kwargs)
    return transformers.AutoModel.from_config(hf_cfg)


@register_encoder("hf")
class HFBackboneEncoder(Encoder):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        if cfg.norm not in NORMS:
            raise InputError(f"encoder.norm {cfg.norm!r}: choose one of {sorted(NORMS)}")
        if cfg.pool not in ("cls", "mean"):
            raise InputError(f"encoder.pool {cfg.pool!r}: choose cls or mean")
        self.model = load_hf_backbone(cfg)
        conf = self.model.config
        self.family = conf.model_type
        self.mean, self.std = NORMS[cfg.norm]
        self.pool = cfg.pool
        sizes = getattr(conf, "hidden_sizes", None)
        self.out_dim = int(sizes[-1]) if sizes else int(conf.hidden_size)
        self.num_prefix = 1 + int(getattr(conf, "num_register_tokens", 0) or 0) if self.family in CLS_FAMILIES else 0
        # ViT's position table is fixed to its config size; interpolate for other resolutions.
        self.extra_kwargs = {"interpolate_pos_encoding": True} if self.family in ("vit", "deit") else {}

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        check_images(x)
        out = self.model(pixel_values=to_rgb_normalised(x, self.mean, self.std), **self.extra_kwargs)
        hidden = out.last_hidden_state
        if hidden.dim() == 4:  # CNNs: B x C x h x w
            b, c, h, w = hidden.shape
            tokens = hidden.flatten(2).transpose(1, 2)
            return EncoderOutput(tokens=tokens, pooled=tokens.mean(1), grid=(h, w))
        if self.num_prefix:
            tokens = hidden[:, self.num_prefix:]
            pooled = hidden[:, 0] if self.pool == "cls" else tokens.mean(1)
            return EncoderOutput(tokens=tokens, pooled=pooled)
        return EncoderOutput(tokens=hidden, pooled=hidden.mean(1))  # Swin: no CLS
