"""The key of anything computed from a model's weights (folded batch norm, an ONNX export, cached
reports): each tensor's in-place version counter, storage, dtype and device, so that an optimiser
step, a load or a ``.to`` gives a new key and the derived thing is rebuilt."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def tensor_versions(tensors: Iterable[torch.Tensor]) -> tuple:
    return tuple((t._version, t.data_ptr(), t.dtype, t.device) for t in tensors)
