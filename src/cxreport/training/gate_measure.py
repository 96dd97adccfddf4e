"""`cxreport fit-gate --measure`: how the gate treats real films (test splits, once) and
non-radiographs (``training.non_radiographs``): acceptance, refusal, rotation and view figures."""

from __future__ import annotations

import numpy as np

from cxreport.data.images import letterbox
from cxreport.inference.gate import NotARadiograph, colour_fraction
from cxreport.training.films import gate_films


def _refused(gate, gray, colour, name) -> bool:
    try:
        gate.check_pixels(gray, name, colour)
    except NotARadiograph:
        return True
    return False


def encode(encoder, grays: list[np.ndarray], size: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    out = []
    with torch.no_grad():
        for i in range(0, len(grays), 16):
            x = torch.from_numpy(np.stack(grays[i:i + 16])).unsqueeze(1).float().div_(255.0)
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            out.append(encoder(x).pooled.float().numpy())
    return np.concatenate(out)


def measure_films(gate, caches: dict, feats: dict) -> dict:
    """Acceptance of each source's test films (every split of a source without a test split, as
    IU here), the populations they are placed in, rotation and view figures."""
    res = {"acceptance": {}, "rotation": {}, "view": {}}
    for n, c in caches.items():
        splits = ("test",) if any(r["split"] == "test" and r.get("image_index") for r in c.rows) else ("train", "val")
        idx, views, _ = gate_films(c, splits, False)
        imgs = np.asarray(c.images[idx])
        ok_pix = np.array([not _refused(gate, g, 0.0, "x") for g in imgs])
        # as the pipeline does: laterals are never turned (the check learned from frontal films)
        up = np.array([v == "lateral" or gate.orientation(g)[0] == 0 or gate.orientation(g)[1] < gate.cfg.orient_min_prob
                       for g, v in zip(imgs, views)])
        dist, group = gate.nearest_group(feats[n][idx])
        ok_ood = dist <= gate.cfg.ood_threshold
        res["acceptance"][n] = {"films": int(len(idx)), "splits": list(splits), "accepted": int((ok_pix & ok_ood).sum()),
                                "rate": round(float((ok_pix & ok_ood).mean()), 4),
                                "refused_by_pixels": int((~ok_pix).sum()), "refused_by_ood": int((ok_pix & ~ok_ood).sum()),
                                "called_rotated": int((~up).sum()),
                                "placed": {str(g): group.count(g) for g in dict.fromkeys(group)}}
        guess = np.array([gate.guess_view(g) for g in imgs])
        truth = np.array(views)
        known = truth != "unknown"
        res["view"][n] = {"films": int(known.sum()), "correct": int((guess[known] == truth[known]).sum()),
                          "laterals": int((truth == "lateral").sum()),
                          "laterals_correct": int(((guess == "lateral") & (truth == "lateral")).sum())}
        if n == next(iter(caches)):
            for k in (1, 2, 3):
                pred = np.array([gate.orientation(np.ascontiguousarray(np.rot90(g, k)))[0] for g in imgs])
                res["rotation"][f"{90 * k} degrees"] = {"source": n, "films": int(len(imgs)), "correct": int((pred == k).sum())}
    return res


def measure_non_radiographs(gate, encoder, size: int) -> dict:
    """Refusal of the non-radiograph set, by kind, and how far beyond the limit the nearest one
    the pixel checks let through lies."""
    from cxreport.training.non_radiographs import non_radiographs

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
    res: dict = {}
    if grays:
        d = gate.ood_distance(encode(encoder, grays, size))
        for (kind, name), di in zip(names, d):
            if di > gate.cfg.ood_threshold:
                kinds[kind]["refused_ood"] += 1
            else:
                kinds[kind]["accepted"].append(f"{name} ({di:.2f})")
        res["nearest_over_limit"] = round(float(d.min() / gate.cfg.ood_threshold), 3)
    total = sum(k["images"] for k in kinds.values())
    refused = sum(k["refused_pixels"] + k["refused_ood"] for k in kinds.values())
    return {"images": total, "refused": refused, "rate": round(refused / max(total, 1), 4), "by_kind": kinds, **res}
