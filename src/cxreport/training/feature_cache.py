"""Stage 1 with a frozen encoder: encode each distinct image once, then reuse the features.

The encoder's ``forward`` is wrapped in place (its parameters and state-dict keys are untouched, so
checkpoints stay ordinary). Keys are a hash of the exact input pixels, so the cache is only
correct when inputs repeat exactly: the trainer enables it only without augmentation.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cxreport.models.encoders import EncoderOutput


def enable_feature_cache(encoder, dtype: torch.dtype = torch.float16) -> dict:
    """Wrap ``encoder.forward`` with a pixel-keyed cache; returns the store (for stats/tests)."""
    store: dict[bytes, tuple] = {}
    inner = encoder.forward

    def forward(x: torch.Tensor) -> EncoderOutput:
        keys = [hashlib.blake2b(xi.detach().cpu().contiguous().numpy().tobytes(), digest_size=16).digest()
                for xi in x]
        miss = [i for i, k in enumerate(keys) if k not in store]
        grid = None
        if miss:
            with torch.no_grad():
                out = inner(x[miss])
            for j, i in enumerate(miss):
                store[keys[i]] = (out.tokens[j].to(dtype), out.pooled[j].to(dtype), out.grid)
        tokens = torch.stack([store[k][0] for k in keys]).float()
        pooled = torch.stack([store[k][1] for k in keys]).float()
        grid = store[keys[0]][2]
        return EncoderOutput(tokens=tokens, pooled=pooled, grid=grid)

    encoder.forward = forward
    return store


@torch.no_grad()
def pooled_features(encoder, cache, path, image_size: int, batch_size: int = 32):
    """Mean-pooled encoder features of every image of a prepared cache (N x C float32, in the
    cache's image order), computed once and stored at ``path`` (.npy). Images go through the
    training collate's resize (bilinear, antialiased), never flipped."""
    from cxreport.fsio import atomic_path

    path = Path(path)
    if path.is_file():
        return np.load(path)
    encoder.eval()
    images = cache.images
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(np.asarray(images[i:i + batch_size])).unsqueeze(1).float().div_(255.0)
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
        out.append(encoder(x).pooled.float().numpy())
    feats = np.concatenate(out) if out else np.zeros((0, 0), np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, feats)
    return feats
