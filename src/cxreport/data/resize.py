"""The model batch from letterboxed films in NumPy: the twin of ``data.dataset.Collate.images``.

The training collate resizes each uint8 view to the model's input size with PyTorch's
``interpolate(mode="bilinear", align_corners=False, antialias=True)``. A runtime without PyTorch
must feed the model the same numbers, so this module computes that resampling the way PyTorch's
CPU kernel does: separable triangle-filter weights per output pixel (PIL's scheme, support
widened by the scale when shrinking), evaluated in float32 in the kernel's order of operations
(width first, then height; fused multiply-adds), which gives PyTorch's numbers bit for bit.
``tests/data/test_resize.py`` checks it against PyTorch.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from cxreport.labels import VIEW_IDS


@lru_cache(maxsize=64)
def _axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first input index, number of taps per output, float32 weights out x taps) along one axis
    (cached: a pipeline sees few sizes; callers must not write into the arrays)."""
    scale = np.float32(n_in) / np.float32(n_out)
    support = np.float32(scale) if scale >= 1.0 else np.float32(1.0)  # bilinear: half of 2 taps
    invscale = np.float32(1.0 / float(scale)) if scale >= 1.0 else np.float32(1.0)
    taps = int(np.ceil(float(support))) * 2 + 1
    first = np.zeros(n_out, dtype=np.int64)
    sizes = np.zeros(n_out, dtype=np.int64)
    weights = np.zeros((n_out, taps), dtype=np.float32)
    for i in range(n_out):
        # The kernel's mixed float/double promotions, term by term.
        center = np.float32(float(scale) * (i + 0.5))
        lo = max(int(float(center - support) + 0.5), 0)
        size = min(int(float(center + support) + 0.5), n_in) - lo
        size = min(max(size, 0), taps)
        total = np.float32(0.0)
        for j in range(size):
            x = abs(np.float32((float(np.float32(j + lo) - center) + 0.5) * float(invscale)))
            w = np.float32(1.0) - x if x < 1.0 else np.float32(0.0)
            weights[i, j] = w
            total = np.float32(total + w)
        if total != 0.0:
            weights[i, :size] = weights[i, :size] / total
        first[i], sizes[i] = lo, size
    return first, sizes, weights


def _resample(x: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """``x`` float32 resampled along ``axis``: the kernel's sequential float32 sum over a pixel's
    taps. As PyTorch's x86 build compiles that loop, taps 1..4k (whole blocks of four) are a
    multiply then an add, and the remaining ones one fused multiply-add each (formed exactly in
    float64 and rounded once, which is what an FMA does)."""
    n_in = x.shape[axis]
    first, sizes, weights = _axis_weights(n_in, n_out)
    x = np.moveaxis(x, axis, -1)
    idx = np.minimum(first[:, None] + np.arange(weights.shape[1])[None, :], n_in - 1)
    blocks = 4 * ((sizes - 1) // 4)
    out = x[..., idx[:, 0]] * weights[:, 0]
    for j in range(1, int(sizes.max(initial=1))):
        w, v = weights[:, j], x[..., idx[:, j]]
        plain = out + v * w
        fused = (out.astype(np.float64) + v.astype(np.float64) * w.astype(np.float64)).astype(np.float32)
        out = np.where(j > sizes - 1, out, np.where(j <= blocks, plain, fused))
    return np.moveaxis(out, -1, axis)


def resize_bilinear_aa(x: np.ndarray, side: int) -> np.ndarray:
    """N x H x W float32 -> N x side x side, as ``F.interpolate(bilinear, antialias=True)``."""
    x = np.asarray(x, dtype=np.float32)
    if x.shape[-1] != side:
        x = _resample(x, side, -1)
    if x.shape[-2] != side:
        x = _resample(x, side, -2)
    return np.ascontiguousarray(x)


def image_batch(studies, image_size: int, max_views: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images B x V x 1 x S x S float32, image_mask B x V bool, view_ids B x V int64) for
    ``[(uint8 V x L x L views, [view id per view])]``, as ``Collate.images`` builds them."""
    studies = [(np.asarray(imgs), list(ids)) for imgs, ids in studies]
    b = len(studies)
    v = max(1, min(max_views, max(imgs.shape[0] for imgs, _ in studies)))
    src = next((imgs for imgs, _ in studies if imgs.shape[0]), None)
    side = image_size or (src.shape[-1] if src is not None else 1)
    images = np.zeros((b, v, 1, side, side), dtype=np.float32)
    mask = np.zeros((b, v), dtype=bool)
    view_ids = np.full((b, v), VIEW_IDS["unknown"], dtype=np.int64)
    for i, (imgs, ids) in enumerate(studies):
        k = min(v, imgs.shape[0])
        if not k:
            continue
        x = imgs[:k].astype(np.float32) / np.float32(255.0)
        if x.shape[-1] != side:
            x = resize_bilinear_aa(x, side)
        images[i, :k, 0] = x
        mask[i, :k] = True
        view_ids[i, :k] = ids[:k]
    return images, mask, view_ids
