"""Write a checkpoint's weightless encoder graph (needs PyTorch and onnx, once per architecture).

The encoder is traced with autograd on, so batch norm stays a node of its own (the inference-time
folding in ``efficientnet.conv_bn`` would bake folded weights into the graph as anonymous
constants); ONNX Runtime folds it again when it builds the session. Every initializer that is a
tensor of the checkpoint is then marked external and emptied, and the graph is checked against
the PyTorch encoder before the manifest is written (the manifest last: a folder with a manifest
always holds a complete, checked graph).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from cxreport.errors import InputError, require
from cxreport.fsio import atomic_write_bytes, atomic_write_json
from cxreport.models.runtime.graphs import FORMAT, MANIFEST, architecture_key, unsupported

OPSET = 17
# The graph's outputs must match the PyTorch encoder's to this (relative to the largest value).
TOLERANCE = 1e-4


def export_graphs(model, folder: Path) -> Path:
    """Write ``folder/encoder.onnx`` and ``folder/manifest.json`` for a loaded PyTorch ``ReportModel``."""
    import torch
    from torch import nn

    onnx = require("onnx", "torch", "exporting the graphs of the runtime without PyTorch")
    why = unsupported(model.cfg)
    if why:
        raise InputError("this model cannot run without PyTorch: " + "; ".join(why))

    class Encoder(nn.Module):  # attribute named as in ReportModel, so initializers carry state-dict names
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def forward(self, x):
            out = self.encoder(x)
            return out.tokens, out.pooled

    folder = Path(folder)
    size = int(model.cfg.preprocess.image_size)
    wrapper = Encoder(model.encoder).eval()
    was_training = model.training
    model.eval()
    try:
        x = torch.rand(2, 1, size, size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            ref = model.encoder(x)
        buf = io.BytesIO()
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes about the SAME-padding arithmetic
            torch.onnx.export(wrapper, x[:1], buf, input_names=["images"], output_names=["tokens", "pooled"],
                              dynamic_axes={"images": {0: "n"}, "tokens": {0: "n"}, "pooled": {0: "n"}},
                              opset_version=OPSET, do_constant_folding=False, dynamo=False)
    finally:
        model.train(was_training)
    graph = onnx.load_from_string(buf.getvalue())
    state = {f"encoder.{k}" for k in model.encoder.state_dict()}
    names = []
    for init in graph.graph.initializer:
        if init.name in state:
            init.ClearField("raw_data")
            del init.external_data[:]
            entry = init.external_data.add()
            entry.key, entry.value = "location", "model.safetensors"  # filled from the checkpoint, never read
            init.data_location = onnx.TensorProto.EXTERNAL
            names.append(init.name)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / "encoder.onnx", graph.SerializeToString())
    grid = list(ref.grid) if ref.grid is not None else None
    manifest = {"format": FORMAT, "architecture": architecture_key(model.cfg),
                "encoder": {"file": "encoder.onnx", "input": "images", "outputs": ["tokens", "pooled"],
                            "image_size": size, "grid": grid, "initializers": names},
                "exported_with": {"torch": torch.__version__.split("+")[0], "onnx_opset": OPSET}}
    _check(folder, manifest, model, x, ref)
    atomic_write_json(folder / MANIFEST, manifest)
    return folder


def _check(folder: Path, manifest: dict, model, x, ref) -> None:
    """The exported graph, run with the model's own weights, gives the PyTorch encoder's numbers."""
    import numpy as np

    from cxreport.models.runtime.graphs import EncoderSession

    weights = {f"encoder.{k}": v.detach().float().cpu().numpy() for k, v in model.encoder.state_dict().items()}
    tokens, pooled = EncoderSession(folder, weights, threads=1, manifest=manifest)(x.numpy())
    for got, want in ((tokens, ref.tokens), (pooled, ref.pooled)):
        want = want.numpy()
        err = float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-12))
        if got.shape != want.shape or err > TOLERANCE:
            raise InputError(f"{folder}: the exported encoder does not reproduce PyTorch's "
                             f"(relative difference {err:.2g}); please report this")
