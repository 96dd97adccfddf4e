"""Finding-classification metrics: AUROC per label (rank formula, ties averaged), no sklearn needed."""

from __future__ import annotations

import numpy as np


def auroc(scores, targets) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(targets).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # Average ranks over ties, so a constant scorer gets exactly 0.5.
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auroc_table(probs: np.ndarray, targets: np.ndarray, labels: list[str], min_cases: int = 1) -> dict:
    """Per-label AUROC over rows with a known 0/1 target (NaN and -1 excluded) + macro mean."""
    out = {}
    for j, name in enumerate(labels):
        t = targets[:, j]
        keep = (t == 0) | (t == 1)
        n_pos = int((t[keep] == 1).sum())
        if n_pos < min_cases or n_pos == keep.sum():
            continue
        out[name] = {"auroc": auroc(probs[keep, j], t[keep]), "positives": n_pos, "n": int(keep.sum())}
    vals = [v["auroc"] for v in out.values() if not np.isnan(v["auroc"])]
    return {"per_label": out, "macro_auroc": float(np.mean(vals)) if vals else float("nan")}


def auroc_by_label(probs: np.ndarray, targets: np.ndarray, labels: list[str]) -> dict:
    """Every label's AUROC over rows with a known 0/1 target, or None and why it cannot be computed
    (``why``: "no labels", "no positives" or "no negatives"), and the macro mean over the labels
    that have one (None when none has): an absent class is a fact to say, never a NaN to average."""
    per = {}
    for j, name in enumerate(labels):
        t = targets[:, j]
        keep = (t == 0) | (t == 1)
        pos = int((t[keep] == 1).sum())
        neg = int(keep.sum()) - pos
        why = None if pos and neg else "no labels" if not keep.any() else "no positives" if not pos else "no negatives"
        per[name] = {"auroc": auroc(probs[keep, j], t[keep]) if why is None else None,
                     "positives": pos, "negatives": neg, "why": why}
    vals = [v["auroc"] for v in per.values() if v["auroc"] is not None]
    return {"per_label": per, "macro_auroc": float(np.mean(vals)) if vals else None, "computable": len(vals)}
