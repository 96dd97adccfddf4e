"""Kermany pediatric CXR (normal vs pneumonia): labels.csv + metadata.csv + images/.

Kaggle's train/test is kept; val is carved out of train by patient (ids are unique only within a
Kaggle split, so the split is part of the patient key). Graded-normal films are negative for every
observation; pneumonia films are positive for Pneumonia and Lung Opacity, other findings unknown.
"""

from __future__ import annotations

from cxreport.data.sources import register_source
from cxreport.data.sources._common import log, require_dir
from cxreport.fsio import read_csv
from cxreport.data.study import Study, seeded_split
from cxreport.labels import CHEXPERT_LABELS


@register_source("kermany")
def load(root, seed: int = 42, val: float = 0.1, **_) -> list[Study]:
    """Kermany pediatric films under ``root`` (labels.csv, metadata.csv, images/).

    Options:
      seed: seed of the patient-wise val draw from Kaggle's train
      val: share of Kaggle-train patients moved to val
    """
    root = require_dir(root, "Kermany pediatric CXR folder with labels.csv")
    labels = read_csv(root / "labels.csv", ["image", "patient_id", "view", "NORMAL", "PNEUMONIA"], "Kermany labels")
    meta = {r["image"]: r for r in read_csv(root / "metadata.csv", ["image", "kaggle_split"], "Kermany metadata")}
    studies = []
    for r in labels:
        kaggle_split = meta.get(r["image"], {}).get("kaggle_split", "train")
        patient = f"{kaggle_split}:{r['patient_id']}"
        split = "test" if kaggle_split == "test" else (
            "val" if seeded_split(patient, seed, val=val, test=0.0) == "val" else "train")
        if int(r["PNEUMONIA"]):
            lab = {"Pneumonia": 1, "Lung Opacity": 1, "No Finding": 0}
        else:
            lab = {k: 0 for k in CHEXPERT_LABELS if k != "No Finding"} | {"No Finding": 1}
        f = root / "images" / r["image"]
        studies.append(Study(
            study_id=r["image"].rsplit(".", 1)[0], patient_id=patient, split=split, source="kermany",
            image_paths=[str(f)] if f.is_file() else [], views=[r["view"].upper()] if f.is_file() else [],
            labels=lab, extra={"missing_images": int(not f.is_file()), "subtype": "bacteria" if int(r.get("BACTERIA") or 0) else
                               ("virus" if int(r.get("VIRUS") or 0) else "")},
        ))
    log.info("kermany: %d images", len(studies))
    return studies
