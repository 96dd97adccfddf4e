"""RadGraph-F1 (Delbrouck et al. 2022) through the ``radgraph`` package (extra ``radgraph``).

The package's ``F1RadGraph`` extracts entities and relations from each hypothesis and reference
and rewards their overlap per study at three levels: ``simple`` (entities), ``partial`` (entities
and relations, relation labels ignored) and ``complete`` (both, labels included). A study with an
empty hypothesis or reference scores 0, as in the package. The corpus value is the mean of the
per-study rewards, so bootstrap resamples are exact. Texts are the original ones (no cleaning).

Weights: the package downloads ``<model_type>.tar.gz`` from ``StanfordAIMI/RRG_scorers`` once,
into its own cache (``appdirs.user_cache_dir("radgraph")/<version>/<model_type>``); offline runs
need that folder filled (see docs/evaluation.md).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from cxreport.errors import InputError, require
from cxreport.metrics.stats import ItemStats

REWARD_LEVELS = ("simple", "partial", "complete")
MODEL_TYPES = ("radgraph", "radgraph-xl", "modern-radgraph-xl")
DEFAULT_MODEL_TYPE = "radgraph-xl"  # the package's default, and RadEval's
NAMES = tuple(f"F1-RadGraph-{level}" for level in REWARD_LEVELS)
DOWNLOAD_HINT = ("python -c \"from radgraph import F1RadGraph; F1RadGraph(reward_level='all', "
                 "model_type='{model_type}')\"")


def weights_dir(model_type: str) -> Path:
    """Where the package keeps (or will download) this model's files."""
    mod = importlib.import_module("radgraph.radgraph")
    return Path(mod.CACHE_DIR) / model_type


def _check_model_type(model_type: str) -> None:
    if model_type not in MODEL_TYPES:
        raise InputError(f"--radgraph-model {model_type!r}: choose one of {list(MODEL_TYPES)}")


def weights_present(model_type: str) -> bool:
    d = weights_dir(model_type)
    return d.is_dir() and any(d.iterdir())


_SCORERS: dict = {}


def get_scorer(model_type: str = DEFAULT_MODEL_TYPE):
    """The package's F1RadGraph at every reward level, loaded once; a clear error without weights offline."""
    from cxreport import hub

    _check_model_type(model_type)
    radgraph = require("radgraph", "radgraph", "RadGraph-F1")
    if model_type not in _SCORERS:
        hint = DOWNLOAD_HINT.format(model_type=model_type)
        if not weights_present(model_type) and hub.offline():
            raise hub.HubUnavailable(
                f"RadGraph model {model_type}: HF_HUB_OFFLINE=1 and its weights are not in {weights_dir(model_type)}. "
                f"Download them once with network: {hint}")
        try:
            scorer = radgraph.F1RadGraph(reward_level="all", model_type=model_type)  # GPU when there is one
        except Exception as exc:  # the package wraps download failures in a bare Exception
            raise hub.HubUnavailable(f"RadGraph model {model_type} could not be loaded ({exc}); its weights go to "
                                     f"{weights_dir(model_type)}: download them once with network: {hint}") from exc
        _SCORERS.clear()
        _SCORERS[model_type] = scorer
    return _SCORERS[model_type]


def _package() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"radgraph {version('radgraph')}"
    except PackageNotFoundError:  # a stand-in module (tests)
        return "radgraph (version unknown)"


def radgraph_scores(hyps: list[str], refs: list[str], model_type: str = DEFAULT_MODEL_TYPE):
    """(values, [stats block], per-study scores, info) for RadGraph-F1 at the three reward levels."""
    if len(hyps) != len(refs):
        raise InputError(f"RadGraph-F1: {len(hyps)} hypotheses vs {len(refs)} references")
    scorer = get_scorer(model_type)
    _, rewards, _, _ = scorer(refs=list(refs), hyps=list(hyps))
    table = np.asarray(rewards, dtype=np.float64).reshape(3, len(hyps)).T
    values = dict(zip(NAMES, map(float, table.mean(0))))
    block = ItemStats(list(NAMES), table, lambda s, n: s / n, method="mean of per-study RadGraph rewards (exact)")
    info = {"package": _package(), "model_type": model_type,
            "reward_levels": {"simple": "entities", "partial": "entities and relations, relation labels ignored",
                              "complete": "entities and relations with their labels"},
            "texts": "original texts (no cleaning or truncation)",
            "empty": "a study with an empty hypothesis or reference scores 0 (as the package)",
            "note": f"radgraph F1RadGraph, model {model_type}; the corpus value is the mean per-study reward"}
    return values, [block], {n: table[:, j] for j, n in enumerate(NAMES)}, info
