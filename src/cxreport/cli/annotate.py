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

    g = sub.add_parser("green", help="GREEN scores of candidate vs reference reports (a GREEN model as judge)")
    g.add_argument("--input", required=True, metavar="PAIRS.csv", help="CSV with reference and candidate columns")
    g.add_argument("--reference-column", default="reference")
    g.add_argument("--candidate-column", default="candidate")
    g.add_argument("--id-column", default="uid")
    g.add_argument("--base-url", help="OpenAI-compatible endpoint serving the GREEN model")
    g.add_argument("--model", default="StanfordAIMI/GREEN-RadLlama2-7b", help="served name, or folder/hub id with --local")
    g.add_argument("--local", action="store_true", help="load --model with transformers instead of an endpoint")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY")
    g.add_argument("--concurrency", type=int, default=4)
    g.add_argument("--timeout", type=float, default=300.0)
    g.add_argument("--out", required=True, metavar="OUT.jsonl", help="per-row scores, counts and the judge's answer")
    g.set_defaults(func=_green)


def _llm_config(args):
    from cxreport.llm import LLMConfig

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
    from cxreport.cli.text import read_report_csv

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

    head = ["prompt", "n", *REGIONS, "mean", "failed", "requests", "cached", "malformed", "tokens in/out", "cost $"]
    lines = [f"{metric} per region", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for res in results:
        u, s = res["usage"], res["scores"]
        if u.get("backend") == "llm":
            calls = [str(u["requests"]), str(u["cache_hits"]), str(u["malformed_answers"]),
                     f"{u['prompt_tokens']}/{u['completion_tokens']}", f"{u['cost_usd']:.4f}"]
        else:
            calls = ["-"] * 5
        lines.append("| " + " | ".join([res["prompt"], str(res["n"]), *(f(s[r]) for r in REGIONS), f(s["mean"]),
                                        str(res["failed"]), *calls]) + " |")
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
    f = vsub.add_parser("finetune", help="LoRA-tune a Qwen2-VL model on curated region annotations",
                        description="Single process, or multi-GPU with: torchrun --nproc_per_node N -m cxreport vlm finetune ...")
    f.add_argument("--base", default="Qwen/Qwen2-VL-2B-Instruct", help="hub id or local folder of the base model")
    _vlm_data_args(f, "training data")
    f.add_argument("--train-jsonl", help="rows {id, text, images: [paths], lung, heart, mediastinal, bone, others}")
    f.add_argument("--out", required=True, metavar="DIR", help="adapter folder (+ train_log.jsonl, loss.png)")
    f.add_argument("--epochs", type=float, default=1.0)
    f.add_argument("--max-steps", type=int, default=None, help="optimizer steps (overrides --epochs)")
    f.add_argument("--batch-size", type=int, default=1)
    f.add_argument("--grad-accum", type=int, default=8)
    f.add_argument("--lr", type=float, default=2e-4)
    f.add_argument("--warmup-steps", type=int, default=10)
    f.add_argument("--lora-r", type=int, default=16)
    f.add_argument("--lora-alpha", type=int, default=32)
    f.add_argument("--lora-dropout", type=float, default=0.05)
    f.add_argument("--qlora", action="store_true", help="4-bit base weights (bitsandbytes; needs a CUDA GPU)")
    f.add_argument("--gradient-checkpointing", action="store_true")
    f.add_argument("--max-pixels", type=int, default=None, help="pixel budget per image (default 512*28*28)")
    f.add_argument("--max-length", type=int, default=2048)
    f.add_argument("--save-every", type=int, default=0)
    f.add_argument("--seed", type=int, default=0)
    f.set_defaults(func=_vlm_finetune)

    a = vsub.add_parser("annotate", help="annotate reports (+ images) with a tuned adapter")
    a.add_argument("--adapter", required=True, metavar="DIR", help="folder written by 'cxreport vlm finetune'")
    a.add_argument("--base", default=None, help="override the base model recorded with the adapter")
    _vlm_data_args(a, "input")
    a.add_argument("--input", metavar="REPORTS.csv")
    a.add_argument("--text-column", default="findings")
    a.add_argument("--id-column", default="uid")
    a.add_argument("--image-column", default=None, help="column of ';'-separated image paths (optional)")
    a.add_argument("--out", required=True, metavar="OUT.jsonl")
    a.add_argument("--max-new-tokens", type=int, default=512)
    a.add_argument("--batch-size", type=int, default=4)
    a.set_defaults(func=_vlm_annotate)


def _vlm_data_args(p, what: str) -> None:
    p.add_argument("--iu-xray", metavar="DIR", help=f"{what}: IU X-Ray curated region annotations (+ images present)")
    p.add_argument("--split", default="train")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--no-images", action="store_true", help="text only, even where images exist")


def _train_examples(args) -> list:
    from cxreport.annotate.data import RegionExample, load_iu_region_examples
    from cxreport.fsio import read_jsonl
    from cxreport.text.regions import REGIONS

    if args.iu_xray:
        ex = load_iu_region_examples(args.iu_xray, args.split, args.limit)
    elif args.train_jsonl:
        if not Path(args.train_jsonl).is_file():
            raise InputError(f"{args.train_jsonl}: file not found")
        rows = read_jsonl(args.train_jsonl)[:args.limit]
        bad = [i for i, r in enumerate(rows, 1) if not isinstance(r.get("text"), str)]
        if bad:
            raise InputError(f"{args.train_jsonl}: line {bad[0]} has no 'text' string")
        ex = [RegionExample(str(r.get("id", i)), r["text"], {k: r.get(k) or "" for k in REGIONS},
                            [Path(p) for p in r.get("images") or []]) for i, r in enumerate(rows)]
    else:
        raise InputError("give --iu-xray DIR or --train-jsonl FILE")
    for e in ex:
        missing = [p for p in e.image_paths if not Path(p).is_file()]
        if missing:
            raise InputError(f"{missing[0]}: image of {e.id} not found")
        if args.no_images:
            e.image_paths = []
    return ex


def _vlm_finetune(args) -> int:
    from cxreport.annotate.vlm import LoraSpec
    from cxreport.annotate.vlm_train import TrainConfig, finetune

    ex = _train_examples(args)
    cfg = TrainConfig(base=args.base, out_dir=args.out, epochs=args.epochs, max_steps=args.max_steps,
                      batch_size=args.batch_size, grad_accum=args.grad_accum, lr=args.lr, warmup_steps=args.warmup_steps,
                      max_length=args.max_length, max_pixels=args.max_pixels, qlora=args.qlora,
                      gradient_checkpointing=args.gradient_checkpointing, save_every=args.save_every, seed=args.seed,
                      lora=LoraSpec(r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout))
    with_images = sum(bool(e.image_paths) for e in ex)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"fine-tuning {args.base} on {len(ex)} examples ({with_images} with images)")
    res = finetune(cfg, ex)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{res['steps']} steps, loss {res['losses'][0]:.4f} -> {res['losses'][-1]:.4f}; adapter -> {args.out}")
    return 0


def _vlm_annotate(args) -> int:
    from cxreport import fsio
    from cxreport.annotate.vlm import generate, load_annotator

    if args.iu_xray:
        from cxreport.annotate.data import load_iu_region_examples

        ex = load_iu_region_examples(args.iu_xray, args.split, args.limit)
        rows = [(e.id, e.text, [] if args.no_images else e.image_paths) for e in ex]
        id_key = "id"
    elif args.input:
        rows = _csv_with_images(args)
        id_key = args.id_column
    else:
        raise InputError("give --input REPORTS.csv or --iu-xray DIR")
    model, tok, spec = load_annotator(args.adapter, args.base)
    results = generate(model, tok, spec, [(t, p) for _, t, p in rows], args.max_new_tokens, args.batch_size)
    from cxreport.text.regions import REGIONS

    fsio.atomic_write_jsonl(args.out, ({id_key: rid, **(r.regions or {k: "" for k in REGIONS}),
                                        **({"error": r.error, "raw": r.raw} if r.error else {})}
                                       for (rid, _, _), r in zip(rows, results)))
    failed = sum(r.regions is None for r in results)
    print(f"annotated {len(rows)} reports ({failed} unparseable answers) -> {args.out}")
    return 0


def _csv_with_images(args) -> list[tuple[str, str, list]]:
    import csv

    from cxreport.cli.text import read_report_csv

    rows = read_report_csv(args.input, args.text_column, args.id_column)
    if not args.image_column:
        return [(rid, t, []) for rid, t in rows]
    with open(args.input, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if args.image_column not in (reader.fieldnames or []):
            raise InputError(f"{args.input}: no column {args.image_column!r} (choose with --image-column)")
        cells = [row[args.image_column] or "" for row in reader]
    base = Path(args.input).parent
    out = []
    for (rid, text), cell in zip(rows, cells):
        paths = [base / p.strip() if not Path(p.strip()).is_absolute() else Path(p.strip())
                 for p in cell.split(";") if p.strip()]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise InputError(f"{args.input}: image {missing[0]} of row {rid!r} not found")
        out.append((rid, text, [] if args.no_images else paths))
    return out


def _green(args) -> int:
    from cxreport import fsio
    from cxreport.metrics.green import GreenConfig, GreenScorer, summarize
    from cxreport.cli.text import read_report_csv

    refs = read_report_csv(args.input, args.reference_column, args.id_column)
    cands = read_report_csv(args.input, args.candidate_column, args.id_column)
    if not args.local and not args.base_url:
        raise InputError("give --base-url (an endpoint serving a GREEN model) or --local")
    cfg = GreenConfig(base_url=args.base_url, model=args.model, local=args.local, api_key_env=args.api_key_env,
                      concurrency=args.concurrency, timeout_s=args.timeout)
    results = GreenScorer(cfg).score([t for _, t in refs], [t for _, t in cands])
    fsio.atomic_write_jsonl(args.out, ({args.id_column: rid, **r.as_dict(), "response": r.response}
                                       for (rid, _), r in zip(refs, results)))
    s = summarize(results)
    fsio.atomic_write_json(str(args.out) + ".summary.json", s)
    mean = "-" if s["green"] is None else f"{s['green']:.4f}"
    print(f"GREEN {mean} over {s['scored']} of {s['n']} pairs ({s['unparseable']} unparseable) -> {args.out}")
    return 0
