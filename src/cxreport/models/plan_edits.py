"""Plans as lists of state codes, a user's edits on top, and which population a study belongs to.

Pure Python and NumPy, shared by the PyTorch model (``report_model``) and the runtime without
PyTorch (``models.runtime``), so both turn the same plan, edits and gate placement into the same
finding tokens. Codes index ``FINDING_STATES`` (``models.finding_head``'s POSITIVE ... NOT_ASSESSED).
"""

from __future__ import annotations

from cxreport.errors import InputError
from cxreport.labels import FINDING_STATES, state_name
from cxreport.models.finding_states import normal_rule

POSITIVE, NEGATIVE, UNCERTAIN, NOT_ASSESSED = range(4)
# A positive finding other than these makes an edited plan's "No Finding" negative (CheXpert's rule).
_NOT_A_FINDING = ("No Finding", "Support Devices")


def state_codes(findings: dict, labels: list[str], default: int = NOT_ASSESSED) -> list[int]:
    """{finding: state} (names, aliases or 1/0/-1/None) -> one code per label; labels not given
    get ``default``."""
    unknown = set(findings) - set(labels)
    if unknown:
        raise InputError(f"findings: unknown label(s) {sorted(unknown)}; valid labels: {list(labels)}")
    codes = []
    for name in labels:
        if name not in findings:
            codes.append(default)
            continue
        try:
            codes.append(FINDING_STATES.index(state_name(findings[name])))
        except InputError as exc:
            raise InputError(f"findings[{name!r}]: {exc}") from None
    return codes


def override_codes(codes: list[int], edits: dict | None, labels: list[str]) -> list[int]:
    """One study's plan codes with a user's edits on top, and ``finding_states.normal_rule`` on
    the edited plan unless the edits set "No Finding" themselves: a positive finding makes a
    positive "No Finding" negative, an uncertain one makes it uncertain."""
    if not edits:
        return list(codes)
    given = state_codes(edits, labels, default=-1)
    out = [g if g >= 0 else c for g, c in zip(given, codes)]
    if "No Finding" in labels and "No Finding" not in edits:
        nf = labels.index("No Finding")
        others = [j for j, n in enumerate(labels) if n not in _NOT_A_FINDING]
        if out[nf] == POSITIVE and any(out[j] == POSITIVE for j in others):
            out[nf] = NEGATIVE
        elif out[nf] == POSITIVE and any(out[j] == UNCERTAIN for j in others):
            out[nf] = UNCERTAIN
    return out


def with_edits(plan: dict, edits: dict | None, labels: list[str]) -> dict:
    """The predicted plan {finding: state} with a user's edited states on top."""
    if not edits:
        return dict(plan)
    given = state_codes(edits, labels, default=-1)
    out = {n: (FINDING_STATES[g] if g >= 0 else plan[n]) for n, g in zip(labels, given)}
    return out if "No Finding" in edits else normal_rule(out, labels)


def per_study(value, b: int, what: str) -> list:
    """``value`` for every study, or its per-study list checked to have ``b`` entries."""
    rows = value if isinstance(value, (list, tuple)) else [value] * b
    if len(rows) != b:
        raise InputError(f"{what}: got {len(rows)} entries for {b} studies")
    return list(rows)


def study_populations(population, pooled, image_mask, view_ids, b: int) -> list:
    """One population name (or None) per study from ``generate``'s ``population`` argument: None,
    a name, a list with one per study, or a callable ``(pooled B x V x C, mask B x V, view_ids
    B x V) -> names`` over NumPy arrays (None for studies without images)."""
    if population is None or isinstance(population, str):
        return [population] * b
    if callable(population):
        if pooled is None:
            return [None] * b
        return list(population(pooled, image_mask, view_ids))
    pops = list(population)
    if len(pops) != b:
        raise InputError(f"population: got {len(pops)} entries for {b} studies")
    return pops


def annotate_outputs(outs: list[dict], labels: list[str], probs, has_image, states, plans: list[dict], overrides,
                     populations: list) -> list[dict]:
    """What each study's output says beside its tokens, the same from either backend: calibrated
    probabilities (None without a film), the decoder's states, the plan with the user's edits,
    the head's own plan and the population (``probs`` and ``states``: rows with ``tolist``)."""
    for i, o in enumerate(outs):
        o["finding_probs"] = dict(zip(labels, probs[i].tolist())) if probs is not None and bool(has_image[i]) else None
        o["finding_states"] = (dict(zip(labels, (FINDING_STATES[s] for s in states[i].tolist())))
                               if states is not None else None)
        edits = overrides[i] if isinstance(overrides, (list, tuple)) else overrides
        o["finding_plan"] = with_edits(plans[i], edits, labels)
        o["model_plan"] = dict(plans[i])  # the head's own call, kept beside the user's edits
        o["population"] = populations[i]
    return outs
