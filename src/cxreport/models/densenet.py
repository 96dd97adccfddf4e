"""DenseNet-121 in plain torch with torchvision's parameter names, so torchvision ImageNet and
CheXNet checkpoints load from a local file (torchvision itself is not a dependency).

Names: ``features.conv0``, ``features.norm0``, ``features.denseblockK.denselayerJ.{norm1,conv1,
norm2,conv2}``, ``features.transitionK.{norm,conv}``, ``features.norm5``, ``classifier``.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cxreport.errors import InputError
from cxreport.models.config import EncoderConfig
from cxreport.models.encoders import IMAGENET_MEAN, IMAGENET_STD, Encoder, EncoderOutput
from cxreport.models.encoders import check_images, map_to_output, to_rgb_normalised
from cxreport.models.registry import register_encoder

DENSENET121 = dict(growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64, bn_size=4)

# Pre-0.4 torchvision (and CheXNet) checkpoints name layers 'norm.1', 'conv.2' ... inside dense layers.
_OLD_LAYER_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")


class _DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int, bn_size: int):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(feats, 1)
        x = self.conv1(self.relu1(self.norm1(x)))
        return self.conv2(self.relu2(self.norm2(x)))


class _DenseBlock(nn.ModuleDict):
    def __init__(self, layers: int, cin: int, growth: int, bn_size: int):
        super().__init__()
        for i in range(layers):
            self.add_module(f"denselayer{i + 1}", _DenseLayer(cin + i * growth, growth, bn_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for layer in self.values():
            feats.append(layer(feats))
        return torch.cat(feats, 1)


class _Transition(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(cin))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv2d(cin, cout, 1, bias=False))
        self.add_module("pool", nn.AvgPool2d(2, 2))


class DenseNet(nn.Module):
    def __init__(self, growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64, bn_size=4,
                 num_classes: int = 1000):
        super().__init__()
        self.features = nn.Sequential(OrderedDict([
            ("conv0", nn.Conv2d(3, num_init_features, 7, stride=2, padding=3, bias=False)),
            ("norm0", nn.BatchNorm2d(num_init_features)),
            ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.MaxPool2d(3, stride=2, padding=1)),
        ]))
        c = num_init_features
        for i, n in enumerate(block_config):
            self.features.add_module(f"denseblock{i + 1}", _DenseBlock(n, c, growth_rate, bn_size))
            c += n * growth_rate
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", _Transition(c, c // 2))
                c //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(c))
        self.num_features = c
        self.classifier = nn.Linear(c, num_classes) if num_classes else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.bias, 0)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.feature_map(x).mean((2, 3)))


def densenet121(num_classes: int = 1000) -> DenseNet:
    return DenseNet(**DENSENET121, num_classes=num_classes)


def normalise_densenet_keys(sd: dict) -> dict:
    """Map CheXNet / DataParallel / old-torchvision key names onto torchvision's current ones.

    Handles ``module.`` prefixes, a wrapping attribute (CheXNet's ``densenet121.``), the old
    ``norm.1`` layer names and CheXNet's ``classifier.0`` (Linear inside a Sequential).
    """
    out = {}
    for key, value in sd.items():
        k = key
        while k.startswith("module."):
            k = k[len("module."):]
        idx = k.find("features.")
        if idx > 0:
            k = k[idx:]
        elif ".classifier." in k:
            k = k[k.find("classifier."):]
        m = _OLD_LAYER_KEY.match(k)
        if m:
            k = m.group(1) + m.group(2)
        k = re.sub(r"^classifier\.0\.", "classifier.", k)
        out[k] = value
    return out


def load_densenet_weights(net: DenseNet, path: str | Path, features_only: bool = True) -> None:
    """Load a local checkpoint strictly (on ``features.*`` only when ``features_only``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: DenseNet-121 checkpoint not found")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    sd = normalise_densenet_keys(obj)
    if features_only:
        sd = {k: v for k, v in sd.items() if k.startswith("features.")}
        target = net.features
        sd = {k[len("features."):]: v for k, v in sd.items()}
    else:
        target = net
    try:
        target.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise InputError(f"{path}: not a torchvision/CheXNet DenseNet-121 checkpoint ({str(exc)[:300]})") from exc


@register_encoder("densenet121")
class DenseNet121Encoder(Encoder):
    """1024-d tokens on an H/32 x W/32 grid. ``weights``: a local torchvision or CheXNet file."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.net = densenet121(num_classes=0)
        if cfg.weights:
            load_densenet_weights(self.net, cfg.weights)
        elif cfg.pretrained:
            raise InputError("densenet121: no packaged weights; set encoder.weights to a local checkpoint file")
        self.out_dim = self.net.num_features

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        check_images(x)
        return map_to_output(self.net.feature_map(to_rgb_normalised(x, IMAGENET_MEAN, IMAGENET_STD)))
