"""METEOR 1.5 through pycocoevalcap's jar and command line, one Java process for everything.

pycocoevalcap's ``Meteor`` talks to ``meteor-1.5.jar -stdio`` one line at a time: a ``SCORE |||
ref ||| hyp`` line per pair returns that pair's alignment statistics, then one ``EVAL ||| stats
||| ...`` line returns every pair's score and the corpus score (statistics pooled by the jar). We
send exactly the same lines (same escaping, same command, same jar), but

* all SCORE lines in one pipelined write (a writer thread), not one round trip per pair;
* with a deadline: a JVM that dies (BrokenPipe, no memory for -Xmx2G) or stops answering is
  killed and reported as one `MetricError` naming the cause, never a hang; no ``java`` on PATH is
  reported before anything starts;
* stderr goes to a file, so a chatty JVM cannot fill an unread pipe and block;
* the per-pair statistics are kept: `meteor_from_stats` turns summed statistics into the jar's
  corpus METEOR (checked against the jar on every call), so bootstrap resamples and paired
  permutations get exact corpus METEOR without asking Java again.

The JVM spends most of its start-up loading the paraphrase table (~6 s on a busy core), so a
session is started early (constructing it starts the JVM) and shared by both systems of a comparison.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time

import numpy as np

from cxreport.errors import CXReportError, require

METEOR_TIMEOUT_S = 180.0


class MetricError(CXReportError):
    """A metric backend failed (e.g. METEOR's Java subprocess); the message says what to do."""


def _score_line(hyp: str, ref: str) -> str:
    # pycocoevalcap Meteor._stat, byte for byte
    hyp = hyp.replace("|||", "").replace("  ", " ")
    return " ||| ".join(("SCORE", " ||| ".join([ref]), hyp))


class MeteorSession:
    """One ``meteor-1.5.jar`` process. ``score(hyps, refs)`` -> (corpus, per-pair scores, statistics)."""

    def __init__(self, timeout_s: float = METEOR_TIMEOUT_S):
        if shutil.which("java") is None:
            raise MetricError("METEOR needs Java (a JRE 8+ on PATH as `java`), which was not found: install one "
                              "(e.g. apt-get install default-jre-headless) or leave METEOR out with --metrics")
        mod = require("pycocoevalcap.meteor.meteor", "metrics", "METEOR")
        self.timeout_s = timeout_s
        self.cmd = ["java", "-jar", "-Xmx2G", mod.METEOR_JAR, "-", "-", "-stdio", "-l", "en", "-norm"]
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.cmd, cwd=os.path.dirname(os.path.abspath(mod.__file__)),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)

    def _java_said(self) -> str:
        try:
            self._stderr.seek(0)
            return self._stderr.read().decode("utf-8", "replace").strip()[-600:] or "(nothing)"
        except (OSError, ValueError):
            return "(stderr unavailable)"

    def _fail(self, what: str, exc: BaseException | None = None):
        self.close()
        raise MetricError(f"METEOR: {what}. Java said: {self._java_said()}. Check `java -version` and that 2 GB "
                          "of memory are free for -Xmx2G, or leave METEOR out with --metrics") from exc

    def _exchange(self, lines: list[str], n_out: int, deadline: float) -> list[str]:
        """Write ``lines`` (in a thread) while reading ``n_out`` answer lines, all before ``deadline``."""
        box: dict = {"out": [], "err": None}

        def write():
            try:
                for i in range(0, len(lines), 256):
                    self.proc.stdin.write(("\n".join(lines[i:i + 256]) + "\n").encode())
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError) as exc:
                box["err"] = box["err"] or exc

        def read():
            for _ in range(n_out):
                line = self.proc.stdout.readline()
                if not line:
                    box["err"] = box["err"] or EOFError("the Java process closed its output")
                    return
                box["out"].append(line.decode().strip())

        threads = [threading.Thread(target=f, daemon=True) for f in (write, read)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in threads):
            self._fail(f"no answer within {self.timeout_s:.0f} s ({len(box['out'])} of {n_out} lines came back); "
                       "the Java process was stopped")
        if box["err"] is not None:
            self._fail(f"the Java process failed ({type(box['err']).__name__}: {box['err']})", box["err"])
        return box["out"]

    def score(self, hyps: list[str], refs: list[str]):
        """(corpus METEOR, per-pair METEOR, per-pair statistics N x 23) as the jar computes them."""
        if self.proc is None:
            raise MetricError("METEOR: this session is closed")
        deadline = time.monotonic() + self.timeout_s
        n = len(hyps)
        lines = self._exchange([_score_line(h, r) for h, r in zip(hyps, refs)], n, deadline)
        out = self._exchange(["EVAL ||| " + " ||| ".join(lines)], n + 1, deadline)
        try:
            per_pair = np.array([float(x) for x in out[:n]])
            corpus = float(out[n])
            stats = np.array([[float(x) for x in line.split()] for line in lines]).reshape(n, -1)
        except ValueError as exc:
            self._fail(f"unexpected answer from the jar ({out[-1][:80]!r})", exc)
        return corpus, per_pair, stats

    def close(self):
        proc, self.proc = getattr(self, "proc", None), None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for fh in (proc.stdin, proc.stdout):
            try:
                fh.close()
            except (OSError, ValueError):
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        self._stderr.close()


# Meteor 1.5's parameters for `-l en` (task "default") and its module order: exact, stem, synonym,
# paraphrase. Statistics per pair: test/ref length, test/ref function words, then per module test/ref
# content matches and test/ref function-word matches, then chunks and test/ref word matches.
ALPHA, BETA, GAMMA, DELTA = 0.85, 0.20, 0.60, 0.75
MODULE_WEIGHTS = np.array([1.0, 0.6, 0.8, 0.6])
N_STATS = 23


def _perfect(s: np.ndarray) -> np.ndarray:
    st = s[:, 4:20].reshape(-1, 4, 4)
    return ((st[:, :, 0].sum(1) + st[:, :, 2].sum(1) == s[:, 0]) & (st[:, :, 1].sum(1) + st[:, :, 3].sum(1) == s[:, 1])
            & (s[:, 20] == 1))


def meteor_from_stats(s: np.ndarray) -> np.ndarray:
    """METEOR of each row of (summed) statistics, by the jar's MeteorScorer.computeMetrics."""
    s = np.atleast_2d(np.asarray(s, dtype=np.float64))
    st = s[:, 4:20].reshape(-1, 4, 4)
    test_w = ((DELTA * st[:, :, 0] + (1 - DELTA) * st[:, :, 2]) * MODULE_WEIGHTS).sum(1)
    ref_w = ((DELTA * st[:, :, 1] + (1 - DELTA) * st[:, :, 3]) * MODULE_WEIGHTS).sum(1)
    test_len = DELTA * (s[:, 0] - s[:, 2]) + (1 - DELTA) * s[:, 2]
    ref_len = DELTA * (s[:, 1] - s[:, 3]) + (1 - DELTA) * s[:, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(test_len > 0, test_w / test_len, 0.0)
        r = np.where(ref_len > 0, ref_w / ref_len, 0.0)
        fmean = np.where((p > 0) & (r > 0), p * r / (ALPHA * p + (1 - ALPHA) * r), 0.0)
        frag = np.where(_perfect(s), 0.0, np.nan_to_num(s[:, 20] / ((s[:, 21] + s[:, 22]) / 2)))
    return np.maximum(fmean * (1 - GAMMA * frag ** BETA), 0.0)


def summable_stats(stats: np.ndarray) -> np.ndarray:
    """Per-pair statistics ready to be summed: the jar leaves the chunk of a pair matched whole in
    one chunk out of its corpus total."""
    out = np.array(stats, dtype=np.float64, copy=True)
    out[_perfect(out), 20] = 0.0
    return out
