"""Training throughput on this machine: images/s (encoder fine-tuning) and sequences/s (decoder).

    python benchmarks/bench_train.py [--model effnet-small] [--steps 5] [--batch 8]

Prints figures; not a test. Synthetic inputs (random images, 40-token reports) at the model's size.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from cxreport.models import create_model


def _time(fn, steps: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t) / steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="effnet-small")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=40)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = create_model(args.model, vocab_size=1000, pretrained=False).train()
    size = model.cfg.preprocess.image_size
    b, t = args.batch, args.tokens
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(4, 1000, (b, t))
    ids[:, 0] = 1
    base = {"input_ids": ids, "attention_mask": torch.ones(b, t, dtype=torch.bool),
            "finding_targets": torch.randint(0, 2, (b, 14)).float()}
    images = {"images": torch.rand(b, 1, 1, size, size), "image_mask": torch.ones(b, 1, dtype=torch.bool),
              "view_ids": torch.zeros(b, 1, dtype=torch.long)}

    def step(batch):
        def run():
            opt.zero_grad()
            model(batch)["loss"].backward()
            opt.step()
        return run

    print(f"model {args.model} ({sum(p.numel() for p in model.parameters()):,} params), image {size}px, "
          f"batch {b}, {t} tokens, threads {torch.get_num_threads()}, cores {os.cpu_count()}")
    s = _time(step({**base, **images}), args.steps)
    print(f"image+report (stage 2, encoder trains): {b / s:7.1f} studies/s  ({s * 1000:.0f} ms/step)")
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    s = _time(step({**base, **images}), args.steps)
    print(f"image+report (stage 1, encoder frozen): {b / s:7.1f} studies/s  ({s * 1000:.0f} ms/step)")
    s = _time(step({**base, "images": None}), args.steps)
    print(f"reports only (decoder, LM loss):        {b / s:7.1f} sequences/s ({s * 1000:.0f} ms/step)")
    no_text = {**images, "finding_targets": base["finding_targets"], "input_ids": None}
    for p in model.encoder.parameters():
        p.requires_grad_(True)
    s = _time(step(no_text), args.steps)
    print(f"images only (finding head, encoder trains): {b / s:7.1f} images/s ({s * 1000:.0f} ms/step)")


if __name__ == "__main__":
    main()
