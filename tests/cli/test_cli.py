import argparse
import subprocess
import sys

import pytest

from cxreport.cli import COMMAND_MODULES, build_parser, main


def test_help_lists_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "data" in out


def test_module_entry_point():
    r = subprocess.run([sys.executable, "-m", "cxreport", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and "cxreport" in r.stdout


def _commands(parser: argparse.ArgumentParser, prefix=()):
    """Every command path, e.g. ('data', 'prepare'), walking nested subparsers."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,)
                yield from _commands(sub, prefix + (name,))


COMMANDS = sorted(set(_commands(build_parser())))


def test_every_command_group_registers_something():
    assert len(COMMAND_MODULES) == len(set(COMMAND_MODULES))
    assert {"data", "label", "models", "train", "annotate", "evaluate", "evaluate-findings", "score",
            "baselines", "generate", "serve", ("data", "download")} <= {c[0] if len(c) == 1 else c for c in COMMANDS}


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0
    assert "usage: cxreport " + " ".join(command) in capsys.readouterr().out


def test_help_stays_light():
    """Command modules keep heavy imports in their handlers: building the parser loads no torch."""
    code = ("import sys; from cxreport.cli import build_parser; build_parser(); "
            "heavy = [m for m in ('torch', 'transformers', 'fastapi', 'numpy') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
