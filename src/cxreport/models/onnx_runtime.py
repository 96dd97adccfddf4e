"""ONNX Runtime for a frozen image encoder at inference.

On the CPU, ONNX Runtime runs EfficientNet-Lite0 2.7x faster than eager PyTorch at one thread
(15 ms vs 41 ms per 224 px film at batch 8, outputs equal to ~1e-5; the encoder was 70% of the
service's model time). The network is exported once per input shape and thread count, in memory,
from the live weights (a later optimiser step or load makes a fresh export), so nothing is written
to disk and a checkpoint stays plain PyTorch. Only inference uses it: with autograd on (training,
Grad-CAM) the encoder runs in PyTorch.

Choose with ``CXREPORT_RUNTIME``: ``auto`` (default: ONNX Runtime on the CPU when installed),
``torch`` or ``onnxruntime`` (an error when it is not installed); ``lean`` (the whole model
without PyTorch, ``inference.backend``) counts as ``auto`` for a PyTorch model.
"""

from __future__ import annotations

import io
import os
import warnings

import torch
from torch import nn

from cxreport.errors import InputError
from cxreport.models.versions import tensor_versions

RUNTIMES = ("auto", "torch", "onnxruntime", "lean")
INSTALL = 'pip install "cxreport[fast]"  (onnx + onnxruntime)'


def available() -> bool:
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def choose(runtime: str | None = None, device: str = "cpu") -> str:
    """The runtime for an encoder on ``device``: "torch" or "onnxruntime"."""
    runtime = (runtime or os.environ.get("CXREPORT_RUNTIME") or "auto").strip().lower()
    if runtime not in RUNTIMES:
        raise InputError(f"CXREPORT_RUNTIME={runtime!r}: choose one of {', '.join(RUNTIMES)}")
    if runtime == "lean":
        runtime = "auto"
    if runtime == "torch" or str(device) != "cpu":
        return "torch"
    if available():
        return "onnxruntime"
    if runtime == "onnxruntime":
        raise InputError(f"CXREPORT_RUNTIME=onnxruntime but onnxruntime is not installed: {INSTALL}")
    return "torch"


class _Features(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.features(x)


class OrtFeatures:
    """``net.features(x)`` through ONNX Runtime (``x``: B x C x H x W float, on the CPU)."""

    def __init__(self, net: nn.Module):
        self.net = net
        self._sessions: dict = {}

    def _session(self, shape: tuple, threads: int):
        import onnxruntime as ort

        version = tensor_versions([*self.net.parameters(), *self.net.buffers()])
        key = (shape, threads)
        hit = self._sessions.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        buf = io.BytesIO()
        was_training = self.net.training
        self.net.eval()
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer notes about the SAME-padding arithmetic
                torch.onnx.export(_Features(self.net), torch.zeros((1, *shape)), buf, input_names=["x"],
                                  output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
                                  dynamo=False)
        finally:
            self.net.train(was_training)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.log_severity_level = 3
        # Idle pool threads sleep instead of spinning: they share the cores with torch's threads and
        # the image-decoding workers.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
        self._sessions = {k: v for k, v in self._sessions.items() if v[0] == version}
        self._sessions[key] = (version, session)
        return session

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        session = self._session(tuple(x.shape[1:]), torch.get_num_threads())
        arr = x.detach().to(torch.float32).contiguous().numpy()
        return torch.from_numpy(session.run(None, {"x": arr})[0])


def attach(encoder, runtime: str | None = None, device: str = "cpu") -> None:
    """Give ``encoder`` the runtime ``choose`` picks: ``OrtFeatures`` for ONNX Runtime, else None
    (PyTorch). Encoders without a ``runtime`` slot always run in PyTorch."""
    if hasattr(encoder, "runtime"):
        encoder.runtime = OrtFeatures(encoder.net) if choose(runtime, device) == "onnxruntime" else None
