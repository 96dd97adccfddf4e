"""Calibration of predicted probabilities: expected calibration error and reliability bins.

Probabilities and 0/1 targets in, numbers out. Bins are equal-width on [0, 1]; ECE is the
frequency-weighted mean |observed rate - mean probability| over non-empty bins.
"""

from __future__ import annotations

import numpy as np


def reliability_bins(probs, targets, bins: int = 10) -> list[dict]:
    """[{"lo", "hi", "n", "mean_prob", "rate"}] per non-empty bin."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    out = []
    for b in range(bins):
        sel = idx == b
        if sel.any():
            out.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(sel.sum()),
                        "mean_prob": float(p[sel].mean()), "rate": float(y[sel].mean())})
    return out


def expected_calibration_error(probs, targets, bins: int = 10) -> float:
    rows = reliability_bins(probs, targets, bins)
    n = sum(r["n"] for r in rows)
    if not n:
        return float("nan")
    return float(sum(r["n"] * abs(r["rate"] - r["mean_prob"]) for r in rows) / n)


def ece_table(probs: np.ndarray, targets: np.ndarray, labels: list[str], bins: int = 10) -> dict:
    """Per-label ECE over rows with a known 0/1 target (NaN and -1 excluded)."""
    out = {}
    for j, name in enumerate(labels):
        t = targets[:, j]
        keep = (t == 0) | (t == 1)
        if keep.any():
            out[name] = expected_calibration_error(probs[keep, j], t[keep], bins)
    return out
