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
