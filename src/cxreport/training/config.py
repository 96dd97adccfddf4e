"""The run config tree: data sources, tokenizer, model and training loop, one JSON file.

Saved resolved into the run folder and into every checkpoint; overridden from the command line
with dotted flags: ``--set train.lr=3e-4``; ``model.overrides`` is free-form, so it is set as a
whole JSON object: ``--set 'model.overrides={"decoder": {"layers": 2}}'``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SourceConfig:
    """One prepared cache. ``use``: all (images, text and labels as present), findings (images and
    labels only: the finding loss) or text (reports only: LM loss conditioned on labels)."""

    cache: str = ""
    train_split: str = "train"
    val_split: str = "val"
    use: str = "all"
    weight: float = 1.0  # share of each epoch drawn from this source, relative to the others
    require: str | None = None  # keep only studies with an image, text or both


@dataclass
class DataConfig:
    sources: list[SourceConfig] = field(default_factory=list)
    text_field: str = "findings"
    clean: str = "default"  # report cleaning protocol (cxreport.text.clean)
    max_tokens: int = 100
    label_reports: bool = True  # label reports without labels with the rule labeler
    # Sentences left out of the training reports (text.wording): "deid" (de-identification residue
    # "xxxx") and/or "comparison" (wording against an earlier study the input never has).
    drop_sentences: list[str] = field(default_factory=list)
    # Reports with a rare positive finding are repeated (at most ``oversample_cap`` times) until
    # each finding has about this many positive training reports per epoch; 0 = off.
    min_positives: int = 0
    oversample_cap: int = 10
    max_views: int = 2
    augment: bool = True
    num_workers: int = 0  # DataLoader workers; exact resume after a kill holds for 0


@dataclass
class TokenizerConfig:
    """``kind``: word | bpe | wordpiece (trained on the training reports) or a folder ``path``."""

    kind: str = "word"
    path: str = ""
    min_freq: int = 3
    vocab_size: int = 4000


@dataclass
class ModelSection:
    name: str = "tiny"  # a bundled config (cxreport.models.list_models()) or a JSON file
    overrides: dict = field(default_factory=dict)


@dataclass
class LoopConfig:
    stage: int = 1  # 1: encoder frozen; 2: everything trains (init_from a stage-1 checkpoint)
    init_from: str = ""
    cache_features: bool = False  # stage 1 without augmentation: encode each image once
    epochs: int = 10
    max_steps: int = 0  # optimizer steps; 0 = epochs decide
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 3e-4
    encoder_lr: float = 3e-5
    weight_decay: float = 0.01
    warmup_steps: int = 100
    schedule: str = "cosine"  # cosine | linear | constant
    min_lr_ratio: float = 0.05
    clip_norm: float = 1.0
    precision: str = "fp32"  # fp32 | bf16 | fp16 (GPU only)
    channels_last: bool = False
    seed: int = 0
    threads: int = 0  # CPU threads for torch; 0 = torch's default (set 1 on a busy shared machine)
    log_every: int = 10
    eval_every: int = 0  # optimizer steps between evaluations + checkpoints; 0 = once per epoch
    metric: str = "val_loss"  # val_loss | val_lm_loss | val_finding_loss | val_auroc
    patience: int = 5  # evaluations without improvement before stopping; 0 = never stop early
    max_val_batches: int = 0  # 0 = the whole validation split
    tensorboard: bool = False
    progress: bool = True


@dataclass
class RunConfig:
    out_dir: str = "runs/default"
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelSection = field(default_factory=ModelSection)
    train: LoopConfig = field(default_factory=LoopConfig)


# The allowed values, in one place: the trainer's branches and these checks must agree.
SCHEDULES = ("cosine", "linear", "constant")
METRICS = ("val_loss", "val_lm_loss", "val_finding_loss", "val_auroc")
PRECISIONS = ("fp32", "bf16", "fp16")
USES = ("all", "findings", "text")
REQUIRES = (None, "image", "text", "both")


def _choice(where: str, value, allowed) -> list[str]:
    if value in allowed:
        return []
    shown = ", ".join("null" if a is None else str(a) for a in allowed)
    return [f"{where}={value!r}: choose one of {shown}"]


def _at_least(where: str, value, low, strict: bool = False) -> list[str]:
    bad = value <= low if strict else value < low
    return [f"{where}={value!r}: must be {'>' if strict else '>='} {low}"] if bad else []


def config_problems(cfg: RunConfig) -> list[str]:
    """Every problem of a run config that can be seen without reading data: enums, ranges, paths.

    The trainer calls this first, so a typo costs a second, not an epoch."""
    from pathlib import Path

    t, d, probs = cfg.train, cfg.data, []
    probs += _choice("train.schedule", t.schedule, SCHEDULES) + _choice("train.metric", t.metric, METRICS)
    probs += _choice("train.precision", t.precision, PRECISIONS) + _choice("train.stage", t.stage, (1, 2))
    probs += _at_least("train.lr", t.lr, 0, strict=True) + _at_least("train.encoder_lr", t.encoder_lr, 0)
    for name in ("weight_decay", "warmup_steps", "clip_norm", "max_steps", "threads", "eval_every", "patience",
                 "max_val_batches"):
        probs += _at_least(f"train.{name}", getattr(t, name), 0)
    for name in ("batch_size", "grad_accum", "log_every"):
        probs += _at_least(f"train.{name}", getattr(t, name), 1)
    if not t.max_steps:
        probs += _at_least("train.epochs", t.epochs, 1)
    if not 0 <= t.min_lr_ratio <= 1:
        probs.append(f"train.min_lr_ratio={t.min_lr_ratio!r}: must be between 0 and 1")
    if t.init_from and not Path(t.init_from).exists():
        probs.append(f"train.init_from={t.init_from!r}: no such checkpoint or run folder")
    if t.stage == 2 and t.cache_features:
        probs.append("train.cache_features=true: only stage 1 (frozen encoder) can reuse encoded images")
    probs += _at_least("data.max_tokens", d.max_tokens, 1) + _at_least("data.max_views", d.max_views, 1)
    probs += _at_least("data.num_workers", d.num_workers, 0)
    if not d.sources:
        probs.append('data.sources is empty: add at least one {"cache": PATH}')
    for i, src in enumerate(d.sources):
        where = f"data.sources[{i}]"
        probs += _choice(f"{where}.use", src.use, USES) + _choice(f"{where}.require", src.require, REQUIRES)
        probs += _at_least(f"{where}.weight", src.weight, 0, strict=True)
        if not src.cache:
            probs.append(f"{where}.cache is empty: give the folder `cxreport data prepare` wrote")
        elif not (Path(src.cache) / "meta.json").is_file():
            probs.append(f"{where}.cache={src.cache!r}: not a prepared cache (no meta.json there); "
                         "run `cxreport data prepare` or fix the path")
    uses = {s.use for s in d.sources}
    if t.metric == "val_lm_loss" and uses and uses <= {"findings"}:
        probs.append("train.metric=val_lm_loss: no source has report text (every use=findings); pick val_loss, "
                     "val_finding_loss or val_auroc")
    if t.metric in ("val_auroc", "val_finding_loss") and uses and uses <= {"text"}:
        probs.append(f"train.metric={t.metric}: no source has images (every use=text); pick val_loss or val_lm_loss")
    tk = cfg.tokenizer
    if tk.path and not Path(tk.path).is_dir():
        probs.append(f"tokenizer.path={tk.path!r}: no such tokenizer folder")
    probs += _at_least("tokenizer.min_freq", tk.min_freq, 1) + _at_least("tokenizer.vocab_size", tk.vocab_size, 1)
    return probs


def validate_run_config(cfg: RunConfig) -> None:
    """Raise one InputError listing every problem `config_problems` finds, plus unknown names
    (tokenizer kind, cleaning protocol, model config) that need their registries."""
    from cxreport.errors import InputError
    from cxreport.text.clean import protocols
    from cxreport.text.tokenizer import tokenizer_kinds

    probs = config_problems(cfg)
    if not cfg.tokenizer.path:
        probs += _choice("tokenizer.kind", cfg.tokenizer.kind, tokenizer_kinds())
    probs += _choice("data.clean", cfg.data.clean, protocols())
    try:
        from cxreport.models import model_config

        model_config(cfg.model.name, **cfg.model.overrides)
    except InputError as exc:
        probs.append(f"model: {exc}")
    if probs:
        raise InputError("run config: " + "; ".join(probs) if len(probs) == 1 else
                         "run config has {} problems:\n  ".format(len(probs)) + "\n  ".join(probs))
