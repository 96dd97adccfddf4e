"""`train(cfg)`: the training loop. Stage 1 (frozen encoder) and 2 (fine-tuning), DDP, AMP, resume.

Checkpoints are written at every evaluation: ``OUT/last`` (with the trainer state, for exact
resume after kill -9) and ``OUT/best`` (the best validation metric so far). The run folder also
holds ``config.json`` (resolved), ``log.jsonl``, ``curves.png`` and the tokenizer.
"""

from __future__ import annotations

import json
import logging
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cxreport.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from cxreport.config import save_config
from cxreport.data.dataset import Collate
from cxreport.errors import InputError
from cxreport.fsio import atomic_path, atomic_write_jsonl
from cxreport.metrics.classification import auroc_table
from cxreport.training.config import RunConfig, validate_run_config
from cxreport.training.setup import (
    autocast_for, build_data, build_optimisation, build_run_model, epoch_indices, init_distributed,
)

log = logging.getLogger("cxreport.train")
_LOWER_IS_BETTER = {"val_loss", "val_lm_loss", "val_finding_loss"}


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def _to(batch: dict, device) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def _plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr = [h for h in history if "train_loss" in h]
    ev = [h for h in history if "val_loss" in h]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    if tr:
        axes[0].plot([h["step"] for h in tr], [h["train_loss"] for h in tr], label="train loss", alpha=0.7)
    for key in ("val_loss", "val_lm_loss", "val_finding_loss"):  # only what validation measured
        pts = [(h["step"], h[key]) for h in ev if key in h and not math.isnan(h[key])]
        if pts:
            axes[0].plot(*zip(*pts), marker="o", label=key)
    axes[0].set(xlabel="step", title="losses")
    axes[0].legend()
    auroc = [(h["step"], h["val_auroc"]) for h in ev if not math.isnan(h.get("val_auroc", float("nan")))]
    if auroc:
        axes[1].plot(*zip(*auroc), marker="o", color="C3")
        axes[1].set(xlabel="step", title="validation macro AUROC (findings)")
    else:
        axes[1].set_axis_off()  # a run without finding labels has no AUROC to show
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


class _Pairs(torch.utils.data.Dataset):
    """Index several datasets by (source, item) pairs, as `epoch_indices` yields them."""

    def __init__(self, sets):
        self.sets = sets

    def __len__(self):
        return sum(len(d) for d in self.sets)

    def __getitem__(self, pair):
        s, i = pair
        return self.sets[s][i]


class Trainer:
    def __init__(self, cfg: RunConfig):
        self.cfg, loop = cfg, cfg.train
        validate_run_config(cfg)  # before processes, data and model: a typo costs a second, not an epoch
        self.dist = init_distributed()
        self.out = Path(cfg.out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(loop.seed)
        if loop.threads:
            torch.set_num_threads(loop.threads)
        data = build_data(cfg, self.out)
        self.tokenizer, self.train_sets, self.val_sets = data.tokenizer, data.train_sets, data.val_sets
        init = data.source if loop.init_from and not data.resume else None
        self.model, self.ddp = build_run_model(cfg, self.tokenizer, self.dist, init)
        optim = build_optimisation(loop, self.model, sum(len(d) for d in self.train_sets), self.dist.world)
        self.opt, self.sched = optim.opt, optim.sched
        self.steps_per_epoch, self.total_steps = optim.steps_per_epoch, optim.total_steps
        self.autocast, self.scaler = autocast_for(loop, self.dist.device)
        tok = self.tokenizer
        pad = dict(pad_id=tok.pad_id, bos_id=tok.bos_id, eos_id=tok.eos_id) if tok else {}
        self.collate_train = Collate.for_model(self.model.cfg, **pad, augment=cfg.data.augment)
        self.collate_eval = Collate.for_model(self.model.cfg, **pad)
        self.step, self.epoch, self.micro, self.best, self.bad_evals = 0, 0, 0, None, 0
        self.history: list[dict] = []
        if data.resume:
            self._resume(data.source)
        if self.dist.main:
            save_config(cfg, self.out / "config.json")
        self.tb = self._tensorboard() if loop.tensorboard and self.dist.main else None

    def _tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise InputError("train.tensorboard=true needs the tensorboard package: pip install tensorboard") from exc
        return SummaryWriter(str(self.out / "tensorboard"))

    # ---- state ----------------------------------------------------------------------------
    def _trainer_state(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "micro": self.micro, "best": self.best,
                "bad_evals": self.bad_evals, "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None, "rng": _rng_state(),
                "history": self.history}

    def _resume(self, last) -> None:
        path = self.out / "last"
        self.model.load_state_dict(last.state_dict())
        st = torch.load(path / "trainer_state.pt", map_location="cpu", weights_only=False)
        self.opt.load_state_dict(st["optimizer"])
        self.sched.load_state_dict(st["scheduler"])
        if self.scaler and st.get("scaler"):
            self.scaler.load_state_dict(st["scaler"])
        self.step, self.epoch, self.micro = st["step"], st["epoch"], st["micro"]
        self.best, self.bad_evals, self.history = st["best"], st["bad_evals"], st["history"]
        _set_rng_state(st["rng"])
        if self.dist.main:
            # Rows logged after this checkpoint (a kill -9 between checkpoints) will be logged again
            # as training replays those steps: keep exactly the rows the checkpoint knew about.
            atomic_write_jsonl(self.out / "log.jsonl", self.history)
        log.info("resumed from %s at step %d (epoch %d, batch %d)", path, self.step, self.epoch, self.micro)

    def _save(self, metrics: dict, improved: bool) -> None:
        if not self.dist.main:
            return
        save_checkpoint(self.out / "last", self.model, tokenizer=self.tokenizer, run_config=self.cfg,
                        step=self.step, metrics=metrics, trainer_state=self._trainer_state())
        if improved:
            save_checkpoint(self.out / "best", self.model, tokenizer=self.tokenizer, run_config=self.cfg,
                            step=self.step, metrics=metrics)

    def _log(self, row: dict) -> None:
        self.history.append(row)
        if not self.dist.main:
            return
        with open(self.out / "log.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(k, v, row["step"])

    # ---- evaluation -----------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict:
        self.model.eval()
        # loss, lm, finding, batches, batches with text, batches with images: a loss is only
        # averaged over (and reported for) the batches that could measure it
        sums = torch.zeros(6, dtype=torch.float64)
        probs, targets = [], []
        loop = self.cfg.train
        for ds in self.val_sets:
            idx = list(range(self.dist.rank, len(ds), self.dist.world))
            for n, start in enumerate(range(0, len(idx), loop.batch_size)):
                if loop.max_val_batches and n >= loop.max_val_batches:
                    break
                batch = _to(self.collate_eval([ds[i] for i in idx[start:start + loop.batch_size]]), self.dist.device)
                with self.autocast():
                    out = self.model(batch)
                keep = batch["has_image"]
                texts, images = float(batch["has_text"].any()), float(keep.any())
                sums += torch.tensor([out["loss"].item(), out["lm_loss"].item() * texts,
                                      out["finding_loss"].item() * images, 1.0, texts, images])
                probs.append(torch.sigmoid(out["finding_logits"].float())[keep].cpu())
                targets.append(batch["finding_targets"][keep].cpu())
        if self.dist.world > 1:
            torch.distributed.all_reduce(sums)
            gathered = [None] * self.dist.world  # each rank scored its own shard of val
            torch.distributed.all_gather_object(gathered, (probs, targets))
            probs = [p for g in gathered for p in g[0]]
            targets = [t for g in gathered for t in g[1]]
        self.model.train()
        if loop.stage == 1:
            self.model.encoder.eval()
        metrics = {"val_loss": sums[0].item() / max(1.0, sums[3].item())}
        if sums[4] > 0:
            metrics["val_lm_loss"] = sums[1].item() / sums[4].item()
        if sums[5] > 0:
            metrics["val_finding_loss"] = sums[2].item() / sums[5].item()
            metrics["val_auroc"] = float("nan")
        if probs and sum(len(p) for p in probs):
            table = auroc_table(torch.cat(probs).numpy(), torch.cat(targets).numpy(), self.model.labels)
            metrics["val_auroc"] = table["macro_auroc"]
        return metrics

    def _after_eval(self, metrics: dict) -> bool:
        """Log, checkpoint, and say whether early stopping fires."""
        name = self.cfg.train.metric
        if name not in metrics:
            raise InputError(f"train.metric {name!r} was not measured on the validation split (it has no "
                             f"{'report text' if name == 'val_lm_loss' else 'images'}); choose one of {sorted(metrics)}")
        value = metrics[name]
        lower = name in _LOWER_IS_BETTER
        improved = not math.isnan(value) and (self.best is None or (value < self.best if lower else value > self.best))
        if improved:
            self.best, self.bad_evals = value, 0
        else:
            self.bad_evals += 1
        self._log({"step": self.step, "epoch": self.epoch, **metrics, "best": self.best})
        if self.dist.main:  # one line per validation, with or without the progress bar
            from tqdm import tqdm

            shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            tqdm.write(f"validation at step {self.step} (epoch {self.epoch}): {shown}; best {name} "
                       f"{self.best if self.best is None else round(self.best, 4)}{' (new best)' if improved else ''}",
                       file=sys.stderr)
        self._save(metrics, improved)
        if self.dist.main:
            _plot_curves(self.history, self.out / "curves.png")
        p = self.cfg.train.patience
        return bool(p and self.bad_evals >= p)

    # ---- training -------------------------------------------------------------------------
    def fit(self) -> dict:
        loop = self.cfg.train
        sizes = [len(d) for d in self.train_sets]
        weights = [s.weight for s in self.cfg.data.sources]
        self.model.train()
        if loop.stage == 1:
            self.model.encoder.eval()  # frozen: BatchNorm statistics stay those of the pretrained weights
        from tqdm import tqdm

        bar = tqdm(total=self.total_steps, initial=self.step, unit="step", desc="train",
                   disable=not (loop.progress and self.dist.main), dynamic_ncols=True)
        eval_every = loop.eval_every or self.steps_per_epoch
        stop, t0, seen, running = False, time.monotonic(), 0, []
        while not stop and self.step < self.total_steps:
            order = epoch_indices(sizes, weights, self.epoch, loop.seed)[self.dist.rank::self.dist.world]
            loader, usable = self._epoch_loader(order)
            for batch in loader:
                if stop:
                    break
                n_items = len(batch["study_id"])
                batch = _to(batch, self.dist.device)
                with self.autocast():
                    out = self.ddp(batch)
                loss = out["loss"] / loop.grad_accum
                (self.scaler.scale(loss) if self.scaler else loss).backward()
                running.append(out["loss"].item())
                seen += n_items
                self.micro += 1
                if self.micro % loop.grad_accum:
                    continue
                self._optimiser_step()
                bar.update(1)
                if self.step % loop.log_every == 0 or self.step == self.total_steps:
                    dt = time.monotonic() - t0
                    self._log({"step": self.step, "epoch": self.epoch, "train_loss": float(np.mean(running)),
                               "lm_loss": out["lm_loss"].item(), "finding_loss": out["finding_loss"].item(),
                               "lr": self.sched.get_last_lr()[-1], "items_per_s": seen * self.dist.world / dt})
                    bar.set_postfix(loss=f"{np.mean(running):.3f}")
                    running, seen, t0 = [], 0, time.monotonic()
                if self.step % eval_every == 0 or self.step >= self.total_steps:
                    stop = self._after_eval(self.evaluate()) or self.step >= self.total_steps
            if self.micro >= usable:
                self.epoch, self.micro = self.epoch + 1, 0
        bar.close()
        if self.tb is not None:
            self.tb.close()
        return {"step": self.step, "best": self.best, "metric": loop.metric, "out_dir": str(self.out)}

    def _epoch_loader(self, order: list) -> tuple:
        """(loader over this rank's batches of the epoch from ``self.micro`` on, number of usable
        batches: a whole number of gradient-accumulation groups)."""
        loop = self.cfg.train
        batches = [order[i:i + loop.batch_size] for i in range(0, len(order), loop.batch_size)]
        usable = len(batches) - len(batches) % loop.grad_accum
        loader = torch.utils.data.DataLoader(
            _Pairs(self.train_sets), batch_sampler=batches[self.micro:usable], collate_fn=self.collate_train,
            num_workers=self.cfg.data.num_workers, pin_memory=self.dist.device.type == "cuda",
            # Its own generator: creating a loader must not draw from the global RNG (exact resume).
            generator=torch.Generator().manual_seed(loop.seed * 7919 + self.epoch))
        return loader, usable

    def _optimiser_step(self) -> None:
        """Unscale (fp16), clip, step the optimiser and the schedule once the gradients are summed."""
        if self.scaler:
            self.scaler.unscale_(self.opt)
        if self.cfg.train.clip_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.clip_norm)
        if self.scaler:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.sched.step()
        self.step += 1


def train(cfg: RunConfig) -> dict:
    return Trainer(cfg).fit()


def load_trained(path, device="cpu"):
    """(model, tokenizer) from a run folder (its ``best``) or a checkpoint folder."""
    model, tok, _ = load_checkpoint(resolve_checkpoint(path), map_location=device)
    return model, tok
