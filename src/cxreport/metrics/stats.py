"""Bootstrap confidence intervals and paired approximate randomisation over study pairs.

Every metric hands over an `ItemStats` block: a per-study table (N x d) and a ``reduce`` that turns
column sums into metric values. A resample is then just a weighted sum of rows (weights = how often
each study was drawn), so 1000 resamples of corpus BLEU or of micro/macro F1 cost one matrix product
instead of 1000 calls to the scorers, and corpus-level metrics are recomputed on every resample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from cxreport.errors import InputError


@dataclass
class ItemStats:
    """``names``: the metrics this block yields; ``table``: N x d per-study statistics;
    ``reduce(sums, n)``: B x d column sums over n studies -> B x len(names) metric values;
    ``method``: how a resample is scored (reported next to each interval)."""

    names: list[str]
    table: np.ndarray
    reduce: Callable[[np.ndarray, int], np.ndarray]
    method: str = ""

    def value(self) -> np.ndarray:
        return np.asarray(self.reduce(self.table.sum(0, keepdims=True), len(self.table)))[0]


def _counts(n: int, b: int, rng: np.random.Generator) -> np.ndarray:
    """B x N: how often each study appears in each of B bootstrap resamples."""
    idx = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)


def bootstrap(blocks: list[ItemStats], n_resamples: int = 1000, seed: int = 0, level: float = 0.95,
              chunk: int = 250) -> dict:
    """Percentile intervals: {metric: {"ci95": [lo, hi], "resamples", "method"}} (same resamples for all)."""
    if not blocks:
        return {}
    n = len(blocks[0].table)
    if any(len(b.table) != n for b in blocks):
        raise InputError("bootstrap: every metric must have one row per study")
    if n_resamples <= 0:
        return {}
    rng = np.random.default_rng(seed)
    draws = {id(b): [] for b in blocks}
    done = 0
    while done < n_resamples:
        k = min(chunk, n_resamples - done)
        w = _counts(n, k, rng)
        for b in blocks:
            draws[id(b)].append(np.asarray(b.reduce(w @ b.table, n)))
        done += k
    lo_q, hi_q = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    out = {}
    for b in blocks:
        vals = np.concatenate(draws[id(b)], 0)
        for j, name in enumerate(b.names):
            col = vals[:, j]
            col = col[np.isfinite(col)]
            lo, hi = (np.percentile(col, [lo_q, hi_q]) if len(col) else (np.nan, np.nan))
            out[name] = {"ci95": [float(lo), float(hi)], "resamples": int(len(vals)), "method": b.method}
    return out


def paired_randomisation(blocks_a: list[ItemStats], blocks_b: list[ItemStats], n_permutations: int = 1000,
                         seed: int = 0, chunk: int = 250) -> dict:
    """Approximate randomisation test of system A vs B on the same studies (two-sided).

    Each permutation swaps A's and B's output for every study with probability 1/2 and recomputes
    both corpus values from the swapped per-study statistics; p = (1 + #{|diff_perm| >= |diff|}) /
    (1 + permutations)."""
    out = {}
    rng = np.random.default_rng(seed)
    for a, b in zip(blocks_a, blocks_b):
        if a.names != b.names or a.table.shape != b.table.shape:
            raise InputError(f"compare: metric blocks differ ({a.names} vs {b.names}); score both systems "
                             "on the same references and metrics")
        n = len(a.table)
        va, vb = a.value(), b.value()
        observed = va - vb
        total_a, total_b = a.table.sum(0), b.table.sum(0)
        delta = a.table - b.table
        hits = np.zeros(len(a.names))
        done = 0
        while done < n_permutations:
            k = min(chunk, n_permutations - done)
            swap = (rng.random((k, n)) < 0.5).astype(np.float64)
            moved = swap @ delta  # what A gives to B (and B to A) on the swapped studies
            pa = np.asarray(a.reduce(total_a - moved, n))
            pb = np.asarray(b.reduce(total_b + moved, n))
            hits += (np.abs(pa - pb) >= np.abs(observed) - 1e-12).sum(0)
            done += k
        for j, name in enumerate(a.names):
            out[name] = {"a": float(va[j]), "b": float(vb[j]), "diff": float(observed[j]),
                         "p_value": float((1 + hits[j]) / (1 + n_permutations)),
                         "permutations": int(n_permutations), "method": a.method}
    return out
