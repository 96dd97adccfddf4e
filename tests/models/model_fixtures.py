"""Shared fixtures for the model tests: tiny overrides per bundled config and a 2-study batch."""

from __future__ import annotations

import torch

from cxreport.data.study import CHEXPERT_LABELS

VOCAB = dict(vocab_size=50, pad_id=0, bos_id=1, eos_id=2)
TINY_GPT2 = {"n_embd": 32, "n_layer": 1, "n_head": 2, "n_positions": 128}
TINY_VIT = {"model_type": "vit", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 64, "image_size": 64, "patch_size": 16}

# Shrink the big bundled configs so every one builds, trains a step and decodes in well under a second.
TINY_OVERRIDES = {
    "tiny": {},
    "cnn-transformer": dict(d_model=32, encoder={"channels": [8, 16]},
                            decoder={"d_model": 32, "layers": 1, "heads": 2}),
    "effnet-transformer": dict(d_model=48, projector={"num_prefix": 4, "layers": 1, "heads": 2},
                               decoder={"d_model": 48, "layers": 1, "heads": 2}),
    "effnet-small": dict(d_model=48, projector={"num_prefix": 4, "heads": 2},
                         decoder={"d_model": 48, "layers": 1, "heads": 2}),
    "densenet-gpt2": dict(d_model=32, decoder={"hf_model": "", "hf_config": TINY_GPT2}),
    "vit-gpt2": dict(d_model=32, encoder={"hf_model": "", "hf_config": TINY_VIT},
                     decoder={"hf_model": "", "hf_config": TINY_GPT2}),
}

# Image side per config: the ImageNet CNNs are the slow part on CPU, so they see 32 px (1 x 1 map).
TINY_SIZE = {"densenet-gpt2": 32, "effnet-transformer": 32, "effnet-small": 32}


def make_batch(b: int = 2, views: int = 2, size: int = 64, text: bool = True, image: bool = True, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    batch = {}
    if image:
        batch["images"] = torch.rand(b, views, 1, size, size, generator=g)
        mask = torch.ones(b, views, dtype=torch.bool)
        if views > 1:
            mask[1, 1:] = False  # second study has a single view
        batch["image_mask"] = mask
        batch["view_ids"] = torch.tensor([[0, 1, 2][: views]] * b).clamp(max=2) if views <= 3 else torch.full((b, views), 2)
    batch["has_image"] = torch.full((b,), image)
    targets = torch.full((b, len(CHEXPERT_LABELS)), float("nan"))
    targets[:, 0] = 1.0
    targets[:, 2] = 0.0
    targets[0, 5] = -1.0
    batch["finding_targets"] = targets
    ids = torch.randint(3, 50, (b, 8), generator=g)
    ids[:, 0] = 1
    am = torch.ones(b, 8, dtype=torch.bool)
    ids[0, 7] = 2
    ids[1, 5] = 2
    ids[1, 6:] = 0
    am[1, 6:] = False
    batch["input_ids"], batch["attention_mask"] = ids, am
    batch["has_text"] = torch.full((b,), text)
    return batch
