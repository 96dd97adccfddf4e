"""What a run needs before its first step, in three builders the Trainer calls in order:
``build_data`` (caches, the checkpoint to resume or start from, tokenizer, datasets),
``build_run_model`` (model, frozen encoder, device, DDP) and ``build_optimisation`` (optimiser,
schedule, step counts); plus devices and processes, the epoch sampler and mixed precision."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cxreport.checkpoint import load_checkpoint
from cxreport.data.cache import Cache
from cxreport.data.dataset import StudyDataset
from cxreport.errors import InputError
from cxreport.training.config import LoopConfig, RunConfig

log = logging.getLogger("cxreport.train")


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """Single process, or torchrun's environment → DDP (NCCL on GPU, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank = torch.distributed.get_rank() if world > 1 else 0
    return Dist(rank=rank, world=world, local_rank=local, device=device)


def build_run_tokenizer(cfg: RunConfig, train_texts: list[str]):
    from cxreport.text.tokenizer import build_tokenizer, load_tokenizer

    t = cfg.tokenizer
    if t.path:
        return load_tokenizer(t.path)
    opts = {"protocol": cfg.data.clean}
    if t.kind == "word":
        opts["min_freq"] = t.min_freq
    else:
        opts["vocab_size"] = t.vocab_size
    return build_tokenizer(t.kind, train_texts, **opts)


def _label_fn(cfg: RunConfig):
    if not cfg.data.label_reports:
        return None
    from cxreport.text.labeler import label_reports

    return label_reports


def open_caches(cfg: RunConfig) -> list[Cache]:
    """Each source's cache, opened once per run (its study table is read from disk here)."""
    if not cfg.data.sources:
        raise InputError("config data.sources is empty: add at least one {\"cache\": PATH}")
    for src in cfg.data.sources:
        if src.use not in ("all", "findings", "text"):
            raise InputError(f"data source {src.cache}: use={src.use!r}; choose all, findings or text")
    return [Cache(src.cache) for src in cfg.data.sources]


def _text_fn(cfg: RunConfig):
    if not cfg.data.drop_sentences:
        return None
    from functools import partial

    from cxreport.text.wording import drop_sentences

    drop_sentences("", cfg.data.drop_sentences)  # an unknown kind fails here, before any data is read
    return partial(drop_sentences, kinds=tuple(cfg.data.drop_sentences))


def oversample_positives(ds: StudyDataset, min_positives: int, cap: int = 10):
    """``ds`` with each report that has a rare positive finding repeated, up to ``cap`` times, so
    that every finding has about ``min_positives`` positive reports per epoch."""
    import numpy as np

    if min_positives <= 0 or not len(ds):
        return ds
    labels = np.stack(ds.labels)
    counts = (labels == 1).sum(0)
    reps = np.ones(len(ds), dtype=int)
    for j, n in enumerate(counts):
        if 0 < n < min_positives:
            r = min(cap, int(np.ceil(min_positives / n)))
            reps[labels[:, j] == 1] = np.maximum(reps[labels[:, j] == 1], r)
    indices = [i for i, r in enumerate(reps) for _ in range(r)]
    log.info("oversampling rare positives: %d reports -> %d items", len(ds), len(indices))
    return torch.utils.data.Subset(ds, indices)


def build_datasets(cfg: RunConfig, caches: list[Cache], tokenizer=None,
                   split_attr: str = "train_split") -> list:
    """One StudyDataset per source (``caches`` from `open_caches`) for ``train_split`` or
    ``val_split``; training report sources oversample rare positives (``data.oversample_min_positives``)."""
    out = []
    label_fn, text_fn = _label_fn(cfg), _text_fn(cfg)
    for src, cache in zip(cfg.data.sources, caches):
        ds = StudyDataset(
            cache, getattr(src, split_attr), tokenizer=None if src.use == "findings" else tokenizer,
            text_field=cfg.data.text_field, max_views=0 if src.use == "text" else cfg.data.max_views,
            require=src.require, label_fn=label_fn, max_tokens=cfg.data.max_tokens,
            text_fn=None if src.use == "findings" else text_fn)
        if split_attr == "train_split" and src.use != "findings":
            ds = oversample_positives(ds, cfg.data.oversample_min_positives, cfg.data.oversample_cap)
        out.append(ds)
    return out


def train_texts(cfg: RunConfig, caches: list[Cache]) -> list[str]:
    texts = []
    for src, cache in zip(cfg.data.sources, caches):
        if src.use == "findings":
            continue
        for r in cache.image_rows(src.train_split):
            t = (r.get(cfg.data.text_field) or "").strip()
            if t:
                texts.append(t)
    return texts


# ---- the three builders ---------------------------------------------------------------------
@dataclass
class RunData:
    tokenizer: object | None
    train_sets: list = field(default_factory=list)
    val_sets: list = field(default_factory=list)
    resume: bool = False  # out_dir/last/ holds a trainer state to continue
    source: object | None = None  # the model of last/ (resume) or of train.init_from, loaded once


def build_data(cfg: RunConfig, out: Path) -> RunData:
    """Open each cache once, load the checkpoint to continue (last/) or start from (init_from)
    once, then the tokenizer (the checkpoint's, else trained on the run's texts) and datasets."""
    loop = cfg.train
    resume = (out / "last" / "trainer_state.pt").is_file()
    caches = open_caches(cfg)
    source, tokenizer = None, None
    if resume or loop.init_from:
        source, tokenizer, _ = load_checkpoint(out / "last" if resume else loop.init_from)
    if tokenizer is None and any(s.use != "findings" for s in cfg.data.sources):
        texts = train_texts(cfg, caches)
        if texts or cfg.tokenizer.path:
            tokenizer = build_run_tokenizer(cfg, texts)
        elif any(s.use == "text" for s in cfg.data.sources):
            raise InputError(f"no {cfg.data.text_field!r} report text in the training split of a use=text source: "
                             "check data.text_field and the caches")
        else:  # labelled films only (NIH, a CSV of labels): the finding head trains, no decoder text
            log.info("no %r report text in the training split: the finding head trains alone (no tokenizer)",
                     cfg.data.text_field)
    data = RunData(tokenizer, build_datasets(cfg, caches, tokenizer, "train_split"),
                   build_datasets(cfg, caches, tokenizer, "val_split"), resume, source)
    if not sum(len(d) for d in data.train_sets):
        raise InputError("no training studies: check data.sources (cache paths, splits, require)")
    if not sum(len(d) for d in data.val_sets):
        splits = ", ".join(f"{s.cache}:{s.val_split}" for s in cfg.data.sources)
        raise InputError(f"no validation studies in {splits}: every validation metric would be empty; "
                         "set data.sources[i].val_split to a split the cache has")
    return data


def build_run_model(cfg: RunConfig, tokenizer, dist: Dist, init=None):
    """(model, the module to train: DDP-wrapped under torchrun, else the model). ``init``: a model
    whose weights start this one (train.init_from)."""
    from cxreport.models import create_model

    loop, tok = cfg.train, tokenizer
    ids = dict(vocab_size=tok.vocab_size, pad_id=tok.pad_id, bos_id=tok.bos_id, eos_id=tok.eos_id) if tok else {}
    model = create_model(cfg.model.name, **ids, **cfg.model.overrides)
    if tok is not None:
        from cxreport.models.decoding import resolve_decoding

        resolve_decoding(model, tok)  # its checkpoints decode without <unk>, "xxxx", comparison words
    if init is not None:
        init_weights(model, init, loop.init_from)
    if loop.stage == 1:
        for p in model.encoder.parameters():
            p.requires_grad_(False)
        if loop.cache_features:
            if cfg.data.augment:
                raise InputError("train.cache_features needs data.augment=false (augmented inputs never repeat)")
            from cxreport.training.feature_cache import enable_feature_cache

            enable_feature_cache(model.encoder)
    elif loop.stage != 2:
        raise InputError(f"train.stage {loop.stage}: choose 1 (frozen encoder) or 2 (fine-tune)")
    model.to(dist.device)
    if loop.channels_last:
        model.to(memory_format=torch.channels_last)
    ddp = model
    if dist.world > 1:
        ddp = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dist.local_rank] if dist.device.type == "cuda" else None,
            find_unused_parameters=True)  # batches without text leave the decoder unused
    return model, ddp


def init_weights(model, init, path) -> None:
    """Start from another run's weights; tensors whose shape changed (a new vocabulary) stay fresh."""
    own = model.state_dict()
    take = {k: v for k, v in init.state_dict().items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(take, strict=False)
    fresh = sorted(set(own) - set(take))
    log.info("initialised from %s: %d tensors loaded, %d kept fresh%s", path, len(take), len(fresh),
             f" (e.g. {fresh[:3]})" if fresh else "")


@dataclass
class Optimisation:
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    steps_per_epoch: int
    total_steps: int


def build_optimisation(loop: LoopConfig, model, n_train: int, world: int) -> Optimisation:
    """AdamW over the model's parameter groups (encoder at its own learning rate) and the schedule
    over the run's optimiser steps (``n_train`` studies per epoch across ``world`` processes)."""
    opt = torch.optim.AdamW(model.parameter_groups(loop.lr, loop.weight_decay, loop.encoder_lr / loop.lr),
                            betas=(0.9, 0.999))
    per_epoch = math.ceil(n_train / (loop.batch_size * world))
    steps_per_epoch = max(1, per_epoch // loop.grad_accum)
    total_steps = loop.max_steps or loop.epochs * steps_per_epoch
    return Optimisation(opt, torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(loop, total_steps)),
                        steps_per_epoch, total_steps)


# ---- the epoch sampler, schedule and precision -----------------------------------------------
def epoch_indices(sizes: list[int], weights: list[float], epoch: int, seed: int) -> list[tuple[int, int]]:
    """A shuffled epoch of (source, item) pairs, each source drawn in proportion to its weight.

    The epoch has as many items as all sources together; a source with a larger share is sampled
    with replacement. Deterministic in (seed, epoch), identical on every DDP rank.
    """
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    total = sum(sizes)
    wsum = sum(w for w, n in zip(weights, sizes) if n)
    pairs = []
    for s, (n, w) in enumerate(zip(sizes, weights)):
        if not n or w <= 0:
            continue
        k = round(total * w / wsum)
        reps = torch.cat([torch.randperm(n, generator=g) for _ in range(math.ceil(k / n))])[:k]
        pairs += [(s, int(i)) for i in reps]
    order = torch.randperm(len(pairs), generator=g)
    return [pairs[i] for i in order]


def lr_lambda(loop: LoopConfig, total_steps: int):
    warm = max(0, loop.warmup_steps)

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if loop.schedule == "constant":
            return 1.0
        t = min(1.0, (step - warm) / max(1, total_steps - warm))
        if loop.schedule == "linear":
            return 1.0 - (1.0 - loop.min_lr_ratio) * t
        if loop.schedule == "cosine":
            return loop.min_lr_ratio + (1 - loop.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
        raise InputError(f"train.schedule {loop.schedule!r}: choose cosine, linear or constant")

    return f


def autocast_for(loop: LoopConfig, device: torch.device):
    """(autocast context factory, GradScaler or None) for the configured precision."""
    import contextlib

    if loop.precision == "fp32":
        return contextlib.nullcontext, None
    if loop.precision == "bf16":
        return (lambda: torch.autocast(device.type, dtype=torch.bfloat16)), None
    if loop.precision == "fp16":
        if device.type != "cuda":
            raise InputError("train.precision=fp16 needs a GPU; use bf16 on CPU")
        return (lambda: torch.autocast("cuda", dtype=torch.float16)), torch.amp.GradScaler("cuda")
    raise InputError(f"train.precision {loop.precision!r}: choose fp32, bf16 or fp16")
