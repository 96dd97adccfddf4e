"""From finding-head logits to calibrated probabilities and one state per finding (the plan).

States are ``FINDING_STATES``: positive (p >= threshold), uncertain (p >= the uncertain
threshold), negative, or not_assessed when the head had too few training positives to judge the
finding or the study has no film the head reads. A not-assessed finding is never positive,
whatever threshold a caller asks for.
"""

from __future__ import annotations

import math

import torch

from cxreport.labels import FINDING_STATES
from cxreport.models.config import FindingsConfig
from cxreport.models.finding_head import NEGATIVE, POSITIVE, UNCERTAIN, UNKNOWN

POSITIVE_S, NEGATIVE_S, UNCERTAIN_S, NOT_ASSESSED_S = FINDING_STATES


def _logit(p: float) -> float:
    p = min(max(float(p), 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def calibration_terms(fc: FindingsConfig, labels: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-finding (scale, bias) so that p = sigmoid(scale * logit + bias)."""
    scale, bias = [], []
    for name in labels:
        c = fc.calibration.get(name, {})
        scale.append(float(c.get("scale", 1.0)))
        bias.append(float(c.get("offset", 0.0)) + (_logit(fc.prior[name]) if name in fc.prior else 0.0))
    return torch.tensor(scale), torch.tensor(bias)


def calibrated_probs(logits: torch.Tensor, fc: FindingsConfig, labels: list[str]) -> torch.Tensor:
    scale, bias = calibration_terms(fc, labels)
    return torch.sigmoid(logits.float() * scale.to(logits.device) + bias.to(logits.device))


def assessed(fc: FindingsConfig, labels: list[str]) -> dict[str, bool]:
    """Which findings the head can judge: enough training positives (or, for checkpoints without
    counts, a threshold a probability can reach)."""
    if fc.train_positives:
        return {n: int(fc.train_positives.get(n, 0)) >= fc.min_positives for n in labels}
    return {n: float(fc.thresholds.get(n, fc.threshold)) <= 1.0 for n in labels}


def decision_thresholds(fc: FindingsConfig, labels: list[str], override: float | None = None) -> dict:
    """{finding: (uncertain threshold, positive threshold)}; ``override`` replaces the positive
    threshold of every assessed finding (and lowers the uncertain one to it when above)."""
    out = {}
    for name in labels:
        pos = float(fc.thresholds.get(name, fc.threshold)) if override is None else float(override)
        unc = min(float(fc.uncertain_thresholds.get(name, pos)), pos)
        out[name] = (unc, pos)
    return out


def finding_states(probs: dict[str, float] | None, fc: FindingsConfig, labels: list[str],
                   override: float | None = None) -> dict[str, str]:
    """One study's probabilities (None: no film the head reads) -> {finding: state}, with
    CheXpert's rule that No Finding is not positive beside a positive finding."""
    ok = assessed(fc, labels)
    thr = decision_thresholds(fc, labels, override)
    states = {}
    for name in labels:
        if probs is None or not ok[name]:
            states[name] = NOT_ASSESSED_S
            continue
        unc, pos = thr[name]
        p = probs[name]
        states[name] = POSITIVE_S if p >= pos else UNCERTAIN_S if p >= unc else NEGATIVE_S
    others = [n for n in labels if n not in ("No Finding", "Support Devices")]
    if states.get("No Finding") == POSITIVE_S and any(states[n] == POSITIVE_S for n in others):
        states["No Finding"] = NEGATIVE_S
    return states


def states_to_tokens(states: dict[str, str], labels: list[str], below_threshold: str = "unknown") -> torch.Tensor:
    """A plan -> the decoder's finding-token states. Negatives follow ``findings.below_threshold``
    (the IU decoder learned "unknown" for findings a report leaves out, which is most negatives)."""
    neg = NEGATIVE if below_threshold == "negative" else UNKNOWN
    table = {POSITIVE_S: POSITIVE, UNCERTAIN_S: UNCERTAIN, NEGATIVE_S: neg, NOT_ASSESSED_S: UNKNOWN}
    return torch.tensor([table[states[n]] for n in labels], dtype=torch.long)
