"""The project's names for findings and views: the ground floor every layer may import."""

from __future__ import annotations

# The 14 CheXpert observations, in CheXpert's column order.
CHEXPERT_LABELS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)

FRONTAL_VIEWS = {"PA", "AP", "FRONTAL", "AP AXIAL", "PA LLD", "PA RLD", "AP LLD", "AP RLD", "XTABLE LATERAL_"}
LATERAL_VIEWS = {"LATERAL", "LL", "RL", "XTABLE LATERAL", "LAO", "RAO", "LPO"}


# Model view ids, shared by training (collate), inference and checkpoints' preprocessing.json.
VIEW_IDS = {"frontal": 0, "lateral": 1, "unknown": 2}


def view_group(view: str) -> str:
    """Map a dataset's view code to ``frontal``, ``lateral`` or ``unknown``."""
    v = (view or "").strip().upper()
    if v in LATERAL_VIEWS or "LAT" in v:
        return "lateral"
    if v in FRONTAL_VIEWS or v.startswith(("PA", "AP")):
        return "frontal"
    return "unknown"
