"""Fit the input gate's learned parts beside a checkpoint, and measure the gate.

    python scripts/fit_gate.py --config configs/default-gate.json --model runs/default-findings-head/best
    python scripts/fit_gate.py --config configs/default-gate.json --model ... --measure   # test splits, once
    python scripts/fit_gate.py --config configs/default-gate.json --model src/cxreport/weights/default \
        --polarity-only [--measure]   # add (or refit) only the inverted-greys check of an existing gate

Out-of-distribution score: PCA-Mahalanobis of pooled encoder features, one model per group of
sources (``"group"`` in a source, default its name: adult NIH + IU films, pediatric Kermany films),
fitted on the group's train+val films. Each group's limit is a quantile (``ood_quantile``) of its
films' OUT-OF-FOLD distances (patient-wise folds: a film is scored by a model that never saw its
patient), so the limit is set on as many held-out films as there are films. Orientation:
self-supervised on rotated training films. Inverted greys: self-supervised on the training films
without their letterbox borders and their negatives, at every rotation (``polarity_films_per_source``
films per source); turned back at ``invert_min_prob`` (0.5: on validation films the polarity
probability of upright films stays below 0.3 and of negatives above 0.7). View: mirror-symmetry threshold from validation
frontal films and the training laterals (IU). ``--measure`` writes OUT/gate_scores.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cxreport.checkpoint import load_checkpoint
from cxreport.data.cache import Cache
from cxreport.data.images import letterbox, letterbox_box
from cxreport.labels import view_group
from cxreport.fsio import atomic_write_json
from cxreport.inference.gate import (Gate, GateConfig, GateParams, NotARadiograph, colour_fraction, fit_ood,
                                     fit_orientation, fit_polarity, mirror_symmetry, ood_input)
from cxreport.training.feature_cache import feature_path, pooled_features


def films(cache: Cache, splits, frontal_only=True, patients=False):
    """(image indices, view groups[, patient ids]) of the cache's images in ``splits``."""
    idx, views, pats = [], [], []
    for r in cache.rows:
        if r["split"] in splits:
            for i, v in zip(r.get("image_index") or [], r.get("views") or []):
                if not frontal_only or view_group(v) != "lateral":
                    idx.append(i)
                    views.append(view_group(v))
                    pats.append(f"{r.get('source')}:{r.get('patient_id') or r['study_id']}")
    return (np.array(idx, dtype=int), views) + ((pats,) if patients else ())


def fit_groups(cfg: dict, caches: dict, feats: dict, gc: GateConfig):
    """{group: (mean, basis, var, resid, limit, n films)}: each group's OOD model on its train+val films
    and its limit, the ``ood_quantile`` of patient-wise out-of-fold distances."""
    from cxreport.training.head_fit import patient_folds

    groups: dict[str, list[str]] = {}
    for s in cfg["sources"]:
        groups.setdefault(s.get("group", s["name"]), []).append(s["name"])
    out = {}
    for g, names in groups.items():
        parts = [films(caches[n], ("train", "val"), False, patients=True) for n in names]
        x = ood_input(np.concatenate([feats[n][p[0]] for n, p in zip(names, parts)]), gc.ood_features)
        folds = patient_folds(sum((p[2] for p in parts), []), int(cfg.get("ood_folds", 5)))
        oof = np.zeros(len(x), dtype=np.float32)
        for f in np.unique(folds):
            held = folds == f
            one = GateParams(config=GateConfig(), orient_w=np.zeros(1), orient_b=np.zeros(1),
                             **dict(zip(("ood_mean", "ood_basis", "ood_var", "ood_resid_var"),
                                        fit_ood(x[~held], gc.ood_components))))
            oof[held] = Gate(one).ood_distance(x[held])
        limit = float(np.quantile(oof, cfg.get("ood_quantile", 0.995)) * cfg.get("ood_margin", 1.0))
        out[g] = (*fit_ood(x, gc.ood_components), limit, len(x))
    return out


def film_crops(cache: Cache, idx) -> list[np.ndarray]:
    """The cache's letterboxed images ``idx`` without their black borders (the film itself)."""
    shapes = {}
    with open(Path(cache.path) / "images.jsonl", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            shapes[r["index"]] = (r["orig_height"], r["orig_width"])
    out = []
    for i in idx:
        g = np.asarray(cache.images[i])
        top, left, h, w = letterbox_box(*shapes[int(i)], g.shape[0])
        out.append(g[top:top + h, left:left + w])
    return out


def fit_polarity_check(cfg: dict, caches: dict, gc: GateConfig, params: GateParams) -> dict:
    """Fit the inverted-greys check on the training films (frontal and lateral) of the
    ``polarity_sources`` (default: all) into ``params``; its figures per source on the validation
    films and their negatives (all films of a source it was not fitted on)."""
    rng = np.random.default_rng(0)
    fit_on = cfg.get("polarity_sources") or list(caches)
    crops = []
    for n in fit_on:
        idx = films(caches[n], ("train",), False)[0]
        take = np.sort(rng.choice(idx, min(len(idx), int(cfg.get("polarity_films_per_source", 1500))), replace=False))
        crops += film_crops(caches[n], take)
    params.invert_w, params.invert_b = fit_polarity(crops, gc.thumb)
    return {n: {"splits": "val" if n in fit_on else "all (not fitted on)",
                **polarity_figures(Gate(params), film_crops(c, films(c, ("val",) if n in fit_on else
                                                                      ("train", "val", "test"), False)[0]))}
            for n, c in caches.items()}


def polarity_figures(gate: Gate, crops: list[np.ndarray]) -> dict:
    """How many upright films the check would invert (must be 0) and how many negatives it catches."""
    up = np.array([gate.inverted_prob(f) for f in crops])
    neg = np.array([gate.inverted_prob(255 - f) for f in crops])
    limit = gate.cfg.invert_min_prob
    return {"films": len(crops), "upright_flagged": int((up >= limit).sum()),
            "negatives_caught": int((neg >= limit).sum()),
            "upright_max_prob": round(float(up.max()), 3) if len(up) else None,
            "negative_min_prob": round(float(neg.min()), 3) if len(neg) else None}


def polarity_only(cfg: dict, model_dir: Path, measure: bool) -> None:
    """Add the inverted-greys check to the gate beside ``model_dir``, leaving its other parts as
    they are; ``measure``: its figures on the test films too (NIH and Kermany; IU has none)."""
    params = GateParams.load(model_dir)
    if params is None:
        raise SystemExit(f"{model_dir}: no gate.json/gate.safetensors to add the check to")
    caches = {s["name"]: Cache(s["cache"]) for s in cfg["sources"]}
    val = fit_polarity_check(cfg, caches, params.config, params)
    params.config.metrics["polarity_val"] = val
    params.save(model_dir)
    print(json.dumps({"polarity_val": val}, indent=1))
    if measure:
        test = {n: polarity_figures(Gate(params), film_crops(c, films(c, ("test",), False)[0]))
                for n, c in caches.items() if films(c, ("test",), False)[0].size}
        print(json.dumps({"polarity_test": test}, indent=1))


@torch.no_grad()
def encode(encoder, grays: list[np.ndarray], size: int) -> np.ndarray:
    out = []
    for i in range(0, len(grays), 16):
        x = torch.from_numpy(np.stack(grays[i:i + 16])).unsqueeze(1).float().div_(255.0)
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out.append(encoder(x).pooled.float().numpy())
    return np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--model", required=True, help="checkpoint folder; the gate files are written into it")
    ap.add_argument("--measure", action="store_true", help="acceptance/rejection/rotation/view figures on test data")
    ap.add_argument("--polarity-only", action="store_true",
                    help="fit only the inverted-greys check into the existing gate beside --model")
    args = ap.parse_args()
    cfg = json.loads(Path(args.config).read_text())
    if args.polarity_only:
        return polarity_only(cfg, Path(args.model), args.measure)
    model, _, _ = load_checkpoint(args.model)
    enc, size = model.encoder.eval(), model.cfg.preprocess.image_size
    caches = {s["name"]: Cache(s["cache"]) for s in cfg["sources"]}
    feats = {n: pooled_features(enc, c, feature_path(cfg["features"], c, model), size) for n, c in caches.items()}
    gc = GateConfig(**cfg.get("gate", {}))
    groups = fit_groups(cfg, caches, feats, gc)
    rng = np.random.default_rng(0)
    upright = []
    for n, c in caches.items():
        idx = films(c, ("train", "val"))[0]
        take = rng.choice(idx, min(len(idx), int(cfg.get("orientation_films_per_source", 1500))), replace=False)
        upright.append(np.asarray(c.images[np.sort(take)]))
    w, b = fit_orientation(np.concatenate(upright), gc.thumb)
    stack = [np.stack([groups[g][i] for g in groups]) for i in range(5)]
    params = GateParams(config=gc, orient_w=w, orient_b=b, ood_mean=stack[0], ood_basis=stack[1], ood_var=stack[2],
                        ood_resid_var=stack[3], ood_scale=stack[4])
    gate = Gate(params)
    gc.ood_groups, gc.ood_threshold = list(groups), 1.0  # distances come divided by each group's limit
    # view: symmetry of validation frontal films vs the laterals we have (IU train)
    sym_front = np.array([mirror_symmetry(np.asarray(c.images[i])) for c in caches.values()
                          for i in films(c, ("val",))[0]])
    lat = [(c, i) for c in caches.values() for i, v in zip(*films(c, ("train", "val"), False)) if v == "lateral"]
    sym_lat = np.array([mirror_symmetry(np.asarray(c.images[i])) for c, i in lat])
    gc.symmetry_threshold = float(np.quantile(sym_front, cfg.get("view_frontal_quantile", 0.005)))
    # Keep the image check only if it tells the laterals we have from frontal films.
    gc.view_check = bool(len(sym_lat) and (sym_lat < gc.symmetry_threshold).mean() >= 0.9)
    gc.metrics = {"ood_groups": {g: {"films": v[5], "limit": round(v[4], 4)} for g, v in groups.items()},
                  "symmetry_val_frontal_q": {q: round(float(np.quantile(sym_front, q)), 3) for q in (0.005, 0.05, 0.5)},
                  "symmetry_laterals": sorted(round(float(s), 3) for s in sym_lat),
                  "polarity_val": fit_polarity_check(cfg, caches, gc, params)}
    params.save(args.model)
    print(json.dumps({"symmetry_threshold": gc.symmetry_threshold, **gc.metrics}, indent=1))
    if args.measure:
        measure(cfg, gate, caches, feats, enc, size, Path(args.model))


def _refused(gate, gray, colour, name):
    try:
        gate.check_pixels(gray, name, colour)
    except NotARadiograph:
        return True
    return False


def measure(cfg, gate: Gate, caches, feats, enc, size, out: Path) -> None:
    res = {"acceptance": {}, "rejection": {}, "rotation": {}, "view": {}}
    for n, c in caches.items():
        idx, views = films(c, ("test",) if n != "iu" else ("train", "val", "test"), False)
        imgs = np.asarray(c.images[idx])
        ok_pix = np.array([not _refused(gate, g, 0.0, "x") for g in imgs])
        # as the pipeline does: laterals are never turned (the check learned from frontal films)
        up = np.array([v == "lateral" or gate.orientation(g)[0] == 0 or gate.orientation(g)[1] < gate.cfg.orient_min_prob
                       for g, v in zip(imgs, views)])
        ok_ood = gate.ood_distance(feats[n][idx]) <= gate.cfg.ood_threshold
        res["acceptance"][n] = {"films": int(len(idx)), "accepted": int((ok_pix & ok_ood).sum()),
                                "rate": round(float((ok_pix & ok_ood).mean()), 4),
                                "refused_by_pixels": int((~ok_pix).sum()), "refused_by_ood": int((ok_pix & ~ok_ood).sum()),
                                "called_rotated": int((~up).sum())}
        guess = np.array([gate.guess_view(g) for g in imgs])
        truth = np.array(views)
        known = truth != "unknown"
        res["view"][n] = {"films": int(known.sum()), "correct": int((guess[known] == truth[known]).sum()),
                          "laterals": int((truth == "lateral").sum()),
                          "laterals_correct": int(((guess == "lateral") & (truth == "lateral")).sum())}
        if n == "nih":
            for k in (1, 2, 3):
                pred = np.array([gate.orientation(np.ascontiguousarray(np.rot90(g, k)))[0] for g in imgs])
                res["rotation"][f"{90 * k} degrees"] = {"films": int(len(imgs)), "correct": int((pred == k).sum())}
    sys.path.insert(0, str(Path(__file__).parent))
    from non_radiographs import non_radiographs

    kinds: dict = {}
    grays, names = [], []
    for kind, name, img in non_radiographs():
        colour = colour_fraction(img) if img.ndim == 3 else 0.0
        g = img if img.ndim == 2 else img.mean(-1).astype(np.uint8)
        lb = letterbox(g, 256)
        k = kinds.setdefault(kind, {"images": 0, "refused_pixels": 0, "refused_ood": 0, "accepted": []})
        k["images"] += 1
        if _refused(gate, lb, colour, name):
            k["refused_pixels"] += 1
        else:
            grays.append(lb)
            names.append((kind, name))
    if grays:
        d = gate.ood_distance(encode(enc, grays, size))
        for (kind, name), di in zip(names, d):
            if di > gate.cfg.ood_threshold:
                kinds[kind]["refused_ood"] += 1
            else:
                kinds[kind]["accepted"].append(f"{name} ({di:.2f})")
    total = sum(k["images"] for k in kinds.values())
    refused = sum(k["refused_pixels"] + k["refused_ood"] for k in kinds.values())
    res["rejection"] = {"images": total, "refused": refused, "rate": round(refused / total, 4), "by_kind": kinds}
    if grays:  # how far the closest non-radiograph the pixel checks let through lies beyond the limit
        res["rejection"]["nearest_over_limit"] = round(float(d.min() / gate.cfg.ood_threshold), 3)
    atomic_write_json(out / "gate_scores.json", res)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
