"""`cxreport <command>`: each area registers its own thin subcommands.

Command modules are imported when the parser is built, so they must keep heavy imports (torch,
transformers, fastapi) inside their handlers: `cxreport --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from cxreport import __version__
from cxreport.errors import CXReportError

# Each module exposes ``register(subparsers)``; handlers are set with ``set_defaults(func=...)``.
COMMAND_MODULES = [
    "cxreport.data.commands",
    "cxreport.text.commands",
    "cxreport.models.commands",
    "cxreport.training.commands",
    "cxreport.metrics.findings",
    "cxreport.annotate.commands",
    "cxreport.metrics.commands",
    "cxreport.generate_commands",
    "cxreport.serve.commands",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxreport", description="Chest X-ray report generation: data, training, evaluation, serving."
    )
    parser.add_argument("--version", action="version", version=f"cxreport {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # an area not built yet
                continue
            raise
        module.register(sub)
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
