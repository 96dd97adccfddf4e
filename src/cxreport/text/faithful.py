"""A report that says what its plan says, checked with our own labeler.

A *plan* gives each finding a state (``FINDING_STATES``). A text agrees with it when, read back by
the rule labeler: every positive finding is stated positively; an uncertain one is not stated as
certain; nothing negative or not assessed is asserted (positively or as uncertain). "No Finding"
is derived from the others and not checked on its own.

`make_faithful` picks the candidate (an N-best list from beam search, or the one greedy text)
that breaks the plan least and drops each sentence that asserts what the plan does not hold: a
finding against its state, or with a side, lobe or size; a comparison with a prior that was never
given; de-identification residue; a run-on; a denial of a finding the model could not judge. It
adds a plain sentence for each positive the text left out and one sentence of the explicit
negatives it left out (the pertinent negatives a radiologist states: "No pneumothorax or pleural
effusion."), and checks the result again. When a text still disagrees (a sentence the labeler
reads differently in context), the report falls back to the plan's own sentences, which agree by
construction (tests check every finding).
"""

from __future__ import annotations

import re

from cxreport.labels import CHEXPERT_LABELS, FINDING_STATES
from cxreport.text.labeler import label_report
from cxreport.text.wording import (grammar, has_comparison, has_deid, has_detail, has_unsupported, is_run_on,
                                   sentences, single_view)

POS, UNC = 1, -1

# One sentence per finding that the labeler reads as that finding, positive, and nothing else.
POSITIVE_SENTENCES = {
    "Enlarged Cardiomediastinum": "The mediastinum is widened.",
    "Cardiomegaly": "The heart is enlarged.",
    "Lung Opacity": "There is an opacity in the lung.",
    "Lung Lesion": "There is a pulmonary nodule.",
    "Edema": "There is pulmonary edema.",
    "Consolidation": "There is consolidation.",
    "Pneumonia": "There is pneumonia.",
    "Atelectasis": "There is atelectasis.",
    "Pneumothorax": "There is a pneumothorax.",
    "Pleural Effusion": "There is a pleural effusion.",
    "Pleural Other": "There is pleural thickening.",
    "Fracture": "There is a fracture.",
    "Support Devices": "A support device is present.",
}
# An uncertain finding is hedged, never asserted nor denied; the labeler reads each as uncertain.
UNCERTAIN_SENTENCES = {
    "Enlarged Cardiomediastinum": "A widened mediastinum cannot be excluded.",
    "Cardiomegaly": "Cardiomegaly cannot be excluded.",
    "Lung Opacity": "A lung opacity cannot be excluded.",
    "Lung Lesion": "A pulmonary nodule cannot be excluded.",
    "Edema": "Pulmonary edema cannot be excluded.",
    "Consolidation": "Consolidation cannot be excluded.",
    "Pneumonia": "Pneumonia cannot be excluded.",
    "Atelectasis": "Atelectasis cannot be excluded.",
    "Pneumothorax": "A pneumothorax cannot be excluded.",
    "Pleural Effusion": "A pleural effusion cannot be excluded.",
    "Pleural Other": "Pleural thickening cannot be excluded.",
    "Fracture": "A fracture cannot be excluded.",
    "Support Devices": "A support device cannot be excluded.",
}
# Only for a plan whose No Finding is positive (a normal report the head earned).
NORMAL_SENTENCE = "No acute cardiopulmonary abnormality."
# A study none of whose findings the model could assess (laterals only to a frontal head).
NOTHING_ASSESSED = "The findings could not be assessed on these films."
# Negatives the text left out: organ sentences, then one "No a, b or c." list in this order. The
# wording is that of the commonest IU X-Ray training sentences for each negative, kept free of
# location and size (the plan holds neither).
NEGATIVE_SENTENCES = {"Cardiomegaly": "The heart is normal in size.",
                      "Enlarged Cardiomediastinum": "The mediastinum is unremarkable."}
NEGATIVE_TERMS = {"Lung Opacity": "focal airspace disease", "Consolidation": "focal consolidation",
                  "Pneumonia": "pneumonia", "Edema": "pulmonary edema", "Atelectasis": "atelectasis",
                  "Lung Lesion": "pulmonary nodule", "Pneumothorax": "pneumothorax",
                  "Pleural Effusion": "pleural effusion", "Fracture": "acute fracture"}
CHECKED = tuple(k for k in CHEXPERT_LABELS if k != "No Finding")


def plan_states(plan: dict) -> dict[str, str]:
    """A plan with every checked finding: missing ones are not assessed."""
    bad = {k: v for k, v in plan.items() if v not in FINDING_STATES}
    if bad:
        raise ValueError(f"plan states {bad}: use one of {FINDING_STATES}")
    return {k: plan.get(k, "not_assessed") for k in CHECKED}


def _against(reading: dict, plan: dict[str, str]) -> list[str]:
    """Findings one sentence states against the plan: a positive denied or hedged, an uncertain
    one stated as certain (present, or absent: "no pleural effusion" beside an uncertain
    effusion contradicts the findings shown with the report), a negative or unassessed one
    asserted."""
    out = []
    for k, state in plan.items():
        got = reading.get(k)
        if got is None:
            continue
        if (state == "positive" and got != POS) or (state == "uncertain" and got != UNC) or \
                (state in ("negative", "not_assessed") and got in (POS, UNC)):
            out.append(k)
    return out


# Whole-organ "normal" statements the labeler reads as no finding at all, yet a radiologist reads
# as denying every finding of that organ: "Lungs are clear." beside a lung opacity contradicts it
# ("The lungs are otherwise clear." does not, and is kept).
_LUNG = ("Lung Opacity", "Lung Lesion", "Edema", "Consolidation", "Pneumonia", "Atelectasis")
_ACUTE = ("Lung Opacity", "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion")
_CLEAR_LUNGS = re.compile(r"\b(?:lungs?|lung fields) (?:are|is|appears?|remains?) (?:grossly |well expanded and )?clear\b|"
                          r"\bclear lungs\b", re.IGNORECASE)
_NO_ACUTE = re.compile(r"\bno acute (?:cardiopulmonary |pulmonary |intrathoracic |cardiac |chest )?(?:abnormalit(?:y|ies)|"
                       r"disease|process|findings?)\b|\bnormal (?:chest|study|examination|radiograph)\b", re.IGNORECASE)


_NORMAL_VESSELS = re.compile(r"\bvascularity (?:is |are |appears? )?(?:within normal limits|normal|unremarkable)\b",
                             re.IGNORECASE)
# Normal bones deny a fracture, which the labeler reads as no finding at all.
_NORMAL_BONES = re.compile(r"\b(?:bony|osseous|skeletal) (?:structures?|thorax) (?:is |are |appears? )?(?:grossly )?"
                           r"(?:intact|unremarkable|normal)\b|\bno (?:acute )?(?:bony|osseous|skeletal) "
                           r"(?:abnormalit(?:y|ies)|injur(?:y|ies)|lesions?|findings?|changes?)\b", re.IGNORECASE)


def _denied_whole(sentence: str) -> list[str]:
    """Findings a whole-organ normal statement denies: "Lungs are clear." denies every lung finding."""
    out = list(_LUNG) if _CLEAR_LUNGS.search(sentence) else []
    if _NO_ACUTE.search(sentence):
        out += [k for k in _ACUTE if k not in out]
    if _NORMAL_BONES.search(sentence):
        out.append("Fracture")
    return out


def _denied_by_normal(sentence: str, plan: dict[str, str]) -> list[str]:
    """Positive or uncertain findings a whole-organ normal statement (or normal vessels beside
    edema) denies: "The lungs are clear." beside "Pneumonia cannot be excluded." is a mixed message."""
    held = ("positive", "uncertain")
    out = ["Edema"] if _NORMAL_VESSELS.search(sentence) and plan.get("Edema") in held else []
    return out + [k for k in _denied_whole(sentence) if plan.get(k) in held and k not in out]


def _covered(text: str) -> set[str]:
    """Findings ``text`` already speaks of: named by the labeler, or denied whole ("Lungs are clear.")."""
    out = {k for k, v in label_report(text).items() if v is not None} if text else set()
    for s in sentences(text):
        out.update(_denied_whole(s))
    return out


def negatives_sentences(text: str, plan: dict[str, str]) -> tuple[list[str], list[str]]:
    """(sentences stating the plan's negatives that ``text`` leaves out, those findings)."""
    covered = _covered(text)
    todo = [k for k in CHECKED if plan.get(k) == "negative" and k not in covered
            and (k in NEGATIVE_SENTENCES or k in NEGATIVE_TERMS)]
    out = [NEGATIVE_SENTENCES[k] for k in todo if k in NEGATIVE_SENTENCES]
    terms = [NEGATIVE_TERMS[k] for k in todo if k in NEGATIVE_TERMS]
    if terms:
        out.append("No " + (terms[0] if len(terms) == 1 else ", ".join(terms[:-1]) + " or " + terms[-1]) + ".")
    return out, todo


def _read(text: str, plan: dict[str, str]) -> tuple[list[str], list[str], dict]:
    """(positives the text leaves out, findings some sentence states against the plan, reading)."""
    reading = label_report(text)
    against = set()
    for s in sentences(text):
        against.update(_against(label_report(s), plan))
        against.update(_denied_by_normal(s, plan))
    return _unsaid(plan, reading), [k for k in CHECKED if k in against], reading


def _unsaid(plan: dict[str, str], reading: dict) -> list[str]:
    """Positives the text does not state and uncertain findings it does not hedge."""
    return [k for k in CHECKED if (plan[k] == "positive" and reading.get(k) != POS)
            or (plan[k] == "uncertain" and reading.get(k) != UNC)]


def check(text: str, plan: dict) -> dict:
    """How ``text`` agrees with ``plan``: {"agrees", "missing", "contradicted", "reading"}."""
    p = plan_states(plan)
    missing, against, reading = _read(text, p)
    return {"agrees": not missing and not against, "missing": missing, "contradicted": against,
            "reading": {k: reading.get(k) for k in CHECKED}}


def _residue(sentence: str, prior: bool) -> bool:
    """De-identification residue, comparison wording without a prior, a finding the plan cannot
    hold (``wording.has_unsupported``), or a run-on sentence."""
    return has_deid(sentence) or (not prior and has_comparison(sentence)) or has_unsupported(sentence) or \
        is_run_on(sentence)


def _sentence_ok(sentence: str, plan: dict[str, str], prior: bool, unjudged=(), normal: bool = False) -> bool:
    if _residue(sentence, prior):
        return False
    reading = label_report(sentence)
    if has_detail(sentence) and any(reading.get(k) in (POS, UNC) for k in CHECKED):
        return False  # where or how big: the plan holds neither; a plain sentence replaces a positive
    if any(reading.get(k) == 0 for k in unjudged):
        return False  # "The heart is normal in size." from a head that cannot judge the heart
    if _NO_ACUTE.search(sentence):
        return normal  # a normal report only when the plan's No Finding earned it
    if any(k in unjudged for k in _denied_whole(sentence)):
        return False  # "The lungs are clear." denies lung findings the head cannot judge
    return not _against(reading, plan) and not _denied_by_normal(sentence, plan)


def _cost(text: str, plan: dict[str, str], prior: bool) -> int:
    missing, against, _ = _read(text, plan)
    residue = sum(_residue(s, prior) for s in sentences(text))
    return len(missing) + 2 * len(against) + residue


def _said(plan: dict[str, str], missing: list[str]) -> list[str]:
    """The plain sentence of each finding in ``missing``: stated if positive, hedged if uncertain."""
    return [POSITIVE_SENTENCES[k] if plan[k] == "positive" else UNCERTAIN_SENTENCES[k] for k in missing]


def _opening(plan: dict, p: dict[str, str]) -> list[str]:
    """What a report with no sentence of its own opens with: the normal sentence when earned."""
    if plan.get("No Finding") == "positive":
        return [NORMAL_SENTENCE]
    if all(v == "not_assessed" for v in p.values()) and plan.get("No Finding", "not_assessed") == "not_assessed":
        return [NOTHING_ASSESSED]
    return []


def plan_report(plan: dict) -> str:
    """The plan's own sentences: each positive finding, each hedge (or the normal sentence when
    No Finding is positive), then its negatives."""
    p = plan_states(plan)
    head = _said(p, [k for k in CHECKED if p[k] in ("positive", "uncertain")]) or _opening(plan, p)
    return " ".join(head + negatives_sentences(" ".join(head), p)[0])


def repair(text: str, plan: dict, *, prior: bool = False, views: int | None = None,
           unjudged=()) -> tuple[str, dict]:
    """``text`` made to agree with ``plan`` -> (text, what changed). ``unjudged``: findings the
    model that made the plan cannot judge (too few training positives); a sentence denying one is
    dropped too ("The heart is normal in size." beside a head that never learned cardiomegaly)."""
    p = plan_states(plan)
    normal = plan.get("No Finding") == "positive"
    if views == 1:
        text = single_view(text)
    kept, dropped, seen = [], 0, set()
    parts = sentences(text)
    if len(parts) > 1 and not parts[-1].rstrip().endswith((".", "!", "?")):
        parts, dropped = parts[:-1], 1  # cut off at the length limit mid-sentence: "There air under"
    for s in parts:
        s = grammar(s)
        key = s.strip().lower()
        if key in seen:
            dropped += 1
            continue
        seen.add(key)
        if _sentence_ok(s, p, prior, unjudged, normal):
            kept.append(s.strip())
        else:
            dropped += 1
    reading = label_report(" ".join(kept)) if kept else {}
    missing = _unsaid(p, reading)
    # Positives first, as a radiologist reports them, then what cannot be excluded.
    out = _said(p, [k for k in missing if p[k] == "positive"]) + kept + \
        _said(p, [k for k in missing if p[k] == "uncertain"])
    if not out:
        out = _opening(plan, p)
    stated, negatives = negatives_sentences(" ".join(out), p)
    out += stated
    result = " ".join(out)
    verdict = check(result, p)
    fallback = False
    if not verdict["agrees"]:
        result, fallback = plan_report(plan), True
        verdict = check(result, p)
    return result, {"agrees": verdict["agrees"], "dropped_sentences": dropped, "added": missing,
                    "added_negatives": negatives, "fallback": fallback}


def make_faithful(candidates: list[str], plan: dict, *, prior: bool = False,
                  views: int | None = None, unjudged=()) -> tuple[str, dict]:
    """The candidate that breaks ``plan`` least (ties: the decoder's order), repaired -> (text, info)."""
    if not candidates:
        candidates = [""]
    p = plan_states(plan)
    costs = [_cost(c, p, prior) for c in candidates]
    best = min(range(len(candidates)), key=lambda i: (costs[i], i))
    text, info = repair(candidates[best], plan, prior=prior, views=views, unjudged=unjudged)
    info.update(candidate=best, candidates=len(candidates), candidate_breaks=costs[best])
    return text, info
