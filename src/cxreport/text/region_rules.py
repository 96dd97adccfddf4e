"""Phrase rewrites the IU X-Ray region curators applied before sorting a sentence into a region.

De-identification replaced some ordinary words with XXXX; where the surrounding words make the
word obvious the curators wrote it back ("calcified lymph XXXX" -> "calcified lymph nodes",
"costophrenic XXXX" -> "costophrenic angle", "no XXXX of effusion" -> "no evidence of effusion"),
and they dropped report-writing filler ("Specifically, ..."). Each rule below is the majority habit
over the curated train items, not a per-report fix.
"""

from __future__ import annotations

import re

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
