"""Opt-in: region annotation against a real OpenAI-compatible server on loopback.

Skipped unless ``CXREPORT_TEST_GGUF`` names a small instruct model in GGUF and
``llama-cpp-python[server]`` is installed (neither is a project dependency; see docs/annotate.md,
"Against a real model"). Starts ``python -m llama_cpp.server`` on 127.0.0.1 with one thread, then
runs `cxreport annotate compare` on three short reports with and without the schema mode.

    CXREPORT_TEST_GGUF=/path/to/model.gguf pytest tests/annotate/test_real_server.py
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cxreport.cli import main
from cxreport.text.regions import REGIONS, split_regions

GGUF = os.environ.get("CXREPORT_TEST_GGUF")
REPORTS = [
    "The heart is normal in size. The lungs are clear. No pneumothorax.",
    "Cardiomegaly. Small left pleural effusion. Degenerative changes of the spine.",
    "Mediastinal contours are normal. No focal consolidation.",
]

pytestmark = pytest.mark.skipif(not GGUF, reason="set CXREPORT_TEST_GGUF to a GGUF model file to run")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("llama_cpp.server", reason="needs pip install 'llama-cpp-python[server]'")
    if not Path(GGUF).is_file():
        pytest.fail(f"CXREPORT_TEST_GGUF={GGUF}: file not found")
    port = _free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", GGUF, "--model_alias", "test-model",
           "--host", "127.0.0.1", "--port", str(port), "--n_threads", "1", "--n_threads_batch", "1",
           "--n_ctx", "2048"]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300  # loading a model on a busy machine
        while True:
            try:
                with urllib.request.urlopen(base + "/models", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not start: {log.read_text()[-2000:]}")
            time.sleep(1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_compare_with_and_without_schema_mode(server, tmp_path):
    reports, gold = tmp_path / "reports.csv", tmp_path / "gold.jsonl"
    with open(reports, "w", newline="") as fh:
        csv.writer(fh).writerows([("uid", "findings"), *((f"r{i}", t) for i, t in enumerate(REPORTS))])
    gold.write_text("".join(json.dumps({"uid": f"r{i}", **split_regions(t)}) + "\n" for i, t in enumerate(REPORTS)))
    results = {}
    for mode in ("off", "auto"):
        out = tmp_path / f"{mode}.json"
        main(["annotate", "compare", "--prompts", "v1", "--input", str(reports), "--gold", str(gold),
              "--base-url", server, "--model", "test-model", "--concurrency", "1", "--timeout", "600",
              "--max-tokens", "256", "--schema-mode", mode, "--no-cache", "--no-progress", "--out", str(out)])
        results[mode] = json.loads(out.read_text())["results"][0]
    strict = results["auto"]
    # llama-cpp-python refuses json_schema (HTTP 422) and enforces json_object + schema
    assert strict["usage"]["schema_mode"] == "llamacpp" and strict["usage"]["served_model"] == "test-model"
    assert strict["failed"] == 0 and strict["usage"]["malformed_first_answers"] == 0
    # real answers, not empty ones (a 0.5B model sorts them poorly: quality is measured in the docs)
    assert any(any(p[r] for r in REGIONS) for p in strict["predictions"])
    assert results["off"]["usage"]["schema_mode"] == "off" and results["off"]["usage"]["requests"] >= 3
