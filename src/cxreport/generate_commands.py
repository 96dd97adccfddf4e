"""`cxreport generate`: a report for one study, or for a folder / manifest of studies.

    cxreport generate pa.png lat.png                 # one study, report + findings
    cxreport generate --example                      # the two sample NIH films shipped with cxreport
    cxreport generate pa.dcm --json --heatmaps maps/
    cxreport generate --input-dir xrays/ --output-dir reports/        # a study per sub-folder or file
    cxreport generate --manifest studies.csv --output-dir reports/    # study_id,path[,view]
    torchrun --nproc-per-node 2 -m cxreport generate --input-dir ... # shards the studies

Batch outputs: OUT/<study>.json per study and OUT/summary.jsonl (one line per study, errors
included); a bad image fails its study, never the batch. Under torchrun each rank takes studies
i % WORLD_SIZE == RANK and writes OUT/summary.part-<rank>-of-<world>.jsonl; whichever rank
finishes last (rank 0 when it is last) merges the parts into summary.jsonl.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import sys
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom"}
SUMMARY = "summary.jsonl"


def register(subparsers) -> None:
    p = subparsers.add_parser("generate", help="write a report (and finding probabilities) for chest X-rays",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("images", nargs="*", metavar="IMAGE", help="the views of ONE study (PNG, JPEG or DICOM)")
    p.add_argument("--example", action="store_true",
                   help="run on the two sample NIH ChestX-ray14 films shipped with cxreport (one study each)")
    p.add_argument("--view", action="append", default=None, choices=["frontal", "lateral", "unknown"],
                   help="view of each IMAGE, in order (default: first frontal, second lateral)")
    p.add_argument("--model", default=None, metavar="NAME|PATH",
                   help="bundled model name, checkpoint folder or run folder (default: the bundled model)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--beam", type=int, default=1, metavar="N", help="beam search with N beams (1 = greedy)")
    p.add_argument("--max-len", type=int, default=None, metavar="TOKENS", help="longest report, in tokens")
    p.add_argument("--threshold", type=float, default=None,
                   help="probability at which a finding counts as positive (default: the model's)")
    p.add_argument("--heatmaps", default=None, metavar="DIR",
                   help="write a Grad-CAM overlay PNG per positive finding and view into DIR")
    p.add_argument("--input-dir", default=None, metavar="DIR", help="batch: a study per sub-folder or per image file")
    p.add_argument("--manifest", default=None, metavar="CSV", help="batch: CSV with study_id,path[,view]")
    p.add_argument("--output-dir", default=None, metavar="OUT", help="batch: where the per-study JSON files go")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.add_argument("--batch-size", type=int, default=4, help="studies per forward pass in batch mode")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.set_defaults(func=run)


def run(args) -> int:
    from cxreport.errors import InputError

    batch = args.input_dir or args.manifest
    if args.example and (batch or args.images or args.view):
        raise InputError("--example runs on the bundled sample films: give no IMAGE, --view, --input-dir or --manifest")
    if batch and args.images:
        raise InputError("give either IMAGE files (one study) or --input-dir/--manifest (a batch), not both")
    if not batch and not args.images and not args.example:
        raise InputError("nothing to do: give the IMAGE files of a study, --input-dir DIR / --manifest CSV, "
                         "or --example for the sample films")
    if batch and not args.output_dir:
        raise InputError("batch mode needs --output-dir OUT for the per-study results")
    if args.input_dir and args.manifest:
        raise InputError("give --input-dir or --manifest, not both")
    if args.batch_size < 1:
        raise InputError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from cxreport.inference import load_model

    pipeline = load_model(args.model)
    opts = dict(beam=args.beam, max_len=args.max_len, threshold=args.threshold, heatmaps=bool(args.heatmaps))
    if batch:
        return run_batch(pipeline, args, opts)
    if args.example:
        return run_examples(pipeline, args, opts)
    return run_single(pipeline, args, opts)


# ---- one study ------------------------------------------------------------------------------
def run_single(pipeline, args, opts) -> int:
    from cxreport.errors import InputError

    if args.view and len(args.view) != len(args.images):
        raise InputError(f"{len(args.view)} --view given for {len(args.images)} images: give one per image")
    result = pipeline.generate(args.images, args.view, **opts)
    if args.heatmaps:
        result["heatmaps"] = write_heatmaps(result.get("heatmaps", []), Path(args.heatmaps), args.force)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_text(result))
    return 0


def run_examples(pipeline, args, opts) -> int:
    """Each sample film as its own study; the NIH labels are printed beside the model's reading."""
    from cxreport.examples import example_studies

    results = []
    for study in example_studies():
        result = pipeline.generate(study["images"], study["views"], **opts)
        if args.heatmaps:
            result["heatmaps"] = write_heatmaps(result.get("heatmaps", []),
                                                Path(args.heatmaps) / study["study_id"], args.force)
        results.append({"study_id": study["study_id"], "nih_labels": study["labels"], **result})
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for r in results:
        films = ", ".join(v["source"] for v in r["views"])
        print(f"== sample study {r['study_id']} ({films}; NIH labels: {r['nih_labels']})")
        print(format_text(r) + "\n")
    return 0


def format_text(result: dict) -> str:
    views = ", ".join(v["view"] for v in result["views"])
    uniform = result["threshold"]
    at = f"threshold {uniform:.2f}" if uniform is not None else "its own threshold, in brackets"
    lines = [f"Report (model {result['model']}; views: {views}):", result["report"] or "(empty report)", "",
             f"Findings (probability; * = positive at {at}):"]
    for name, f in sorted(result["findings"].items(), key=lambda kv: -kv[1]["probability"]):
        bar = "#" * round(20 * f["probability"])
        own = f" [{f['threshold']:.2f}]" if uniform is None else ""
        lines.append(f" {'*' if f['positive'] else ' '} {name:<27} {f['probability']:.2f}{own}  {bar}")
    for h in result.get("heatmaps", []):
        lines.append(f"heatmap: {h['file']}")
    return "\n".join(lines)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "x"


def safe_name(study_id: str, max_len: int = 80) -> str:
    """A file name that stays inside the output folder: no separators, no leading dots, no
    '..'; ids that had to change get a short hash so 'a/b' and 'a_b' do not collide."""
    s = _slug(str(study_id))[:max_len]
    if s != str(study_id):
        s = f"{s}-{hashlib.sha1(str(study_id).encode('utf-8')).hexdigest()[:8]}"
    return s


def write_heatmaps(maps: list[dict], folder: Path, force: bool) -> list[dict]:
    """Overlay PNGs named <finding>_<view>[_<n>].png; returns the maps with ``file`` instead of pixels."""
    from cxreport import fsio
    from cxreport.errors import InputError
    from cxreport.heatmaps import to_png

    out = []
    for h in maps:
        name = f"{_slug(h['finding'])}_{h['view']}_{h['view_index'] + 1}.png"
        path = folder / name
        if path.exists() and not force:
            raise InputError(f"{path} exists: pass --force to overwrite, or choose another --heatmaps folder")
        fsio.atomic_write_bytes(path, to_png(h["overlay"]))
        out.append({k: v for k, v in h.items() if k != "overlay"} | {"file": str(path)})
    return out


# ---- many studies ---------------------------------------------------------------------------
def discover_studies(input_dir: str | None = None, manifest: str | None = None) -> list[dict]:
    """[{study_id, images, views}] from a folder (a study per sub-folder or per image file) or a CSV."""
    from cxreport.errors import InputError

    if manifest:
        return _read_manifest(Path(manifest))
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


def _read_manifest(path: Path) -> list[dict]:
    from cxreport.errors import InputError

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
    if not by_id:
        raise InputError(f"{path}: no rows")
    return list(by_id.values())


def shard() -> tuple[int, int]:
    """(rank, world) from torchrun's environment; (0, 1) otherwise."""
    from cxreport.errors import InputError

    try:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError:
        raise InputError("RANK and WORLD_SIZE must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"RANK={rank} WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE")
    return rank, world


def part_path(out: Path, rank: int, world: int) -> Path:
    return out / f"summary.part-{rank}-of-{world}.jsonl"


def run_batch(pipeline, args, opts) -> int:
    from tqdm import tqdm

    from cxreport import fsio
    from cxreport.errors import InputError

    out = Path(args.output_dir)
    studies = discover_studies(args.input_dir, args.manifest)
    names = [safe_name(s["study_id"]) for s in studies]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise InputError(f"study ids collide after making them safe file names: {sorted(dupes)[:5]}")
    rank, world = shard()
    for i, s in enumerate(studies):
        s["index"] = i
    mine = [(s, n) for s, n in zip(studies, names) if s["index"] % world == rank]
    heat_root = Path(args.heatmaps) if args.heatmaps else None
    if not args.force:
        targets = [out / SUMMARY] + [part_path(out, rank, world)] * (world > 1) + [out / f"{n}.json" for _, n in mine]
        targets += [heat_root / n for _, n in mine] if heat_root else []
        existing = [t for t in targets if t.exists()]
        if existing:
            raise InputError(f"{existing[0]} exists ({len(existing)} output(s) in the way): pass --force to "
                             "overwrite, or choose another --output-dir")
    part = part_path(out, rank, world)
    if world > 1:
        part.unlink(missing_ok=True)  # a stale part from an earlier run must not be merged into this one
    out.mkdir(parents=True, exist_ok=True)
    rows, failed = [], 0
    bar = tqdm(total=len(mine), desc=f"generate [{rank + 1}/{world}]" if world > 1 else "generate",
               unit="study", position=rank, disable=None)
    for start in range(0, len(mine), args.batch_size):
        chunk = mine[start:start + args.batch_size]
        results = pipeline.generate_batch([{"images": s["images"], "views": s["views"]} for s, _ in chunk],
                                          on_error="record", **opts)
        for (s, name), r in zip(chunk, results):
            row = {"index": s["index"], "study_id": s["study_id"], "images": s["images"]}
            if "error" in r:
                failed += 1
                row |= {"status": "error", "error": r["error"]}
            else:
                if heat_root is not None:
                    r["heatmaps"] = write_heatmaps(r.get("heatmaps", []), heat_root / name, True)
                fsio.atomic_write_json(out / f"{name}.json", {"study_id": s["study_id"], **r})
                row |= {"status": "ok", "file": f"{name}.json", "report": r["report"],
                        "positive": [k for k, f in r["findings"].items() if f["positive"]]}
            rows.append(row)
        bar.update(len(chunk))
    bar.close()
    if world == 1:
        fsio.atomic_write_jsonl(out / SUMMARY, rows)
        merged = True
    else:
        fsio.atomic_write_jsonl(part, rows)
        merged = merge_parts(out, world)
    where = out / SUMMARY if merged else part
    print(f"{len(rows) - failed} of {len(rows)} studies written to {out}"
          + (f"; {failed} failed (see {where})" if failed else "") + (f"; summary: {where}" if merged else
                                                                      f"; waiting for other ranks to merge {SUMMARY}"),
          file=sys.stderr)
    return 1 if failed and failed == len(rows) else 0


def merge_parts(out: Path, world: int) -> bool:
    """Merge every rank's part into summary.jsonl once all exist (idempotent, atomic)."""
    from cxreport import fsio

    parts = [part_path(out, r, world) for r in range(world)]
    if not all(p.is_file() for p in parts):
        return False
    rows = sorted((row for p in parts for row in fsio.read_jsonl(p)), key=lambda r: r.get("index", 0))
    fsio.atomic_write_jsonl(out / SUMMARY, rows)
    return True
