"""Prepare a dataset once into a versioned cache; open it for training.

Layout of ``CACHE/``::

    meta.json       source, root, counts, preprocessing, format version, fingerprint
    studies.jsonl   one `Study` per line + ``image_index`` (rows of images.npy, parallel to image_paths)
    images.npy      uint8 (N, size, size), letterboxed; memory-mapped, so no per-epoch decoding
    images.jsonl    one line per image row: path, study_id, view, original height/width
    bad_files.txt   images skipped with --skip-bad, with the reason

The cache is built in ``.CACHE.partial/`` and renamed into place when complete, so a killed run
never leaves a half cache under the final name; rerunning the same command resumes from the
images already done (``done.npy``) and a finished, identical cache is left untouched.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import shutil
import time
from pathlib import Path

import numpy as np

from cxreport.data.images import MAX_PIXELS, load_resized
from cxreport.data.sources import load_source
from cxreport.data.study import Study
from cxreport.errors import ImageError, InputError
from cxreport.fsio import atomic_path, atomic_write_json, atomic_write_jsonl, atomic_write_text, read_jsonl

log = logging.getLogger("cxreport.cache")
CACHE_VERSION = 1


def _fingerprint(source: str, root: str, options: dict, size: int, studies: list[Study]) -> str:
    """Changes when the inputs or the preprocessing change: then the cache must be rebuilt."""
    h = hashlib.sha256()
    h.update(json.dumps([CACHE_VERSION, source, root, options, size], sort_keys=True, default=str).encode())
    for s in studies:
        h.update(json.dumps(s.to_dict(), sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


# Worker state: each process opens the memmap once and writes its rows directly (no pickled pixels).
_W: dict = {}


def _init_worker(array_path: str, size: int, max_pixels: int):
    _W["arr"] = np.load(array_path, mmap_mode="r+")
    _W["size"], _W["max_pixels"] = size, max_pixels


def _work(task):
    idx, path = task
    try:
        img, (h, w) = load_resized(path, _W["size"], max_pixels=_W["max_pixels"])
    except ImageError as exc:
        return idx, 0, 0, str(exc)
    _W["arr"][idx] = img
    return idx, h, w, None


def _progress(total: int, initial: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="img", desc="prepare", dynamic_ncols=True,
                disable=None, mininterval=1.0)


def _run_images(work: Path, paths: list[str], size: int, workers: int, skip_bad: bool, max_pixels: int):
    arr_path = work / "images.npy"
    if not arr_path.exists():
        with atomic_path(arr_path) as tmp:
            np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), size, size)).flush()
    done_path = work / "done.npy"
    state = np.load(done_path) if done_path.exists() else np.zeros((len(paths), 3), dtype=np.int64)
    # state[:, 0]: 1 done, -1 bad; state[:, 1:]: original height, width
    bad = json.loads((work / "bad.json").read_text()) if (work / "bad.json").exists() else {}
    todo = [(i, p) for i, p in enumerate(paths) if state[i, 0] == 0]
    if todo:
        log.info("prepare: %d of %d images to process with %d worker(s)", len(todo), len(paths), workers)

    def save_state():
        with atomic_path(done_path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, state)
        atomic_write_json(work / "bad.json", bad)

    bar = _progress(len(paths), len(paths) - len(todo))
    last = time.monotonic()
    pool = None
    try:
        if workers > 1 and len(todo) > 1:
            pool = mp.get_context("fork" if os.name == "posix" else "spawn").Pool(
                workers, _init_worker, (str(arr_path), size, max_pixels))
            results = pool.imap_unordered(_work, todo, chunksize=8)
        else:
            _init_worker(str(arr_path), size, max_pixels)
            results = map(_work, todo)
        for n_done, (idx, h, w, err) in enumerate(results, start=1):
            if err:
                if not skip_bad:
                    save_state()
                    raise InputError(f"{err}. Fix or remove the file, or rerun with --skip-bad to list "
                                     "bad files and go on (images done so far are kept)")
                bad[paths[idx]] = err
                state[idx] = (-1, 0, 0)
            else:
                state[idx] = (1, h, w)
            bar.update(1)
            if time.monotonic() - last > 2.0 or n_done == 1:  # also early: a resume point from the start
                save_state()
                last = time.monotonic()
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
        _W.pop("arr", None)
    save_state()
    return state, bad


def _missing_images(study) -> int:
    """Images a study's source listed but did not find on disk (adapters record it in ``extra``)."""
    return int(study.extra.get("missing_images", 0)) + len(study.extra.get("missing_dicom_ids") or [])


def prepare_cache(source: str, root, out, size: int = 256, workers: int = 1, skip_bad: bool = False,
                  force: bool = False, max_pixels: int = MAX_PIXELS, allow_missing_images: bool = False,
                  select=None, **options) -> Path:
    """Build (or resume, or confirm) the cache of ``source`` at ``root`` into ``out``.

    A source that lists images none of which exist is almost always a wrong ``root`` or
    ``images_dir``: that is an error unless ``allow_missing_images`` (a text-only cache).
    ``select``: a function of the source's studies returning those to prepare (a site's draw of
    films), applied before any image is read."""
    if not 32 <= size <= 4096:
        raise InputError(f"--size {size}: choose 32..4096 pixels")
    if max_pixels < 1:
        raise InputError(f"--max-pixels {max_pixels}: must be a positive pixel count")
    out = Path(out).expanduser().resolve()
    studies = load_source(source, root, **options)
    if select is not None:
        studies = select(studies)
    if not studies:
        raise InputError(f"{root}: source {source!r} found no studies")
    paths = sorted({p for s in studies for p in s.image_paths})
    missing = sum(_missing_images(s) for s in studies)
    if missing and not paths and not allow_missing_images:
        raise InputError(f"{root}: all {missing:,} images that source {source!r} lists are missing (0 found, "
                         f"{len(studies):,} studies); check --root (or -o images_dir=...), or pass "
                         "--allow-missing-images to build a text-only cache")
    if missing:
        log.warning("prepare: %d of %d listed images are missing under %s; their studies keep only the "
                    "images found", missing, missing + len(paths), root)
    fp = _fingerprint(source, str(Path(root).resolve()), options, size, studies)
    if (out / "meta.json").exists():
        old = json.loads((out / "meta.json").read_text())
        if old.get("fingerprint") == fp and not force:
            log.info("%s is already prepared and up to date", out)
            return out
        if not force:
            raise InputError(f"{out}: a different cache already exists there; pass --force to replace it "
                             "(it is kept until the new one is complete) or choose another --out")
    work = out.parent / f".{out.name}.partial"
    if (work / "fingerprint").exists() and (work / "fingerprint").read_text() != fp:
        shutil.rmtree(work)  # leftovers of a different preparation
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(work / "fingerprint", fp)

    state, bad = _run_images(work, paths, size, max(1, workers), skip_bad, max_pixels)
    rows = _write_tables(work, studies, paths, state, bad)
    meta = _meta(source, root, options, fp, size, studies, rows, paths, state, bad)
    atomic_write_json(work / "meta.json", meta)
    for f in ("done.npy", "bad.json", "fingerprint"):
        (work / f).unlink(missing_ok=True)
    _publish(work, out)
    log.info("prepared %s: %d studies, %d images (%d bad)", out, len(rows), meta["counts"]["images_ok"], len(bad))
    return out


def _write_tables(work: Path, studies, paths: list[str], state, bad: dict) -> list[dict]:
    """studies.jsonl (each study's images that decoded, with their row in images.npy), images.jsonl
    and bad_files.txt; returns the study rows."""
    row_of = {p: i for i, p in enumerate(paths) if state[i, 0] == 1}
    rows = []
    for s in studies:
        keep = [k for k, p in enumerate(s.image_paths) if p in row_of]
        d = s.to_dict()
        d["image_paths"] = [s.image_paths[k] for k in keep]
        d["views"] = [s.views[k] for k in keep]
        d["image_index"] = [row_of[s.image_paths[k]] for k in keep]
        rows.append(d)
    view_of = {p: (s.study_id, v) for s in studies for p, v in zip(s.image_paths, s.views)}
    atomic_write_jsonl(work / "studies.jsonl", rows)
    atomic_write_jsonl(work / "images.jsonl", (
        {"index": i, "path": p, "study_id": view_of[p][0], "view": view_of[p][1],
         "orig_height": int(state[i, 1]), "orig_width": int(state[i, 2]), "ok": bool(state[i, 0] == 1)}
        for i, p in enumerate(paths)))
    atomic_write_text(work / "bad_files.txt", "".join(f"{p}\t{e}\n" for p, e in sorted(bad.items())))
    return rows


def _meta(source: str, root, options: dict, fp: str, size: int, studies, rows: list[dict], paths: list[str], state,
          bad: dict) -> dict:
    """meta.json: what was prepared from where, how (fingerprint, preprocessing), and counts."""
    splits = {}
    for r in rows:
        c = splits.setdefault(r["split"], {"studies": 0, "with_images": 0, "images": 0})
        c["studies"] += 1
        c["with_images"] += bool(r["image_index"])
        c["images"] += len(r["image_index"])
    meta = {
        "format_version": CACHE_VERSION, "source": source, "root": str(Path(root).resolve()),
        "options": {k: str(v) for k, v in options.items()}, "fingerprint": fp,
        "counts": {"studies": len(rows), "images_listed": sum(len(s.image_paths) + int(s.extra.get("missing_images", 0)) for s in studies),
                   "images_missing": sum(int(s.extra.get("missing_images", 0)) for s in studies),
                   "images": len(paths), "images_ok": int((state[:, 0] == 1).sum()), "images_bad": len(bad),
                   "splits": splits},
        "preprocessing": {"size": size, "resize": "letterbox: longer side to size, bilinear, centred on black",
                          "dtype": "uint8", "channels": 1, "flip": "never"},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return meta


def _publish(work: Path, out: Path) -> None:
    """Swap the finished cache in: the old one is kept until the new one is in place."""
    if out.exists():
        trash = out.parent / f".{out.name}.old"
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(out, trash)
        os.replace(work, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(work, out)


class Cache:
    """A prepared cache opened read-only: ``studies``, ``images`` (memmap) and ``meta``."""

    def __init__(self, path):
        self.path = Path(path)
        if not (self.path / "meta.json").is_file():
            raise InputError(f"{self.path}: not a prepared cache (no meta.json); run `cxreport data prepare`")
        self.meta = json.loads((self.path / "meta.json").read_text())
        if self.meta.get("format_version") != CACHE_VERSION:
            raise InputError(f"{self.path}: cache format {self.meta.get('format_version')} is not "
                             f"{CACHE_VERSION}; prepare it again")
        self.rows = read_jsonl(self.path / "studies.jsonl")
        self._images = None

    @property
    def images(self) -> np.ndarray:
        if self._images is None:  # opened lazily so forked DataLoader workers map it themselves
            self._images = np.load(self.path / "images.npy", mmap_mode="r")
        return self._images

    @property
    def size(self) -> int:
        return int(self.meta["preprocessing"]["size"])

    def studies(self, split: str | None = None) -> list[Study]:
        return [Study.from_dict(r) for r in self.rows if split is None or r["split"] == split]

    def image_rows(self, split: str | None = None) -> list[dict]:
        return [r for r in self.rows if split is None or r["split"] == split]
