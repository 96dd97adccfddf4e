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


# The published region-annotation files, most complete first (shared data holds the trainval cut).
QUIZ_FILES = ("annotation_quiz_all.json", "annotation_quiz_trainval.json")
R2GEN_FILES = ("annotation.json", "annotation_trainval.json")
TEXT_KEYS = ("findings", "text", "original_report")  # an item's own FINDINGS, where a file carries it


def load_iu_region_examples(root: str | Path, split: str = "train", limit: int | None = None,
                            seed: int = 0, annotations: str | Path | None = None) -> list[RegionExample]:
    """Curated examples of ``split`` from IU X-Ray's region annotations. ``annotations`` is any file
    with the published keys (default: ``annotation_quiz_all.json``, else ``annotation_quiz_trainval.json``
    under ``root/original_format``); FINDINGS texts come from the R2Gen annotation file next to it.
    ``limit`` takes a seeded random sample so that small comparisons are not all from the first uids."""
    root = Path(root)
    if annotations is None:
        folder = root / "original_format"
        annotations = next((folder / f for f in QUIZ_FILES if (folder / f).is_file()), None)
        if annotations is None:
            raise InputError(f"{folder}: no {' or '.join(QUIZ_FILES)} (expected an IU X-Ray folder as described "
                             "in its README, or give the annotation file with --annotations)")
    texts = r2gen_texts([root / "original_format" / f for f in R2GEN_FILES]
                        + [Path(annotations).parent / f for f in R2GEN_FILES])
    ex = load_region_annotations(annotations, split, texts=texts)
    images = _images_by_r2gen_id(root)
    for e in ex:
        e.image_paths = images.get(e.id, [])
    return _sample(ex, limit, seed)


def load_region_annotations(path: str | Path, split: str = "train", texts: dict[str, str] | None = None,
                            limit: int | None = None, seed: int = 0) -> list[RegionExample]:
    """Examples from a region-annotation file with the published keys: ``{split: [{"id", "report":
    {"lung", "heart", "mediastinal", "bone", "others"}}, ...]}``. ``split`` is one of the file's keys,
    or ``all``. An item's FINDINGS is its own ``findings``/``text``/``original_report`` string, else
    ``texts[id]`` (R2Gen's ``report``, :func:`r2gen_texts`). Items without a ``report`` object (IU's
    5 ``val`` items) have no reference and are left out."""
    path = Path(path)
    data = _read_json(path, "region annotation file")
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise InputError(f"{path}: expected {{split: [items]}} as in annotation_quiz_all.json")
    if split != "all" and split not in data:
        raise InputError(f"{path}: no split {split!r} (has {', '.join(data)}; or use --split all)")
    items = [it for key in (data if split == "all" else [split]) for it in data[key]]
    texts = texts or {}
    out, no_text = [], []
    for n, item in enumerate(items):
        if not isinstance(item, dict) or "id" not in item:
            raise InputError(f"{path}: item {n} of split {split!r} has no 'id'")
        report = item.get("report")
        if not isinstance(report, dict):
            continue
        if not any(r in report for r in REGIONS):
            raise InputError(f"{path}: item {item['id']!r} has none of the keys {', '.join(REGIONS)} in 'report'")
        own = next((item[k] for k in TEXT_KEYS if isinstance(item.get(k), str)), None)
        text = own if own is not None else texts.get(str(item["id"]))
        if text is None:
            no_text.append(str(item["id"]))
            continue
        out.append(RegionExample(str(item["id"]), text, {r: report.get(r, "") or "" for r in REGIONS}))
    if no_text:
        raise InputError(f"{path}: {len(no_text)} item(s) have no FINDINGS text, e.g. {no_text[0]!r}: put R2Gen's "
                         f"{' or '.join(R2GEN_FILES)} (with their 'report' texts) next to it, or add a 'findings' "
                         "field to each item")
    return _sample(out, limit, seed)


def r2gen_texts(paths: list[Path]) -> dict[str, str]:
    """R2Gen study id -> report text from the R2Gen annotation files among ``paths`` that exist."""
    out: dict[str, str] = {}
    for p in dict.fromkeys(paths):
        if p.is_file():
            data = _read_json(p, "R2Gen annotation file")
            out.update({str(it["id"]): it["report"] for part in data.values() for it in part
                        if isinstance(it, dict) and isinstance(it.get("report"), str)})
    return out


def _read_json(path: Path, what: str):
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a JSON {what} ({exc})") from exc


def _sample(ex: list[RegionExample], limit: int | None, seed: int) -> list[RegionExample]:
    if limit is not None and limit < len(ex):
        return sorted(random.Random(seed).sample(ex, limit), key=lambda e: e.id)
    return ex


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
