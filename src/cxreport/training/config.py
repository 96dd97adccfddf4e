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
    _aliases = {"min_positives": "oversample_min_positives"}  # its name until v0.4: run configs keep working

    sources: list[SourceConfig] = field(default_factory=list)
    text_field: str = "findings"
    clean: str = "default"  # report cleaning protocol (cxreport.text.clean)
    max_tokens: int = 100
    label_reports: bool = True  # label reports without labels with the rule labeler
    # Sentences left out of the training reports (text.wording): "deid" (de-identification residue
    # "xxxx") and/or "comparison" (wording against an earlier study the input never has).
    drop_sentences: list[str] = field(default_factory=list)
    # Reports with a rare positive finding are repeated (at most ``oversample_cap`` times) until
    # each finding has about this many positive training reports per epoch; 0 = off. Only a
    # sampling knob: which findings a model may call is ``findings.min_positives`` (model config).
    oversample_min_positives: int = 0
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


# What each key means, as `cxreport train --show-config` prints it beside the value ("#key"
# comments); a test keeps one entry per field. "data.sources[]" keys describe each source entry.
HELP = {
    "out_dir": "run folder: config.json, log.jsonl, label_counts.json, curves.png, last/ (resume) and best/ "
               "(the checkpoint to use: --model OUT_DIR/best)",
    "data": "what to train on: prepared caches (`cxreport data prepare`) and how their studies become items",
    "data.sources": "one entry per prepared cache; `cxreport train --cache PATH` fills the cache of each entry",
    "data.sources[].cache": "folder written by `cxreport data prepare` (holds meta.json)",
    "data.sources[].train_split": "split trained on",
    "data.sources[].val_split": "split validated on (never test: test is scored once, at the end)",
    "data.sources[].use": "all: films, reports and labels as present; findings: films + labels only (finding "
                          "head); text: reports only (decoder, conditioned on the labels)",
    "data.sources[].weight": "share of each epoch drawn from this source, relative to the others",
    "data.sources[].require": "keep only studies with an image, text or both (null: keep all)",
    "data.text_field": "report section to learn: findings or impression",
    "data.clean": "report cleaning protocol (cxreport text clean --help)",
    "data.max_tokens": "longest report kept, in tokens (longer ones are cut)",
    "data.label_reports": "label each study without labels of its own by reading its report with the rule "
                          "labeler (labels in the cache always win)",
    "data.drop_sentences": "sentences left out of the training reports: deid (\"xxxx\" residue), comparison",
    "data.oversample_min_positives": "repeat reports with a rare positive finding until each finding has about "
                                     "this many positives per epoch (0 = off); old name data.min_positives. Which "
                                     "findings a model may call is model findings.min_positives (default 30)",
    "data.oversample_cap": "most repeats of one report when oversampling",
    "data.max_views": "films per study fed to the model (frontal first, then lateral)",
    "data.augment": "small random rotations, shifts, brightness and contrast (never a flip); false to encode "
                    "each film once with train.cache_features",
    "data.num_workers": "DataLoader worker processes (0: exact resume after a kill)",
    "tokenizer": "how report text becomes tokens",
    "tokenizer.kind": "word, bpe or wordpiece, trained on the run's training reports",
    "tokenizer.path": "an existing tokenizer folder instead (e.g. a checkpoint's tokenizer/)",
    "tokenizer.min_freq": "word tokenizer: words seen fewer times become <unk>",
    "tokenizer.vocab_size": "bpe / wordpiece vocabulary size",
    "model": "the architecture: a named model config plus overrides",
    "model.name": "a bundled model config (`cxreport models list`) or a JSON file",
    "model.overrides": "model config keys over the named config (`cxreport models show NAME`), e.g. "
                       "{\"findings\": {\"min_positives\": 30}}: findings with fewer training positives are "
                       "not assessed (never called)",
    "train": "the optimisation loop",
    "train.stage": "1: encoder frozen (pretrained features); 2: everything trains (usually init_from a stage-1 run)",
    "train.init_from": "checkpoint or run folder whose weights start this run (same-shape tensors)",
    "train.cache_features": "stage 1 with data.augment=false: encode each film once, then reuse it",
    "train.epochs": "passes over the training studies (when max_steps is 0)",
    "train.max_steps": "optimizer steps to run; 0 = epochs decide",
    "train.batch_size": "studies per step and process",
    "train.grad_accum": "batches summed per optimizer step",
    "train.lr": "peak learning rate (AdamW) of the head, projector and decoder",
    "train.encoder_lr": "learning rate of the image encoder (stage 2)",
    "train.weight_decay": "AdamW weight decay",
    "train.warmup_steps": "linear warm-up steps",
    "train.schedule": "learning-rate schedule after warm-up: cosine, linear or constant",
    "train.min_lr_ratio": "final learning rate as a share of lr",
    "train.clip_norm": "gradient norm clipping (0 = off)",
    "train.precision": "fp32, bf16, or fp16 (GPU only)",
    "train.channels_last": "channels-last memory layout (faster convolutions on some GPUs)",
    "train.seed": "random seed (data order, initialisation)",
    "train.threads": "CPU threads for torch; 0 = torch's default (1 on a busy shared machine)",
    "train.log_every": "optimizer steps between log.jsonl lines",
    "train.eval_every": "optimizer steps between validations + checkpoints; 0 = once per epoch",
    "train.metric": "what selects best/: val_loss, val_lm_loss, val_finding_loss or val_auroc (macro over the "
                    "findings with positives and negatives in val)",
    "train.patience": "validations without improvement before stopping early; 0 = never",
    "train.max_val_batches": "validation batches per evaluation; 0 = the whole split",
    "train.tensorboard": "also write TensorBoard logs (needs the tensorboard package)",
    "train.progress": "progress bars on the terminal",
}

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
            probs.append(f"{where}.cache is empty: give the folder `cxreport data prepare` wrote "
                         "(cxreport train --cache PATH)")
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
