"""Do the runtime without PyTorch and the PyTorch runtimes write the same reports?

    PYTHONPATH=src python benchmarks/bench_identity.py [--cache cache/nih_cxr14 --cache cache/kermany_pediatric_cxr]
        [--split test] [--model default] [--against torch,onnxruntime] [--out results.jsonl]

Every study of the split goes through ``Pipeline.generate_batch`` as a user's files would (the
cache only lists the studies and their image files; the films are read, gated, letterboxed and
resized by the pipeline), once per runtime, in batches of --batch-size. Per runtime pair and
dataset it prints: studies, identical results (``inference.backend.differences``: report text,
finding states, plan check, population, refusals equal; probabilities within 1e-4), identical
report texts, identical finding states, the largest difference of the unrounded probabilities, refusals on
each side, and the seconds each runtime took. Exit status 1 when any study differs. Rerun it after a
re-fit of the bundled model: nothing here is tied to one set of weights.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))


def studies_of(cache: Path, split: str) -> list[dict]:
    from cxreport.data.cache import Cache

    rows = Cache(cache).image_rows(split)
    missing = [r["study_id"] for r in rows if not all(Path(p).is_file() for p in r.get("image_paths") or [])]
    if missing:
        raise SystemExit(f"{cache}: {len(missing)} studies of split {split!r} name image files that are not there "
                         f"(e.g. {missing[0]}); prepare the cache on this machine")
    return [{"study_id": r["study_id"], "images": list(r["image_paths"])} for r in rows]


RAW: list = []  # the unrounded finding probabilities of every study generate saw, in order


def _record_raw() -> None:
    """Wrap the pipeline's prediction loop to keep the probabilities before results round them
    to 4 decimals (measurement only: what the loop returns is unchanged)."""
    import cxreport.inference.pipeline as pipeline_module

    real = pipeline_module.generate

    def recording(*args, **kw):
        outs = real(*args, **kw)
        RAW.extend(o.get("finding_probs") for o in outs)
        return outs

    pipeline_module.generate = recording


def run(pipeline, studies: list[dict], batch: int) -> tuple[list[dict], list, float]:
    """(results, unrounded probabilities per study or None, seconds)."""
    out, raw, t0 = [], [], time.perf_counter()
    for i in range(0, len(studies), batch):
        chunk = [{"images": s["images"]} for s in studies[i:i + batch]]
        RAW.clear()
        results = pipeline.generate_batch(chunk, on_error="record")
        results = [r.to_dict() if hasattr(r, "to_dict") else r for r in results]  # typed results: their JSON
        seen = iter(list(RAW))
        raw += [None if "error" in r and not r.get("refused") else next(seen) for r in results]
        out += results
    return out, raw, time.perf_counter() - t0


def compare(a: list[dict], b: list[dict], raw_a: list, raw_b: list) -> dict:
    from cxreport.inference.backend import differences

    states = lambda r: {k: f["state"] for k, f in (r.get("findings") or {}).items()}  # noqa: E731
    dp = [abs(pa[k] - pb[k]) for pa, pb in zip(raw_a, raw_b) if pa and pb for k in pa]
    diffs = [differences(x, y) for x, y in zip(a, b)]
    return {"studies": len(a), "identical": sum(not d for d in diffs),
            "same_report": sum(x.get("report") == y.get("report") for x, y in zip(a, b)),
            "same_states": sum(states(x) == states(y) for x, y in zip(a, b)),
            "max_dprob": max(dp, default=0.0),
            "refused": (sum(bool(x.get("refused")) for x in a), sum(bool(y.get("refused")) for y in b)),
            "first_diffs": [d for d in diffs if d][:3]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", action="append", type=Path, default=None,
                    help="prepared cache(s) listing the studies (default: cache/nih_cxr14 and "
                         "cache/kermany_pediatric_cxr)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--model", default=None, help="model name or folder (default: the bundled one)")
    ap.add_argument("--against", default="torch,onnxruntime",
                    help="PyTorch runtimes compared with lean (torch: all PyTorch; onnxruntime: its encoder in ONNX "
                         "Runtime, the PyTorch default for batches and the service)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--limit", type=int, default=0, help="first N studies of each cache (0: all)")
    ap.add_argument("--out", type=Path, default=None, help="write every result pair here (JSONL)")
    args = ap.parse_args()
    import os

    from cxreport.inference import load_model

    caches = args.cache or [Path("cache/nih_cxr14"), Path("cache/kermany_pediatric_cxr")]
    _record_raw()
    lean = load_model(args.model, runtime="lean")
    others = {name: load_model(args.model, runtime=name) for name in args.against.split(",") if name}
    print(f"model {lean.name} (sha256 {lean.info.weights_sha256[:12]}), load average "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)
    print("| data | runtimes | studies | identical results | same report | same states | max abs dprob (unrounded) | "
          "refused (lean / other) | s lean | s other |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    bad, dump = 0, []
    for cache in caches:
        studies = studies_of(cache, args.split)
        if args.limit:
            studies = studies[:args.limit]
        got, raw_got, t_lean = run(lean, studies, args.batch_size)
        for name, other in others.items():
            want, raw_want, t_other = run(other, studies, args.batch_size)
            c = compare(got, want, raw_got, raw_want)
            bad += c["studies"] - c["identical"]
            print(f"| {cache.name} {args.split} | lean vs {name} | {c['studies']} | {c['identical']} | "
                  f"{c['same_report']} | {c['same_states']} | {c['max_dprob']:.1e} | {c['refused'][0]} / "
                  f"{c['refused'][1]} | {t_lean:.0f} | {t_other:.0f} |", flush=True)
            for d in c["first_diffs"]:
                print(f"    differs: {d[:3]}", flush=True)
            if args.out:
                dump += [{"data": cache.name, "study_id": s["study_id"], "against": name, "lean": g, name: w}
                         for s, g, w in zip(studies, got, want)]
    if args.out:
        from cxreport.fsio import atomic_write_jsonl

        atomic_write_jsonl(args.out, dump)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
