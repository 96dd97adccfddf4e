"""NIH ChestX-ray14 (shared subset layout: labels.csv + metadata.csv + images/): labelled images, no text.

Labels are mapped to CheXpert-14 here, in the data layer, so the model only ever sees CheXpert
names. ChestX-ray14 labels every image for its 14 findings, so a 0 is a real negative for the
mapped observations; CheXpert observations it never labels (Enlarged Cardiomediastinum, Fracture,
Support Devices) stay absent, i.e. masked in the loss.
"""

from __future__ import annotations

from pathlib import Path

from cxreport.data.sources import register_source
from cxreport.data.sources._common import log, require_dir
from cxreport.fsio import read_csv
from cxreport.data.study import Study

NIH_FINDINGS = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
                "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia"]

# CheXpert observation → the ChestX-ray14 findings that imply it (any positive ⇒ positive).
NIH_TO_CHEXPERT = {
    "Cardiomegaly": ["Cardiomegaly"],
    "Lung Opacity": ["Infiltration", "Consolidation", "Edema", "Pneumonia", "Atelectasis", "Mass", "Nodule"],
    "Lung Lesion": ["Mass", "Nodule"],
    "Edema": ["Edema"],
    "Consolidation": ["Consolidation"],
    "Pneumonia": ["Pneumonia"],
    "Atelectasis": ["Atelectasis"],
    "Pneumothorax": ["Pneumothorax"],
    "Pleural Effusion": ["Effusion"],
    "Pleural Other": ["Pleural_Thickening"],
}


def map_nih_labels(raw: dict[str, int]) -> dict[str, int]:
    out = {obs: int(any(raw.get(n, 0) for n in names)) for obs, names in NIH_TO_CHEXPERT.items()}
    # No Finding follows ChestX-ray14's own flag (1 exactly when all 14 are 0), also covering the
    # unmapped Emphysema/Fibrosis/Hernia.
    out["No Finding"] = int(not any(raw.get(n, 0) for n in NIH_FINDINGS))
    return out


@register_source("nih-cxr14")
def load(root, **_) -> list[Study]:
    """NIH ChestX-ray14 images under ``root`` (labels.csv, metadata.csv, images/); no options."""
    root = require_dir(root, "NIH ChestX-ray14 folder with labels.csv")
    labels = read_csv(root / "labels.csv", ["image", "patient_id", "view", *NIH_FINDINGS], "NIH labels")
    meta = {r["image"]: r for r in read_csv(root / "metadata.csv", ["image", "chexnet_split"], "NIH metadata")}
    studies, missing = [], 0
    for r in labels:
        raw = {n: int(float(r[n] or 0)) for n in NIH_FINDINGS}
        f = root / "images" / r["image"]
        missing += not f.is_file()
        m = meta.get(r["image"], {})
        studies.append(Study(
            study_id=Path(r["image"]).stem, patient_id=r["patient_id"],
            split=(m.get("chexnet_split") or "train").strip(), source="nih-cxr14",
            image_paths=[str(f)] if f.is_file() else [], views=[r["view"].strip().upper()] if f.is_file() else [],
            labels=map_nih_labels(raw),
            extra={"missing_images": int(not f.is_file()), "raw_labels": raw, "age": m.get("patient_age", ""), "sex": m.get("patient_gender", "")},
        ))
    log.info("nih-cxr14: %d images, %d missing", len(studies), missing)
    return studies
