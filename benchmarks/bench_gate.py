"""Time the input gate's added work per study (one film) with the bundled model's gate.

    python benchmarks/bench_gate.py [--model DIR] [--runs 200] [--image FILE]

The gate's pixel checks, orientation classifier and view decision run on the letterboxed film;
its learned score reuses the pooled features of the encoder pass the report needs anyway, so only
the distance itself is extra. Colour detection is part of decoding (data.images). Prints p50/p95 ms.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    from cxreport.data.images import colour_fraction
    from cxreport.inference.gate import Gate, GateParams, decide_view
    from cxreport.inference.pipeline import default_model_dir

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(default_model_dir()))
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    params = GateParams.load(args.model)
    if params is None:
        raise SystemExit(f"{args.model}: no gate files")
    gate = Gate(params)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:256, 0:256]
    film = (128 + 60 * np.sin(xx / 30.0) * np.cos(yy / 40.0) + rng.normal(0, 5, (256, 256))).clip(0, 255).astype(np.uint8)
    rgb = np.repeat(film[..., None], 3, -1)
    pooled = rng.normal(0, 1, (1, params.ood_mean.shape[1])).astype(np.float32) * 0.1 + params.ood_mean[:1]
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        colour = colour_fraction(rgb)
        gate.check_pixels(film, "film", colour)
        up, _ = gate.upright(film)
        decide_view(None, None, up, 0, gate, lambda v: v)
        gate.ood_distance(pooled)
        times.append((time.perf_counter() - t0) * 1000)
    t = np.array(times)
    print(f"gate per study (1 film): p50 {np.percentile(t, 50):.2f} ms, p95 {np.percentile(t, 95):.2f} ms "
          f"over {args.runs} runs")


if __name__ == "__main__":
    main()
