import subprocess
import sys

from cxreport.cli import main


def test_help_lists_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "data" in out


def test_module_entry_point():
    r = subprocess.run([sys.executable, "-m", "cxreport", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and "cxreport" in r.stdout
