"""`cxreport score`, `baselines`, `evaluate` and `evaluate-findings` (heavy imports stay in the handlers)."""

from __future__ import annotations

import sys
from pathlib import Path


def read_texts(path: str, what: str) -> list[dict]:
    """JSONL rows {"id", "text"}: every error names the file, the line and the fix."""
    from cxreport.errors import InputError
    from cxreport.fsio import iter_jsonl

    rows, seen = [], set()
    for no, row in iter_jsonl(path, what):
        if not isinstance(row, dict) or "id" not in row or not isinstance(row.get("text"), str):
            raise InputError(f'{path}:{no}: each line must be an object with "id" and a string "text"')
        key = str(row["id"])
        if key in seen:
            raise InputError(f"{path}:{no}: id {key!r} appears twice")
        seen.add(key)
        rows.append({"id": key, "text": row["text"]})
    if not rows:
        raise InputError(f"{path}: no {what} in the file")
    return rows


def _metric_args(p) -> None:
    p.add_argument("--metrics", default=None,
                   help="comma list: BLEU, BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, CE, BERTScore, RadGraph, default, "
                        "all (default: every metric but BERTScore and RadGraph)")
    p.add_argument("--protocol", choices=["r2gen", "full"], default=None,
                   help="r2gen: R2Gen cleaning + reference truncation (60 IU / 100 MIMIC tokens incl. BOS); "
                        "full: whole texts, our cleaning (default: full for score, r2gen for evaluate/baselines)")
    p.add_argument("--dataset", choices=["iu", "mimic"], default=None, help="which R2Gen cleaning/truncation")
    p.add_argument("--uncertain", choices=["positive", "negative"], default="positive",
                   help="how uncertain labeler mentions count in clinical efficacy")
    p.add_argument("--labeler", default=None, choices=["rules", "chexbert", "f1chexbert"],
                   help="CheXpert labeler for CE: rules (offline, default) or chexbert (F1-CheXbert; f1chexbert is "
                        "an alias)")
    p.add_argument("--chexbert-weights", default=None, metavar="PATH",
                   help="chexbert.pth (or its folder, or hf://OWNER/NAME); default: the Hugging Face cache, "
                        "downloaded once from StanfordAIMI/RRG_scorers")
    p.add_argument("--chexbert-tokenizer", default=None, metavar="DIR",
                   help="folder with bert-base-uncased's vocab.txt (default: the Hugging Face cache)")
    p.add_argument("--radgraph-model", default="radgraph-xl", choices=["radgraph", "radgraph-xl", "modern-radgraph-xl"],
                   help="RadGraph model type for the RadGraph metric")
    p.add_argument("--metrics-device", default=None, help="device for CheXbert (default: cuda if available)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for 95%% CIs (0: none)")
    p.add_argument("--permutations", type=int, default=1000, help="approximate randomisation permutations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bertscore-model", default=None,
                   help="standard (distilbert-base-uncased, layer 5, rescaled; from the Hugging Face cache), a "
                        "local HF model folder or hf://OWNER/NAME (default: the offline MiniLM, non-standard)")


def _labeler_opts(args) -> dict:
    return {"weights": args.chexbert_weights, "tokenizer": args.chexbert_tokenizer, "device": args.metrics_device}


def _kw(args, protocol_default: str) -> dict:
    return dict(metrics=args.metrics, protocol=args.protocol or protocol_default, uncertain=args.uncertain,
                labeler=args.labeler or "rules", bootstrap=args.bootstrap, seed=args.seed,
                labeler_opts=_labeler_opts(args), radgraph_model=args.radgraph_model)


def _preset(args):
    from cxreport.fsio import atomic_write_json, atomic_write_jsonl
    from cxreport.metrics.presets import preset_table, run_preset

    if args.hyps_b or args.metrics or args.protocol:
        raise SystemExit("--preset fixes the metrics and protocol and scores one system: drop --hyps-b, "
                         "--metrics and --protocol")
    refs, hyps = read_texts(args.refs, "references"), read_texts(args.hyps, "hypotheses")
    out = run_preset(hyps, refs, args.preset, dataset=args.dataset or "iu", labeler=args.labeler,
                     uncertain=args.uncertain, bootstrap=args.bootstrap, seed=args.seed,
                     labeler_opts=_labeler_opts(args), radgraph_model=args.radgraph_model,
                     **({"bertscore_model": args.bertscore_model} if args.bertscore_model else {}))
    per_study = out["result"].pop("per_study")
    if args.per_study:
        atomic_write_jsonl(args.per_study, per_study)
    if args.out:
        atomic_write_json(args.out, out)
    print(preset_table(out))
    return 0


def _score(args):
    if args.preset:
        return _preset(args)
    from cxreport.fsio import atomic_write_json, atomic_write_jsonl
    from cxreport.metrics.scoring import score_systems
    from cxreport.metrics.summary import comparisons_table, describe, metrics_table

    refs = read_texts(args.refs, "references")
    systems = {"A" if args.hyps_b else "system": read_texts(args.hyps, "hypotheses")}
    if args.hyps_b:
        systems["B"] = read_texts(args.hyps_b, "hypotheses")
    vocab = None
    if args.r2gen_vocab_from:
        from cxreport.data.cache import Cache
        from cxreport.metrics.baselines import train_vocabulary

        vocab = train_vocabulary(Cache(args.r2gen_vocab_from), args.vocab_field, args.dataset or "iu")
    res = score_systems(systems, refs, dataset=args.dataset or "iu", permutations=args.permutations,
                        pairs=[("A", "B")] if args.hyps_b else None, bertscore_model=args.bertscore_model,
                        r2gen_vocab=vocab, **_kw(args, "full"))
    per_study = {name: r.pop("per_study") for name, r in res["systems"].items()}
    if args.per_study:
        atomic_write_jsonl(args.per_study, ({"system": name, **row} for name, rows in per_study.items() for row in rows))
    if args.hyps_b:
        comp = dict(res["comparisons"])
        comp["metrics"] = comp.pop("results")["A vs B"]
        out = {"a": res["systems"]["A"], "b": res["systems"]["B"], "comparison": comp}
    else:
        out = res["systems"]["system"]
    if args.out:
        atomic_write_json(args.out, out)
    first = next(iter(res["systems"].values()))
    print("\n".join(describe(first)) + "\n\n" + metrics_table(res["systems"]))
    if args.hyps_b:
        print("\n" + comparisons_table(res["comparisons"]))
    return 0


def _baselines(args):
    from cxreport.data.cache import Cache
    from cxreport.fsio import atomic_write_json, atomic_write_jsonl
    from cxreport.metrics.baselines import baseline_reports, train_vocabulary
    from cxreport.metrics.scoring import score_systems
    from cxreport.metrics.scoring import protocol_dataset
    from cxreport.metrics.summary import metrics_table, per_label_plot, write_summary

    cache = Cache(args.cache)
    out = Path(args.out)
    refs, systems, info = baseline_reports(cache, args.split, field=args.field, seed=args.seed,
                                           allow_test=args.allow_test, retrieval_fallback=args.retrieval_fallback)
    dataset = args.dataset or protocol_dataset(cache.meta.get("source"))
    res = score_systems(systems, refs, dataset=dataset, permutations=0, bertscore_model=args.bertscore_model,
                        r2gen_vocab=train_vocabulary(cache, args.field, dataset), **_kw(args, "r2gen"))
    atomic_write_jsonl(out / "refs.jsonl", ({"id": k, "text": v} for k, v in refs.items()))
    for name, hyps in systems.items():
        atomic_write_jsonl(out / f"{name}.jsonl", ({"id": k, "text": v} for k, v in hyps.items()))
        atomic_write_jsonl(out / f"{name}.per_study.jsonl", res["systems"][name].pop("per_study"))
    if "retrieval" in info:
        atomic_write_jsonl(out / "retrieval.methods.jsonl",
                           ({"id": k, "method": v} for k, v in info["retrieval"].pop("per_study").items()))
    atomic_write_json(out / "metrics.json", {"baselines": res["systems"], "info": info})
    plot = per_label_plot(res["systems"], out / "per_label_f1.png")
    notes = [f"cache {cache.path}, split {args.split}, field {args.field}, seed {args.seed}"]
    if "retrieval" in info:
        notes.append("retrieval baseline: " + info["retrieval"]["note"])
    write_summary(out / "summary.md", f"Baselines on {args.split}", res["systems"], None, notes,
                  plot.name if plot else None)
    print(metrics_table(res["systems"]))
    print(f"\nwrote {out}/summary.md, metrics.json, per_label_f1.png", file=sys.stderr)
    return 0


def _evaluate(args):
    from cxreport.inference.evaluate import evaluate
    from cxreport.inference.threads import apply_threads, plan_threads
    from cxreport.metrics.summary import metrics_table

    apply_threads(plan_threads(args.threads, decode=False))
    res = evaluate(args.checkpoint, args.cache, args.split, args.out, allow_test=args.allow_test, beam=args.beam,
                   batch_size=args.batch_size, max_len=args.max_len, no_image=args.no_image,
                   dataset=args.dataset, baselines=not args.no_baselines, permutations=args.permutations,
                   device=args.device, limit=args.limit, bertscore_model=args.bertscore_model,
                   oracle_findings=args.oracle_findings, progress=not args.no_progress, **_kw(args, "r2gen"))
    print(metrics_table({"model": res, **res["baselines"]}))
    print(f"\nwrote {args.out}/summary.md, metrics.json, hyps.jsonl, per_study.jsonl, per_label_f1.png",
          file=sys.stderr)
    return 0


def _evaluate_findings(args):
    from cxreport.fsio import atomic_write_json, atomic_write_text
    from cxreport.inference.findings import evaluate_findings, markdown

    res = evaluate_findings(args.checkpoint, args.cache, args.split, args.allow_test, args.threads,
                            progress=not args.no_progress)
    md = markdown(res)
    if args.out:
        out = Path(args.out)
        atomic_write_json(out / "findings_auroc.json", res)
        atomic_write_text(out / "findings_auroc.md", md)
    print(md)
    return 0


def register(sub) -> None:
    p = sub.add_parser("evaluate-findings", help="per-finding AUROC of a checkpoint on a labelled cache split")
    p.add_argument("--model", "--checkpoint", dest="checkpoint", required=True, metavar="NAME|PATH|hf://OWNER/NAME",
                   help="bundled model name, checkpoint folder, run folder (its best/) or Hugging Face Hub model")
    p.add_argument("--cache", required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--allow-test", action="store_true", help="score the test split (final reporting only)")
    p.add_argument("--out", help="folder for findings_auroc.json / .md")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = the cores this process may use)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=_evaluate_findings)

    p = sub.add_parser("score", help="score generated reports against references (NLG + clinical, with CIs)")
    p.add_argument("--hyps", required=True, help="JSONL of {\"id\", \"text\"}: generated reports")
    p.add_argument("--refs", required=True, help="JSONL of {\"id\", \"text\"}: reference reports")
    p.add_argument("--hyps-b", default=None, help="a second system: paired comparison (A - B) with p-values")
    p.add_argument("--out", default=None, help="METRICS.json to write")
    p.add_argument("--per-study", default=None, help="JSONL of per-study scores to write")
    p.add_argument("--r2gen-vocab-from", default=None, metavar="CACHE",
                   help="r2gen protocol: map reference words outside the cache's training vocabulary to <unk>")
    p.add_argument("--vocab-field", default="findings", help="report field for --r2gen-vocab-from")
    p.add_argument("--preset", choices=["rrg24", "r2gen"], default=None,
                   help="a published metric set, printed as a table with CIs, implementations and conventions; "
                        "metrics without weights are listed as skipped (rrg24: BLEU-4, ROUGE-L, BERTScore, "
                        "F1-CheXbert, F1-RadGraph; r2gen: BLEU-1..4, METEOR, ROUGE-L, CE)")
    _metric_args(p)
    p.set_defaults(func=_score)

    b = sub.add_parser("baselines", help="constant / random / retrieval baselines of a cache's split, scored")
    b.add_argument("--cache", required=True)
    b.add_argument("--split", default="val")
    b.add_argument("--out", required=True, help="folder for hyps, metrics.json, summary.md, per_label_f1.png")
    b.add_argument("--field", default="findings", help="report field: findings or impression")
    b.add_argument("--allow-test", action="store_true", help="allow --split test (final evaluation only)")
    b.add_argument("--retrieval-fallback", choices=["codes", "random"], default="random",
                   help="retrieval for studies without images: by dataset labels / MeSH codes (oracle-informed) "
                        "or a seeded random report")
    _metric_args(b)
    b.set_defaults(func=_baselines)

    e = sub.add_parser("evaluate", help="generate reports for a split with a checkpoint and score them")
    e.add_argument("--model", "--checkpoint", dest="checkpoint", required=True, metavar="NAME|PATH|hf://OWNER/NAME",
                   help="bundled model name, checkpoint folder, run folder (its best/) or Hugging Face Hub model")
    e.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    e.add_argument("--cache", required=True)
    e.add_argument("--split", default="val")
    e.add_argument("--out", required=True)
    e.add_argument("--allow-test", action="store_true", help="allow --split test (final evaluation only)")
    e.add_argument("--beam", type=int, default=None,
                   help="beam size (1: greedy; default: the model's own decoder.default_beam)")
    e.add_argument("--batch-size", type=int, default=16)
    e.add_argument("--max-len", type=int, default=None, help="max generated tokens (default: the run's max_tokens)")
    e.add_argument("--no-image", choices=["generate", "skip"], default="generate",
                   help="studies without an image: generate with unknown findings (flagged) or skip")
    e.add_argument("--no-baselines", action="store_true", help="do not score the three baselines beside the model")
    e.add_argument("--device", default="cpu")
    e.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = the cores this process may use)")
    e.add_argument("--limit", type=int, default=None, help="first N studies only (smoke tests)")
    e.add_argument("--oracle-findings", action="store_true",
                   help="condition the decoder on the labeler's reading of each reference (decoder-only measure)")
    _metric_args(e)
    e.set_defaults(func=_evaluate)
