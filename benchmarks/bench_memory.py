"""Where a report path's memory goes, stage by stage, for each runtime.

    PYTHONPATH=src python benchmarks/bench_memory.py [--batch 16] [--threads 1] [--runtimes onnxruntime,torch,lean]

bench_peers.py's workload (a 1024 px frontal + lateral study, --batch copies of it, --tokens
tokens per report, plan cache off) in a fresh process per runtime, sampling the process's
resident memory (VmRSS) and its high-water mark (VmHWM, what ``ru_maxrss`` reports) after each
stage: Python + the runtime's imports, loading the bundled model, preparing the batch, the image
encoder alone on the whole batch, then one full ``generate`` of the batch. The rise of the
high-water mark in a stage is what that stage added to the peak.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def status_mb() -> tuple[float, float]:
    rss = hwm = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return rss, hwm


def child(runtime: str, batch: int, tokens: int, threads: int) -> list:
    stages = [("python", *status_mb())]
    if runtime == "lean":
        sys.modules["torch"] = None
        from contextlib import nullcontext as no_grad
    else:
        import torch

        import transformers  # noqa: F401 - bench_peers.py imports it in every process
        torch.set_num_threads(threads)
        no_grad = torch.inference_mode
    from cxreport.inference import load_model
    from cxreport.inference.threads import apply_threads, plan_threads

    apply_threads(plan_threads(threads, decode=False))
    stages.append(("imports", *status_mb()))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_peers import films

    pipe = load_model(runtime=runtime)
    pipe.model.use_plan_cache = False
    pipe.model.decoder.eos_id = -1
    stages.append(("load model", *status_mb()))
    prepared = pipe.prepare(films(), ["frontal", "lateral"])
    images, mask, view_ids = pipe.collate([prepared] * batch)
    stages.append((f"prepare batch of {batch} studies ({int(mask.sum())} films)", *status_mb()))
    with no_grad():
        if runtime == "lean":
            pipe.model.image_side.encode(images, mask, view_ids)
        else:
            pipe.model.encode_images(images, mask, view_ids)
    stages.append(("image encoder on the batch", *status_mb()))
    with no_grad():
        pipe.model.generate(images, mask, view_ids, max_len=tokens, num_beams=2)
    stages.append(("generate the batch (beam 2)", *status_mb()))
    return stages


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=60)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runtimes", default="onnxruntime,torch,lean")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(child(args.one, args.batch, args.tokens, args.threads)))
        return 0
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": str(args.threads)}
    print(f"batch {args.batch}, {args.tokens} tokens, {args.threads} thread(s); load average "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print("| runtime | stage | RSS after (MB) | peak so far (MB) | peak added (MB) |")
    print("|---|---|---|---|---|")
    for runtime in args.runtimes.split(","):
        out = subprocess.run([sys.executable, __file__, "--one", runtime, "--batch", str(args.batch), "--tokens",
                              str(args.tokens), "--threads", str(args.threads)], env=env, capture_output=True,
                             text=True)
        if out.returncode:
            print(out.stderr[-3000:], file=sys.stderr)
            return 1
        prev = 0.0
        for name, rss, hwm in json.loads(out.stdout.strip().splitlines()[-1]):
            print(f"| {runtime} | {name} | {rss:.0f} | {hwm:.0f} | {hwm - prev:+.0f} |")
            prev = hwm
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
