"""Concurrent load on `cxreport serve` over loopback: errors and latency percentiles.

    PYTHONPATH=src python benchmarks/bench_serve_load.py [--model PATH] [--requests 50] [--concurrency 50]
    PYTHONPATH=src python benchmarks/bench_serve_load.py --ab --requests 300     # --max-batch 1 vs default
    PYTHONPATH=src python benchmarks/bench_serve_load.py --ab --requests 300 --image-dir ../shared/data/nih_cxr14/images
    PYTHONPATH=src python benchmarks/bench_serve_load.py --serve-args="--max-queue 4"
    python benchmarks/bench_serve_load.py --url http://127.0.0.1:8000   # a server already running
    PYTHONPATH=src python benchmarks/bench_serve_load.py --requests 300 --runtimes onnxruntime,lean,onnxruntime,lean

Starts the server as a subprocess on a free loopback port (unless --url), sends --requests
report requests with at most --concurrency in flight, and prints status counts, p50/p95/max
latency and throughput; meanwhile it checks that /healthz keeps answering (the event loop is not
blocked by model work). ``--ab`` runs the same load twice in one run, first against
``--max-batch 1`` (batching off) and then against the default server, and prints both with the
ratios. ``--runtimes`` runs the same load once per listed runtime (``serve --runtime``; repeat
names to alternate them). A server this script started also reports its peak resident memory
(VmHWM of its process, read before it stops). Model: --model, else the bundled one, else an
UNTRAINED effnet-transformer checkpoint written to a temp folder (said in the output). Each figure
is printed with the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SRC = Path(__file__).resolve().parents[1] / "src"


def untrained_checkpoint(folder: Path) -> Path:
    from cxreport.checkpoint import save_checkpoint
    from cxreport.models import create_model
    from cxreport.text.tokenizer import SPECIALS, WordTokenizer

    tok = WordTokenizer(list(SPECIALS) + [f"w{i}" for i in range(4000 - len(SPECIALS))])
    model = create_model("effnet-transformer", vocab_size=tok.vocab_size, pad_id=0, bos_id=1, eos_id=2,
                         pretrained=False)
    return save_checkpoint(folder / "untrained-effnet-transformer", model, tokenizer=tok, half=True)


EXAMPLE_FILM = SRC / "cxreport" / "examples" / "nih_cxr14" / "00000129_000.jpg"
SHARED_NIH = Path(os.environ.get("CXREPORT_SHARED", SRC.parents[1] / "shared")) / "data" / "nih_cxr14" / "images"


def film_png(size: int = 1024, path: Path = EXAMPLE_FILM) -> bytes:
    """A real chest film (the packaged NIH sample unless --image), resized to ``size`` and sent as
    PNG. Synthetic patterns are no longer usable: the input gate refuses them (422)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    with Image.open(path) as im:
        im.convert("L").resize((size, size), Image.BILINEAR).save(buf, format="PNG")
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def probe_health(url: str, stop, results) -> None:
    """Another process: GET /healthz every 0.2 s until ``stop``; puts [(ms, status), ...]."""
    import httpx

    health = []
    with httpx.Client(base_url=url, timeout=120) as c:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                status = c.get("/healthz").status_code
            except httpx.HTTPError:
                status = 0
            health.append(((time.perf_counter() - t0) * 1000, status))
            time.sleep(0.2)
    results.put(health)


async def run_load(url: str, bodies: list[bytes], n: int, concurrency: int, max_len: int) -> dict:
    import httpx

    sem = asyncio.Semaphore(concurrency)
    lat, statuses, words = [], {}, []
    by_status: dict = {}
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=httpx.Limits(max_connections=concurrency + 2)) as c:
        async def one(i):
            async with sem:
                t0 = time.perf_counter()
                try:
                    body = bodies[i % len(bodies)]
                    r = await c.post("/v1/reports", files=[("images", (f"{i}.png", body, "image/png"))],
                                     data={"max_len": str(max_len)})
                    key = r.status_code
                    if key == 200:
                        words.append(len(r.json()["report"].split()))
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                lat.append((time.perf_counter() - t0) * 1000)
                by_status.setdefault(key, []).append(lat[-1])
                statuses[key] = statuses.get(key, 0) + 1

        await c.post("/v1/reports", files=[("images", ("warm.png", bodies[0], "image/png"))], data={"max_len": "4"})
        # /healthz is probed from another process: the upload clients keep this event loop busy, and
        # their delays must not be charged to the server.
        ctx = multiprocessing.get_context("spawn")
        stop, results = ctx.Event(), ctx.Queue()
        prober = ctx.Process(target=probe_health, args=(url, stop, results), daemon=True)
        prober.start()
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - t0
        stop.set()
        health = results.get(timeout=120)
        prober.join(timeout=30)
    arr = np.asarray(lat)
    return {"requests": n, "concurrency": concurrency, "statuses": statuses,
            "errors": sum(v for k, v in statuses.items() if k != 200), "wall_s": round(wall, 2),
            "req_per_s": round(n / wall, 2), "p50_ms": round(float(np.percentile(arr, 50)), 1),
            "p95_ms": round(float(np.percentile(arr, 95)), 1), "max_ms": round(float(arr.max()), 1),
            "healthz_max_ms": round(max((h[0] for h in health), default=0.0), 1),
            "healthz_p95_ms": round(float(np.percentile([h[0] for h in health], 95)), 1) if health else 0.0,
            "healthz_ok": all(h[1] == 200 for h in health), "healthz_n": len(health),
            "p50_by_status": {k: round(float(np.percentile(v, 50)), 1) for k, v in by_status.items()},
            "words_per_report": float(np.median(words)) if words else 0.0}


def start_server(model: str | None, port: int, extra: list[str]) -> subprocess.Popen:
    import httpx

    cmd = [sys.executable, "-m", "cxreport", "serve", "--port", str(port), "--log-level", "warning", *extra]
    cmd += ["--model", model] if model else []
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"server did not start: {shlex.join(cmd)}")
        time.sleep(0.3)


def peak_rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def load_average() -> str:
    try:
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "load average n/a"


def report(label: str, res: dict, args) -> None:
    films = f"{args.image_dir} films in turn" if args.image_dir else "one film"
    print(f"[{label}] {res['requests']} requests, {res['concurrency']} concurrent, {films}, {args.image_size} px PNG, "
          f"max_len {args.max_len} (~{res['words_per_report']:.0f} words/report): statuses {res['statuses']}, "
          f"errors {res['errors']}")
    print(f"[{label}] latency p50 {res['p50_ms']} ms, p95 {res['p95_ms']} ms, max {res['max_ms']} ms; "
          f"{res['req_per_s']} req/s over {res['wall_s']} s; /healthz during load: p95 {res['healthz_p95_ms']} ms, "
          f"max {res['healthz_max_ms']} ms ({res['healthz_n']} probes), all ok: {res['healthz_ok']}; "
          f"p50 by status {res['p50_by_status']} ms; {res['load']}"
          + (f"; server peak RSS {res['peak_rss_mb']:.0f} MB" if res.get("peak_rss_mb") else ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--url", default=None, help="an already running server (skips starting one)")
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--max-len", type=int, default=60)
    ap.add_argument("--image-size", type=int, default=1024, help="side of the PNG sent")
    ap.add_argument("--image", type=Path, default=EXAMPLE_FILM, help="the film to send (default: a packaged NIH sample)")
    ap.add_argument("--image-dir", type=Path, default=None,
                    help="send these films in turn instead (*.png, *.jpg; default: ../shared/data/nih_cxr14/images "
                         "when it exists and --image is not given): "
                         "one film sent again and again has one finding plan, so the server's plan cache "
                         "answers every report after the first")
    ap.add_argument("--serve-args", default="", help="extra `cxreport serve` options, e.g. '--max-queue 4'")
    ap.add_argument("--ab", action="store_true", help="run --max-batch 1 first, then the default, in this run")
    ap.add_argument("--runtimes", default="", help="comma-separated `serve --runtime` values, one run each, e.g. "
                                                  "onnxruntime,lean,onnxruntime,lean")
    ap.add_argument("--ok-statuses", default="200", help="statuses that are not errors (e.g. 200,503)")
    args = ap.parse_args()

    note, tmp = "", tempfile.TemporaryDirectory()
    model = args.model
    if args.image_dir is None and args.image == EXAMPLE_FILM and SHARED_NIH.is_dir():
        args.image_dir = SHARED_NIH  # varied films by default where they exist (the plan cache)
    if args.image_dir is not None:
        films = sorted(p for p in args.image_dir.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if not films:
            raise SystemExit(f"{args.image_dir}: no .png/.jpg films")
        bodies = [film_png(args.image_size, p) for p in films[:args.requests]]
    else:
        bodies = [film_png(args.image_size, args.image)]
    extra = shlex.split(args.serve_args)
    variants = [("max-batch 1", extra + ["--max-batch", "1"]), ("default", extra)] if args.ab else [("run", extra)]
    if args.runtimes:
        names = args.runtimes.split(",")
        variants = [(f"{r} #{names[:i + 1].count(r)}", extra + ["--runtime", r]) for i, r in enumerate(names)]
    results = {}
    try:
        if args.url is None and model is None:
            sys.path.insert(0, str(SRC))
            from cxreport.errors import InputError
            from cxreport.inference import resolve_model_path

            try:
                resolve_model_path(None)
            except InputError:
                model = str(untrained_checkpoint(Path(tmp.name)))
                note = "bundled model absent: serving an UNTRAINED effnet-transformer checkpoint"
        for label, server_args in variants:
            proc, url = None, args.url
            if url is None:
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                proc = start_server(model, port, server_args)
            try:
                load = load_average()
                res = asyncio.run(run_load(url, bodies, args.requests, args.concurrency, args.max_len))
                res["load"] = f"{load} before, {load_average()} after"
                res["peak_rss_mb"] = peak_rss_mb(proc.pid) if proc is not None else None
            finally:
                if proc is not None:
                    proc.terminate()
                    proc.wait(timeout=30)
            ok = {int(x) for x in args.ok_statuses.split(",")}
            res["errors"] = sum(v for k, v in res["statuses"].items() if k not in ok)
            results[label] = res
            print(f"server: cxreport serve {shlex.join(server_args)}".rstrip(), flush=True)
            report(label, res, args)
    finally:
        tmp.cleanup()
    print(f"model: {model or 'server default'}" + (f"  [{note}]" if note else ""))
    if args.ab:
        a, b = results["max-batch 1"], results["default"]
        print(f"default vs --max-batch 1: {b['req_per_s'] / a['req_per_s']:.2f}x requests/s, "
              f"p50 {b['p50_ms'] / a['p50_ms']:.2f}x, p95 {b['p95_ms'] / a['p95_ms']:.2f}x")
    if args.runtimes:
        print("| runtime (run) | requests/s | p50 ms | p95 ms | errors | server peak RSS MB |")
        print("|---|---|---|---|---|---|")
        for label, r in results.items():
            peak = f"{r['peak_rss_mb']:.0f}" if r.get("peak_rss_mb") else "n/a"
            print(f"| {label} | {r['req_per_s']} | {r['p50_ms']} | {r['p95_ms']} | {r['errors']} | {peak} |")
    return 1 if any(r["errors"] for r in results.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
