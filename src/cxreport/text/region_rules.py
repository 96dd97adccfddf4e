"""The vocabulary of the region annotator: which words name which region, and the phrase rewrites
the IU X-Ray region curators applied before sorting a sentence into a region.

De-identification replaced some ordinary words with XXXX; where the surrounding words make the
word obvious the curators wrote it back ("calcified lymph XXXX" -> "calcified lymph nodes",
"costophrenic XXXX" -> "costophrenic angle", "no XXXX of effusion" -> "no evidence of effusion"),
and they dropped report-writing filler ("Specifically, ..."). Each rule below is the majority habit
over the curated train items, not a per-report fix.
"""

from __future__ import annotations

import re

# Keyword -> region; the earliest keyword in a sentence decides. Longer phrases first so that
# "pulmonary vascularity" is not read as "pulmonary".
_KEYWORDS: list[tuple[str, str]] = [
    (r"cardiomediastinal|cardio[- ]mediastinal", "heart"),
    (r"pulmonary (?:vascularity|vasculature|vessels|xxxx)|vascul(?:arity|ature)", "lung"),
    (r"pulmonary (?:arteries|artery)|hila|hilar|hilum|hilus|cardiopulmonary silhouettes?", "mediastinal"),
    (r"mediastin\w*|aort\w*|trachea\w*|paratracheal|subcarinal|carina|lymph\w*|adenopathy|atheroscl\w*|"
     r"thoracic inlet|esophag\w*|thyroid|azygos|epicardial", "mediastinal"),
    (r"heart|cardiac|cardiomegaly|pericardial|ventric\w*|coronary|valve|atrial septal", "heart"),
    (r"bon(?:e|es|y)|osse?o?us|skelet\w*|spin(?:e|al)|vertebr\w*|\bt\d+\b|\bl\d+\b|ribs?|fractur\w*|clavicl\w*|"
     r"shoulder\w*|humer\w*|scapul\w*|sternum|sternal|scolio\w*|kyphos\w*|kyphotic|spondyl\w*|osteo\w*|"
     r"degenerative|arthriti\w*|arthropath\w*|dextroscoliosis|levoscoliosis|syndesmophyte\w*|"
     r"acromioclavicular|glenohumeral|costochondral|cervical|lumbar|dislocations?|joints?|sternotomy|"
     r"pectus|excavatum|carinatum|amputation|scaphoid|hands?|wrists?|elbows?|forearms?|knees?|ankles?|feet|"
     r"foot|metatars\w*|hips?|pelvi\w*", "bone"),
    (r"lungs?|pulmonary|pleura\w*|pneumothora\w*|effusions?|consolidat\w*|opacit\w*|air[- ]?space|"
     r"atelecta\w*|granulom\w*|nodul\w*|mass(?:es)?|infiltrat\w*|edema|pneumonia|emphysem\w*|scar\w*|"
     r"interstiti\w*|hyperexpan\w*|hyperinfla\w*|hypoinfla\w*|costophrenic|parenchym\w*|apex|apices|"
     r"apical|bas(?:e|es|ilar)|bibasilar|lobe|lingula\w*|perihilar|bronch\w*|alveol\w*|copd|fibros\w*|"
     r"densit\w*|lucen\w*|volumes?|fluid|airspace|cyst\w*|cavit\w*|midlung|congestion|tuberculosis|"
     r"blunting|sulc\w*|pneumoni\w*|bullae|bulla|blebs?|lobectomy|pneumonectomy|lucency|hyperlucen\w*|"
     r"septal lines|fissures?",
     "lung"),
    # named things outside the four organ groups (the curators' "others")
    (r"abdom\w*|(?:hemi)?diaphragms?|soft tissues?|hernia|breasts?|nipples?|bowel|stomach|gastric|"
     r"chest wall|axill\w*|neck|clips?|catheters?|picc|tubes?|lines?|leads?|pacemaker|stimulator|"
     r"cholecystectomy|piercings?|foreign bod\w*|bullet|shrapnel", "others"),
]
_KEYWORD_RX = [(re.compile(r"\b(?:" + rx + r")\b", re.IGNORECASE), region) for rx, region in _KEYWORDS]

_REWRITES: list[tuple[re.Pattern, str]] = [(re.compile(rx, re.IGNORECASE), repl) for rx, repl in (
    (r"\b(an? (?:[\w-]+ ){0,3}lymph) x{4}", r"\1 node"),
    (r"\blymph x{4}", "lymph nodes"),
    (r"\bcostophrenic x{4}(?= (?:are|were)\b)", "costophrenic angles"),
    (r"\b((?:both|bilateral) costophrenic) x{4}", r"\1 angles"),
    (r"\bcostophrenic x{4}(?! blunting)", "costophrenic angle"),
    (r"\bno x{4} of\b", "no evidence of"),
    (r"\bmediastinal x{4}(?= (?:are|appear|is|within|normal|unremarkable)\b)", "mediastinal contours"),
    (r"\bwithin normal x{4}", "within normal limits"),
    (r"^specifically,? ", ""),
    # "Heart size mediastinal contours are normal": the "and" was lost with a de-identified word
    (r"\b(heart size|heart|cardiac silhouette|cardiac contours?) (mediastinal (?:contours?|silhouette))", r"\1 and \2"),
)]


def rewrite(sentence: str) -> str:
    """``sentence`` with the curators' word-level rewrites applied (XXXX restored where obvious)."""
    for rx, repl in _REWRITES:
        sentence = rx.sub(repl, sentence)
    return sentence


def region_of(text: str) -> str | None:
    """Region of the earliest region keyword in ``text`` (None when there is none)."""
    best = None
    for rx, region in _KEYWORD_RX:
        m = rx.search(text)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), region)
    return best[1] if best else None
