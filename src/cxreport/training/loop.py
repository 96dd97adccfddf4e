"""`train(cfg)`: the training loop. Stage 1 (frozen encoder) and 2 (fine-tuning), DDP, AMP, resume.

Checkpoints are written at every evaluation: ``OUT/last`` (with the trainer state, for exact
resume after kill -9) and ``OUT/best`` (the best validation metric so far). The run folder also
holds ``config.json`` (resolved), ``log.jsonl``, ``curves.png`` and the tokenizer.
"""

from __future__ import annotations

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
from cxreport.fsio import append_jsonl, atomic_write_json, atomic_write_jsonl
from cxreport.metrics.classification import auroc_by_label
from cxreport.training import label_counts
from cxreport.training.config import RunConfig, validate_run_config
from cxreport.training.curves import finite as _finite, plot_curves
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


def _say(text: str) -> None:
    """A line for the person at the terminal, between progress bar updates."""
    from tqdm import tqdm

    tqdm.write(text, file=sys.stderr)


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
        self._count_labels()
        optim = build_optimisation(loop, self.model, sum(len(d) for d in self.train_sets), self.dist.world)
        self.opt, self.sched = optim.opt, optim.sched
        self.steps_per_epoch, self.total_steps = optim.steps_per_epoch, optim.total_steps
        self.autocast, self.scaler = autocast_for(loop, self.dist.device)
        tok = self.tokenizer
        pad = dict(pad_id=tok.pad_id, bos_id=tok.bos_id, eos_id=tok.eos_id) if tok else {}
        self.collate_train = Collate.for_model(self.model.cfg, **pad, augment=cfg.data.augment)
        self.collate_eval = Collate.for_model(self.model.cfg, **pad)
        self.step, self.epoch, self.micro, self.best, self.bad_evals = 0, 0, 0, None, 0
        self.best_step, self.last_auroc_table = None, None
        self.history: list[dict] = []
        if data.resume:
            self._resume(data.source)
        if self.dist.main:
            save_config(cfg, self.out / "config.json")
        self.tb = self._tensorboard() if loop.tensorboard and self.dist.main else None

    def _count_labels(self) -> None:
        """Count each finding's labels per split, store the training positives in the model's config
        (every checkpoint carries them: a finding under findings.min_positives is not assessed), and
        say what the counts mean before the first step."""
        cfg, fc = self.cfg, self.model.cfg.findings
        train = label_counts.count_labels(self.train_sets, cfg.data.sources)
        val = label_counts.count_labels(self.val_sets, cfg.data.sources)
        inherited = self._init_counts()
        if (fc.train_positives or fc.train_negatives) and self.dist.main:
            _say("warning: model.overrides findings.train_positives / train_negatives are ignored: a run counts "
                 "them from the labels it trains with")
        fc.train_positives, fc.train_negatives = label_counts.class_counts(train, self.model.labels, fc.uncertain,
                                                                           inherited)
        if inherited[0] and not inherited[1]:  # the init head's negatives were never counted: positives decide
            fc.train_negatives = {}
        if cfg.train.metric == "val_auroc" and not label_counts.auroc_computable(val, self.model.labels):
            raise InputError("train.metric=val_auroc: no finding has both positive and negative labels among the "
                             "validation studies with a film, so there is no AUROC to select on; use "
                             "train.metric=val_loss (or val_finding_loss) or a validation split with labels")
        if not self.dist.main:
            return
        atomic_write_json(self.out / "label_counts.json", {
            "train": train, "val": val, "train_positives": fc.train_positives, "train_negatives": fc.train_negatives,
            "min_positives": fc.min_positives, "inherited_from": cfg.train.init_from or None})
        _say("Labels per finding (studies with a film; unc = uncertain (-1), unk = not mentioned):\n"
             + label_counts.format_table(train, val, fc.train_positives, fc.train_negatives, fc.min_positives))
        if any(inherited):
            _say(f"training counts include those of train.init_from {cfg.train.init_from} (the larger count)")
        for w in label_counts.warnings(val, fc.train_positives, fc.train_negatives, fc.min_positives):
            _say(f"warning: {w}")

    def _init_counts(self) -> tuple[dict, dict]:
        """(positives, negatives) of train.init_from's model (its head starts this one), where it has them."""
        if not self.cfg.train.init_from:
            return {}, {}
        from cxreport.checkpoint import read_config

        cfg = read_config(resolve_checkpoint(self.cfg.train.init_from))
        fc = (cfg.get("model") or {}).get("findings") or {}
        return dict(fc.get("train_positives") or {}), dict(fc.get("train_negatives") or {})

    def _tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise InputError("train.tensorboard=true needs the tensorboard package: pip install tensorboard") from exc
        return SummaryWriter(str(self.out / "tensorboard"))

    # ---- state ----------------------------------------------------------------------------
    def _trainer_state(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "micro": self.micro, "best": self.best,
                "best_step": self.best_step, "bad_evals": self.bad_evals, "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
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
        self.best_step = st.get("best_step")
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
        append_jsonl(self.out / "log.jsonl", row)  # strict JSON: a value that cannot be measured is null
        if self.tb is not None:
            for k, v in row.items():
                if _finite(v) and k != "step":
                    self.tb.add_scalar(k, v, row["step"])

    # ---- evaluation -----------------------------------------------------------------------
    def _val_bar(self):
        from tqdm import tqdm

        loop = self.cfg.train
        n = sum(math.ceil(len(range(self.dist.rank, len(ds), self.dist.world)) / loop.batch_size) for ds in self.val_sets)
        if loop.max_val_batches:
            n = sum(min(loop.max_val_batches, math.ceil(len(ds) / self.dist.world / loop.batch_size))
                    for ds in self.val_sets)
        return tqdm(total=n, unit="batch", desc="validation", leave=False, dynamic_ncols=True,
                    disable=not (loop.progress and self.dist.main))

    @torch.no_grad()
    def evaluate(self) -> dict:
        self.model.eval()
        # loss, lm, finding, batches, batches with text, batches with images: a loss is only
        # averaged over (and reported for) the batches that could measure it
        sums = torch.zeros(6, dtype=torch.float64)
        probs, targets = [], []
        loop = self.cfg.train
        bar = self._val_bar()
        for ds in self.val_sets:
            idx = list(range(self.dist.rank, len(ds), self.dist.world))
            for n, start in enumerate(range(0, len(idx), loop.batch_size)):
                if loop.max_val_batches and n >= loop.max_val_batches:
                    break
                bar.update(1)
                batch = _to(self.collate_eval([ds[i] for i in idx[start:start + loop.batch_size]]), self.dist.device)
                with self.autocast():
                    out = self.model(batch)
                keep = batch["has_image"]
                texts, images = float(batch["has_text"].any()), float(keep.any())
                sums += torch.tensor([out["loss"].item(), out["lm_loss"].item() * texts,
                                      out["finding_loss"].item() * images, 1.0, texts, images])
                probs.append(torch.sigmoid(out["finding_logits"].float())[keep].cpu())
                targets.append(batch["finding_targets"][keep].cpu())
        bar.close()
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
        if probs and sum(len(p) for p in probs):
            table = auroc_by_label(torch.cat(probs).numpy(), torch.cat(targets).numpy(), self.model.labels)
            # macro over the findings val can score (None when none can): never a NaN
            metrics["val_auroc"] = table["macro_auroc"]
            metrics["val_auroc_by_finding"] = {n: r["auroc"] for n, r in table["per_label"].items()}
            self.last_auroc_table = table
        return metrics

    def _after_eval(self, metrics: dict) -> bool:
        """Log, checkpoint, and say whether early stopping fires (and, when it does, why)."""
        name = self.cfg.train.metric
        if name not in metrics:
            raise InputError(f"train.metric {name!r} was not measured on the validation split (it has no "
                             f"{'report text' if name == 'val_lm_loss' else 'images'}); choose one of "
                             f"{sorted(k for k, v in metrics.items() if _finite(v))}")
        value = metrics[name]
        lower = name in _LOWER_IS_BETTER
        improved = _finite(value) and (self.best is None or (value < self.best if lower else value > self.best))
        if improved:
            self.best, self.best_step, self.bad_evals = value, self.step, 0
        else:
            self.bad_evals += 1
        self._log({"step": self.step, "epoch": self.epoch, **metrics, "best": self.best})
        if self.dist.main:  # one line per validation, with or without the progress bar
            _say(self._validation_lines(metrics, improved))
        self._save(metrics, improved)
        if self.dist.main:
            plot_curves(self.history, self.out / "curves.png")
        p = self.cfg.train.patience
        stop = bool(p and self.bad_evals >= p)
        if stop and self.dist.main:
            _say(f"early stopping at step {self.step} (epoch {self.epoch}): {name} has not improved for {p} "
                 f"validation(s) (train.patience={p}); best {name} {self._best_text()}")
        return stop

    def _best_text(self) -> str:
        if self.best is None:
            return (f"never measured, so {self.out / 'best'} was not written; {self.out / 'last'} holds the final "
                    "weights")
        return f"{self.best:.4f} at step {self.best_step}, saved in {self.out / 'best'}"

    def _validation_lines(self, metrics: dict, improved: bool) -> str:
        name = self.cfg.train.metric
        shown = ", ".join(f"{k} {'n/a' if v is None else f'{v:.4f}'}" for k, v in metrics.items()
                          if not isinstance(v, dict))
        text = (f"validation at step {self.step} (epoch {self.epoch}): {shown}; best {name} "
                f"{'n/a' if self.best is None else round(self.best, 4)}{' (new best)' if improved else ''}")
        table = getattr(self, "last_auroc_table", None)
        if "val_auroc_by_finding" in metrics and table:
            text += "\n  " + label_counts.auroc_line(table)
        return text

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
        if self.dist.main and self.step >= self.total_steps:
            _say(f"training finished at step {self.step} of {self.total_steps}; best {loop.metric} {self._best_text()}")
        return {"step": self.step, "best": self.best, "best_step": self.best_step, "metric": loop.metric,
                "out_dir": str(self.out)}

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
