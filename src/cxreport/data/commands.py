"""`cxreport data ...`: prepare a cache, report on it, list sources, download datasets."""

from __future__ import annotations

import os


def _parse_options(items: list[str]) -> dict:
    out = {}
    for it in items or []:
        if "=" not in it:
            from cxreport.errors import InputError

            raise InputError(f"--option {it!r}: expected KEY=VALUE, e.g. split_file=splits.csv")
        k, v = it.split("=", 1)
        out[k.strip()] = v
    return out


def _prepare(args):
    from cxreport.data.cache import prepare_cache

    out = prepare_cache(args.source, args.root, args.out, size=args.size, workers=args.workers,
                        skip_bad=args.skip_bad, force=args.force, allow_missing_images=args.allow_missing_images,
                        **({"max_pixels": args.max_pixels} if args.max_pixels else {}), **_parse_options(args.option))
    print(out)


def _report(args):
    from cxreport.data.report import write_report

    print(write_report(args.cache, args.out))


def _sources(args):
    from cxreport.data.sources import list_sources

    print("\n".join(list_sources()))


def register(sub) -> None:
    data = sub.add_parser("data", help="prepare, explore and download datasets")
    dsub = data.add_subparsers(dest="data_command", metavar="ACTION")

    p = dsub.add_parser("prepare", help="preprocess a dataset once into a cache (resumable)")
    p.add_argument("--source", required=True,
                   help="iu-xray, iu-xray-openi, r2gen, mimic-cxr, csv, nih-cxr14, kermany")
    p.add_argument("--root", required=True, help="the dataset's folder (or the CSV for --source csv)")
    p.add_argument("--out", required=True, help="cache folder to write")
    p.add_argument("--size", type=int, default=256, help="square side in pixels (letterboxed)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    p.add_argument("--skip-bad", action="store_true", help="list unreadable images and go on")
    p.add_argument("--max-pixels", type=int, default=None, metavar="N",
                   help="refuse images whose declared size exceeds N pixels (default 80 million)")
    p.add_argument("--allow-missing-images", action="store_true",
                   help="build the cache even when none of the listed images exist (text only)")
    p.add_argument("--force", action="store_true", help="replace an existing, different cache")
    p.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                   help="source option, e.g. split_file=PATH, images_dir=PATH, text_column=report")
    p.set_defaults(func=_prepare)

    r = dsub.add_parser("report", help="statistics and plots of a prepared cache")
    r.add_argument("cache")
    r.add_argument("--out", required=True, help="folder for report.md, stats.json and PNG plots")
    r.set_defaults(func=_report)

    s = dsub.add_parser("sources", help="list the dataset adapters")
    s.set_defaults(func=_sources)

    try:
        from cxreport.data.download import add_download_parser
    except ModuleNotFoundError as exc:
        if exc.name != "cxreport.data.download":
            raise
    else:
        add_download_parser(dsub)
    data.set_defaults(func=lambda a: data.print_help())
