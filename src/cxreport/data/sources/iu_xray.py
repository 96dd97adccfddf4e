"""IU X-Ray, Kaggle layout: indiana_reports.csv + indiana_projections.csv + images/.

The release has no split and no patient id; we use ``splits.csv`` (uid,split; the R2Gen split in
shared data) when present beside the CSVs, else a seeded split per study. Studies without image
files stay in the table (text-only use) and are counted.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from cxreport.data.sources import register_source
from cxreport.data.sources._common import (
    assign_split, find_file, log, read_split_file, require_dir,
)
from cxreport.fsio import read_csv
from cxreport.data.study import Study, normalise_ws

REPORT_COLS = ["uid", "MeSH", "Problems", "image", "indication", "comparison", "findings", "impression"]


@register_source("iu-xray")
def load(root, split_file=None, images_dir=None, seed: int = 42, **_) -> list[Study]:
    """IU X-Ray studies of the Kaggle layout under ``root``.

    Options:
      split_file: uid,split CSV (default: splits.csv in root or its parent, else a seeded split)
      images_dir: image folder (default: root/images)
      seed: seed of the split when there is no split file
    """
    root = require_dir(root, "IU X-Ray Kaggle folder with indiana_reports.csv")
    reports = read_csv(root / "indiana_reports.csv", REPORT_COLS, "IU X-Ray reports")
    projections = read_csv(root / "indiana_projections.csv", ["uid", "filename", "projection"],
                           "IU X-Ray projections")
    splits = read_split_file(find_file(root, "splits.csv", split_file))
    r2gen_ids = {}
    if splits:
        sp = find_file(root, "splits.csv", split_file)
        r2gen_ids = {r["uid"]: r.get("r2gen_id", "") for r in read_csv(sp, ["uid", "split"])}
    img_root = Path(images_dir) if images_dir else root / "images"

    by_uid = defaultdict(list)
    for p in projections:
        by_uid[p["uid"].strip()].append(p)

    studies, n_listed, n_present = [], 0, 0
    for r in reports:
        uid = r["uid"].strip()
        # Frontal before lateral, then by file name: a stable, meaningful view order.
        imgs = sorted(by_uid.get(uid, []), key=lambda p: (p["projection"] != "Frontal", p["filename"]))
        paths, views = [], []
        for p in imgs:
            n_listed += 1
            f = img_root / p["filename"]
            if f.is_file():
                n_present += 1
                paths.append(str(f))
                views.append(p["projection"].strip().upper() or "UNKNOWN")
        studies.append(Study(
            study_id=uid, patient_id=uid, split=assign_split(uid, splits, seed), source="iu-xray",
            image_paths=paths, views=views,
            findings=normalise_ws(r["findings"]), impression=normalise_ws(r["impression"]),
            indication=normalise_ws(r["indication"]), comparison=normalise_ws(r["comparison"]),
            extra={"mesh": r["MeSH"], "problems": r["Problems"], "image_description": r["image"],
                   "r2gen_id": r2gen_ids.get(uid, ""), "missing_images": len(imgs) - len(paths)},
        ))
    log.info("iu-xray: %d studies, %d images listed, %d present, %d missing",
             len(studies), n_listed, n_present, n_listed - n_present)
    return studies
