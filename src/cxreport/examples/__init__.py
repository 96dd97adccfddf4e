"""The sample films shipped with the package (``cxreport generate --example``).

Two public-domain NIH ChestX-ray14 frontal films, with their provenance and licence in
``nih_cxr14/README.md``; they let the README's main job run where no dataset is at hand.
"""

from __future__ import annotations

import csv
from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parent / "nih_cxr14"
MANIFEST = EXAMPLES_DIR / "studies.csv"


def example_studies() -> list[dict]:
    """[{study_id, images, views, labels}] for the sample films, in manifest order."""
    from cxreport.errors import InputError

    if not MANIFEST.is_file():
        raise InputError(f"{MANIFEST}: the sample films are missing from this install; reinstall cxreport "
                         "or give your own IMAGE files")
    with open(MANIFEST, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    studies = []
    for row in rows:
        image = EXAMPLES_DIR / row["path"]
        if not image.is_file():
            raise InputError(f"{image}: sample film missing from this install; reinstall cxreport")
        studies.append({"study_id": row["study_id"], "images": [str(image)], "views": [row["view"]],
                        "labels": row.get("nih_labels", "")})
    return studies
