"""A generic ``id,text`` CSV + an image folder (the XREPORT format): one image and report per row.

``id`` names the image file (with or without extension). There is no patient id, so each row is
its own patient and the split is seeded (``val``/``test`` fractions), unless a ``split`` column
is present.
"""

from __future__ import annotations

from pathlib import Path

from cxreport.data.sources import register_source
from cxreport.data.sources._common import log
from cxreport.fsio import read_csv
from cxreport.data.study import SPLITS, Study, normalise_ws, seeded_split
from cxreport.errors import InputError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".dcm")


def _resolve(images: Path, ident: str) -> Path | None:
    p = images / ident
    if p.suffix.lower() in IMAGE_EXTS and p.is_file():
        return p
    for ext in IMAGE_EXTS:
        if (images / f"{ident}{ext}").is_file():
            return images / f"{ident}{ext}"
    return None


@register_source("csv")
def load(root, csv_file=None, images_dir=None, id_column="id", text_column="text", seed: int = 42,
         val: float = 0.1, test: float = 0.2, allow_empty: bool = False, **_) -> list[Study]:
    root = Path(root).expanduser()
    path = Path(csv_file) if csv_file else (root if root.is_file() else None)
    if path is None:
        cands = sorted(root.glob("*.csv")) if root.is_dir() else []
        if len(cands) != 1:
            raise InputError(f"{root}: expected one CSV with columns {id_column},{text_column} "
                             f"(found {len(cands)}); pass csv_file=PATH")
        path = cands[0]
    rows = read_csv(path, [id_column, text_column], "id,text report table")
    img_root = Path(images_dir) if images_dir else path.parent / "images"
    studies, seen, missing = [], set(), 0
    for i, r in enumerate(rows, start=2):  # line 1 is the header
        ident = (r[id_column] or "").strip()
        text = normalise_ws(r[text_column])
        if not ident:
            raise InputError(f"{path}: line {i} has an empty {id_column!r}")
        if ident in seen:
            raise InputError(f"{path}: line {i}: duplicate {id_column} {ident!r}")
        if not text and not allow_empty:
            raise InputError(f"{path}: line {i} ({ident}) has an empty {text_column!r}; "
                             "fill it or drop the row (allow_empty=True keeps image-only rows)")
        seen.add(ident)
        split = (r.get("split") or "").strip().lower()
        if split not in SPLITS:
            split = seeded_split(ident, seed, val, test)
        img = _resolve(img_root, ident)
        missing += img is None
        studies.append(Study(
            study_id=ident, patient_id=ident, split=split, source="csv",
            image_paths=[str(img)] if img else [], views=["UNKNOWN"] if img else [], findings=text,
            extra={"missing_images": int(img is None)},
        ))
    if not rows:
        raise InputError(f"{path}: no rows")
    log.info("csv: %d studies, %d without an image file under %s", len(studies), missing, img_root)
    return studies
