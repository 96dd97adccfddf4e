"""The gate's inverted-greys check, fitted and measured: self-supervised on training films without
their letterbox borders and their negatives, at every rotation (so a rotated film is not taken for
a negative). A film is turned back at ``invert_min_prob`` (0.5: on validation films the polarity
probability of upright films stays below 0.3 and of negatives above 0.7)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cxreport.data.cache import Cache
from cxreport.data.images import letterbox_box
from cxreport.inference.gate import Gate, GateConfig, GateParams, fit_polarity
from cxreport.training.films import gate_films


def film_crops(cache: Cache, idx) -> list[np.ndarray]:
    """The cache's letterboxed images ``idx`` without their black borders (the film itself)."""
    shapes = {}
    with open(Path(cache.path) / "images.jsonl", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            shapes[r["index"]] = (r["orig_height"], r["orig_width"])
    out = []
    for i in idx:
        g = np.asarray(cache.images[i])
        top, left, h, w = letterbox_box(*shapes[int(i)], g.shape[0])
        out.append(g[top:top + h, left:left + w])
    return out


def polarity_figures(gate: Gate, crops: list[np.ndarray]) -> dict:
    """How many upright films the check would invert (should be 0) and how many negatives it catches."""
    up = np.array([gate.inverted_prob(f) for f in crops])
    neg = np.array([gate.inverted_prob(255 - f) for f in crops])
    limit = gate.cfg.invert_min_prob
    return {"films": len(crops), "upright_flagged": int((up >= limit).sum()),
            "negatives_caught": int((neg >= limit).sum()),
            "upright_max_prob": round(float(up.max()), 3) if len(up) else None,
            "negative_min_prob": round(float(neg.min()), 3) if len(neg) else None}


def fit_polarity_check(caches: dict, sources: list[str], per_source: int, gc: GateConfig, params: GateParams) -> dict:
    """Fit the check on the training films (frontal and lateral) of ``sources`` (default: all)
    into ``params``; its figures per source on the validation films and their negatives (all films
    of a source it was not fitted on)."""
    rng = np.random.default_rng(0)
    fit_on = sources or list(caches)
    crops = []
    for n in fit_on:
        idx = gate_films(caches[n], ("train",), False)[0]
        take = np.sort(rng.choice(idx, min(len(idx), per_source), replace=False))
        crops += film_crops(caches[n], take)
    params.invert_w, params.invert_b = fit_polarity(crops, gc.thumb)
    return {n: {"splits": "val" if n in fit_on else "all (not fitted on)",
                **polarity_figures(Gate(params), film_crops(c, gate_films(c, ("val",) if n in fit_on else
                                                                          ("train", "val", "test"), False)[0]))}
            for n, c in caches.items()}


def polarity_test(gate: Gate, caches: dict) -> dict:
    """The check on each source's test films (once, at the end)."""
    out = {}
    for n, c in caches.items():
        idx = gate_films(c, ("test",), False)[0]
        if idx.size:
            out[n] = polarity_figures(gate, film_crops(c, idx))
    return out
