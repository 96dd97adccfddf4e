"""One film through `cxreport generate`, per runtime: wall time and peak memory of the whole command.

    PYTHONPATH=src python benchmarks/bench_cli.py [--runs 5] [--runtimes torch,lean] [--film PATH] [--threads 0]

Runs ``python -m cxreport generate FILM --runtime R`` --runs times per runtime, alternating the
runtimes (torch, lean, torch, lean, ...) so that a change in the machine's load hits both alike,
and reads each command's wall time and peak resident memory (``wait4``'s ru_maxrss, what
``/usr/bin/time -v`` calls "Maximum resident set size"). Prints median, min and max per runtime,
their ratio, the load average before and after, whether the reports were identical, and whether
``python -X importtime`` shows torch imported on each runtime's path.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
FILM = SRC / "cxreport" / "examples" / "nih_cxr14" / "00000129_000.jpg"


def one(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """(wall s, peak RSS MB, stdout) of one command."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode})")
    return wall, usage.ru_maxrss / 1024, out


def imports_torch(runtime: str, film: Path, env: dict) -> bool:
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "cxreport", "generate", str(film), "--runtime",
                          runtime], env=env, capture_output=True, text=True)
    return any(line.rstrip().endswith("| torch") for line in out.stderr.splitlines())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--runtimes", default="torch,lean")
    ap.add_argument("--film", type=Path, default=FILM)
    ap.add_argument("--threads", type=int, default=0, help="--threads of the command (0: its default)")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("CXREPORT_RUNTIME", None)
    runtimes = args.runtimes.split(",")
    base = [sys.executable, "-m", "cxreport", "generate", str(args.film), "--threads", str(args.threads)]
    for r in runtimes:  # warm the page cache and any first-run work (not timed)
        one(base + ["--runtime", r], env)
    load_before = os.getloadavg()
    walls, peaks, texts = {r: [] for r in runtimes}, {r: [] for r in runtimes}, {r: set() for r in runtimes}
    for _ in range(args.runs):
        for r in runtimes:
            wall, peak, out = one(base + ["--runtime", r], env)
            walls[r].append(wall)
            peaks[r].append(peak)
            texts[r].add(out)
    load_after = os.getloadavg()
    print(f"`cxreport generate {args.film.name}`, {args.runs} runs per runtime, alternated; load average "
          f"{' '.join(f'{x:.2f}' for x in load_before)} before, {' '.join(f'{x:.2f}' for x in load_after)} after")
    print("| runtime | wall s median | min | max | peak RSS MB median | min | max | imports torch |")
    print("|---|---|---|---|---|---|---|---|")
    for r in runtimes:
        w, p = walls[r], peaks[r]
        print(f"| {r} | {statistics.median(w):.2f} | {min(w):.2f} | {max(w):.2f} | {statistics.median(p):.0f} | "
              f"{min(p):.0f} | {max(p):.0f} | {'yes' if imports_torch(r, args.film, env) else 'no'} |")
    if len(runtimes) == 2:
        a, b = runtimes
        print(f"{b} / {a}: wall {statistics.median(walls[b]) / statistics.median(walls[a]):.2f}x, peak RSS "
              f"{statistics.median(peaks[b]) / statistics.median(peaks[a]):.2f}x")
    outputs = set().union(*texts.values())
    print("reports identical across runtimes and runs:", "yes" if len(outputs) == 1 else f"no ({len(outputs)} texts)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
