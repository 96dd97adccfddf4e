"""The bundled model's recipe on frozen encoder features, as commands:

    cxreport fit-head   --config configs/default-findings-head.json        # head, calibration, floors
    cxreport fit-gate   --config configs/default-gate.json --model RUN/best # input gate beside it
    cxreport score-head --model RUN/best --cache cache/nih_cxr14 --split test --allow-test
    cxreport bundle     --decoder DEC/best --head RUN/best --out DIR        # one model folder
    cxreport adapt      BASE --source SRC --root DIR --out DIR              # a site's own model
"""

from __future__ import annotations

import json
from pathlib import Path


def _fit_head(args) -> int:
    from cxreport.config import load_config, save_config
    from cxreport.training.head_recipe import HeadRecipeConfig, run_head_recipe, validate

    cfg = load_config(HeadRecipeConfig, args.config, args.set)
    if args.out:
        cfg.out_dir = args.out
    validate(cfg)
    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    save_config(cfg, Path(cfg.out_dir) / "fit_head_config.json")
    run_head_recipe(cfg, progress=not args.quiet)
    return 0


def _fit_gate(args) -> int:
    from cxreport.config import load_config
    from cxreport.training.bundle import guard_output
    from cxreport.training.gate_fit import GateRecipeConfig, fit_gate, fit_polarity_only, validate

    cfg = load_config(GateRecipeConfig, args.config, args.set)
    validate(cfg)
    model_dir = guard_output(args.model, args.into_package)
    if args.measure_only:
        _measure_gate(cfg, model_dir, args)
        return 0
    if args.polarity_only:
        params = fit_polarity_only(cfg, model_dir)
    else:
        params = fit_gate(cfg, model_dir, progress=not args.quiet)
    print(json.dumps({"symmetry_threshold": params.config.symmetry_threshold, **params.config.metrics}, indent=1))
    if args.measure:
        _measure_gate(cfg, model_dir, args)
    return 0


def _measure_gate(cfg, model_dir, args) -> None:
    from cxreport.checkpoint import load_checkpoint
    from cxreport.data.cache import Cache
    from cxreport.fsio import atomic_write_json
    from cxreport.inference.gate import Gate, GateParams
    from cxreport.training.feature_cache import feature_path, pooled_features
    from cxreport.training.gate_measure import measure_films, measure_non_radiographs
    from cxreport.training.gate_polarity import polarity_test

    model, _, _ = load_checkpoint(model_dir)
    gate = Gate(GateParams.load(model_dir))
    caches = {s.name: Cache(s.cache) for s in cfg.sources}
    feats = {n: pooled_features(model.encoder, c, feature_path(cfg.features, c, model), model.cfg.preprocess.image_size)
             for n, c in caches.items()}
    res = measure_films(gate, caches, feats)
    res["rejection"] = measure_non_radiographs(gate, model.encoder.eval(), model.cfg.preprocess.image_size)
    if gate.p.invert_w is not None:
        res["polarity_test"] = polarity_test(gate, caches)
    atomic_write_json(Path(model_dir) / "gate_scores.json", res)
    print(json.dumps(res, indent=1))


def _scores_out(out, name: str, tables: dict, text: str) -> None:
    """Print the tables; with --out also write them as OUT/scores_NAME.json and .md."""
    from cxreport.fsio import atomic_write_json, atomic_write_text

    print(text)
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(out) / f"scores_{name}.json", tables)
        atomic_write_text(Path(out) / f"scores_{name}.md", text)


def _score_head(args) -> int:
    from cxreport.checkpoint import load_checkpoint
    from cxreport.data.study import check_split
    from cxreport.inference.gate import Gate, GateParams
    from cxreport.inference.pipeline import resolve_model_path
    from cxreport.training.head_scores import markdown, score_split

    if args.out_of_fold:
        from cxreport.training.head_scores import out_of_fold_tables

        tables = out_of_fold_tables(args.out_of_fold)
        _scores_out(args.out, "out_of_fold", tables, "\n".join(
            markdown(f"{args.out_of_fold}: out of fold, {pop} train+val films", t) for pop, t in tables.items()))
        return 0
    if not args.model or not args.cache:
        from cxreport.errors import InputError

        raise InputError("score-head: give --model and --cache (or --out-of-fold RUN)")
    check_split(args.split, args.allow_test)
    result, md = {}, []
    for label, ref in [("model", args.model)] + [(f"compare:{c}", c) for c in args.compare]:
        path = resolve_model_path(ref)
        model, _, _ = load_checkpoint(path)
        params = GateParams.load(path)
        gate = Gate(params) if params is not None else None
        result[label] = {}
        for cache in args.cache:
            table = score_split(model.eval(), gate, cache, args.split, args.features, progress=not args.quiet)
            result[label][cache] = table
            md.append(markdown(f"{ref} on {Path(cache).name} {args.split}", table))
    _scores_out(args.out, args.split, result, "\n".join(md))
    return 0


def _bundle(args) -> int:
    from cxreport.training.bundle import bundle

    configs = dict(kv.split("=", 1) for kv in args.config_note)
    bundle(args.decoder, args.head, args.out, default_beam=args.default_beam, no_repeat_ngram=args.no_repeat_ngram,
           head_views=args.head_views, card=args.card, configs=configs, into_package=args.into_package)
    return 0


def _adapt(args) -> int:
    from cxreport.config import apply_overrides
    from cxreport.cli.data import _parse_options as parse_options
    from cxreport.training.adapt import AdaptConfig, run_adapt, validate

    cfg = AdaptConfig(base=args.base, out=args.out, source=args.source or "", root=args.root or "", cache=args.cache or "",
                      options=parse_options(args.option), population=args.population, max_films=args.max_films,
                      seed=args.seed, work=args.work or "", prevalence=_prevalence(args.prevalence))
    if args.min_positives is not None:
        cfg.min_positives = args.min_positives
    cfg = apply_overrides(cfg, args.set)
    validate(cfg)
    run_adapt(cfg, progress=not args.quiet)
    return 0


def _prevalence(items: list[str]) -> dict:
    from cxreport.errors import InputError
    from cxreport.labels import CHEXPERT_LABELS

    out = {}
    for it in items:
        name, _, value = it.partition("=")
        try:
            p = float(value)
        except ValueError:
            p = -1.0
        if name.strip() not in CHEXPERT_LABELS or not 0 < p < 1:
            raise InputError(f"--prevalence {it!r}: expected FINDING=P with a CheXpert finding and 0 < P < 1, "
                             "e.g. 'Pneumonia=0.2'")
        out[name.strip()] = p
    return out


def register(sub) -> None:
    p = sub.add_parser("fit-head", help="fit the finding head, its calibration and precision floors on frozen features")
    p.add_argument("--config", required=True, help="head recipe JSON (configs/default-findings-head.json)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--out", default=None, help="run folder (default: the config's out_dir)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_fit_head)

    p = sub.add_parser("fit-gate", help="fit the input gate beside a checkpoint (and measure it)")
    p.add_argument("--config", required=True, help="gate recipe JSON (configs/default-gate.json)")
    p.add_argument("--model", required=True, help="checkpoint folder; the gate files are written into it")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--measure", action="store_true", help="acceptance / refusal / rotation / view figures "
                                                          "(reads the test splits: once, at the end)")
    p.add_argument("--measure-only", action="store_true", help="measure the gate already beside --model (no fit)")
    p.add_argument("--polarity-only", action="store_true",
                   help="fit only the inverted-greys check into the existing gate beside --model")
    p.add_argument("--into-package", action="store_true", help="allow writing into a bundled model's folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_fit_gate)

    p = sub.add_parser("score-head", help="what a model's finding plans claim on a labelled split, and how often rightly")
    p.add_argument("--model", default=None, help="model folder, run folder or bundled name")
    p.add_argument("--out-of-fold", default=None, metavar="RUN",
                   help="instead: the same tables from a fit-head run's out-of-fold predictions (its validation films)")
    p.add_argument("--compare", action="append", default=[], metavar="MODEL", help="also score this model (repeatable)")
    p.add_argument("--cache", action="append", default=[], help="prepared cache (repeatable)")
    p.add_argument("--split", default="val")
    p.add_argument("--allow-test", action="store_true", help="score a test split (once, after every choice)")
    p.add_argument("--features", default="cache/features", help="feature cache folder")
    p.add_argument("--out", default=None, help="write scores_SPLIT.json and .md here")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_score_head)

    p = sub.add_parser("bundle", help="one model folder from a decoder run and a fitted head (+ its gate)")
    p.add_argument("--decoder", required=True, help="decoder run checkpoint (its text side)")
    p.add_argument("--head", required=True, help="fit-head checkpoint (its image side, head config and gate files)")
    p.add_argument("--out", required=True, help="the model folder to write")
    p.add_argument("--default-beam", type=int, default=None, help="the model's default beam")
    p.add_argument("--no-repeat-ngram", type=int, default=None, help="the model's n-gram blocking")
    p.add_argument("--head-views", choices=["all", "frontal"], default="frontal",
                   help="views the finding head reads (it is fitted on frontal films)")
    p.add_argument("--card", default=None, help="a MODEL_CARD.md to put in the folder")
    p.add_argument("--config-note", action="append", default=[], metavar="STEP=CONFIG",
                   help="record a committed config in the provenance, e.g. head=configs/default-findings-head.json")
    p.add_argument("--into-package", action="store_true", help="allow writing into the package's bundled model folder")
    p.set_defaults(func=_bundle)

    p = sub.add_parser("adapt", help="a site's own model: head, calibration, floors and a gate group fitted on its films")
    p.add_argument("base", help="the model to start from (bundled name, model folder, run folder, hf://...)")
    p.add_argument("--source", default=None, help="the site's data source (`cxreport data sources`)")
    p.add_argument("--root", default=None, help="the site's dataset folder (or CSV for --source csv)")
    p.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE", help="a source option (repeatable)")
    p.add_argument("--cache", default=None, help="a prepared cache instead of --source/--root")
    p.add_argument("--out", required=True, help="the adapted model's folder")
    p.add_argument("--population", default="site", help="name of the site's population and gate group (default: site)")
    p.add_argument("--max-films", type=int, default=0, metavar="N",
                   help="use at most N train/val films, whole patients, seeded draw (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw and the fit")
    p.add_argument("--min-positives", type=int, default=None, metavar="N",
                   help="labelled positive films a finding needs to be assessed on the site's films (default 30)")
    p.add_argument("--prevalence", action="append", default=[], metavar="FINDING=P",
                   help="the finding's prevalence among the films the model will read, for its calibration and "
                        "precision floor (default: its share among the site's films; give it when they are a "
                        "selection, e.g. 'Pneumonia=0.2'; repeatable)")
    p.add_argument("--work", default=None, help="folder for the prepared films and features (default: OUT.work)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. fit.lr=1e-3 or floors.confidence=0.9")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_adapt)
