"""A tiny checkpoint trained for a few seconds on the synthetic drawn-findings dataset.

Shared by the inference and serve tests; built once per session under pytest's base temp
folder (both conftests ask for the same path, so the second caller reuses the first's).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tests.fixtures.synthetic_cxr import draw, make_synthetic_cxr


def build_tiny_run(root: Path) -> Path:
    """Train the ``tiny`` model briefly; returns the run folder (its checkpoint is ``best/``)."""
    import torch

    from cxreport.data.cache import prepare_cache
    from cxreport.training.config import DataConfig, LoopConfig, ModelSection, RunConfig, SourceConfig
    from cxreport.training.loop import train

    run = root / "run"
    if (run / "best" / "model.safetensors").is_file():
        return run
    torch.manual_seed(0)
    # One thread: on a shared 2-core runner, two intra-op threads made this 15x slower (12 s -> 190 s).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    make_synthetic_cxr(root / "syn", n=160, n_test=16)
    cache = prepare_cache("csv", root / "syn", root / "cache", size=64, workers=1)
    cfg = RunConfig(
        out_dir=str(run),
        data=DataConfig(sources=[SourceConfig(cache=str(cache))], augment=False, max_tokens=40),
        model=ModelSection(name="tiny", overrides={"findings": {"state_dropout": 0.5}}),
        train=LoopConfig(stage=2, epochs=6, batch_size=16, lr=3e-3, encoder_lr=3e-3, warmup_steps=10,
                         metric="val_loss", patience=0, progress=False),
    )
    try:
        train(cfg)
    finally:
        torch.set_num_threads(threads)
    return run


def write_xray(path: Path, cardio: int = 1, effusion: int = 0, size: int = 128, seed: int = 0) -> Path:
    """A synthetic film drawn at ``size`` px (PNG/JPEG by suffix)."""
    img = draw(cardio, effusion, size, np.random.default_rng(seed))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path
