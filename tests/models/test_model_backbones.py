import importlib.util

import pytest
import torch

from cxreport.errors import InputError
from cxreport.models.config import EncoderConfig
from cxreport.models.densenet import DenseNet121Encoder, densenet121, normalise_densenet_keys
from cxreport.models.efficientnet import EfficientNetLite0, efficientnet_lite0, packaged_weights_path
from cxreport.models.encoders import build_encoder


def test_efficientnet_lite0_loads_packaged_weights_strict():
    net = efficientnet_lite0(pretrained=True).eval()  # strict=True inside
    ref = torch.load(packaged_weights_path(), map_location="cpu", weights_only=True)
    assert set(net.state_dict()) == set(ref)
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(4.65e6, rel=0.01)
    x = torch.rand(1, 3, 224, 224)
    assert net.features(x).shape == (1, 1280, 7, 7)
    with torch.no_grad():
        a, b = net(x), net(x)
    torch.testing.assert_close(a, b)  # deterministic in eval mode


@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite_pytorch") is None,
                    reason="reference package efficientnet-lite-pytorch not installed")
def test_efficientnet_lite0_matches_reference_implementation():
    from efficientnet_lite_pytorch import EfficientNet

    sd = torch.load(packaged_weights_path(), map_location="cpu", weights_only=True)
    ref = EfficientNet.from_name("efficientnet-lite0")
    ref.load_state_dict(sd, strict=True)
    ours = efficientnet_lite0(pretrained=True)
    ref.eval(), ours.eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours.features(x), ref.extract_features(x), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(ours(x), ref(x), atol=1e-4, rtol=1e-4)


def test_efficientnet_encoder_normalises_grayscale_and_loads_local_file(tmp_path):
    path = tmp_path / "lite0.pth"
    torch.save(EfficientNetLite0().state_dict(), path)
    enc = build_encoder(EncoderConfig(name="efficientnet-lite0", weights=str(path))).eval()
    out = enc(torch.rand(2, 1, 64, 64))
    assert out.tokens.shape == (2, 4, 1280) and out.pooled.shape == (2, 1280) and out.grid == (2, 2)
    with pytest.raises(InputError, match="not found"):
        efficientnet_lite0(weights=tmp_path / "missing.pth")
    torch.save({"foo": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(InputError, match="not an EfficientNet-Lite0"):
        efficientnet_lite0(weights=tmp_path / "bad.pth")


def _torchvision_densenet121_keys() -> set[str]:
    """Expected names, written from torchvision/models/densenet.py (block_config 6/12/24/16)."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = {"features.conv0.weight", "classifier.weight", "classifier.bias"}
    keys |= {f"features.norm0.{s}" for s in bn} | {f"features.norm5.{s}" for s in bn}
    for b, n in enumerate((6, 12, 24, 16), start=1):
        for j in range(1, n + 1):
            p = f"features.denseblock{b}.denselayer{j}"
            keys |= {f"{p}.norm1.{s}" for s in bn} | {f"{p}.norm2.{s}" for s in bn}
            keys |= {f"{p}.conv1.weight", f"{p}.conv2.weight"}
        if b < 4:
            keys |= {f"features.transition{b}.norm.{s}" for s in bn} | {f"features.transition{b}.conv.weight"}
    return keys


def test_densenet121_has_torchvision_names_and_shapes():
    sd = densenet121().state_dict()
    assert set(sd) == _torchvision_densenet121_keys()
    assert sd["features.denseblock1.denselayer2.conv1.weight"].shape == (128, 96, 1, 1)
    assert sd["features.transition3.conv.weight"].shape == (512, 1024, 1, 1)
    assert sd["classifier.weight"].shape == (1000, 1024)


def test_densenet_checkpoint_roundtrip_and_chexnet_style_keys(tmp_path):
    src = densenet121(num_classes=14)
    sd = src.state_dict()
    plain = tmp_path / "tv.pth"
    torch.save(sd, plain)
    # CheXNet: DataParallel prefix, a wrapping attribute, old 'norm.1' names, Linear inside a Sequential.
    old = {}
    for k, v in sd.items():
        k2 = k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2.").replace("classifier.", "classifier.0.")
        old["module.densenet121." + k2] = v
    assert normalise_densenet_keys(old).keys() == sd.keys()
    # Real CheXNet files predate BatchNorm's num_batches_tracked buffers.
    old = {k: v for k, v in old.items() if not k.endswith("num_batches_tracked")}
    chexnet = tmp_path / "chexnet.pth.tar"
    torch.save({"state_dict": old, "epoch": 3}, chexnet)
    x = torch.rand(1, 1, 32, 32)
    src.eval()
    for path in (plain, chexnet):
        enc = DenseNet121Encoder(EncoderConfig(name="densenet121", weights=str(path))).eval()
        torch.testing.assert_close(enc.net.features.state_dict()["norm5.running_var"], sd["features.norm5.running_var"])
        out = enc(x)
        assert out.tokens.shape == (1, 1, 1024)
    with pytest.raises(InputError, match="no packaged weights"):
        DenseNet121Encoder(EncoderConfig(name="densenet121", pretrained=True))


HF_FAMILIES = {
    "resnet": ({"model_type": "resnet", "embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1]}, 16, (8, 8)),
    "convnext": ({"model_type": "convnext", "num_stages": 2, "hidden_sizes": [8, 16], "depths": [1, 1]}, 16, (8, 8)),
    "vit": ({"model_type": "vit", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
             "intermediate_size": 32, "image_size": 32, "patch_size": 8}, 16, None),
    "swin": ({"model_type": "swin", "embed_dim": 8, "depths": [1, 1], "num_heads": [1, 2], "window_size": 2,
              "image_size": 64, "patch_size": 4}, 16, None),
    "dinov2": ({"model_type": "dinov2", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                "image_size": 64, "patch_size": 8, "mlp_ratio": 2}, 16, None),
}


@pytest.mark.parametrize("family", list(HF_FAMILIES))
def test_hf_backbones_from_tiny_configs(family):
    hf_config, dim, grid = HF_FAMILIES[family]
    torch.manual_seed(0)
    enc = build_encoder(EncoderConfig(name="hf", hf_config=hf_config)).eval()
    assert enc.out_dim == dim
    out = enc(torch.rand(2, 1, 64, 64))
    assert out.tokens.shape[0] == 2 and out.tokens.shape[2] == dim and out.pooled.shape == (2, dim)
    assert out.grid == grid
    if family in ("vit", "dinov2"):  # CLS dropped from tokens: 64/8 squared patches
        assert out.tokens.shape[1] == 64
        hidden = enc.model(pixel_values=torch.rand(1, 3, 64, 64), **enc.extra_kwargs).last_hidden_state
        assert hidden.shape[1] == 65  # CLS + patches: the encoder dropped exactly the CLS


def test_hf_encoder_needs_a_source():
    with pytest.raises(InputError, match="hf_model"):
        build_encoder(EncoderConfig(name="hf"))
