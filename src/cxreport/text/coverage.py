"""What a report says it did not look at: its last line names the findings the model that wrote
it does not assess ("Not assessed by this model: heart size, pneumothorax, fractures."), so a
reader never takes silence for a negative.

The line is about the model, not the patient: readers of report texts (our labeler, CheXbert,
the metrics) drop it before reading, so "pneumothorax" there is never read as a finding.
"""

from __future__ import annotations

import re

from cxreport.labels import CHEXPERT_LABELS

COVERAGE_PREFIX = "Not assessed by this model:"
# How a radiologist names what was not looked at (the finding, or the organ property it is about).
COVERAGE_TERMS = {
    "Enlarged Cardiomediastinum": "mediastinal width",
    "Cardiomegaly": "heart size",
    "Lung Opacity": "lung opacities",
    "Lung Lesion": "lung nodules or masses",
    "Edema": "pulmonary edema",
    "Consolidation": "consolidation",
    "Pneumonia": "pneumonia",
    "Atelectasis": "atelectasis",
    "Pneumothorax": "pneumothorax",
    "Pleural Effusion": "pleural effusion",
    "Pleural Other": "other pleural abnormalities",
    "Fracture": "fractures",
    "Support Devices": "support devices",
}
_LINE = re.compile(r"(?:^|\n)[ \t]*" + re.escape(COVERAGE_PREFIX) + r"[^\n]*", re.IGNORECASE)


def not_assessed(plan: dict) -> list[str]:
    """The plan's not-assessed findings (No Finding aside), in CheXpert order."""
    return [k for k in CHEXPERT_LABELS if k != "No Finding" and plan.get(k, "not_assessed") == "not_assessed"]


def coverage_line(names: list[str]) -> str:
    """The last line for these not-assessed findings ("" when the model assessed everything)."""
    if not names:
        return ""
    return f"{COVERAGE_PREFIX} {', '.join(COVERAGE_TERMS.get(n, n.lower()) for n in names)}."


def with_coverage(text: str, plan: dict) -> str:
    line = coverage_line(not_assessed(plan))
    return f"{text}\n{line}" if line else text


def without_coverage(text: str) -> str:
    """``text`` without its coverage line (what readers of findings read)."""
    if not text or COVERAGE_PREFIX.lower() not in text.lower():
        return text
    return _LINE.sub("", text).strip()
