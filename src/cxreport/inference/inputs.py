"""What the pipeline accepts as an image (a file path, the file's bytes, a numpy array) turned into
one grey film, with the facts the input gate needs; and the view names a caller may give."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cxreport.data.images import colour_fraction, load_image_facts, to_uint8
from cxreport.errors import ImageError, InputError
from cxreport.labels import VIEW_IDS, view_group


def view_name(view: str | None, index: int) -> str:
    if view is None or str(view).strip() == "":
        # Without a label: the first image is the frontal film, the second the lateral.
        return "frontal" if index == 0 else ("lateral" if index == 1 else "unknown")
    v = str(view).strip().lower()
    if v in VIEW_IDS:
        return v
    group = view_group(v)
    if group == "unknown" and v not in ("unknown", "?"):
        raise InputError(f"view {view!r}: use frontal, lateral (or PA/AP/LL/LATERAL) or unknown")
    return group


def as_gray(item, label: str, max_pixels: int, min_side: int, draft: int) -> tuple[np.ndarray, tuple, str, dict]:
    """Any accepted input -> (uint8 H x W, original (H, W), where it came from, facts for the
    gate: ``colour`` share and DICOM ``view``).

    Files and bytes decode like the cache decoded them (same limits, same JPEG draft size);
    ``label`` names an in-memory image in error messages."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        data = bytes(item)
        if not data:
            raise ImageError(label, "is empty (0 bytes)", "send the image file's contents")
        gray, hw, facts = load_image_facts(label, data=data, max_pixels=max_pixels,
                                           min_side=min_side, draft_size=draft)
        return gray, hw, "bytes", facts
    if isinstance(item, (str, os.PathLike)):
        gray, hw, facts = load_image_facts(item, max_pixels=max_pixels, min_side=min_side, draft_size=draft)
        return gray, hw, Path(item).name, facts
    if isinstance(item, np.ndarray):
        arr = item
        colour = colour_fraction(to_uint8(arr[..., :3])) if arr.ndim == 3 and arr.shape[-1] >= 3 else 0.0
        if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4):
            arr = arr[..., :3].mean(-1) if arr.shape[-1] > 1 else arr[..., 0]
        if arr.ndim != 2:
            raise ImageError(label, f"array of shape {item.shape}", "pass H x W or H x W x 3")
        h, w = arr.shape
        if h * w > max_pixels or min(h, w) < min_side:
            raise ImageError(label, f"array of {w}x{h} pixels is outside "
                             f"{min_side} px per side .. {max_pixels:,} pixels")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ImageError(label, "array has NaN or infinite values")
        return to_uint8(np.ascontiguousarray(arr)), (h, w), "array", {"colour": colour, "view": None}
    raise InputError(f"{label}: unsupported input {type(item).__name__} "
                     "(give a file path, the file's bytes or a numpy array)")
