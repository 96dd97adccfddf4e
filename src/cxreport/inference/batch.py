"""Many studies at once: discovery (a folder or a manifest), safe output names, resume, torchrun sharding.

Outputs: OUT/<study>.json per study and OUT/summary.jsonl (one line per study, errors included);
a bad image fails its study, never the batch. Rerunning the same command continues: a study
whose JSON (and overlays) is already complete is skipped, anything else is generated; ``force``
redoes everything. The summary is written when the run ends, also when it is interrupted
(studies not reached are listed with status ``pending``). Under torchrun each rank takes studies
i % WORLD_SIZE == RANK and writes OUT/summary.part-<rank>-of-<world>.jsonl; whichever rank
finishes last (rank 0 when it is last) merges the parts into summary.jsonl.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cxreport import fsio
from cxreport.errors import InputError
from cxreport.inference.heatmaps import slug, write_heatmaps
from cxreport.labels import parse_findings

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom"}
SUMMARY = "summary.jsonl"


def safe_name(study_id: str, max_len: int = 80) -> str:
    """A file name that stays inside the output folder: no separators, no leading dots, no
    '..'; ids that had to change get a short hash so 'a/b' and 'a_b' do not collide."""
    s = slug(str(study_id))[:max_len]
    if s != str(study_id):
        s = f"{s}-{hashlib.sha1(str(study_id).encode('utf-8')).hexdigest()[:8]}"
    return s


def discover_studies(input_dir: str | None = None, manifest: str | None = None) -> list[dict]:
    """[{study_id, images, views}] from a folder (a study per sub-folder or per image file) or a CSV."""
    if manifest:
        return read_manifest(Path(manifest))
    root = Path(input_dir)
    if not root.is_dir():
        raise InputError(f"--input-dir {root}: not a folder")
    studies, used = [], set()
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            files = sorted(p for p in entry.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if files:
                studies.append({"study_id": entry.name, "images": [str(p) for p in files], "views": None})
                used.add(entry.name)
    for entry in sorted(root.iterdir()):
        if entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES and not entry.name.startswith("."):
            sid = entry.stem if entry.stem not in used else entry.name
            used.add(sid)
            studies.append({"study_id": sid, "images": [str(entry)], "views": None})
    if not studies:
        raise InputError(f"--input-dir {root}: no images found (expected sub-folders of PNG/JPEG/DICOM "
                         "files, or image files)")
    return studies


def read_manifest(path: Path) -> list[dict]:
    """A CSV of study_id,path[,view][,findings] -> one study per id; relative paths are from the
    CSV's folder. ``findings`` sets finding states for the study's report ("Pleural
    Effusion=positive;Pneumonia=negative" or a JSON object), on any one of its rows."""
    if not path.is_file():
        raise InputError(f"--manifest {path}: file not found")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        cols = [c.strip() for c in (reader.fieldnames or [])]
        if "study_id" not in cols or "path" not in cols:
            raise InputError(f"{path}: needs the columns study_id,path[,view] (found {cols or 'no header'})")
        by_id: dict[str, dict] = {}
        for n, row in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            if not row.get("study_id") or not row.get("path"):
                raise InputError(f"{path}, line {n}: study_id and path must not be empty")
            img = Path(row["path"]).expanduser()
            img = img if img.is_absolute() else path.parent / img
            s = by_id.setdefault(row["study_id"], {"study_id": row["study_id"], "images": [], "views": []})
            s["images"].append(str(img))
            s["views"].append(row.get("view") or None)
            if row.get("findings"):
                given = parse_findings(row["findings"], where=f"{path}, line {n}, column findings")
                if s.get("findings") and s["findings"] != given:
                    raise InputError(f"{path}, line {n}: study {row['study_id']!r} has two different findings "
                                     "cells; give them on one row")
                s["findings"] = given
    if not by_id:
        raise InputError(f"{path}: no rows")
    return list(by_id.values())


def shard() -> tuple[int, int]:
    """(rank, world) from torchrun's environment; (0, 1) otherwise."""
    try:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError:
        raise InputError("RANK and WORLD_SIZE must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"RANK={rank} WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE")
    return rank, world


def part_path(out: Path, rank: int, world: int) -> Path:
    return out / f"summary.part-{rank}-of-{world}.jsonl"


@dataclass
class BatchResult:
    rows: list[dict]
    failed: int
    merged: bool  # summary.jsonl written (this rank finished last, or a single process)
    summary: Path  # summary.jsonl when merged, else this rank's part
    skipped: int = 0  # finished by an earlier run and verified complete
    redone: int = 0  # outputs of an earlier run that were incomplete, generated again


def plan_batch(studies: list[dict], out: Path) -> list[tuple[dict, str]]:
    """This rank's share of ``studies`` as [(study, safe name)], after checking that no two ids
    map to the same file."""
    names = [safe_name(s["study_id"]) for s in studies]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise InputError(f"study ids collide after making them safe file names: {sorted(dupes)[:5]}")
    rank, world = shard()
    for i, s in enumerate(studies):
        s["index"] = i
    return [(s, n) for s, n in zip(studies, names) if s["index"] % world == rank]


def finished_row(out: Path, study: dict, name: str, heatmaps: Path | None, model: dict | None = None) -> dict | None:
    """The summary row of a study an earlier run finished, or None when its output is missing or
    incomplete: the JSON must parse, be this study's, hold a report and findings, come from the
    same model (when both say which), and every overlay it lists must exist."""
    path = out / f"{name}.json"
    if not path.is_file():
        return None
    try:
        done = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError):  # truncated or unreadable: generate it again
        return None
    if not isinstance(done, dict) or done.get("study_id") != study["study_id"]:
        return None
    if not isinstance(done.get("report"), str) or not isinstance(done.get("findings"), dict):
        return None
    if model and done.get("model_sha256") and done["model_sha256"] != model.get("model_sha256"):
        raise InputError(f"{path} was written by another model ({done.get('model')}, weights "
                         f"{done['model_sha256'][:12]}): pass --force to redo every study, or choose another "
                         "--output-dir")
    if heatmaps is not None:
        files = [h.get("file") for h in done.get("heatmaps") or []]
        if "heatmaps" not in done or not all(f and Path(f).is_file() for f in files):
            return None
    return _ok_row(study, name, done)


def _ok_row(study: dict, name: str, result: dict) -> dict:
    return {"index": study["index"], "study_id": study["study_id"], "images": study["images"], "status": "ok",
            "file": f"{name}.json", "report": result["report"],
            **({"regions": result["regions"]} if "regions" in result else {}),
            "positive": [k for k, f in result["findings"].items() if f.get("positive")],
            "warnings": result.get("warnings", [])}


def run_batch(pipeline, studies: list[dict], out: Path, *, batch_size: int = 4, heatmaps: Path | None = None,
              force: bool = False, progress: bool | None = None, workers: int = 1, skip_gate: bool = False,
              **opts) -> BatchResult:
    """Generate this rank's studies ``batch_size`` at a time, write one JSON per study and the
    summary (or this rank's part of it). ``opts`` go to ``Pipeline.run``. ``workers`` threads
    decode the next batch's images while the model works on this one (inference/threads.py).
    ``skip_gate``: read what the input gate would refuse (each result says so)."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    out = Path(out)
    mine = plan_batch(studies, out)
    rank, world = shard()
    part = part_path(out, rank, world)
    if world > 1:
        part.unlink(missing_ok=True)  # a stale part from an earlier run must not be merged into this one
    model = getattr(pipeline, "identity", None)
    done: dict[int, dict] = {}
    redone = 0
    if not force:  # verify every finished output before any work, so a mismatch fails in seconds
        for s, name in mine:
            row = finished_row(out, s, name, heatmaps, model)
            if row is not None:
                done[s["index"]] = row
            redone += row is None and (out / f"{name}.json").exists()
    todo = [(s, n) for s, n in mine if s["index"] not in done]
    out.mkdir(parents=True, exist_ok=True)
    rows = dict(done)
    bar = tqdm(total=len(mine), initial=len(done), desc=f"generate [{rank + 1}/{world}]" if world > 1 else "generate",
               unit="study", position=rank, disable=None if progress is None else not progress)
    chunks = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
    try:
        with ThreadPoolExecutor(max(1, workers), thread_name_prefix="cxreport-decode") as pool:
            def decode(chunk):  # futures, so the decoding of the next chunk overlaps the model
                return [pool.submit(pipeline.prepare_study, {"images": s["images"], "views": s["views"],
                                                             "findings": s.get("findings")}, skip_gate=skip_gate)
                        for s, _ in chunk]

            ahead = decode(chunks[0]) if chunks else []
            for k, chunk in enumerate(chunks):
                prepared = [f.result() for f in ahead]
                ahead = decode(chunks[k + 1]) if k + 1 < len(chunks) else []
                results = pipeline.run_recorded(prepared, heatmaps=heatmaps is not None, **opts)
                for (s, name), r in zip(chunk, results):
                    rows[s["index"]] = _write_study(out, s, name, r, heatmaps)
                bar.update(len(chunk))
    finally:  # also on Ctrl-C: the summary says what is done and what is pending
        bar.close()
        ordered = [rows.get(s["index"]) or {"index": s["index"], "study_id": s["study_id"], "images": s["images"],
                                            "status": "pending"} for s, _ in mine]
        merged = _write_summary(out, part, ordered, world)
    failed = sum(r["status"] == "error" for r in ordered)
    return BatchResult(ordered, failed, merged, out / SUMMARY if merged else part, len(done), redone)


def _write_summary(out: Path, part: Path, rows: list[dict], world: int) -> bool:
    if world == 1:
        fsio.atomic_write_jsonl(out / SUMMARY, rows)
        return True
    fsio.atomic_write_jsonl(part, rows)
    return merge_parts(out, world)


def _write_study(out: Path, study: dict, name: str, result, heatmaps: Path | None) -> dict:
    """Write one study's JSON (and overlays); its summary row. ``result``: a ``StudyReport`` or
    a ``StudyError`` (inference/result.py)."""
    row = {"index": study["index"], "study_id": study["study_id"], "images": study["images"]}
    if not result.ok:
        return row | {"status": "error", "error": result.error, "refused": result.refused}
    if heatmaps is not None:
        result.heatmaps = write_heatmaps(result.heatmaps or [], heatmaps / name, True)
    data = result.to_dict()
    fsio.atomic_write_json(out / f"{name}.json", {"study_id": study["study_id"], **data})
    return _ok_row(study, name, data)


def merge_parts(out: Path, world: int) -> bool:
    """Merge every rank's part into summary.jsonl once all exist (idempotent, atomic)."""
    parts = [part_path(out, r, world) for r in range(world)]
    if not all(p.is_file() for p in parts):
        return False
    rows = sorted((row for p in parts for row in fsio.read_jsonl(p)), key=lambda r: r.get("index", 0))
    fsio.atomic_write_jsonl(out / SUMMARY, rows)
    return True
