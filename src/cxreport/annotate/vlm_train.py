"""LoRA / QLoRA fine-tuning of the Qwen2-VL region annotator; one process or many under torchrun.

Under torchrun each rank trains on its shard of every epoch (DistributedSampler) inside DDP; rank 0
logs, saves the adapter and draws the loss curve.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from cxreport.annotate.vlm import Encoder, LoraSpec, add_lora, collate, image_spec_of, load_base, save_meta
from cxreport.fsio import atomic_path

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    base: str = "Qwen/Qwen2-VL-2B-Instruct"
    out_dir: str = "runs/vlm"
    epochs: float = 1.0
    max_steps: int | None = None  # overrides epochs
    batch_size: int = 1
    grad_accum: int = 8
    lr: float = 2e-4
    warmup_steps: int = 10
    weight_decay: float = 0.0
    max_length: int = 2048
    max_pixels: int | None = None
    max_images: int = 2
    qlora: bool = False
    gradient_checkpointing: bool = False
    save_every: int = 0  # optimizer steps; 0 = only at the end
    log_every: int = 1
    seed: int = 0
    lora: LoraSpec = field(default_factory=LoraSpec)


def finetune(cfg: TrainConfig, examples) -> dict:
    """Train on ``examples`` (objects with ``text``, ``image_paths``, ``regions``); returns the losses."""
    import torch

    from cxreport.training.setup import init_distributed

    d = init_distributed()  # torchrun's environment -> process group, as in `cxreport train`
    rank, world, local_rank, device = d.rank, d.world, d.local_rank, d.device
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model, tok, spec, trainable = _lora_model(cfg, local_rank, device, rank)
    enc = Encoder(tok, spec, cfg.max_images, cfg.max_length)
    data = [enc.encode(e.text, e.image_paths, e.regions) for e in examples]
    if not data:
        raise ValueError("no training examples")
    ddp = model
    if world > 1:
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched, total_steps = _schedule(cfg, opt, len(data), world)
    out_dir = Path(cfg.out_dir)
    log_path = out_dir / "train_log.jsonl"
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        log_path.write_text("")
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else _null()
    it = _batches(data, cfg, rank, world, tok.pad_token_id, model.config.image_token_id)
    losses, t0 = [], time.time()
    model.train()
    for step in range(total_steps):
        step_loss = _step(ddp, it, cfg, device, amp, world, params, opt, sched)
        losses.append(step_loss)
        if rank == 0:
            with open(log_path, "a") as fh:
                fh.write(json.dumps({"step": step + 1, "loss": step_loss, "lr": sched.get_last_lr()[0],
                                     "elapsed_s": round(time.time() - t0, 2)}) + "\n")
            if cfg.log_every and (step + 1) % cfg.log_every == 0:
                log.info("step %d/%d loss %.4f", step + 1, total_steps, step_loss)
            if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < total_steps:
                _save(model, tok, cfg, spec, out_dir / f"checkpoint-{step + 1}", losses)
    if rank == 0:
        _save(model, tok, cfg, spec, out_dir, losses)
        plot_losses(losses, out_dir / "loss.png", title=f"LoRA fine-tuning of {Path(cfg.base).name}")
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return {"losses": losses, "steps": total_steps, "trainable_params": trainable, "world_size": world}


def _lora_model(cfg: TrainConfig, local_rank: int, device, rank: int):
    """(base model with LoRA adapters on ``device``, tokenizer, image spec, trainable parameter count)."""
    model, tok = load_base(cfg.base, qlora=cfg.qlora, device=local_rank)
    spec = image_spec_of(model, cfg.max_pixels)
    if cfg.gradient_checkpointing and not cfg.qlora:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    model = add_lora(model, cfg.lora, qlora=cfg.qlora)
    if not cfg.qlora:
        model.to(device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    if rank == 0:
        log.info("LoRA: %d trainable of %d parameters (%.2f%%)", trainable, total, 100 * trainable / total)
    return model, tok, spec, trainable


def _schedule(cfg: TrainConfig, opt, n_examples: int, world: int):
    """(linear warm-up then linear decay to zero over the run, number of optimiser steps)."""
    import torch

    per_rank = math.ceil(n_examples / world)
    steps_per_epoch = max(1, math.ceil(per_rank / (cfg.batch_size * cfg.grad_accum)))
    total_steps = cfg.max_steps or max(1, round(cfg.epochs * steps_per_epoch))
    warm = max(1, cfg.warmup_steps)

    def lr_factor(s: int) -> float:
        return (s + 1) / warm if s < warm else max(0.0, 1 - (s - warm) / max(1, total_steps - warm))

    return torch.optim.lr_scheduler.LambdaLR(opt, lr_factor), total_steps


def _batches(data: list, cfg: TrainConfig, rank: int, world: int, pad_id: int, image_token_id: int):
    """Endless collated batches: the same shuffle on every rank each epoch, disjoint shards."""
    epoch = 0
    while True:
        order = list(range(len(data)))
        random.Random(cfg.seed + epoch).shuffle(order)
        order = order[rank::world]
        for i in range(0, len(order), cfg.batch_size):
            yield collate([data[j] for j in order[i:i + cfg.batch_size]], pad_id, image_token_id)
        epoch += 1


def _step(ddp, it, cfg: TrainConfig, device, amp, world: int, params, opt, sched) -> float:
    """One optimiser step over ``cfg.grad_accum`` micro-batches; the loss averaged over ranks."""
    import torch

    step_loss = 0.0
    for micro in range(cfg.grad_accum):
        batch = {k: v.to(device) for k, v in next(it).items()}
        sync = micro == cfg.grad_accum - 1 or world == 1
        ctx = ddp.no_sync() if (world > 1 and not sync) else _null()
        with ctx:  # no gradient all-reduce until the last micro-batch
            with amp:
                loss = ddp(**batch).loss / cfg.grad_accum
            loss.backward()
        step_loss += loss.item()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    if world > 1:
        t = torch.tensor([step_loss], device=device)
        torch.distributed.all_reduce(t)
        step_loss = t.item() / world
    return step_loss


def _save(model, tok, cfg: TrainConfig, spec, out_dir: Path, losses) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))  # adapter weights + adapter_config.json only
    tok.save_pretrained(str(out_dir))
    save_meta(out_dir, cfg.base, spec, cfg.lora, {"steps": len(losses), "final_loss": losses[-1] if losses else None,
                                                  "qlora": cfg.qlora})


def plot_losses(losses: list[float], path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(losses) + 1), losses, marker="o" if len(losses) <= 50 else None)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (answer tokens)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False
