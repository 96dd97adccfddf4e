"""Grad-CAM heatmaps: where in each view the finding head looked for a finding.

The encoder's last feature map (its tokens on the h x w grid) is the Grad-CAM layer: each channel
is weighted by the mean gradient of the finding's logit over the map, the weighted sum is
rectified and scaled to [0, 1], then upsampled onto the letterboxed film the model saw. The
gradient stops at the feature map, so frozen encoders work and no weights change.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import re
from pathlib import Path

import numpy as np

from cxreport.labels import VIEW_IDS

# A jet-like ramp (dark blue -> cyan -> yellow -> red); matplotlib stays unimported in the server.
_STOPS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
_COLOURS = np.array([[0, 0, 128], [0, 64, 255], [0, 255, 255], [255, 255, 0], [255, 0, 0]], dtype=np.float32)


def _grid_of(n_tokens: int, grid) -> tuple[tuple[int, int], int] | None:
    """(grid, number of leading non-grid tokens) for a token sequence; None when it is not a map."""
    if grid is not None and grid[0] * grid[1] == n_tokens:
        return tuple(grid), 0
    for skip in (0, 1):  # ViT-like: a square of patches, possibly after a CLS token
        side = math.isqrt(n_tokens - skip)
        if side * side == n_tokens - skip and side > 1:
            return (side, side), skip
    return None


def gradcam(model, images, image_mask, view_ids, label_indices: list[int]):
    """Grad-CAM maps for the given finding indices.

    Returns a float tensor B x V x len(label_indices) x h x w in [0, 1] (zeros for padded views),
    or None when the encoder's tokens are not a spatial map.
    """
    import torch

    captured = {}

    def hook(module, inputs, out):
        # A leaf copy of the map: gradients stop here, so frozen encoders need no grad.
        tokens = out.tokens.detach().requires_grad_(True)
        captured["tokens"], captured["grid"] = tokens, out.grid
        return dataclasses.replace(out, tokens=tokens)

    handle = model.encoder.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            tok, tok_mask = model.encode_images(images, image_mask, view_ids)
            logits = model.finding_logits(tok, tok_mask, view_ids)
            tokens = captured["tokens"]  # n_real_views x N x C
            layout = _grid_of(tokens.shape[1], captured["grid"])
            if layout is None:
                return None
            (gh, gw), skip = layout
            fmap = tokens[:, skip:]
            maps = []
            for j in label_indices:
                # Studies are independent in eval mode, so one backward serves the whole batch.
                (grad,) = torch.autograd.grad(logits[:, j].sum(), tokens, retain_graph=True)
                weights = grad[:, skip:].mean(1, keepdim=True)
                cam = torch.relu((fmap * weights).sum(-1)).detach()
                peak = cam.amax(1, keepdim=True)
                maps.append(torch.where(peak > 0, cam / peak.clamp_min(1e-12), cam))
    finally:
        handle.remove()
    b, v = image_mask.shape
    per_view = torch.stack(maps, 1).view(-1, len(label_indices), gh, gw)  # n_real x L x h x w
    out = per_view.new_zeros(b * v, len(label_indices), gh, gw)
    out[image_mask.reshape(-1)] = per_view
    return out.view(b, v, len(label_indices), gh, gw)


def colourise(cam: np.ndarray) -> np.ndarray:
    """h x w in [0, 1] -> h x w x 3 uint8 on the jet-like ramp."""
    c = np.clip(cam, 0, 1)
    return np.stack([np.interp(c, _STOPS, _COLOURS[:, k]) for k in range(3)], -1).astype(np.uint8)


BAR_WIDTH = 44  # the colour-bar panel to the right of each overlay


def overlay(gray: np.ndarray, cam: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Blend a heatmap onto a grayscale film (S x S) and put its colour bar on the right: an
    S x (S + BAR_WIDTH) x 3 image. Weak activations leave the film visible."""
    from PIL import Image

    size = gray.shape[:2]
    big = np.asarray(Image.fromarray(cam.astype(np.float32), mode="F").resize((size[1], size[0]),
                                                                               Image.Resampling.BILINEAR))
    big = np.clip(big, 0, 1)
    a = (alpha * big)[..., None]
    film = np.repeat(gray[..., None].astype(np.float32), 3, -1)
    blend = np.clip(film * (1 - a) + colourise(big).astype(np.float32) * a, 0, 255).astype(np.uint8)
    return np.concatenate([blend, colour_bar(size[0], alpha)], axis=1)


def colour_bar(height: int, alpha: float = 0.55) -> np.ndarray:
    """height x BAR_WIDTH x 3: the ramp from the map's maximum (top, "max") to zero (bottom, "0").
    Grad-CAM maps are scaled per map, so the scale is relative: "max" is that map's strongest spot."""
    from PIL import Image, ImageDraw

    panel = np.zeros((height, BAR_WIDTH, 3), np.uint8)
    top, bottom = 12, max(13, height - 12)
    ramp = np.linspace(1.0, 0.0, bottom - top)[:, None].repeat(10, 1)
    # The ramp as the overlay shows it: blended with alpha onto mid grey, so colours match the film.
    shown = colourise(ramp).astype(np.float32) * alpha + 128 * (1 - alpha)
    panel[top:bottom, 4:14] = np.clip(shown, 0, 255).astype(np.uint8)
    img = Image.fromarray(panel)
    draw = ImageDraw.Draw(img)
    draw.text((17, top - 4), "max", fill=(255, 255, 255))
    draw.text((17, bottom - 8), "0", fill=(255, 255, 255))
    return np.asarray(img)


def to_png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def choose_findings(probs: dict | None, labels: list[str], thresholds: dict, plan: dict | None = None) -> list[int]:
    """Positive findings (the plan's, else by threshold), most probable first; the single most
    probable one when none is positive. A not-assessed finding never gets a map."""
    if not probs:
        return []
    plan = plan or {}
    order = [j for j in sorted(range(len(labels)), key=lambda j: -probs[labels[j]])
             if plan.get(labels[j]) != "not_assessed" and thresholds[labels[j]] != float("inf")]
    positive = [j for j in order if (plan[labels[j]] == "positive" if labels[j] in plan
                                     else probs[labels[j]] >= thresholds[labels[j]])]
    return positive or order[:1]


def finding_heatmaps(pipeline, images, image_mask, view_ids, probs: list[dict | None], thresholds: dict,
                     films: list | None = None, plans: list[dict] | None = None):
    """Per study: [{finding, probability, positive, view, view_index, has_signal, overlay}], the
    overlay a uint8 S x (S + BAR_WIDTH) x 3 image with its colour bar.

    ``images`` is the model batch; ``films`` (per study, uint8 V x S x S letterboxed views) are
    what the overlays are drawn on, by default the model input itself. One per (finding, view)
    whose map has any signal; empty maps are left out."""
    labels = pipeline.labels
    chosen = [choose_findings(p, labels, thresholds, plans[i] if plans else None) for i, p in enumerate(probs)]
    wanted = sorted({j for c in chosen for j in c})
    out: list[list[dict]] = [[] for _ in probs]
    if not wanted:
        return out
    cams = gradcam(pipeline.model, images, image_mask, view_ids, wanted)
    if cams is None:
        return out
    cams, image_mask, view_ids = cams.cpu(), image_mask.cpu(), view_ids.cpu()
    names = {v: k for k, v in VIEW_IDS.items()}
    for b, picks in enumerate(chosen):
        for j in picks:
            col = wanted.index(j)
            for v in range(images.shape[1]):
                if not bool(image_mask[b, v]):
                    continue
                film = (np.asarray(films[b][v]) if films is not None
                        else (images[b, v, 0].cpu().numpy() * 255 + 0.5).astype(np.uint8))
                p = float(probs[b][labels[j]])
                cam = cams[b, v, col].numpy()
                if not cam.max() > 0:
                    # No region of this view raised the logit (e.g. a lateral film when the finding
                    # head reads only the frontal one): a blank overlay would say nothing.
                    continue
                state = plans[b][labels[j]] if plans else ("positive" if p >= thresholds[labels[j]] else "negative")
                out[b].append({"finding": labels[j], "probability": round(p, 4), "state": state,
                               "positive": state == "positive",
                               "view": names.get(int(view_ids[b, v]), "unknown"), "view_index": v,
                               "has_signal": True, "overlay": overlay(film, cam)})
    return out


def write_heatmaps(maps: list[dict], folder: Path, force: bool) -> list[dict]:
    """Overlay PNGs named <finding>_<view>_<n>.png; returns the maps with ``file`` instead of pixels."""
    from cxreport import fsio
    from cxreport.errors import InputError

    out = []
    for h in maps:
        name = f"{slug(h['finding'])}_{h['view']}_{h['view_index'] + 1}.png"
        path = folder / name
        if path.exists() and not force:
            raise InputError(f"{path} exists: pass --force to overwrite, or choose another --heatmaps folder")
        fsio.atomic_write_bytes(path, to_png(h["overlay"]))
        out.append({k: v for k, v in h.items() if k != "overlay"} | {"file": str(path)})
    return out


def slug(text: str) -> str:
    """``text`` as a safe file-name part: runs of other characters become '_'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "x"


def check_heatmap_folder(folder: Path, force: bool) -> None:
    """Before any inference: the overlays' folder can be written and holds no overlays of an
    earlier run (unless ``force``), so a run never fails after the model has done its work."""
    from cxreport.errors import InputError

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--heatmaps {folder}: exists and is not a folder")
    old = sorted(folder.glob("*.png")) if folder.is_dir() else []
    if old and not force:
        raise InputError(f"--heatmaps {folder} already holds {len(old)} overlay PNG(s) (e.g. {old[0].name}): "
                         "pass --force to overwrite, or choose another folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--heatmaps {folder}: cannot create it ({exc.strerror})") from None
    if not os.access(folder, os.W_OK):
        raise InputError(f"--heatmaps {folder}: not writable")
