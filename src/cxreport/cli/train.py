"""`cxreport train --config RUN.json [--set train.lr=3e-4 ...]` (also under torchrun)."""

from __future__ import annotations


def _train(args):
    import json

    from cxreport.config import load_config
    from cxreport.training.config import RunConfig, validate_run_config

    cfg = load_config(RunConfig, args.config, args.set)
    if args.out_dir:
        cfg.out_dir = args.out_dir
    validate_run_config(cfg)  # before torch is even imported
    from cxreport.training.loop import train

    result = train(cfg)
    print(json.dumps(result))


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model (stage 1 frozen encoder, stage 2 fine-tuning; DDP under torchrun)")
    p.add_argument("--config", required=True, help="run config JSON (see configs/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. train.lr=3e-4 (repeatable)")
    p.add_argument("--out-dir", help="run folder (overrides out_dir)")
    p.set_defaults(func=_train)
