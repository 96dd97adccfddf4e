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
    from cxreport.data.sources import describe_source, list_sources

    for name in [args.name] if args.name else list_sources():
        d = describe_source(name)
        print(f"{name}: {d['about']}" if not args.name else f"{name}\n\n{d['doc']}\n")
        if d["options"]:
            print("  options (cxreport data prepare --source " + name + " -o KEY=VALUE):")
        for opt, default, text in d["options"]:
            print(f"    {opt} (default {default!r}): {text}" if default is not None else f"    {opt}: {text}")
        print()
    if not args.name:
        print("the details of one: cxreport data sources NAME")


def register(sub) -> None:
    data = sub.add_parser("data", help="prepare, explore and download datasets")
    dsub = data.add_subparsers(dest="data_command", metavar="ACTION")

    p = dsub.add_parser("prepare", help="preprocess a dataset once into a cache (resumable)")
    p.add_argument("--source", required=True,
                   help="csv (your own films), iu-xray, iu-xray-openi, r2gen, mimic-cxr, nih-cxr14, kermany: "
                   "`cxreport data sources` explains each and its options")
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
                   help="source option, e.g. images_dir=PATH, text_column=report (repeatable; "
                   "`cxreport data sources NAME` lists them)")
    p.set_defaults(func=_prepare)

    r = dsub.add_parser("report", help="statistics and plots of a prepared cache")
    r.add_argument("cache")
    r.add_argument("--out", required=True, help="folder for report.md, stats.json and PNG plots")
    r.set_defaults(func=_report)

    s = dsub.add_parser("sources", help="list the dataset adapters and the options each takes")
    s.add_argument("name", nargs="?", help="one source: its layout in full")
    s.set_defaults(func=_sources)

    add_download_parser(dsub)
    data.set_defaults(func=lambda a: data.print_help())


# ---- data download ------------------------------------------------------------------------


def _credentials(args, needs_auth: bool):
    import sys

    from cxreport.data.download import Credentials
    from cxreport.errors import InputError

    if not needs_auth:
        return None
    tty = sys.stdin.isatty()
    user = args.user
    if not user:
        if not tty:
            raise InputError("no PhysioNet username: pass --user (stdin is not a terminal to ask)")
        user = input("PhysioNet username: ").strip()
    if args.password_env:
        password = os.environ.get(args.password_env, "")
        if not password:
            raise InputError(f"environment variable {args.password_env} is unset or empty; "
                             "export your PhysioNet password in it (e.g. read -s VAR; export VAR)")
    elif tty:
        import getpass

        password = getpass.getpass(f"PhysioNet password for {user}: ")
    else:
        raise InputError("no password: stdin is not a terminal, so it cannot be asked for; pass "
                         "--password-env VAR with the password in that environment variable")
    if not user or not password:
        raise InputError("empty PhysioNet username or password")
    return Credentials(user, password)


def _selection(args):
    from pathlib import Path

    from cxreport.data.download_sources import Selection
    from cxreport.errors import InputError

    if args.files:
        path = Path(args.files).expanduser()
        if not path.is_file():
            raise InputError(f"--files {path}: no such file; give a list of image paths, one per line")
        lines = tuple(ln for ln in path.read_text(encoding="utf-8").splitlines()
                      if ln.strip() and not ln.lstrip().startswith("#"))
        if not lines:
            raise InputError(f"--files {path}: the list is empty")
        return Selection(files=lines, files_source=str(path))
    return Selection(max_studies=args.max_studies)


def _positive(text: str) -> int:
    import argparse

    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _download(args) -> int:
    import hashlib
    import sys
    from pathlib import Path

    from cxreport.data.download import DownloadOptions, download, is_remote, upload_tree
    from cxreport.data.download_sources import STATE_DIR, get_dataset

    spec = get_dataset(args.dataset)
    selection = _selection(args)
    remote = is_remote(args.out)
    if remote:
        key = hashlib.sha1(f"{args.dataset} {args.out}".encode()).hexdigest()[:10]
        out = Path(args.staging or Path.home() / ".cache" / "cxreport" / "download" / f"{args.dataset}-{key}")
    else:
        out = Path(args.out.removeprefix("file://"))
    opts = DownloadOptions(
        out=out.expanduser(), base_url=args.base_url or spec.url_for(args.version), workers=args.workers,
        retries=args.retries, timeout=args.timeout, progress=not args.no_progress and sys.stderr.isatty())
    creds = _credentials(args, spec.needs_auth)
    summary = download(args.dataset, opts, creds, selection, version=args.version)
    print(summary.format())
    if remote:
        print(f"uploaded {upload_tree(opts.out, args.out, args.workers)} new files to {args.out} "
              f"(local copy kept in {opts.out})")
    if summary.failed:
        for path, reason in list(sorted(summary.failed.items()))[:10]:
            print(f"  failed: {path}: {reason}", file=sys.stderr)
        print(f"{len(summary.failed)} file(s) failed (list in {opts.out / STATE_DIR / 'failed.txt'}); "
              "rerun the same command to retry them", file=sys.stderr)
        return 1
    return 0


def add_download_parser(data_subparsers) -> None:
    """Add ``download`` to the ``cxreport data`` subcommands."""
    from cxreport.data.download_sources import dataset_names, get_dataset

    p = data_subparsers.add_parser(
        "download", help="download a dataset release (resumable, verified, parallel)",
        description="Download a dataset release with resume, sha256 verification, retries and parallel "
        "workers. Rerun the same command after an interruption to continue. "
        + "; ".join(f"{n}: {get_dataset(n).summary}" for n in dataset_names()))
    p.add_argument("dataset", choices=dataset_names())
    p.add_argument("--out", required=True, help="output folder (or an fsspec URL, see docs/download.md)")
    p.add_argument("--version", default=None, help="release version (PhysioNet datasets; default 2.1.0)")
    p.add_argument("--user", help="PhysioNet username")
    p.add_argument("--password-env", metavar="VAR",
                   help="environment variable holding the password (default: ask on the terminal)")
    subset = p.add_mutually_exclusive_group()
    subset.add_argument("--files", metavar="LIST",
                        help="only these images, one per line (e.g. the release's IMAGE_FILENAMES)")
    subset.add_argument("--max-studies", type=_positive, metavar="N", help="only the first N studies")
    p.add_argument("--workers", type=_positive, default=4, help="parallel downloads (default 4)")
    p.add_argument("--base-url", help="release URL (default: the official one)")
    p.add_argument("--retries", type=int, default=5, help="retries per file without progress (default 5)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds without data before a retry")
    p.add_argument("--staging", help="local folder for an fsspec --out (default under ~/.cache/cxreport)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_download)
