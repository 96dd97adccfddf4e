"""Labeler throughput on one core: reports per second over IU X-Ray train+val findings+impression.

    python benchmarks/bench_labeler.py [--data /work/shared/data/iu_xray] [--repeats 5]

Falls back to a synthetic mix of typical report sentences when the data folder is absent.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path


def _texts(data: Path) -> list[str]:
    if (data / "indiana_reports.csv").is_file():
        from cxreport.text.validate import load_iu

        return [r["text"] for r in load_iu(data)]
    rng = random.Random(0)
    pool = ["The heart is normal in size.", "No pleural effusion or pneumothorax.", "Mild cardiomegaly.",
            "There is no focal consolidation.", "Possible small left effusion.", "No change in the small effusion.",
            "Degenerative changes of the thoracic spine.", "Right IJ catheter with tip in the SVC."]
    return [" ".join(rng.choice(pool) for _ in range(6)) for _ in range(3000)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/work/shared/data/iu_xray")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    from cxreport.text.labeler import label_reports

    texts = _texts(Path(args.data))
    label_reports(texts[:50])  # warm up
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        label_reports(texts)
        times.append(time.perf_counter() - t0)
    best, median = min(times), sorted(times)[len(times) // 2]
    words = sum(len(t.split()) for t in texts)
    print(f"{len(texts)} reports ({words / len(texts):.0f} words each): best {len(texts) / best:,.0f} reports/s, "
          f"median {len(texts) / median:,.0f} reports/s on one core")


if __name__ == "__main__":
    main()
