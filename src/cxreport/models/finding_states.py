"""From finding-head logits to calibrated probabilities and one state per finding (the plan).

States are ``FINDING_STATES``: positive (p >= threshold), uncertain (p >= the uncertain
threshold), negative, or not_assessed when the head had too few training positives to judge the
finding or the study has no film the head reads. A not-assessed finding is never positive,
whatever threshold a caller asks for.

A head may carry one calibration per *population* of films (``findings.populations``: adult and
pediatric films, as the input gate groups them): the same logits, each population's own scale,
offset, prior and thresholds, fitted on that population's validation films. A study with no
population (no gate, or a checkpoint without populations) uses the head's top-level settings.

NumPy only: the PyTorch model and the runtime without PyTorch compute the same plan here.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from cxreport.labels import FINDING_STATES
from cxreport.models.config import FindingsConfig

POSITIVE_S, NEGATIVE_S, UNCERTAIN_S, NOT_ASSESSED_S = FINDING_STATES
# The per-population fields (a population's own training positives decide what it assesses: a
# site that labels only Pneumonia has the other findings not assessed); any other key of a
# population entry (measured precision, floors, films) is provenance for people and model cards.
POPULATION_FIELDS = ("calibration", "prior", "thresholds", "uncertain_thresholds", "train_positives")


def _logit(p: float) -> float:
    p = min(max(float(p), 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def for_population(fc: FindingsConfig, population: str | None) -> FindingsConfig:
    """The head's settings as one population sees them (``population`` None or unknown to the
    head: the top-level settings)."""
    entry = fc.populations.get(population) if population else None
    if not entry:
        return fc
    fields = {k: entry[k] for k in POPULATION_FIELDS if k in entry}
    if "train_positives" in fields:  # a population's counts go together: its negatives, or none counted
        fields["train_negatives"] = entry.get("train_negatives", {})
    return dataclasses.replace(fc, **fields)


def calibration_terms(fc: FindingsConfig, labels: list[str], population: str | None = None):
    """Per-finding (scale, bias) arrays so that p = sigmoid(scale * logit + bias)."""
    fc = for_population(fc, population)
    scale, bias = [], []
    for name in labels:
        c = fc.calibration.get(name, {})
        scale.append(float(c.get("scale", 1.0)))
        bias.append(float(c.get("offset", 0.0)) + (_logit(fc.prior[name]) if name in fc.prior else 0.0))
    return np.array(scale, dtype=np.float32), np.array(bias, dtype=np.float32)


def calibrated_probs(logits, fc: FindingsConfig, labels: list[str], populations: list | None = None) -> np.ndarray:
    """B x L logits (array-like) -> B x L calibrated probabilities; ``populations``: one name (or
    None) per row."""
    z = np.asarray(logits, dtype=np.float32)
    pops = populations if populations is not None else [None] * len(z)
    terms = {p: calibration_terms(fc, labels, p) for p in set(pops)}
    scale = np.stack([terms[p][0] for p in pops]) if len(z) else np.zeros_like(z)
    bias = np.stack([terms[p][1] for p in pops]) if len(z) else np.zeros_like(z)
    return 1.0 / (1.0 + np.exp(-(z * scale + bias)))


def assessed(fc: FindingsConfig, labels: list[str], population: str | None = None) -> dict[str, bool]:
    """Which findings the head can judge (for ``population``): enough training positives (and
    negatives, where counted), never none whatever ``min_positives`` says (or, for checkpoints
    without counts, a threshold a probability can reach)."""
    fc = for_population(fc, population)
    if fc.train_positives:
        need, neg = max(fc.min_positives, 1), fc.train_negatives
        return {n: int(fc.train_positives.get(n, 0)) >= need and (not neg or int(neg.get(n, 0)) >= need)
                for n in labels}
    return {n: float(fc.thresholds.get(n, fc.threshold)) <= 1.0 for n in labels}


def decision_thresholds(fc: FindingsConfig, labels: list[str], override: float | None = None,
                        population: str | None = None) -> dict:
    """{finding: (uncertain threshold, positive threshold)}; ``override`` replaces the positive
    threshold of every assessed finding (and lowers the uncertain one to it when above)."""
    fc = for_population(fc, population)
    out = {}
    for name in labels:
        pos = float(fc.thresholds.get(name, fc.threshold)) if override is None else float(override)
        unc = min(float(fc.uncertain_thresholds.get(name, pos)), pos)
        out[name] = (unc, pos)
    return out


def finding_states(probs: dict[str, float] | None, fc: FindingsConfig, labels: list[str],
                   override: float | None = None, population: str | None = None) -> dict[str, str]:
    """One study's probabilities (None: no film the head reads) -> {finding: state}, with the
    ``normal_rule``."""
    ok = assessed(fc, labels, population)
    thr = decision_thresholds(fc, labels, override, population)
    states = {}
    for name in labels:
        if probs is None or not ok[name]:
            states[name] = NOT_ASSESSED_S
            continue
        unc, pos = thr[name]
        p = probs[name]
        states[name] = POSITIVE_S if p >= pos else UNCERTAIN_S if p >= unc else NEGATIVE_S
    return normal_rule(states, labels)


def normal_rule(states: dict[str, str], labels: list[str]) -> dict[str, str]:
    """CheXpert's rule that No Finding is not positive beside a positive finding, and ours that a
    normal report is not written beside a finding that cannot be excluded (No Finding is then
    uncertain)."""
    others = [n for n in labels if n not in ("No Finding", "Support Devices")]
    if states.get("No Finding") == POSITIVE_S:
        if any(states[n] == POSITIVE_S for n in others):
            states["No Finding"] = NEGATIVE_S
        elif any(states[n] == UNCERTAIN_S for n in others):
            states["No Finding"] = UNCERTAIN_S
    return states


def plan_codes(states: dict[str, str], labels: list[str], below_threshold: str = "unknown") -> list[int]:
    """A plan -> the decoder's finding-token state indices (``models.finding_head`` order).
    Negatives follow ``findings.below_threshold`` (the IU decoder learned "unknown" for findings a
    report leaves out, which is most negatives)."""
    pos, neg, unc, na = (FINDING_STATES.index(s) for s in (POSITIVE_S, NEGATIVE_S, UNCERTAIN_S, NOT_ASSESSED_S))
    table = {POSITIVE_S: pos, UNCERTAIN_S: unc, NEGATIVE_S: neg if below_threshold == "negative" else na,
             NOT_ASSESSED_S: na}
    return [table[states[n]] for n in labels]
