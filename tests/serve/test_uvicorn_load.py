"""`cxreport serve` as a real process on a loopback port: 50 concurrent requests, 0 errors."""

import asyncio
import os
import subprocess
import sys
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from tests.serve.server_process import REPO, free_port, start_server, stop_server  # noqa: E402


async def fire(port: int, files: list, n: int = 50) -> list:
    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120, limits=limits) as client:
        async def one(i):
            name, data = files[i % len(files)]
            try:
                resp = await client.post("/v1/reports", files=[("images", (name, data, "image/png"))],
                                         data={"max_len": "20"})
                return resp.status_code, resp.json()
            except Exception as exc:  # a dropped connection counts as an error, not a crash of the test
                return None, repr(exc)

        return await asyncio.gather(*(one(i) for i in range(n)))


def test_fifty_concurrent_requests_on_loopback(tiny_run, xrays):
    port = free_port()
    proc = start_server(tiny_run, port)
    try:
        files = [(p.name, p.read_bytes()) for p in xrays.values()]
        started = time.monotonic()
        results = asyncio.run(asyncio.wait_for(fire(port, files), timeout=240))
        elapsed = time.monotonic() - started
        # The event loop kept answering while the model worked through the queue.
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        log = stop_server(proc)
    errors = [r for r in results if r[0] != 200]
    assert not errors, (errors[:3], log[-2000:])
    assert all(r[1]["report"] for r in results)
    print(f"50 concurrent requests: 0 errors in {elapsed:.1f} s")


def test_serve_refuses_unset_api_key_variable(tiny_run):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    env.pop("NO_SUCH_KEY_VAR", None)
    out = subprocess.run([sys.executable, "-m", "cxreport", "serve", "--model", str(tiny_run),
                          "--api-key-env", "NO_SUCH_KEY_VAR"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "NO_SUCH_KEY_VAR" in out.stderr
