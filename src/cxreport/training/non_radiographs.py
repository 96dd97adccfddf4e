"""Images that are not chest radiographs, for measuring the input gate: photos that installed
packages ship (scikit-image's data, matplotlib's sample data), rendered text, noise, gradients,
constant images and synthetic colour patterns, plus crops and grey versions of the photos.

    from cxreport.training.non_radiographs import non_radiographs
    for kind, name, array in non_radiographs(): ...   # uint8 H x W or H x W x 3
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


def _photos() -> list[tuple[str, np.ndarray]]:
    out = []
    try:
        import skimage.data as sd

        for name in ("astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "moon", "page", "text", "horse",
                     "clock", "immunohistochemistry", "hubble_deep_field", "logo", "retina", "cat", "colorwheel",
                     "grass", "gravel", "brick", "rough_wall", "microaneurysms", "motorcycle_left", "checkerboard"):
            try:
                img = getattr(sd, name)()
            except Exception:  # some need a download (pooch); they are skipped offline
                continue
            out.append((f"skimage:{name}", _u8(img)))
    except ImportError:
        pass
    import matplotlib

    sample = Path(matplotlib.get_data_path()) / "sample_data"
    from PIL import Image

    for f in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png"):
        if (sample / f).is_file():
            out.append((f"matplotlib:{f}", _u8(np.asarray(Image.open(sample / f).convert("RGB")))))
    if (sample / "s1045.ima.gz").is_file():  # an MRI slice: grey, medical, not a chest film
        raw = np.frombuffer(gzip.open(sample / "s1045.ima.gz").read(), np.uint16).reshape(256, 256)
        out.append(("matplotlib:mri_s1045", _u8(raw)))
    for f in ("jacksboro_fault_dem.npz", "topobathy.npz"):
        if (sample / f).is_file():
            z = np.load(sample / f)
            arr = z[z.files[0]]
            if arr.ndim == 2:
                out.append((f"matplotlib:{f}", _u8(arr)))
    return out


def _u8(a) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        a = (a - a.min()) / max(1e-9, a.max() - a.min()) * 255
        a = a.astype(np.uint8)
    if a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]
    return a


def rendered_text(rng, size=(512, 400)) -> np.ndarray:
    from PIL import Image, ImageDraw

    im = Image.new("L", size, int(rng.integers(200, 256)))
    d = ImageDraw.Draw(im)
    words = "patient report chest radiograph findings impression normal heart size lungs clear".split()
    y = 10
    while y < size[1] - 20:
        d.text((10, y), " ".join(rng.choice(words, 8)), fill=int(rng.integers(0, 60)))
        y += int(rng.integers(12, 24))
    return np.asarray(im)


def non_radiographs(seed: int = 0, crops_per_photo: int = 4):
    """Yield (kind, name, uint8 image) for every non-radiograph of the set."""
    rng = np.random.default_rng(seed)
    for name, img in _photos():
        yield "photo", name, img
        grey = img if img.ndim == 2 else img.mean(-1).astype(np.uint8)
        if img.ndim == 3:
            yield "grey photo", name + ":grey", grey
        h, w = grey.shape
        for c in range(crops_per_photo):
            ch, cw = int(h * rng.uniform(0.5, 0.9)), int(w * rng.uniform(0.5, 0.9))
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            crop = img[y:y + ch, x:x + cw]
            yield ("photo crop" if img.ndim == 3 else "grey photo crop"), f"{name}:crop{c}", crop
    for i in range(40):
        yield "document", f"text{i}", rendered_text(rng)
    for i in range(15):
        yield "noise", f"uniform{i}", rng.integers(0, 256, (300, 300), dtype=np.uint8)
        yield "noise", f"gaussian{i}", np.clip(rng.normal(128, 40, (300, 300)), 0, 255).astype(np.uint8)
        yield "noise", f"colour{i}", rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:300, 0:300] / 299.0
    for i in range(15):
        a = rng.uniform(0, 2 * np.pi)
        lin = (np.cos(a) * xx + np.sin(a) * yy)
        yield "gradient", f"linear{i}", _u8(lin)
        cy, cx = rng.uniform(0, 1, 2)
        yield "gradient", f"radial{i}", _u8(-np.hypot(yy - cy, xx - cx))
    for v in (0, 1, 64, 128, 200, 255):
        yield "constant", f"constant{v}", np.full((256, 256), v, np.uint8)
    yield "constant", "black8000", np.zeros((8000, 8000), np.uint8)
    for i in range(20):
        f = rng.uniform(2, 12, 3)
        pattern = np.stack([np.sin(f[c] * xx * np.pi + c) * np.cos(f[(c + 1) % 3] * yy * np.pi) for c in range(3)], -1)
        yield "colour pattern", f"pattern{i}", _u8(pattern)
