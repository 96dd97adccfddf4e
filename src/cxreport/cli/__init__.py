"""`cxreport <command>`: argparse lives here only, one module per command group; nothing imports cli/.

Each module in ``COMMAND_MODULES`` exposes ``register(subparsers)`` and sets its handlers with
``set_defaults(func=...)``. Modules are imported when the parser is built, so they keep heavy
imports (torch, transformers, fastapi) inside their handlers: `cxreport --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from cxreport import __version__
from cxreport.errors import CXReportError

# The order is the order of `cxreport --help`.
COMMAND_MODULES = [
    "cxreport.cli.data",
    "cxreport.cli.text",
    "cxreport.cli.models",
    "cxreport.cli.train",
    "cxreport.cli.fit",
    "cxreport.cli.annotate",
    "cxreport.cli.vlm",
    "cxreport.cli.evaluate",
    "cxreport.cli.generate",
    "cxreport.cli.serve",
    "cxreport.cli.dicom",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxreport", description="Chest X-ray report generation: data, training, evaluation, serving."
    )
    parser.add_argument("--version", action="version", version=f"cxreport {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        rc = args.func(args)
    except CXReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to continue where it stopped", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
