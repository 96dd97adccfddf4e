"""Read a chest X-ray (PNG/JPEG 8/16-bit, DICOM) into a uint8 grayscale array, safely.

Safety first: the declared size is checked before any pixel is decoded (a 30000x30000 PNG header
must not allocate 900 MB), truncated files fail instead of returning grey padding, and every error
names the file. Images are never flipped: left and right matter on a chest film.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

from cxreport.errors import ImageError, require

# Radiographs are large (MIMIC DICOMs reach ~4k x 4k = 16 MP); anything far past that is hostile.
MAX_PIXELS = 80_000_000
MIN_SIDE = 32
DICOM_SUFFIXES = {".dcm", ".dicom"}

# Never let PIL fill truncated files with grey; we want the error.
ImageFile.LOAD_TRUNCATED_IMAGES = False


def _check_size(path, width: int, height: int, max_pixels: int, min_side: int) -> None:
    if width * height > max_pixels:
        raise ImageError(
            path,
            f"declared size {width}x{height} ({width * height:,} pixels) exceeds the limit of {max_pixels:,}",
            "downscale the image, or raise max_pixels if it is a genuine radiograph",
        )
    if min(width, height) < min_side:
        raise ImageError(path, f"image is only {width}x{height} pixels", f"need at least {min_side} px per side")


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Min-max scale any integer/float array to uint8 (16-bit PNGs, DICOM after LUTs)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype in (np.uint16, np.int16, np.int32) and arr.size > 65536:
        # A lookup table over the value range beats float arithmetic on 4-16 MP images.
        lo, hi = int(arr.min()), int(arr.max())
        if hi <= lo:
            return np.zeros(arr.shape, dtype=np.uint8)
        if hi - lo < 1 << 17:
            lut = np.clip((np.arange(lo, hi + 1, dtype=np.float32) - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255)
            return lut.astype(np.uint8)[arr.astype(np.int64, copy=False) - lo if lo else arr]
    a = arr.astype(np.float32)
    lo, hi = float(np.min(a)), float(np.max(a))
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.uint8)
    return np.clip((a - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)


def _pil_to_gray(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return to_uint8(np.asarray(im))
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Composite on black: transparent margins in exported X-rays are background, not film.
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
        im = Image.alpha_composite(bg, im)
    if im.mode != "L":
        im = im.convert("L")
    return np.asarray(im)


def open_pil(path, data: bytes | None = None, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE,
             draft_size: int | None = None) -> Image.Image:
    """Open and fully decode a PNG/JPEG with the safety checks; ``draft_size`` speeds up JPEGs."""
    src = io.BytesIO(data) if data is not None else path
    if max_pixels > (Image.MAX_IMAGE_PIXELS or max_pixels):
        # Pillow's own bomb limit (89.5 MP) would refuse what ``max_pixels`` allows: raise it to ours,
        # never lower it; `_check_size` enforces ours on the declared size before any decoding.
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(src)
            _check_size(path, im.width, im.height, max_pixels, min_side)
            orig_size, orig_mode = im.size, im.mode
            if draft_size and im.format == "JPEG":
                # DCT-domain downscaling: decodes a 2k JPEG at 1/8 the cost; never below draft_size.
                im.draft("L", (draft_size, draft_size))
            im.load()
            im.info["orig_size"], im.info["orig_mode"] = orig_size, orig_mode
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(path, "file not found", "check the path or the dataset root") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(path, f"refused as a decompression bomb ({exc})") from None
    except Image.UnidentifiedImageError:
        raise ImageError(path, "not a readable image (PNG, JPEG or DICOM expected)",
                         "the file may be corrupt or of another type") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(path, f"corrupt or truncated image ({exc})", "re-download or re-export the file") from None
    return im


def _read_dicom(path, data: bytes | None, max_pixels: int, min_side: int) -> np.ndarray:
    pydicom = require("pydicom", "dicom", "reading DICOM files")
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data) if data is not None else path)
        rows, cols = int(ds.Rows), int(ds.Columns)
    except FileNotFoundError:
        raise ImageError(path, "file not found", "check the path or the dataset root") from None
    except Exception as exc:  # pydicom raises many types for bad files
        raise ImageError(path, f"not a readable DICOM file ({exc})") from None
    _check_size(path, cols, rows, max_pixels, min_side)
    try:
        arr = ds.pixel_array
    except Exception as exc:
        raise ImageError(path, f"cannot decode DICOM pixel data ({exc})",
                         "compressed transfer syntaxes may need pylibjpeg or gdcm installed") from None
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and ds.get("SamplesPerPixel", 1) > 1:
        arr = arr[..., :3].mean(axis=-1)
    elif arr.ndim == 3:  # multi-frame: take the first frame
        arr = arr[0]
    # Rescale slope/intercept first, then the VOI window the modality chose for display.
    arr = apply_modality_lut(arr, ds)
    arr = apply_voi_lut(arr, ds, index=0)
    out = to_uint8(np.asarray(arr))
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        out = 255 - out  # MONOCHROME1 stores bone dark; flip intensities (never the geometry)
    return out, dicom_view(ds)


def dicom_view(ds) -> str | None:
    """The view a DICOM file declares: ViewPosition (PA, AP, LL, LATERAL...), else the code
    meaning of ViewCodeSequence ("postero-anterior", "left lateral"...); None when absent."""
    vp = str(ds.get("ViewPosition", "") or "").strip()
    if vp:
        return vp
    seq = ds.get("ViewCodeSequence")
    if seq:
        meaning = str(getattr(seq[0], "CodeMeaning", "") or "").strip().lower()
        if "lateral" in meaning:
            return "LATERAL"
        if "anterior" in meaning or "posterior" in meaning:
            return "PA" if meaning.startswith("postero") else "AP"
    return None


def colour_fraction(rgb: np.ndarray, delta: int = 40) -> float:
    """Share of pixels whose channels differ by more than ``delta`` (H x W x 3 uint8; sampled on a
    grid of at most 128 x 128). A chest film, even a tinted scan of one, has next to none."""
    if rgb.ndim != 3 or rgb.shape[-1] < 3:
        return 0.0
    step = max(1, max(rgb.shape[:2]) // 128)
    c = rgb[::step, ::step, :3].astype(np.int16)
    return float(((c.max(-1) - c.min(-1)) > delta).mean())


def _pil_colour(im: Image.Image) -> float:
    if im.mode in ("L", "LA", "1", "I", "F", "I;16", "I;16B", "I;16L"):
        return 0.0
    step = max(1, max(im.size) // 128)
    small = im.resize((max(1, im.width // step), max(1, im.height // step)), Image.NEAREST)
    return colour_fraction(np.asarray(small.convert("RGB")))


def is_dicom(path, data: bytes | None = None) -> bool:
    if Path(str(path)).suffix.lower() in DICOM_SUFFIXES:
        return True
    head = data[:132] if data is not None else None
    if head is None:
        try:
            with open(path, "rb") as fh:
                head = fh.read(132)
        except OSError:
            return False
    return len(head) >= 132 and head[128:132] == b"DICM"


def load_image_facts(path, data: bytes | None = None, max_pixels: int = MAX_PIXELS,
                     min_side: int = MIN_SIDE, draft_size: int | None = None):
    """(gray uint8, original (height, width), facts): ``facts`` holds ``colour`` (share of strongly
    coloured pixels) and ``view`` (what a DICOM file declares, else None) for the input gate."""
    if is_dicom(path, data):
        arr, view = _read_dicom(path, data, max_pixels, min_side)
        return arr, arr.shape, {"colour": 0.0, "view": view}
    im = open_pil(path, data, max_pixels, min_side, draft_size)
    w, h = im.info.get("orig_size", im.size)
    colour = _pil_colour(im)
    if im.mode == "L" and im.info.get("orig_mode") in ("RGB", "YCbCr", "CMYK"):
        # A colour JPEG decoded straight to grey (draft mode): look at its colour at 1/8 scale.
        small = open_pil(path, data, max_pixels, min_side)
        small.draft("RGB", (64, 64))
        colour = _pil_colour(small)
    return _pil_to_gray(im), (h, w), {"colour": colour, "view": None}


def load_image_with_size(path, data: bytes | None = None, max_pixels: int = MAX_PIXELS,
                         min_side: int = MIN_SIDE, draft_size: int | None = None):
    """Like `load_image`, also returning the original (height, width) before any draft scaling."""
    gray, hw, _ = load_image_facts(path, data, max_pixels, min_side, draft_size)
    return gray, hw


def load_image(path, data: bytes | None = None, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE,
               draft_size: int | None = None) -> np.ndarray:
    """Return the image at ``path`` (or in ``data``) as a 2-D uint8 grayscale array."""
    return load_image_with_size(path, data, max_pixels, min_side, draft_size)[0]


def letterbox(gray: np.ndarray, size: int) -> np.ndarray:
    """Resize keeping the aspect ratio so the longer side is ``size``, pad to a centred square.

    Padding (not cropping, not squashing) keeps every part of the film and the true proportions
    of the heart and lungs; the model sees black borders, as on many real exports.
    """
    h, w = gray.shape
    top, left, nh, nw = letterbox_box(h, w, size)
    im = Image.fromarray(gray)
    if (nh, nw) != (h, w):
        # reducing_gap applies a cheap box reduction first: fast on 2-4k inputs, same quality.
        im = im.resize((nw, nh), Image.Resampling.BILINEAR if max(h, w) > size else Image.Resampling.BICUBIC,
                       reducing_gap=3.0)
    out = np.zeros((size, size), dtype=np.uint8)
    out[top:top + nh, left:left + nw] = np.asarray(im)
    return out


def letterbox_box(h: int, w: int, size: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of an h x w film inside its ``size`` letterbox: the film
    without its padding, for checks that must not see the black borders."""
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    return (size - nh) // 2, (size - nw) // 2, nh, nw


def load_resized(path, size: int, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE) -> tuple[np.ndarray, tuple[int, int]]:
    """Load and letterbox to ``size``; also return the original (height, width)."""
    gray, orig = load_image_with_size(path, max_pixels=max_pixels, min_side=min_side, draft_size=size)
    return letterbox(gray, size), orig
