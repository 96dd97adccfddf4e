"""`cxreport vlm` (finetune / annotate): a LoRA-tuned Qwen2-VL region annotator."""

from __future__ import annotations

import os
from pathlib import Path

from cxreport.errors import InputError


def register(sub) -> None:
    v = sub.add_parser("vlm", help="fine-tune / run a Qwen2-VL region annotator (LoRA)")
    vsub = v.add_subparsers(dest="vlm_command", metavar="ACTION", required=True)
    _register_vlm(vsub)


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
    p.add_argument("--annotations", metavar="FILE.json", help="region-annotation file (default: the one under --iu-xray)")
    p.add_argument("--split", default="train")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--no-images", action="store_true", help="text only, even where images exist")


def _train_examples(args) -> list:
    from cxreport.annotate.data import RegionExample, load_iu_region_examples
    from cxreport.fsio import read_jsonl
    from cxreport.text.regions import REGIONS

    if args.iu_xray:
        ex = load_iu_region_examples(args.iu_xray, args.split, args.limit, annotations=args.annotations)
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

        ex = load_iu_region_examples(args.iu_xray, args.split, args.limit, annotations=args.annotations)
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
