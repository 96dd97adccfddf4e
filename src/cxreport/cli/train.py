"""`cxreport train --config NAME|RUN.json [--cache PATH] [--set train.lr=3e-4 ...]` (also under torchrun);
`--list-configs` and `--show-config NAME` for the run templates shipped with the package."""

from __future__ import annotations


def _list_configs() -> None:
    from cxreport.training.templates import list_templates

    names = list_templates()
    width = max(map(len, names))
    for name, about in names.items():
        print(f"{name.ljust(width)}  {about}")
    print("\nprint one, complete and commented, to start your own: cxreport train --show-config NAME > run.json")


def _train(args):
    from cxreport.config import apply_overrides, load_config
    from cxreport.errors import InputError
    from cxreport.fsio import dumps_json
    from cxreport.training.config import RunConfig, validate_run_config
    from cxreport.training.templates import commented_config, resolve_config, with_caches

    if args.list_configs:
        return _list_configs()
    if args.show_config:
        return print(dumps_json(commented_config(args.show_config), indent=2))
    if not args.config:
        raise InputError("give --config NAME (a run template, see --list-configs) or --config RUN.json")
    cfg = with_caches(load_config(RunConfig, resolve_config(args.config)), args.cache)
    cfg = apply_overrides(cfg, args.set)
    if args.out_dir:
        cfg.out_dir = args.out_dir
    validate_run_config(cfg)  # before torch is even imported
    from cxreport.training.loop import train

    print(dumps_json(train(cfg)))


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="train a model (stage 1 frozen encoder, stage 2 fine-tuning; DDP under torchrun)",
        description="Train on prepared caches. Start from a shipped run template (--list-configs) or your own JSON "
        "(--show-config NAME prints a template complete and commented); docs/training.md walks through it.")
    p.add_argument("--config", metavar="NAME|FILE", help="run template name (see --list-configs) or run config JSON")
    p.add_argument("--cache", action="append", default=[], metavar="PATH",
                   help="prepared cache to train on (repeatable): fills data.sources[i].cache")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. train.lr=3e-4 (repeatable)")
    p.add_argument("--out-dir", help="run folder (overrides out_dir)")
    p.add_argument("--list-configs", action="store_true", help="list the shipped run templates and exit")
    p.add_argument("--show-config", metavar="NAME|FILE",
                   help="print a template (or config file) complete, every key commented, and exit")
    p.set_defaults(func=_train)
