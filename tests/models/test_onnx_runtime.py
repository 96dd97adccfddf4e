"""The image encoder through ONNX Runtime gives PyTorch's numbers, only at inference."""

import pytest
import torch

from cxreport.errors import InputError
from cxreport.models import create_model, onnx_runtime
from cxreport.inference.predict import for_inference

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def _close(a, b, tol=1e-4) -> bool:
    return float((a - b).abs().max() / b.abs().max()) < tol


def _model():
    torch.manual_seed(0)
    return create_model("effnet-small", vocab_size=20, pad_id=0, bos_id=1, eos_id=2, pretrained=False)


def test_onnx_runtime_encoder_matches_pytorch_and_follows_weight_changes():
    model = for_inference(_model(), runtime="onnxruntime")
    enc = model.encoder
    assert isinstance(enc.runtime, onnx_runtime.OrtFeatures)
    x = torch.rand(3, 1, 96, 96)
    with torch.no_grad():
        fast = enc(x).tokens
        enc.runtime, runtime = None, enc.runtime
        slow = enc(x).tokens
        enc.runtime = runtime
    assert _close(fast, slow)
    with torch.no_grad():  # a changed weight (an optimiser step, a load) makes a fresh export
        enc.net._conv_head.weight.mul_(2.0)
        changed = enc(x).tokens
        enc.runtime = None
        expected = enc(x).tokens
    assert _close(changed, expected) and not _close(changed, fast, 0.1)


def test_autograd_and_training_use_pytorch():
    model = for_inference(_model(), runtime="onnxruntime")
    called = []
    model.encoder.runtime = lambda x: called.append(1)
    out = model.encoder(torch.rand(1, 1, 64, 64))  # grad on: PyTorch
    assert out.tokens.requires_grad and not called
    model.train()
    with torch.no_grad():
        model.encoder(torch.rand(1, 1, 64, 64))
    assert not called


def test_runtime_choice():
    assert onnx_runtime.choose("torch") == "torch"
    assert onnx_runtime.choose("auto", "cuda") == "torch"
    assert onnx_runtime.choose("auto") == "onnxruntime"
    with pytest.raises(InputError, match="CXREPORT_RUNTIME"):
        onnx_runtime.choose("tensorrt")
    assert for_inference(_model(), runtime="torch").encoder.runtime is None
