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


def feature_path(folder, cache, model) -> Path:
    """Where ``pooled_features`` keeps a cache's features for ``model``'s encoder: the name carries
    the encoder, the input size and a hash of the encoder's weights, so features of other weights
    (an untrained encoder, a fine-tuned one) are never picked up by mistake."""
    enc, cfg = model.encoder, model.cfg
    h = hashlib.blake2b(digest_size=6)
    for k, v in sorted(enc.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return Path(folder) / f"{cache.meta['fingerprint']}-{cfg.encoder.name}-{cfg.preprocess.image_size}-{h.hexdigest()}.npy"


@torch.no_grad()
def pooled_features(encoder, cache, path, image_size: int, batch_size: int = 32, progress: bool | None = None):
    """Mean-pooled encoder features of every image of a prepared cache (N x C float32, in the
    cache's image order), computed once and stored at ``path`` (.npy). Images go through the
    training collate's resize (bilinear, antialiased), never flipped. ``progress``: a bar on
    stderr (None: only on a terminal)."""
    from tqdm import tqdm

    from cxreport.fsio import atomic_path

    path = Path(path)
    if path.is_file():
        return np.load(path)
    encoder.eval()
    images = cache.images
    out = []
    borrow = getattr(encoder, "runtime", False) is None
    if borrow:  # the runtime inference uses (ONNX Runtime on the CPU when installed): ~2.7x faster
        from cxreport.models import onnx_runtime

        onnx_runtime.attach(encoder)
    bar = tqdm(total=len(images), desc="encoder features", unit="film",
               disable=None if progress is None else not progress)
    try:
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(np.array(images[i:i + batch_size])).unsqueeze(1).float().div_(255.0)
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
            out.append(encoder(x).pooled.float().numpy())
            bar.update(len(x))
    finally:
        bar.close()
        if borrow:
            encoder.runtime = None
    feats = np.concatenate(out) if out else np.zeros((0, 0), np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, feats)
    return feats
