"""Loopback throughput of `cxreport data download` (MB/s) for 1 and 4 workers.

Serves a generated MIMIC-CXR-JPG-shaped release (SHA256SUMS.txt + files/pXX/.../*.jpg of random bytes,
~1.5 MB each like the real release) from the test server on 127.0.0.1 with basic auth, downloads it
into a fresh folder per run (every byte written, hashed and verified), and prints MB/s.

    PYTHONPATH=src python benchmarks/bench_download.py [--mb 300] [--file-mb 1.5] [--workers 1 4]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fixtures.physionet_server import PASSWORD, USER, PhysioNetServer  # noqa: E402

from cxreport.data.download import Credentials, DownloadOptions, download  # noqa: E402


def build_release(folder: Path, total_mb: float, file_mb: float) -> int:
    n = max(1, int(total_mb / file_mb))
    size = int(file_mb * 1e6)
    block = os.urandom(size + n)  # one random block, sliced per file: distinct contents, cheap to make
    lines = []
    for i in range(n):
        subject, study = 10000000 + i // 4, 50000000 + i
        rel = f"files/p{str(subject)[:2]}/p{subject}/s{study}/{i:08x}-00000000-00000000-00000000-00000000.jpg"
        data = block[i:i + size]
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
        lines.append(f"{hashlib.sha256(data).hexdigest()}  {rel}\n")
    (folder / "SHA256SUMS.txt").write_text("".join(lines))
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=300.0, help="total size served")
    ap.add_argument("--file-mb", type=float, default=1.5, help="size of each file")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-download-") as tmp:
        tmp = Path(tmp)
        release = tmp / "srv" / "mimic-cxr-jpg" / "2.1.0"
        t0 = time.perf_counter()
        n = build_release(release, args.mb, args.file_mb)
        print(f"served: {n} files, {args.mb:.0f} MB (built in {time.perf_counter() - t0:.1f} s); cpus: {os.cpu_count()}")
        with PhysioNetServer(tmp / "srv") as srv:
            for workers in args.workers:
                out = tmp / f"out-{workers}"
                opts = DownloadOptions(out=out, base_url=srv.url + "mimic-cxr-jpg/2.1.0/", workers=workers,
                                       progress=False)
                s = download("mimic-cxr-jpg", opts, Credentials(USER, PASSWORD))
                assert not s.failed, s.failed
                print(f"workers={workers}: {s.ok} files, {s.bytes / 1e6:.0f} MB in {s.seconds:.2f} s "
                      f"= {s.mb_per_s:.0f} MB/s (download + sha256 verify + write)")
                shutil.rmtree(out)


if __name__ == "__main__":
    main()
