"""Training and generation throughput of the default architecture on one GPU (bf16, torch.compile).

    PYTHONPATH=src python benchmarks/bench_gpu.py                       # CUDA, 300 steps, batch 64
    PYTHONPATH=src python benchmarks/bench_gpu.py --compile --steps 300
    PYTHONPATH=src python benchmarks/bench_gpu.py --device cpu --steps 3 --batch 2 --gen-batch 2  # smoke test

Builds the default model's architecture (src/cxreport/weights/default/config.json, random
weights, so no data set is needed) and feeds it synthetic studies shaped like the training cache
(two 256 px uint8 views letterboxed, the model's input size after collate, 100-token reports,
14 finding labels) through the real collate. Prints:

* training: studies/s over --steps optimiser steps (AdamW, bf16 autocast, after --warmup steps
  that are not timed, which also absorb torch.compile's compilation), and peak GPU memory;
* generation: studies/s for greedy decoding of --gen-tokens tokens (end-of-report disabled, so
  every report is full length: a worst case) at --gen-batch, bf16 autocast;
* an estimate of one MIMIC-CXR epoch (--epoch-studies, default 270,000 studies) of training and
  of writing a report for each of them.

Data loading is not included: the cache holds letterboxed uint8 arrays, so a loader with a few
workers keeps up; the estimate is the model's side. Not run by the project's CI (no GPU there).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
DEFAULT_CONFIG = SRC / "cxreport" / "weights" / "default" / "config.json"


def synthetic_batch(model, batch: int, tokens: int, seed: int = 0):
    import torch

    from cxreport.data.dataset import Collate

    g = torch.Generator().manual_seed(seed)
    cfg = model.cfg
    dec = cfg.decoder
    items = []
    for i in range(batch):
        ids = torch.randint(3, dec.vocab_size, (tokens,), generator=g).tolist()
        labels = torch.randint(0, 2, (len(model.labels),), generator=g).float()
        items.append({"images": torch.randint(0, 256, (2, 256, 256), dtype=torch.uint8, generator=g),
                      "view_ids": [0, 1], "input_ids": ids, "study_id": str(i), "text": "", "labels": labels})
    collate = Collate(pad_id=dec.pad_id, bos_id=dec.bos_id, eos_id=dec.eos_id,
                      image_size=cfg.preprocess.image_size, max_views=cfg.views.max_views)
    return collate(items)


def build_model(device):
    from cxreport.config import from_dict
    from cxreport.models.config import ModelConfig
    from cxreport.models.report_model import ReportModel

    raw = json.loads(DEFAULT_CONFIG.read_text())["model"]
    return ReportModel(from_dict(ModelConfig, raw), pretrained=False).to(device)


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def train_speed(model, device, args) -> dict:
    import torch

    batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
             for k, v in synthetic_batch(model, args.batch, args.tokens).items()}
    step_model = torch.compile(model) if args.compile else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = step_model(batch)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    t0 = time.perf_counter()
    for _ in range(args.warmup):
        step()
    sync(device)
    warm_s = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    sync(device)
    dt = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return {"studies_per_s": args.steps * args.batch / dt, "step_ms": dt / args.steps * 1000,
            "warmup_s": warm_s, "peak_gib": peak, "loss": float(loss.detach())}


def generate_speed(model, device, args) -> dict:
    import torch

    batch = synthetic_batch(model, args.gen_batch, args.tokens, seed=1)
    images, mask, view_ids = (batch[k].to(device) for k in ("images", "image_mask", "view_ids"))
    model.eval()
    eos = model.decoder.eos_id
    model.decoder.eos_id = -1  # every report runs to --gen-tokens
    try:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
            model.generate(images, mask, view_ids, max_len=args.gen_tokens)  # warm-up
            sync(device)
            t0 = time.perf_counter()
            for _ in range(args.gen_reps):
                out = model.generate(images, mask, view_ids, max_len=args.gen_tokens)
            sync(device)
            dt = time.perf_counter() - t0
    finally:
        model.decoder.eos_id = eos
    return {"studies_per_s": args.gen_reps * args.gen_batch / dt, "tokens": len(out[0]["token_ids"])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=300, help="timed training steps")
    ap.add_argument("--warmup", type=int, default=20, help="untimed steps first (compilation happens here)")
    ap.add_argument("--batch", type=int, default=64, help="training studies per step")
    ap.add_argument("--tokens", type=int, default=100, help="report length in training")
    ap.add_argument("--compile", action="store_true", help="torch.compile the training forward")
    ap.add_argument("--gen-batch", type=int, default=128)
    ap.add_argument("--gen-tokens", type=int, default=100)
    ap.add_argument("--gen-reps", type=int, default=5)
    ap.add_argument("--epoch-studies", type=int, default=270_000, help="MIMIC-CXR: about 270k studies")
    args = ap.parse_args()

    import sys

    sys.path.insert(0, str(SRC))
    import torch

    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device here: pass --device cpu for a smoke test")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        print(f"device: {torch.cuda.get_device_name(device)}; torch {torch.__version__}")
    torch.manual_seed(0)
    model = build_model(device)
    n = sum(p.numel() for p in model.parameters())
    print(f"model: default architecture ({model.cfg.encoder.name} + {model.cfg.decoder.name}), {n / 1e6:.1f} M "
          "parameters, random weights")
    try:
        tr = train_speed(model, device, args)
    except Exception as exc:  # torch.compile is not available everywhere: say so, measure eager
        if not args.compile:
            raise
        print(f"torch.compile failed ({type(exc).__name__}: {str(exc)[:200]}); measuring eager instead")
        args.compile = False
        tr = train_speed(model, device, args)
    print(f"train: {tr['studies_per_s']:.1f} studies/s ({tr['step_ms']:.1f} ms/step, batch {args.batch}, bf16"
          f"{', compiled' if args.compile else ''}; warm-up {tr['warmup_s']:.1f} s; peak {tr['peak_gib']:.2f} GiB; "
          f"loss {tr['loss']:.3f})")
    gen = generate_speed(model, device, args)
    print(f"generate: {gen['studies_per_s']:.1f} studies/s (greedy, {gen['tokens']} tokens, batch {args.gen_batch}, "
          "bf16)")
    e = args.epoch_studies
    print(f"one MIMIC-CXR epoch ({e:,} studies): training ~{e / tr['studies_per_s'] / 60:.1f} min, "
          f"a report for each ~{e / gen['studies_per_s'] / 60:.1f} min (model time only)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
