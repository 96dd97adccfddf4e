"""One-study report generation latency on CPU, with and without the decoder KV cache.

    PYTHONPATH=src python benchmarks/bench_generate.py [--models tiny effnet-transformer] [--threads 1]

Untrained weights, so decoding never stops early: eos is suppressed to force exactly max_len
tokens, which makes the two modes comparable. Prints the median over --repeats runs in ms.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from cxreport.models import create_model


def bench(name: str, max_len: int, repeats: int, vocab: int) -> dict:
    torch.manual_seed(0)
    model = create_model(name, vocab_size=vocab, pad_id=0, bos_id=1, eos_id=2).eval()
    model.decoder.eos_id = -1  # no token ever ends a report: every run decodes max_len tokens
    size = model.cfg.preprocess.image_size
    images = torch.rand(1, 2, 1, size, size)
    view_ids = torch.tensor([[0, 1]])
    out = {"model": name, "image_size": size, "views": 2, "max_len": max_len}
    for use_cache in (True, False):
        model.generate(images=images, view_ids=view_ids, max_len=4, use_cache=use_cache)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            res = model.generate(images=images, view_ids=view_ids, max_len=max_len, use_cache=use_cache)
            times.append((time.perf_counter() - t0) * 1000)
        assert len(res[0]["token_ids"]) == max_len, len(res[0]["token_ids"])
        out["cache_ms" if use_cache else "no_cache_ms"] = statistics.median(times)
    # Encoder-only cost, to separate image encoding from decoding.
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            t0 = time.perf_counter()
            model.encode_images(images, None, view_ids)
            times.append((time.perf_counter() - t0) * 1000)
    out["encode_ms"] = statistics.median(times)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["tiny", "effnet-transformer"])
    ap.add_argument("--max-len", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--vocab", type=int, default=4000)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, vocab {args.vocab}, greedy, 1 study x 2 views")
    for name in args.models:
        r = bench(name, args.max_len, args.repeats, args.vocab)
        print(f"{r['model']:>20}  {r['image_size']}px  max_len {r['max_len']}:  "
              f"KV cache {r['cache_ms']:8.1f} ms   no cache {r['no_cache_ms']:8.1f} ms   "
              f"(speed-up x{r['no_cache_ms'] / r['cache_ms']:.2f}; image encoding {r['encode_ms']:.1f} ms)")


if __name__ == "__main__":
    main()
