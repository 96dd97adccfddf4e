"""`cxreport annotate` (run / compare / export-iu) and `cxreport vlm` (finetune / annotate)."""

from __future__ import annotations

import os
from pathlib import Path

from cxreport.errors import InputError

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cxreport" / "annotate"


def register(sub) -> None:
    p = sub.add_parser("annotate", help="split reports into lung/heart/mediastinal/bone/others with rules or an LLM",
                       description="run: annotate a CSV; compare: score prompt versions against references; "
                                   "export-iu: write IU X-Ray's curated region annotations as REPORTS.csv + GOLD.jsonl")
    p.add_argument("action", nargs="?", default="run", choices=["run", "compare", "export-iu"])
    p.add_argument("--backend", default="llm", choices=["llm", "rules"], help="run: annotator (default llm)")
    p.add_argument("--prompt", default="v1", help="run: packaged prompt id or a prompt .json path")
    p.add_argument("--prompts", default="rules,v1,v2",
                   help="compare: comma-separated prompt ids/paths; 'rules' is the offline splitter")
    src = p.add_argument_group("input")
    src.add_argument("--input", metavar="REPORTS.csv", help="CSV with a header row")
    src.add_argument("--text-column", default="findings")
    src.add_argument("--id-column", default="uid")
    src.add_argument("--gold", metavar="GOLD.jsonl", help="compare: reference regions, one JSON row per id")
    src.add_argument("--iu-xray", metavar="DIR", help="compare/export-iu: take texts and references from IU X-Ray")
    src.add_argument("--split", default="train")
    src.add_argument("--limit", type=int, default=None, help="seeded sample of this many IU studies")
    src.add_argument("--out", help="run: OUT.jsonl; compare: results .json (optional); export-iu: folder")
    ep = p.add_argument_group("endpoint (OpenAI-compatible)")
    ep.add_argument("--base-url", default=os.environ.get("CXREPORT_LLM_BASE_URL", "https://api.openai.com/v1"))
    ep.add_argument("--model", default=os.environ.get("CXREPORT_LLM_MODEL", "gpt-4o-mini"))
    ep.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    ep.add_argument("--concurrency", type=int, default=4, help="requests in flight at once")
    ep.add_argument("--max-retries", type=int, default=2, help="re-asks after a malformed answer")
    ep.add_argument("--http-retries", type=int, default=3, help="retries after timeouts / 429 / 5xx")
    ep.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    ep.add_argument("--temperature", type=float, default=0.0)
    ep.add_argument("--max-tokens", type=int, default=1024)
    ep.add_argument("--no-json-mode", action="store_true", help="do not send response_format=json_object")
    ep.add_argument("--price-in", type=float, default=0.0, help="USD per 1M prompt tokens (cost report)")
    ep.add_argument("--price-out", type=float, default=0.0, help="USD per 1M completion tokens")
    ep.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="response cache (default %(default)s)")
    ep.add_argument("--no-cache", action="store_true")
    sc = p.add_argument_group("compare scoring")
    sc.add_argument("--metric", default="f1", choices=["f1", "green"],
                    help="content-word F1 (offline) or GREEN through --green-base-url")
    sc.add_argument("--green-base-url", help="OpenAI-compatible endpoint serving a GREEN model")
    sc.add_argument("--green-model", default="StanfordAIMI/GREEN-RadLlama2-7b")
    p.set_defaults(func=_annotate)

    v = sub.add_parser("vlm", help="fine-tune / run a Qwen2-VL region annotator (LoRA)")
    vsub = v.add_subparsers(dest="vlm_command", metavar="ACTION", required=True)
    _register_vlm(vsub)


def _llm_config(args):
    from cxreport.annotate.llm import LLMConfig

    if args.concurrency < 1:
        raise InputError("--concurrency must be at least 1")
    return LLMConfig(base_url=args.base_url, model=args.model, api_key_env=args.api_key_env,
                     temperature=args.temperature, max_tokens=args.max_tokens, timeout_s=args.timeout,
                     max_retries=args.max_retries, http_retries=args.http_retries, concurrency=args.concurrency,
                     json_mode=not args.no_json_mode, price_in_per_1m=args.price_in, price_out_per_1m=args.price_out)


def run_backend(name: str, texts: list[str], args) -> tuple[list[dict], list[str], dict]:
    """(regions per text, error per text, usage summary) for 'rules' or a prompt id/path."""
    from cxreport.annotate.cache import ResponseCache
    from cxreport.annotate.llm import LLMAnnotator, load_prompt
    from cxreport.text.regions import REGIONS, split_regions

    if name == "rules":
        return [split_regions(t) for t in texts], ["" for _ in texts], {"backend": "rules"}
    cfg = _llm_config(args)
    prompt = load_prompt(name)
    annotator = LLMAnnotator(cfg, prompt, ResponseCache(None if args.no_cache else args.cache_dir))
    anns = annotator.annotate_many(texts)
    regions = [a.regions or {r: "" for r in REGIONS} for a in anns]
    usage = {"backend": "llm", "prompt": prompt.id, "prompt_sha": prompt.sha, "model": cfg.model,
             **annotator.usage.as_dict(cfg)}
    return regions, [a.error for a in anns], usage


def _rows_from_args(args) -> tuple[list[tuple[str, str]], dict[str, dict] | None]:
    """(id, text) rows and references (None when there are none)."""
    from cxreport.annotate.data import load_iu_region_examples, read_gold_jsonl
    from cxreport.text.commands import read_report_csv

    if args.iu_xray:
        ex = load_iu_region_examples(args.iu_xray, args.split, args.limit)
        return [(e.id, e.text) for e in ex], {e.id: e.regions for e in ex}
    if not args.input:
        raise InputError("give --input REPORTS.csv (or --iu-xray DIR)")
    rows = read_report_csv(args.input, args.text_column, args.id_column)
    if args.limit is not None:
        rows = rows[:args.limit]
    gold = read_gold_jsonl(args.gold, args.id_column) if args.gold else None
    return rows, gold


def _annotate(args) -> int:
    if args.action == "export-iu":
        return _export_iu(args)
    if args.action == "compare":
        return _compare(args)
    from cxreport import fsio

    if not args.out:
        raise InputError("give --out OUT.jsonl")
    rows, _ = _rows_from_args(args)
    backend = "rules" if args.backend == "rules" else args.prompt
    regions, errors, usage = run_backend(backend, [t for _, t in rows], args)
    id_key = "id" if args.iu_xray else args.id_column
    fsio.atomic_write_jsonl(args.out, ({id_key: rid, **reg, **({"error": err} if err else {})}
                                       for (rid, _), reg, err in zip(rows, regions, errors)))
    failed = sum(bool(e) for e in errors)
    fsio.atomic_write_json(str(args.out) + ".meta.json", {**usage, "n": len(rows), "failed": failed})
    print(f"annotated {len(rows)} reports ({failed} failed) -> {args.out}")
    print(_usage_line(usage))
    return 1 if failed == len(rows) and rows else 0


def _usage_line(u: dict) -> str:
    if u.get("backend") != "llm":
        return "backend rules: no requests"
    return (f"requests {u['requests']}, tokens {u['prompt_tokens']} in / {u['completion_tokens']} out, cache hits "
            f"{u['cache_hits']}, malformed answers {u['malformed_answers']}, failed {u['failed_reports']}, "
            f"cost ${u['cost_usd']:.4f}")


def _compare(args) -> int:
    from cxreport import fsio
    from cxreport.text.regions import REGIONS, score_regions

    rows, gold = _rows_from_args(args)
    if gold is None:
        raise InputError("compare needs references: --gold GOLD.jsonl (or --iu-xray DIR)")
    missing = [rid for rid, _ in rows if rid not in gold]
    if missing:
        raise InputError(f"{len(missing)} id(s) have no reference in {args.gold}, e.g. {missing[0]!r}")
    golds = [gold[rid] for rid, _ in rows]
    texts = [t for _, t in rows]
    results = []
    for name in [x.strip() for x in args.prompts.split(",") if x.strip()]:
        preds, errors, usage = run_backend(name, texts, args)
        if args.metric == "green":
            scores = _green_scores(preds, golds, args)
        else:
            s = score_regions(preds, golds)
            scores = {"mean": s["f1"], **{r: s["regions"][r]["f1"] for r in REGIONS}}
        results.append({"prompt": name, "n": len(rows), "failed": sum(bool(e) for e in errors),
                        "scores": scores, "usage": usage})
    print(format_table(results, args.metric))
    if args.out:
        fsio.atomic_write_json(args.out, {"metric": args.metric, "results": results})
    return 0


def _green_scores(preds: list[dict], golds: list[dict], args) -> dict:
    from cxreport.metrics.green import GreenConfig, GreenScorer
    from cxreport.text.regions import REGIONS

    if not args.green_base_url:
        raise InputError("--metric green needs --green-base-url (an endpoint serving a GREEN model)")
    scorer = GreenScorer(GreenConfig(base_url=args.green_base_url, model=args.green_model,
                                     api_key_env=args.api_key_env, concurrency=args.concurrency,
                                     timeout_s=args.timeout))
    out, means = {}, []
    for r in REGIONS:
        res = scorer.score([g[r] for g in golds], [p[r] for p in preds])
        vals = [x.green for x in res if x.green is not None]
        out[r] = sum(vals) / len(vals) if vals else None
        means.extend(vals)
    return {"mean": sum(means) / len(means) if means else None, **out}


def format_table(results: list[dict], metric: str) -> str:
    from cxreport.text.regions import REGIONS

    def f(x):
        return "-" if x is None else f"{x:.3f}"

    head = ["prompt", "n", *REGIONS, "mean", "failed", "tokens in/out", "cost $"]
    lines = [f"{metric} per region", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for res in results:
        u, s = res["usage"], res["scores"]
        tokens = f"{u['prompt_tokens']}/{u['completion_tokens']}" if u.get("backend") == "llm" else "-"
        cost = f"{u['cost_usd']:.4f}" if u.get("backend") == "llm" else "-"
        lines.append("| " + " | ".join([res["prompt"], str(res["n"]), *(f(s[r]) for r in REGIONS), f(s["mean"]),
                                        str(res["failed"]), tokens, cost]) + " |")
    return "\n".join(lines)


def _export_iu(args) -> int:
    import csv

    from cxreport import fsio
    from cxreport.annotate.data import load_iu_region_examples

    if not args.iu_xray or not args.out:
        raise InputError("export-iu needs --iu-xray DIR and --out FOLDER")
    ex = load_iu_region_examples(args.iu_xray, args.split, args.limit)
    out = Path(args.out)
    with fsio.atomic_path(out / "reports.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["uid", "findings"])
        w.writerows((e.id, e.text) for e in ex)
    fsio.atomic_write_jsonl(out / "gold.jsonl", ({"uid": e.id, **e.regions} for e in ex))
    print(f"wrote {len(ex)} studies -> {out}/reports.csv, {out}/gold.jsonl")
    return 0



def _register_vlm(vsub) -> None:
    pass
