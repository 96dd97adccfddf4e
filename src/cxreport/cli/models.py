"""`cxreport models list | show NAME | export CKPT DIR | lean CKPT`: browse model configs, publish a
checkpoint, give a checkpoint the encoder graph of the runtime without PyTorch."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser("models", help="list or show model configs; export a checkpoint for the Hub")
    sub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="names of the bundled model configs")
    ls.set_defaults(func=_list)
    show = sub.add_parser("show", help="print a model config (bundled name or .json path) as resolved JSON")
    show.add_argument("name", help="bundled name (see `cxreport models list`) or path/to/config.json")
    show.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override, e.g. --set decoder.layers=2 (repeatable)")
    show.add_argument("--params", action="store_true",
                      help="also build the model (untrained, no downloads of weights) and count parameters")
    show.set_defaults(func=_show)
    ex = sub.add_parser("export", help="write a checkpoint as a folder ready to upload to the Hugging Face Hub")
    ex.add_argument("checkpoint", metavar="CKPT", help="bundled model name, checkpoint folder or run folder")
    ex.add_argument("out", metavar="DIR", help="new folder: weights, config, tokenizer, preprocessing, README.md")
    ex.set_defaults(func=_export)
    lean = sub.add_parser("lean", help="write a checkpoint's encoder graph for the runtime without PyTorch "
                                       "(CKPT/lean/; needs PyTorch and onnx, once)")
    lean.add_argument("checkpoint", metavar="CKPT", help="bundled model name, checkpoint folder or run folder")
    lean.add_argument("--cache", action="store_true",
                      help="write it into the cache every checkpoint of this architecture shares "
                           "(CXREPORT_CACHE, default ~/.cache/cxreport), not into CKPT")
    lean.set_defaults(func=_lean)


def _list(args) -> int:
    from cxreport.models.registry import list_models

    for name in list_models():
        print(name)
    return 0


def _show(args) -> int:
    from cxreport.config import apply_overrides, to_dict
    from cxreport.models.registry import model_config

    cfg = apply_overrides(model_config(args.name), args.set)
    print(json.dumps(to_dict(cfg), indent=2, sort_keys=True))
    if args.params:
        from cxreport.models.report_model import build_model

        model = build_model(cfg, pretrained=False)
        parts = {name: sum(p.numel() for p in mod.parameters()) for name, mod in model.named_children()}
        total = sum(p.numel() for p in model.parameters())
        print(f"parameters: {total:,} (" + ", ".join(f"{k} {v:,}" for k, v in parts.items()) + ")")
    return 0


def _export(args) -> int:
    from cxreport.checkpoint import export_checkpoint
    from cxreport.inference.pipeline import resolve_model_path

    out = export_checkpoint(resolve_model_path(args.checkpoint), args.out)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    print(f"wrote {out}: {', '.join(files)}")
    print(f"upload: hf upload OWNER/NAME {out} .   then: cxreport generate --model hf://OWNER/NAME IMAGE")
    return 0


def _lean(args) -> int:
    from cxreport.checkpoint import write_lean_graphs
    from cxreport.inference.pipeline import resolve_model_path

    out = write_lean_graphs(resolve_model_path(args.checkpoint), to_cache=args.cache)
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file()) / 1024
    print(f"wrote {out} ({size:.0f} KB, checked against PyTorch): the model now runs without PyTorch "
          "(pip install 'cxreport[infer]'; runtime auto or lean)")
    return 0
