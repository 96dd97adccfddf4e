"""R2Gen's ``annotation.json``: {split: [{id, report, image_path: [...], split}]} + images/.

Its ``report`` is the IU findings text (or the MIMIC findings for R2Gen's MIMIC file). R2Gen's own
image layout is ``images/<id>/0.png``; a ``.jpg`` copy of the same name is accepted too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from cxreport.data.sources import register_source
from cxreport.data.sources._common import log, require_dir
from cxreport.data.study import Study, normalise_ws
from cxreport.errors import InputError


def _find_annotation(root: Path, annotation) -> Path:
    if annotation:
        return Path(annotation)
    for name in ("annotation.json", "annotation_trainval.json"):
        for d in (root, root / "original_format"):
            if (d / name).is_file():
                return d / name
    raise InputError(f"{root}: no annotation.json found (pass annotation=PATH)")


@register_source("r2gen")
def load(root, annotation=None, images_dir=None, **_) -> list[Study]:
    """Studies of R2Gen's annotation.json under ``root``.

    Options:
      annotation: the annotation JSON (default: annotation.json in root or root/original_format)
      images_dir: image folder (default: root/images)
    """
    root = require_dir(root, "R2Gen data folder")
    path = _find_annotation(root, annotation)
    try:
        ann = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read R2Gen annotation ({exc})") from None
    if not isinstance(ann, dict) or not any(k in ann for k in ("train", "val", "test")):
        raise InputError(f"{path}: expected an object with train/val/test lists (R2Gen annotation.json)")
    img_root = Path(images_dir) if images_dir else root / "images"
    studies, n_listed, n_present = [], 0, 0
    for split in ("train", "val", "test"):
        for item in ann.get(split, []):
            missing = [k for k in ("id", "report") if k not in item]
            if missing:
                raise InputError(f"{path}: an item of '{split}' lacks {missing}: {str(item)[:120]}")
            paths = []
            for rel in item.get("image_path", []):
                n_listed += 1
                for cand in (img_root / rel, (img_root / rel).with_suffix(".jpg"),
                             img_root / "r2gen" / Path(rel).with_suffix(".jpg")):
                    if cand.is_file():
                        paths.append(str(cand))
                        n_present += 1
                        break
            m = re.match(r"CXR(\d+)_", item["id"])
            studies.append(Study(
                study_id=item["id"], patient_id=m.group(1) if m else item["id"], split=split,
                source="r2gen", image_paths=paths, views=["UNKNOWN"] * len(paths),
                findings=normalise_ws(item["report"]),
                extra={"uid": m.group(1) if m else "", "image_path": item.get("image_path", []),
                       "missing_images": len(item.get("image_path", [])) - len(paths)},
            ))
    log.info("r2gen: %d studies, %d images listed, %d present", len(studies), n_listed, n_present)
    return studies
