"""Prepare throughput (images/s) for 256-px JPEG and 2000-px PNG inputs. Prints figures; not a test.

    python benchmarks/bench_prepare.py [--n 200] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cxreport.data.cache import prepare_cache


def make(root: Path, n: int, side: int, fmt: str) -> Path:
    img = root / "images"
    img.mkdir(parents=True)
    rng = np.random.default_rng(0)
    # Smooth content (like a radiograph), not noise: realistic compressed sizes.
    base = np.asarray(Image.fromarray((rng.random((64, 64)) * 255).astype(np.uint8)).resize((side, side)))
    lines = ["id,text"]
    for i in range(n):
        name = f"im{i:04d}.{fmt}"
        arr = np.roll(base, i, axis=1)
        if fmt == "png":
            Image.fromarray((arr.astype(np.uint16) * 257)).save(img / name)  # 16-bit, as many exports
        else:
            Image.fromarray(arr).save(img / name, quality=90)
        lines.append(f"{name},report {i}")
    (root / "r.csv").write_text("\n".join(lines) + "\n")
    return root


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    args = ap.parse_args()
    print(f"cores: {os.cpu_count()}  images per run: {args.n}  output: 256x256 letterboxed uint8")
    with tempfile.TemporaryDirectory() as tmp:
        for side, fmt in ((256, "jpg"), (2000, "png")):
            src = make(Path(tmp) / f"{fmt}{side}", args.n, side, fmt)
            for w in args.workers:
                out = Path(tmp) / f"cache-{fmt}-{w}"
                t = time.perf_counter()
                prepare_cache("csv", src, out, size=256, workers=w)
                dt = time.perf_counter() - t
                print(f"{side:>5}-px {fmt.upper():4} workers={w}: {args.n / dt:8.1f} images/s ({dt:.2f} s)")
                shutil.rmtree(out)


if __name__ == "__main__":
    main()
