"""Offline rule-based CheXpert-14 labeler (our own lexicon and NegEx-style scopes).

Output per report: ``{label: 1 | 0 | -1 | None}`` with CheXpert's convention (1 positive,
0 negative, -1 uncertain, None not mentioned). A report is split into sentences, then clauses
(``;``, "but", "however", "although", "which", ", there is"...). In each clause every mention is
classified by the nearest trigger before it (negation or uncertainty) or a trigger right after
it ("... is not seen", "... cannot be excluded"). Phrases like "no change"/"no interval change"
are neutralised first, so "no change in the small effusion" stays positive. Attribute mentions
("heart size", "mediastinal contour") need a modifier in the clause ("enlarged" / "normal" /
"borderline") to count. Per report, positive beats uncertain beats negative.
"""

from __future__ import annotations

import functools

import re
from typing import Iterable

from cxreport.labels import CHEXPERT_LABELS
from cxreport.errors import InputError
from cxreport.text.coverage import without_coverage
from cxreport.text.negation import (
    CLAUSE_SPLIT,
    PSEUDO,
    SENTENCE_SPLIT,
    classify_mention,
)

POS, NEG, UNC = 1, 0, -1


def _rx(*alternatives: str) -> re.Pattern:
    return re.compile(r"\b(?:" + "|".join(alternatives) + r")", re.IGNORECASE)


# Finding mentions: positive unless negated / uncertain. Our own phrase lists.
FINDINGS: dict[str, re.Pattern] = {
    "Cardiomegaly": _rx(r"cardiomegaly", r"cardiac enlargement", r"enlarged (?:heart|cardiac)",
                        r"enlargement of the (?:heart|cardiac)", r"cardiac hypertrophy"),
    "Enlarged Cardiomediastinum": _rx(r"widen(?:ed|ing) (?:of the )?(?:superior )?mediastinum",
                                      r"mediastinal (?:widening|enlargement|prominence)",
                                      r"enlarged (?:cardio)?mediastin", r"mediastinal (?:mass|lymphadenopathy)"),
    "Lung Opacity": _rx(r"opaci(?:ty|ties|fication|fied)", r"densit(?:y|ies)(?! of the bone)",
                        r"infiltrat(?:e|es|ion|ive)", r"air[- ]?space (?:disease|process|filling)",
                        r"interstitial (?:markings?|pattern|prominence|disease|opacit|lung disease|thickening|changes?)",
                        r"reticul(?:ar|ation|onodular)", r"(?:parenchymal |lung |pulmonary )?scar(?:ring|s)?\b",
                        r"fibro(?:sis|tic)", r"ground[- ]glass", r"(?:increased|coarse(?:ned)?) (?:lung |pulmonary )?markings",
                        r"peribronchial (?:cuffing|thickening)", r"bronchial wall thickening"),
    "Lung Lesion": _rx(r"nodul(?:e|es|ar)(?! contour)", r"(?<!soft tissue )mass(?:es)?\b", r"cavitary lesion",
                       r"cavitation", r"(?<!lytic )(?<!sclerotic )(?<!bony )(?<!osseous )lesions?\b",
                       r"tumou?r", r"neoplasm", r"carcinoma", r"malignan", r"metasta", r"lung cancer"),
    "Edema": _rx(r"o?edema(?:tous)?", r"(?:vascular|venous|pulmonary) congestion", r"congestive",
                 r"heart failure", r"\bchf\b", r"fluid overload", r"kerley", r"cephalization",
                 r"vascular (?:prominence|engorgement|indistinctness|redistribution)",
                 r"indistinct(?:ness)? (?:of the )?(?:pulmonary )?vascul", r"pulmonary venous hypertension",
                 r"increased (?:lung |pulmonary )?vascularity", r"(?:pulmonary )?(?:vessels|vasculature) (?:are|is) (?:engorged|indistinct)",
                 r"prominen(?:t|ce of the) (?:central )?(?:pulmonary )?vascul", r"early failure", r"engorged"),
    "Consolidation": _rx(r"consolidat(?:ion|ions|ive|ed)"),
    "Pneumonia": _rx(r"pneumonia", r"pneumonitis", r"bronchopneumonia", r"infecti(?:on|ous)", r"infectious process"),
    "Atelectasis": _rx(r"atelecta(?:sis|ses|tic)", r"collapse(?:d)?", r"volume loss"),
    "Pneumothorax": _rx(r"pneumothora(?:x|ces|xes)", r"hydropneumothorax", r"\bptx\b", r"pleural air",
                        r"air (?:collection )?(?:with(?:in)?|in) the pleural space",
                        r"effusion with (?:an )?air[- ]fluid level", r"air[- ]fluid levels? in the (?:\w+ )?hemithorax"),
    "Pleural Effusion": _rx(r"effusions?", r"pleural fluid", r"hydrothorax", r"hemothorax",
                            r"fluid (?:in|within) the (?:\w+ )?(?:pleural|fissure)", r"hydropneumothorax"),
    "Pleural Other": _rx(r"pleural (?:thickening|plaques?|scar(?:ring)?|calcification|abnormalit\w+|opacit\w+)",
                         r"thickening of the (?:pleura|fissures?)", r"pleural[- ](?:parenchymal|peripheral) scar",
                         r"fibrothorax", r"apical (?:pleural )?cap", r"fissur(?:al|e) thickening",
                         r"(?:biapical|apical) (?:fibronodular |pleural )?thickening"),
    "Fracture": _rx(r"fractur(?:e|es|ed)", r"\bfx\b"),
    # Devices in or on the patient; post-surgical material (sternotomy wires, surgical clips, spinal
    # fusion) is not a support device (IU's coders keep it apart too).
    "Support Devices": _rx(r"pacemaker", r"pacer", r"defibrillator", r"a?icd\b", r"(?:central |venous |picc |chest )?line\b",
                           r"catheter", r"\bpicc\b", r"port(?:-a-cath|acath)?\b", r"xxxx-a-xxxx", r"tubes?\b",
                           r"tubing", r"stents?\b", r"tracheostomy", r"shunt", r"stimulator", r"prosthe(?:sis|tic)",
                           r"valve replacement", r"leads?\b", r"device", r"drain\b", r"arthroplasty", r"pump\b",
                           r"generator", r"tip (?:is |projects |projecting |overl\w+ |in |at |approximat\w+ )",
                           r"(?:with|whose) (?:its |the )?(?:distal )?tip", r"bone anchor", r"internal fixation",
                           r"fixation (?:hardware|plate|screws?)", r"orthopedic hardware", r"hardware"),
}

# Exclusions: matches of these are not mentions of the observation (removed from the clause first).
EXCLUDE: dict[str, re.Pattern] = {
    "Support Devices": _rx(r"lines? of", r"(?:azygos|fissure|septal|kerley|midline|skin|mach) ?lines?",
                           r"line(?:s)? (?:projects?|projecting)? ?over the (?:\w+ )?(?:heart|lung)",
                           r"(?:chest|endotracheal) tube placement", r"tube of", r"no (?:lines|tubes)",
                           r"(?:external |cardiac )?monitor(?:ing)? leads?", r"ecg leads?", r"ekg leads?"),
    "Lung Opacity": _rx(r"bone density", r"soft tissue densit", r"breast (?:tissue |shadows? )?densit",
                        r"nipple", r"densit(?:y|ies) (?:over|projecting over|overlying) the (?:\w+ )?(?:spine|rib)"),
    "Lung Lesion": _rx(r"mass effect", r"muscle mass", r"soft tissue mass", r"nodular(?:[- ]like)? (?:densit|opaci)\w*",
                       r"(?:bone|bony|osseous|skeletal|spine|rib) metasta\w*", r"metasta\w* (?:to|in|of) the bones?"),
    "Pneumonia": _rx(r"infection risk", r"history of", r"granulomatous (?:infection|disease)",
                     r"(?:old|prior|remote|previous|healed) (?:granulomatous )?infection"),
    "Edema": _rx(r"soft tissue (?:o?edema|swelling)"),
    "Fracture": _rx(r"fracture (?:fixation|repair)"),
    "Pleural Effusion": _rx(r"pericardial effusion", r"joint effusion"),
}

# Attribute mentions: they name an anatomy whose state a modifier in the same clause gives.
ATTRIBUTES: dict[str, re.Pattern] = {
    "Cardiomegaly": _rx(r"heart(?! failure)", r"cardiac(?! (?:pacemaker|device|lead|valve|defib|generator))", r"cardiomediastinal silhouette"),
    "Enlarged Cardiomediastinum": _rx(r"cardiomediastin\w*", r"mediastin(?:um|al)(?! (?:lymph|mass|clips))",
                                      r"superior mediastinum"),
}
ATTR_POS = re.compile(
    r"\b(?:enlarged|enlargement|large|increased|prominent|prominence|widened|widening|cardiomegaly|"
    r"mildly enlarged|moderately enlarged|severely enlarged|big)\b")
ATTR_UNC = re.compile(
    r"\b(?:borderline|possibly enlarged|may be enlarged|questionabl[ey] enlarged|"
    r"mildly prominent|slightly prominent|accentuated)\b")
ATTR_NEG = re.compile(
    r"\b(?:(?:top|upper|high)(?:-| )normal|upper (?:limits?|range)(?: of)? normal|normal|within normal limits|unremarkable|not (?:significantly |appreciably )?enlarged|"
    r"no (?:cardiomegaly|enlargement)|not (?:\w+ )?enlarged|negative|are within|is within|"
    r"normal in size|normal size|not (?:significantly )?widened|small|midline|clear)\b")


def _attribute_status(clause: str, start: int, end: int) -> int | None:
    # Modifiers far from the anatomy word usually describe something else in a long clause.
    after = clause[end:end + 60]
    before = clause[max(0, start - 40):start]
    for text in (after, before):
        if ATTR_UNC.search(text):
            return UNC
        neg_m, pos_m = ATTR_NEG.search(text), ATTR_POS.search(text)
        if neg_m and (not pos_m or neg_m.start() <= pos_m.start() or "not" in text[max(0, pos_m.start() - 20):pos_m.start()]):
            return NEG
        if pos_m:
            return POS
    return None


class RuleLabeler:
    """Our offline labeler. ``label(text)`` -> dict of the 14 CheXpert labels."""

    name = "rules"

    def label(self, text: str) -> dict[str, int | None]:
        text = without_coverage(text)  # a statement about the model, not the patient
        if not text or not text.strip():
            return {k: None for k in CHEXPERT_LABELS}  # no report is not a normal report
        found: dict[str, int] = {}
        for sentence in SENTENCE_SPLIT.split(_prepare(text)):
            for clause in CLAUSE_SPLIT.split(sentence):
                if clause and clause.strip():
                    self._label_clause(clause, found)
        out: dict[str, int | None] = {k: found.get(k) for k in CHEXPERT_LABELS}
        abnormal = [k for k in CHEXPERT_LABELS[1:-1] if out[k] in (POS, UNC)]
        out["No Finding"] = None if abnormal else POS
        return out

    @staticmethod
    def _label_clause(clause: str, found: dict[str, int]) -> None:
        spans: dict[str, list[tuple[int, int]]] = {}
        for obs, pattern in FINDINGS.items():
            text = clause
            if obs in EXCLUDE:
                text = EXCLUDE[obs].sub(lambda m: "#" * len(m.group(0)), text)
            for m in pattern.finditer(text):
                _merge(found, obs, classify_mention(text, m.start(), m.end()))
                spans.setdefault(obs, []).append((m.start(), m.end()))
        for obs, pattern in ATTRIBUTES.items():
            if found.get(obs) == POS:
                continue
            for m in pattern.finditer(clause):
                if any(a <= m.start() < b for a, b in spans.get(obs, ())):
                    continue  # already read as a finding ("negative for cardiac enlargement")
                status = _attribute_status(clause, m.start(), m.end())
                if status == POS and classify_mention(clause, m.start(), m.end()) == NEG:
                    status = NEG
                if status is not None:
                    _merge(found, obs, status)


def _merge(found: dict[str, int], obs: str, status: int) -> None:
    # A report is positive if any mention is; uncertain beats negative.
    rank = {POS: 2, UNC: 1, NEG: 0}
    if obs not in found or rank[status] > rank[found[obs]]:
        found[obs] = status


_XXXX = re.compile(r"x{3,}", re.IGNORECASE)
_WS = re.compile(r"\s+")


def _prepare(text: str) -> str:
    t = _XXXX.sub("xxxx", text.lower())
    t = _WS.sub(" ", t)
    return PSEUDO.sub(" ~ ", t)


_BACKENDS = {"rules": RuleLabeler}


def get_labeler(backend: str = "rules", **opts):
    """Our rule labeler. CheXbert (a BERT model) lives in `cxreport.metrics.chexbert`; use
    `cxreport.metrics.clinical.label_texts(texts, "chexbert")` for either."""
    if backend not in _BACKENDS:
        raise InputError(f"unknown labeler backend {backend!r} here; choose one of {sorted(_BACKENDS)} "
                         "(CheXbert: cxreport.metrics.clinical.label_texts(texts, 'chexbert'))")
    return _BACKENDS[backend](**opts)


_DEFAULT = RuleLabeler()


@functools.lru_cache(maxsize=8192)
def _label_cached(text: str) -> tuple:
    return tuple(_DEFAULT.label(text).items())


def label_report(text: str) -> dict[str, int | None]:
    """The rule labeler's reading of one text (a fresh dict). Cached: the plan check reads the
    same sentences over and over (a model writes a few hundred distinct ones), and the rules are
    deterministic, so a repeat costs a lookup instead of ~1 ms per sentence."""
    return dict(_label_cached(text or ""))


def label_reports(texts: Iterable[str], backend: str = "rules") -> list[dict[str, int | None]]:
    labeler = _DEFAULT if backend == "rules" else get_labeler(backend)
    return [labeler.label(t or "") for t in texts]
