"""Reference points every model is reported beside: three report "generators" without a model.

* ``constant``: the most frequent training report (after our default cleaning, so spacing and
  case variants count together), the same text for every study;
* ``random``: a training report drawn uniformly for each study (seeded);
* ``retrieval``: the report of the nearest training study. By image where both studies have one
  (a 16 x 16 thumbnail of the first frontal view, standardised, cosine similarity: a crude but
  weight-free embedding); otherwise at random (seeded, the default). ``retrieval_fallback="codes"``
  falls back instead, in order, to the study's CheXpert labels from the dataset and its MeSH terms
  (IU X-Ray); those were coded from the very report being predicted, so that variant is
  oracle-informed: it shows what knowing the findings buys, not what an image model can do, and
  is never the default. The method used is recorded per study.
"""

from __future__ import annotations

import random
from collections import Counter

import numpy as np

from cxreport.data.cache import Cache
from cxreport.data.dataset import select_views
from cxreport.data.study import check_split
from cxreport.labels import CHEXPERT_LABELS
from cxreport.errors import InputError

BASELINES = ("constant", "random", "retrieval")
THUMB = 16


def train_vocabulary(cache: Cache, field: str = "findings", dataset: str = "iu") -> set[str]:
    """R2Gen's reference vocabulary (for its ``<unk>`` mapping) from a cache's training reports."""
    from cxreport.metrics.scoring import r2gen_vocabulary

    return r2gen_vocabulary([r[field] for r in _texts(cache.image_rows("train"), field)], dataset)


def _texts(rows: list[dict], field: str) -> list[dict]:
    return [r for r in rows if (r.get(field) or "").strip()]


def constant_report(train: list[dict], field: str) -> str:
    from cxreport.text.clean import clean_report

    counts = Counter(clean_report(r[field]) for r in train)
    best = max(counts.values())
    # The first training report (in cache order) whose cleaned form is the most frequent one.
    for r in train:
        if counts[clean_report(r[field])] == best:
            return r[field].strip()
    raise InputError("no training reports")  # pragma: no cover


def _thumbs(cache: Cache, rows: list[dict]) -> tuple[list[int], np.ndarray]:
    """(positions of rows with an image, standardised thumbnails N x THUMB^2)."""
    keep, vecs = [], []
    for i, r in enumerate(rows):
        if not r.get("image_index"):
            continue
        k = select_views(r.get("views", []), 1)[0]
        img = np.asarray(cache.images[r["image_index"][k]], dtype=np.float32)
        s = img.shape[0] // THUMB * THUMB
        t = img[:s, :s].reshape(THUMB, s // THUMB, THUMB, s // THUMB).mean((1, 3)).ravel()
        t = (t - t.mean()) / (t.std() + 1e-6)
        keep.append(i)
        vecs.append(t / np.sqrt(len(t)))
    return keep, (np.stack(vecs) if vecs else np.zeros((0, THUMB * THUMB), np.float32))


def _mesh_terms(row: dict) -> set[str]:
    mesh = str((row.get("extra") or {}).get("mesh") or "").lower()
    terms = set()
    for item in mesh.split(";"):
        parts = [p.strip() for p in item.split("/") if p.strip()]
        if parts:
            terms.add(parts[0])
            terms.add("/".join(parts))
    return terms


def _label_key(row: dict) -> tuple | None:
    labels = row.get("labels") or {}
    if not labels:
        return None
    return tuple(labels.get(k) for k in CHEXPERT_LABELS)


FALLBACKS = ("codes", "random")


def retrieval_reports(cache: Cache, train: list[dict], targets: list[dict], field: str, seed: int = 0,
                      fallback: str = "random"):
    """({study_id: text}, {study_id: method}) by the order described in the module docstring;
    ``fallback="random"`` skips the oracle-informed label/MeSH steps."""
    if fallback not in FALLBACKS:
        raise InputError(f"--retrieval-fallback {fallback!r}: choose one of {list(FALLBACKS)}")
    codes = fallback == "codes"
    rng = random.Random(seed)
    t_keep, t_vec = _thumbs(cache, train)
    q_keep, q_vec = _thumbs(cache, targets)
    by_image = {}
    if len(t_keep) and len(q_keep):
        sims = q_vec @ t_vec.T
        for qi, row in zip(q_keep, sims):
            by_image[qi] = t_keep[int(np.argmax(row))]
    train_labels = [_label_key(r) for r in train]
    train_mesh = [_mesh_terms(r) for r in train]
    texts, methods = {}, {}
    for i, r in enumerate(targets):
        sid = r["study_id"]
        if i in by_image:
            j, how = by_image[i], "image"
        elif codes and _label_key(r) is not None and any(k is not None for k in train_labels):
            key = _label_key(r)
            score = [sum(a == b for a, b in zip(key, k)) if k is not None else -1 for k in train_labels]
            best = max(score)
            j, how = rng.choice([n for n, s in enumerate(score) if s == best]), "labels (oracle)"
        elif codes and _mesh_terms(r) and any(train_mesh):
            q = _mesh_terms(r)
            score = [len(q & m) / len(q | m) if m else -1.0 for m in train_mesh]
            best = max(score)
            j, how = rng.choice([n for n, s in enumerate(score) if s == best]), "mesh (oracle)"
        else:
            j, how = rng.randrange(len(train)), "random"
        texts[sid], methods[sid] = train[j][field].strip(), how
    return texts, methods


def baseline_reports(cache: Cache | str, split: str = "val", field: str = "findings", seed: int = 0,
                     allow_test: bool = False, names=BASELINES, retrieval_fallback: str = "random") -> tuple[dict, dict, dict]:
    """(refs {id: text}, {baseline: {id: text}}, info) for the studies of ``split`` with a report."""
    check_split(split, allow_test)
    cache = cache if isinstance(cache, Cache) else Cache(cache)
    train = _texts(cache.image_rows("train"), field)
    targets = _texts(cache.image_rows(split), field)
    if not train:
        raise InputError(f"{cache.path}: no training studies with a {field!r} text to draw baselines from")
    if not targets:
        raise InputError(f"{cache.path}: no {split!r} studies with a {field!r} text to score")
    refs = {r["study_id"]: r[field].strip() for r in targets}
    out, info = {}, {"field": field, "split": split, "seed": seed, "train_reports": len(train), "studies": len(refs)}
    for name in names:
        if name == "constant":
            text = constant_report(train, field)
            out[name] = {sid: text for sid in refs}
            info["constant"] = {"text": text}
        elif name == "random":
            rng = random.Random(seed)
            out[name] = {sid: train[rng.randrange(len(train))][field].strip() for sid in refs}
        elif name == "retrieval":
            texts, methods = retrieval_reports(cache, train, targets, field, seed, retrieval_fallback)
            out[name] = texts
            counts = dict(Counter(methods.values()))
            info["retrieval"] = {"methods": counts, "per_study": methods,
                                 "note": _retrieval_note(counts, len(refs))}
        else:
            raise InputError(f"unknown baseline {name!r}; choose from {list(BASELINES)}")
    return refs, out, info


def _retrieval_note(counts: dict, n: int) -> str:
    img = counts.get("image", 0)
    if img == n:
        return "nearest neighbour by image thumbnail for every study"
    rest = ", ".join(f"{v} by {k}" for k, v in counts.items() if k != "image")
    note = (f"{img} of {n} studies matched by image (few studies here have images); {n - img} fall back to a "
            f"text-free method: {rest}.")
    if any("oracle" in k for k in counts):
        note += " Label/MeSH fallbacks use codes derived from the target report (oracle-informed)."
    return note
