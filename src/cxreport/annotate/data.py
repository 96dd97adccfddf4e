"""IU X-Ray's curated region annotations joined to their FINDINGS text and (where present) images:
the references that prompts are compared on and the VLM is tuned on."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from cxreport.errors import InputError
from cxreport.text.regions import REGIONS


@dataclass
class RegionExample:
    id: str  # R2Gen study id, e.g. CXR2384_IM-0942
    text: str  # FINDINGS
    regions: dict[str, str]
    image_paths: list[Path] = field(default_factory=list)  # frontal first; only files that exist


def load_iu_region_examples(root: str | Path, split: str = "train", limit: int | None = None,
                            seed: int = 0) -> list[RegionExample]:
    """Curated examples of ``split`` (``train`` here; shared data holds no test part). ``limit`` takes a
    seeded random sample so that small comparisons are not all from the first uids."""
    root = Path(root)
    quiz_path = root / "original_format" / "annotation_quiz_trainval.json"
    r2gen_path = root / "original_format" / "annotation_trainval.json"
    for p in (quiz_path, r2gen_path):
        if not p.is_file():
            raise InputError(f"{p}: not found (expected an IU X-Ray folder as described in its README)")
    quiz = json.loads(quiz_path.read_text(encoding="utf-8"))
    if split not in quiz:
        raise InputError(f"{quiz_path}: no split {split!r} (has {', '.join(quiz)})")
    r2gen = {it["id"]: it for part in json.loads(r2gen_path.read_text(encoding="utf-8")).values() for it in part}
    images = _images_by_r2gen_id(root)
    out = []
    for item in quiz[split]:
        report = item.get("report")
        if not isinstance(report, dict) or item["id"] not in r2gen:
            continue  # the 5 'val' items carry only the unsplit text: no reference
        out.append(RegionExample(item["id"], r2gen[item["id"]]["report"],
                                 {r: report.get(r, "") or "" for r in REGIONS}, images.get(item["id"], [])))
    if limit is not None and limit < len(out):
        out = sorted(random.Random(seed).sample(out, limit), key=lambda e: e.id)
    return out


def _images_by_r2gen_id(root: Path) -> dict[str, list[Path]]:
    if not (root / "splits.csv").is_file() or not (root / "indiana_projections.csv").is_file():
        return {}
    from cxreport.data.sources import load_source

    # The iu-xray adapter already joins R2Gen ids and lists present images frontal first.
    return {s.extra["r2gen_id"]: [Path(p) for p in s.image_paths]
            for s in load_source("iu-xray", root) if s.extra["r2gen_id"] and s.image_paths}


def read_gold_jsonl(path: str | Path, id_column: str) -> dict[str, dict[str, str]]:
    """Reference region texts by id from a JSONL file (one ``{id, lung, heart, ...}`` per line)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: reference file not found")
    out = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{n}: not JSON ({exc.msg})") from exc
        if id_column not in row:
            raise InputError(f"{path}:{n}: no {id_column!r} field (choose the id field with --id-column)")
        out[str(row[id_column])] = {r: row.get(r) or "" for r in REGIONS}
    return out
