"""A checkpoint's weights as NumPy float32 arrays, read from model.safetensors without PyTorch."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from cxreport.errors import InputError

# Same cleaning as checkpoint.clean_state_dict: DDP's ``module.`` and torch.compile's ``_orig_mod.``.
_PREFIX_RE = re.compile(r"(^|\.)(?:module|_orig_mod)\.")
# Buffers, not parameters (they count in no parameter total).
_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def read_weights(checkpoint: Path) -> dict[str, np.ndarray]:
    """{name: array}; float16/bfloat16/float64 tensors become float32, as ``load_checkpoint``
    turns a half-precision checkpoint into a float32 model."""
    from safetensors.numpy import load_file

    path = Path(checkpoint) / "model.safetensors"
    try:
        raw = load_file(str(path))
    except Exception as exc:  # a truncated or foreign file: name it
        raise InputError(f"{path}: cannot read the weights ({exc})") from exc
    out = {}
    for name, arr in raw.items():
        while _PREFIX_RE.search(name):
            name = _PREFIX_RE.sub(r"\1", name)
        out[name] = np.ascontiguousarray(arr.astype(np.float32)) if arr.dtype.kind == "f" else arr
    return out


def count_parameters(weights: dict[str, np.ndarray], tied: tuple[str, ...] = ()) -> int:
    """What ``sum(p.numel() for p in model.parameters())`` gives for these weights: buffers and
    the copies of tied tensors (``tied``) left out."""
    return int(sum(a.size for k, a in weights.items() if not k.endswith(_BUFFERS) and k not in tied))


def take(weights: dict[str, np.ndarray], name: str) -> np.ndarray:
    try:
        return weights[name]
    except KeyError:
        raise InputError(f"the checkpoint's weights have no {name!r}: they do not match its config") from None
