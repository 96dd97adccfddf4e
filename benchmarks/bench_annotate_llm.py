"""Region annotation by a real served model: malformed-answer rate, region F1 and speed for prompt
versions with and without the schema mode, beside the rules splitter.

Needs an OpenAI-compatible server (e.g. llama-cpp-python's, see docs/annotate.md "Against a real
model") and IU X-Ray. For each prompt x schema mode it annotates the same seeded sample of curated
train studies, one request at a time, and prints one table row; results (with every prediction)
are written to --out after each row, so an interrupted run keeps what it measured. With --cache-dir
a rerun only sends what is new.

    PYTHONPATH=src python benchmarks/bench_annotate_llm.py --base-url http://127.0.0.1:8080/v1 \\
        --model qwen2.5-coder-0.5b-instruct --iu-xray ../shared/data/iu_xray --limit 60 --out bench.json
"""

from __future__ import annotations

import argparse
import json
import time

from cxreport import fsio
from cxreport.annotate.cache import ResponseCache
from cxreport.annotate.data import load_iu_region_examples
from cxreport.llm import LLMConfig
from cxreport.annotate.runs import comparison_row, f1_scores, run_backend
from cxreport.text.regions import REGIONS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--iu-xray", required=True)
    ap.add_argument("--split", default="train")
    ap.add_argument("--limit", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prompts", default="v1,v2")
    ap.add_argument("--modes", default="off,auto", help="schema modes to compare")
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    ex = load_iu_region_examples(args.iu_xray, args.split, args.limit, args.seed)
    ids, texts, golds = [e.id for e in ex], [e.text for e in ex], [e.regions for e in ex]
    asked = sum(bool(t.strip()) for t in texts)
    cache = ResponseCache(args.cache_dir)
    rows = [("rules", "-", run_backend("rules", texts), 0.0)]
    for prompt in args.prompts.split(","):
        for mode in args.modes.split(","):
            cfg = LLMConfig(base_url=args.base_url, model=args.model, schema_mode=mode, concurrency=1,
                            max_tokens=args.max_tokens, timeout_s=args.timeout)
            start = time.perf_counter()
            run = run_backend(prompt, texts, cfg, cache)
            rows.append((prompt, mode, run, time.perf_counter() - start))
            _report(rows, ids, golds, asked, args)


def _report(rows, ids, golds, asked, args) -> None:
    head = ["prompt", "schema mode", "n", *REGIONS, "mean F1", "malformed 1st", "malformed all / requests",
            "failed", "s/report", "tokens out/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    results = []
    for prompt, mode, run, wall in rows:
        s = f1_scores(run.regions, golds)
        u = run.usage
        llm = u.get("backend") == "llm"
        fresh = llm and u["requests"] > 0
        lines.append("| " + " | ".join([
            prompt, u.get("schema_mode", mode) if llm else "-", str(len(ids)), *(f"{s[r]:.3f}" for r in REGIONS),
            f"{s['mean']:.3f}",
            f"{u['malformed_first_answers']}/{asked} ({u['malformed_first_answers'] / asked:.0%})" if llm else "-",
            f"{u['malformed_answers']}/{u['requests']}" if llm else "-", str(run.failed),
            f"{wall / len(ids):.1f}" if fresh else "-",
            f"{u['completion_tokens'] / wall:.1f}" if fresh else "-"]) + " |")
        results.append({**comparison_row(run, ids, s), "schema_mode_requested": mode, "wall_s": round(wall, 1)})
    print("\n".join(lines), flush=True)
    if args.out:
        fsio.atomic_write_json(args.out, {"base_url": args.base_url, "model": args.model, "split": args.split,
                                          "limit": args.limit, "seed": args.seed, "results": results})


if __name__ == "__main__":
    main()
