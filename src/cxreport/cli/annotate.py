"""`cxreport annotate` (run / compare / export-iu) and `cxreport green`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cxreport.errors import InputError

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cxreport" / "annotate"


ACTIONS = {
    "run": "annotate a CSV (or IU X-Ray studies) with rules or an LLM prompt; writes OUT.jsonl",
    "compare": "score prompt versions (and the rules splitter) against reference regions",
    "export-iu": "write IU X-Ray's curated region annotations as reports.csv + gold.jsonl",
}


def register(sub) -> None:
    p = sub.add_parser("annotate", help="split reports into lung/heart/mediastinal/bone/others with rules or an LLM",
                       description="Actions: " + "; ".join(f"{k}: {v}" for k, v in ACTIONS.items())
                                   + ". Without an action, 'run' (its options below).")
    _add_run_args(p)  # `cxreport annotate --backend ...` = `cxreport annotate run --backend ...`
    p.set_defaults(func=_annotate, action="run")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    for name, help_text in ACTIONS.items():
        a = actions.add_parser(name, help=help_text, description=help_text)
        {"run": _add_run_args, "compare": _add_compare_args, "export-iu": _add_export_args}[name](a)
        a.set_defaults(func=_annotate, action=name)

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


def _add_input_args(p, with_csv: bool = True) -> None:
    src = p.add_argument_group("input")
    if with_csv:
        src.add_argument("--input", metavar="REPORTS.csv", help="CSV with a header row")
        src.add_argument("--text-column", default="findings")
        src.add_argument("--id-column", default="uid")
    src.add_argument("--iu-xray", metavar="DIR", help="take texts (and references) from IU X-Ray's curated annotations")
    src.add_argument("--annotations", metavar="FILE.json",
                     help="a region-annotation file with the published keys ({split: [{id, report: {lung, ...}}]}, "
                          "e.g. annotation_quiz_all.json or a held-out file); texts from R2Gen's annotation.json "
                          "beside it or under --iu-xray")
    src.add_argument("--split", default="train", help="a split of the annotation file, or 'all' (default train)")
    src.add_argument("--limit", type=int, default=None, help="seeded sample of this many studies (first N of a CSV)")


def _add_endpoint_args(p) -> None:
    from cxreport.llm import DEFAULT_MODEL, OPENAI_BASE_URL, SCHEMA_MODES

    ep = p.add_argument_group("endpoint (OpenAI-compatible)")
    ep.add_argument("--base-url", default=os.environ.get("CXREPORT_LLM_BASE_URL", OPENAI_BASE_URL))
    ep.add_argument("--model", default=os.environ.get("CXREPORT_LLM_MODEL", DEFAULT_MODEL),
                    help="the name the server serves (default %(default)s: OpenAI's)")
    ep.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    ep.add_argument("--concurrency", type=int, default=4,
                    help="requests in flight at once (1 for servers that answer one at a time, e.g. llama.cpp)")
    ep.add_argument("--max-retries", type=int, default=2, help="re-asks after a malformed answer")
    ep.add_argument("--http-retries", type=int, default=3, help="retries after timeouts / 429 / 5xx")
    ep.add_argument("--timeout", type=float, default=60.0,
                    help="seconds per request, counting time queued at the server (default %(default)s)")
    ep.add_argument("--temperature", type=float, default=0.0)
    ep.add_argument("--max-tokens", type=int, default=1024)
    ep.add_argument("--schema-mode", default="auto", choices=SCHEMA_MODES,
                    help="send the answer's JSON Schema for constrained decoding: openai (response_format "
                         "json_schema: OpenAI, vLLM, llama-server), llamacpp (json_object + schema: "
                         "llama-cpp-python), auto (probe the server once; default), off")
    ep.add_argument("--no-json-mode", action="store_true",
                    help="with --schema-mode off: do not send response_format=json_object either")
    ep.add_argument("--price-in", type=float, default=0.0, help="USD per 1M prompt tokens (cost report)")
    ep.add_argument("--price-out", type=float, default=0.0, help="USD per 1M completion tokens")
    ep.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="response cache (default %(default)s)")
    ep.add_argument("--no-cache", action="store_true")
    ep.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _add_run_args(p) -> None:
    p.add_argument("--backend", default="llm", choices=["llm", "rules"], help="annotator (default llm)")
    p.add_argument("--prompt", default="v1", help="packaged prompt id or a prompt .json path")
    p.add_argument("--out", help="OUT.jsonl (+ OUT.jsonl.meta.json with usage)")
    _add_input_args(p)
    _add_endpoint_args(p)


def _add_compare_args(p) -> None:
    p.add_argument("--prompts", "--prompt", default="rules,v1,v2",
                   help="comma-separated prompt ids/paths; 'rules' is the offline splitter (default %(default)s)")
    p.add_argument("--gold", metavar="GOLD.jsonl", help="reference regions, one JSON row per id (with --input)")
    p.add_argument("--out", metavar="RESULTS.json", help="scores, usage, and every report's prediction and error")
    _add_input_args(p)
    _add_endpoint_args(p)
    sc = p.add_argument_group("scoring")
    sc.add_argument("--metric", default="f1", choices=["f1", "green"],
                    help="content-word F1 (offline) or GREEN through --green-base-url")
    sc.add_argument("--green-base-url", help="OpenAI-compatible endpoint serving a GREEN model")
    sc.add_argument("--green-model", default="StanfordAIMI/GREEN-RadLlama2-7b")


def _add_export_args(p) -> None:
    p.add_argument("--out", metavar="FOLDER", help="writes FOLDER/reports.csv and FOLDER/gold.jsonl")
    _add_input_args(p, with_csv=False)


def _llm_config(args):
    from cxreport.llm import LLMConfig

    if args.concurrency < 1:
        raise InputError("--concurrency must be at least 1")
    return LLMConfig(base_url=args.base_url, model=args.model, api_key_env=args.api_key_env,
                     temperature=args.temperature, max_tokens=args.max_tokens, timeout_s=args.timeout,
                     max_retries=args.max_retries, http_retries=args.http_retries, concurrency=args.concurrency,
                     json_mode=not args.no_json_mode, schema_mode=args.schema_mode, price_in_per_1m=args.price_in,
                     price_out_per_1m=args.price_out)


def _endpoint(args):
    """(config, cache, shared client) for the LLM backends of one command."""
    import logging

    from cxreport.annotate.cache import ResponseCache
    from cxreport.llm import ChatClient, model_warning

    cfg = _llm_config(args)
    warning = model_warning(cfg)
    if warning:
        logging.getLogger("cxreport.annotate").warning(warning)
    return cfg, ResponseCache(None if args.no_cache else args.cache_dir), ChatClient(cfg)


def _run(name: str, texts: list[str], args, endpoint):
    from cxreport.annotate.runs import run_backend

    if name == "rules":
        return run_backend(name, texts)
    cfg, cache, client = endpoint
    with _ProgressBar(len(texts), name, args.no_progress) as progress:
        return run_backend(name, texts, cfg, cache, client, progress)


class _ProgressBar:
    """tqdm bar on stderr with requests, retries, cache hits and failures (hidden off a terminal)."""

    def __init__(self, total: int, name: str, off: bool):
        self.total, self.name, self.off = total, name, off

    def __enter__(self):
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, desc=self.name, unit="report", disable=True if self.off else None)
        return self.update

    def update(self, usage) -> None:
        self.bar.n = usage.done
        self.bar.set_postfix(requests=usage.requests, retries=usage.retries, cached=usage.cache_hits,
                             failed=usage.failures, refresh=False)
        self.bar.refresh()

    def __exit__(self, *exc):
        self.bar.close()


def _rows_from_args(args) -> tuple[list[tuple[str, str]], dict[str, dict] | None]:
    """(id, text) rows and references (None when there are none)."""
    from cxreport.annotate.data import load_iu_region_examples, load_region_annotations, read_gold_jsonl
    from cxreport.cli.text import read_report_csv

    if args.iu_xray:
        ex = load_iu_region_examples(args.iu_xray, args.split, args.limit, annotations=args.annotations)
    elif args.annotations:
        ex = load_region_annotations(args.annotations, args.split, limit=args.limit)
    else:
        ex = None
    if ex is not None:
        return [(e.id, e.text) for e in ex], {e.id: e.regions for e in ex}
    if not getattr(args, "input", None):
        raise InputError("give --input REPORTS.csv, --iu-xray DIR or --annotations FILE.json")
    rows = read_report_csv(args.input, args.text_column, args.id_column)
    if args.limit is not None:
        rows = rows[:args.limit]
    gold = read_gold_jsonl(args.gold, args.id_column) if getattr(args, "gold", None) else None
    return rows, gold


def _annotate(args) -> int:
    if args.action == "export-iu":
        return _export_iu(args)
    if args.action == "compare":
        return _compare(args)
    from cxreport import fsio
    from cxreport.annotate.runs import usage_line

    if not args.out:
        raise InputError("give --out OUT.jsonl")
    rows, _ = _rows_from_args(args)
    backend = "rules" if args.backend == "rules" else args.prompt
    texts = [t for _, t in rows]
    run = _run(backend, texts, args, None if backend == "rules" else _endpoint(args))
    id_key = args.id_column if args.input and not (args.iu_xray or args.annotations) else "id"
    fsio.atomic_write_jsonl(args.out, ({id_key: rid, **reg, **({"error": err} if err else {})}
                                       for (rid, _), reg, err in zip(rows, run.regions, run.errors)))
    fsio.atomic_write_json(str(args.out) + ".meta.json", {**run.usage, "n": len(rows), "failed": run.failed})
    print(f"annotated {len(rows)} reports ({run.failed} failed) -> {args.out}")
    print(usage_line(run.usage))
    if run.all_failed(texts):
        print(f"error: every request failed, e.g. {next(e for e in run.errors if e)}", file=sys.stderr)
        return 1
    return 0


def _compare(args) -> int:
    from cxreport import fsio
    from cxreport.annotate.runs import comparison_row, f1_scores, format_table, green_scores

    rows, gold = _rows_from_args(args)
    if gold is None:
        raise InputError("compare needs references: --gold GOLD.jsonl (or --iu-xray DIR / --annotations FILE)")
    missing = [rid for rid, _ in rows if rid not in gold]
    if missing:
        raise InputError(f"{len(missing)} id(s) have no reference in {args.gold}, e.g. {missing[0]!r}")
    ids, texts, golds = [rid for rid, _ in rows], [t for _, t in rows], [gold[rid] for rid, _ in rows]
    names = [x.strip() for x in args.prompts.split(",") if x.strip()]
    endpoint = _endpoint(args) if any(n != "rules" for n in names) else None
    scorer = _green_scorer(args) if args.metric == "green" else None
    results, dead = [], []
    for name in names:
        run = _run(name, texts, args, endpoint)
        if run.all_failed(texts):
            dead.append(f"{name}: every request failed, e.g. {next(e for e in run.errors if e)}")
        scores = green_scores(run.regions, golds, scorer) if scorer else f1_scores(run.regions, golds)
        results.append(comparison_row(run, ids, scores))
    print(format_table(results, args.metric))
    if args.out:
        extra = {"judge": _judge_record(scorer)} if scorer else {}
        fsio.atomic_write_json(args.out, {"metric": args.metric, **extra, "results": results})
    for line in dead:  # their scores are those of empty answers: not a result
        print(f"error: {line}", file=sys.stderr)
    return 1 if dead else 0


def _green_scorer(args):
    from cxreport.metrics.green import GreenConfig, GreenScorer

    if not args.green_base_url:
        raise InputError("--metric green needs --green-base-url (an endpoint serving a GREEN model)")
    return GreenScorer(GreenConfig(base_url=args.green_base_url, model=args.green_model, api_key_env=args.api_key_env,
                                   concurrency=args.concurrency, timeout_s=args.timeout))


def _judge_record(scorer) -> dict:
    from cxreport.metrics.green import summarize

    return summarize([], scorer.cfg)["judge"]


def _export_iu(args) -> int:
    import csv

    from cxreport import fsio

    if not (args.iu_xray or args.annotations) or not args.out:
        raise InputError("export-iu needs --iu-xray DIR (or --annotations FILE.json) and --out FOLDER")
    rows, gold = _rows_from_args(args)
    out = Path(args.out)
    with fsio.atomic_path(out / "reports.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["uid", "findings"])
        w.writerows(rows)
    fsio.atomic_write_jsonl(out / "gold.jsonl", ({"uid": rid, **gold[rid]} for rid, _ in rows))
    print(f"wrote {len(rows)} studies -> {out}/reports.csv, {out}/gold.jsonl")
    return 0



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
    s = summarize(results, cfg)
    fsio.atomic_write_json(str(args.out) + ".summary.json", s)
    mean = "-" if s["green"] is None else f"{s['green']:.4f}"
    print(f"GREEN {mean} over {s['scored']} of {s['n']} pairs ({s['unparseable']} unparseable) -> {args.out}")
    return 0
