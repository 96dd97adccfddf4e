"""Per population of films: calibration, the uncertain band and a precision floor under every
positive statement, all set on out-of-fold predictions of that population's validation films.

A finding is stated positive only above a threshold where the precision it would have in the
population (its prevalence ``pi``, not the validation films' own mix) is at least
``max(min_precision, prevalence_multiple * pi)``, at most ``max_precision``; No Finding, which
makes a report normal, needs ``normal_precision``. The precision is a lower confidence bound:
sensitivity at its lower bound and the false-positive rate at its upper bound (one-sided Wilson
intervals), combined at ``pi``:

    precision(t) = pi * TPR(t) / (pi * TPR(t) + (1 - pi) * FPR(t))

so a floor cleared on a handful of films does not count, and a finding the head cannot separate
that well is never positive in that population: it is at most uncertain.

A normal report is more than a No Finding probability: the plan is normal only when No Finding is
positive and no other assessed finding is positive or uncertain (``models.finding_states``). So
No Finding's threshold is set on the films whose other findings are clear at their own
thresholds: its floor is the precision of the normal reports the model would write.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cxreport.training.head_fit import f1_threshold, fit_platt, logit

NEVER = 1.01  # a threshold no probability reaches


@dataclass
class FloorConfig:
    min_precision: float = 0.5
    prevalence_multiple: float = 2.0
    max_precision: float = 0.9
    normal_precision: float = 0.8  # No Finding: a normal report
    confidence: float = 0.95  # one-sided, for both bounds
    min_stated: int = 5  # out-of-fold positive films above the threshold, at least


def floor_for(name: str, prevalence: float, cfg: FloorConfig) -> float:
    if name == "No Finding":
        return cfg.normal_precision
    return min(cfg.max_precision, max(cfg.min_precision, cfg.prevalence_multiple * prevalence))


def _z(confidence: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(confidence)


def wilson(k: np.ndarray, n: int, z: float) -> tuple[np.ndarray, np.ndarray]:
    """One-sided Wilson bounds (lower, upper) of a proportion k / n."""
    k = np.asarray(k, dtype=np.float64)
    if n <= 0:
        return np.zeros_like(k), np.ones_like(k)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def precision_curve(p: np.ndarray, y: np.ndarray, prevalence: float, z: float) -> dict:
    """At each candidate threshold (the distinct probabilities, descending): positives and
    negatives above it, precision at ``prevalence`` (point estimate and lower bound)."""
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    last = np.r_[ps[1:] != ps[:-1], True]  # the last film of each tie group
    tp, fp = np.cumsum(ys)[last], np.cumsum(1 - ys)[last]
    pos, neg = int(ys.sum()), int(len(ys) - ys.sum())
    tpr, fpr = tp / max(pos, 1), fp / max(neg, 1)
    tpr_lo, _ = wilson(tp, pos, z)
    _, fpr_hi = wilson(fp, neg, z)

    def prec(a, b):
        den = prevalence * a + (1 - prevalence) * b
        return np.where(den > 0, prevalence * a / np.maximum(den, 1e-300), 0.0)

    return {"threshold": ps[last], "tp": tp, "fp": fp, "precision": prec(tpr, fpr), "precision_lo": prec(tpr_lo, fpr_hi)}


def floor_threshold(p: np.ndarray, y: np.ndarray, prevalence: float, floor: float, cfg: FloorConfig) -> float:
    """The lowest threshold whose precision lower bound clears ``floor`` with at least
    ``min_stated`` positive films above it; NEVER when none does."""
    if not len(p) or y.sum() == 0 or y.sum() == len(y):
        return NEVER
    c = precision_curve(p, y, prevalence, _z(cfg.confidence))
    ok = (c["precision_lo"] >= floor) & (c["tp"] >= cfg.min_stated)
    return float(c["threshold"][ok].min()) if ok.any() else NEVER


def stated_precision(p: np.ndarray, y: np.ndarray, threshold: float, prevalence: float) -> dict:
    """Films stated positive at ``threshold``, their precision among these films, and the
    precision re-weighted to ``prevalence`` (what the floor is set on)."""
    above = p >= threshold
    tp, fp = int((above & (y == 1)).sum()), int((above & (y == 0)).sum())
    pos, neg = int((y == 1).sum()), int((y == 0).sum())
    tpr, fpr = tp / max(pos, 1), fp / max(neg, 1)
    den = prevalence * tpr + (1 - prevalence) * fpr
    return {"stated": tp + fp, "precision": round(tp / (tp + fp), 4) if tp + fp else None,
            "precision_at_prevalence": round(prevalence * tpr / den, 4) if den > 0 else None,
            "films": int(len(y)), "prevalence_in_films": round(pos / max(len(y), 1), 4)}


def fit_population(z: np.ndarray, y: np.ndarray, offset: np.ndarray, labels: list[str], assessed: dict,
                   prevalence: dict, cfg: FloorConfig) -> dict:
    """One population's calibration, thresholds and uncertain thresholds from its films'
    out-of-fold logits ``z`` (N x L), labels ``y`` (NaN unknown) and the logit offset each film's
    training prior added (``offset`` N x L). ``prevalence``: the population's prevalence per
    finding, the prior its probabilities are calibrated to. Returns a ``findings.populations``
    entry with the out-of-fold figures behind each number."""
    calib, thr, unc, prior, figures = {}, {}, {}, {}, {}
    flagged = np.zeros(len(y), dtype=bool)  # films with another finding positive or uncertain
    order = sorted(range(len(labels)), key=lambda j: labels[j] == "No Finding")
    for j in order:
        name = labels[j]
        keep = ~np.isnan(y[:, j])
        if not assessed.get(name) or not keep.any() or name not in prevalence:
            continue
        yk, zk = y[keep, j], z[keep, j]
        a, b = fit_platt(zk, yk, offset[keep, j])
        pi = float(prevalence[name])
        p = 1 / (1 + np.exp(-(a * zk + b + logit(pi))))
        floor = floor_for(name, pi, cfg)
        # No Finding comes last: a film another finding flags never gets a normal report.
        normal = name == "No Finding"
        t = floor_threshold(np.where(flagged[keep], 0.0, p) if normal else p, yk, pi, floor, cfg)
        pi_src = float(yk.mean())
        w = np.where(yk == 1, pi / max(pi_src, 1e-6), (1 - pi) / max(1 - pi_src, 1e-6))
        calib[name] = {"scale": round(a, 5), "offset": round(b, 5)}
        thr[name] = round(t, 5)
        unc[name] = round(min(f1_threshold(p, yk, w), 0.5, t), 5)
        prior[name] = pi
        stated = np.where(flagged[keep], 0.0, p) if normal else p
        figures[name] = {"floor": round(floor, 4), **stated_precision(stated, yk, t, pi),
                         "uncertain": int(((p >= unc[name]) & (p < t)).sum())}
        if not normal:
            every = np.zeros(len(y), dtype=bool)
            every[keep] = p >= unc[name]
            flagged |= every
    return {"calibration": calib, "thresholds": thr, "uncertain_thresholds": unc, "prior": prior,
            "out_of_fold": figures}


def auroc_or_none(scores: np.ndarray, y: np.ndarray) -> float | None:
    """AUROC where both classes are present, else None (printed "n/a", stored as null)."""
    from cxreport.metrics.classification import auroc

    keep = ~np.isnan(y)
    if not keep.any() or y[keep].min() == y[keep].max():
        return None
    v = auroc(scores[keep], y[keep])
    return None if v is None or math.isnan(v) else round(float(v), 4)
