"""Per-study latency of the inference pipeline on this machine's CPU: image files in, report out.

    PYTHONPATH=src python benchmarks/bench_latency.py [--model PATH] [--images F.png L.png] [--runs 20]

Times ``Pipeline.generate`` end to end (decode + letterbox + model + text), plus its parts, and
prints p50/p95 in ms. Default model: the bundled one; when it is absent an UNTRAINED
``effnet-transformer`` (pretrained=False, 4000-word vocabulary) stands in and the output says so;
untrained, it rarely stops before --max-len tokens, so that is a worst-case decode length.
Default images: a frontal + lateral pair from the shared IU X-ray folder when present, else two
the two packaged NIH sample films re-saved as 2048 x 2048 PNGs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

IU_IMAGES = Path(os.environ.get("CXREPORT_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data" / \
    "iu_xray" / "images"


def fallback_pipeline():
    """An untrained effnet-transformer with a 4000-word vocabulary (no downloads)."""
    from cxreport.inference import Pipeline, PipelineInfo
    from cxreport.models import create_model
    from cxreport.text.tokenizer import SPECIALS, WordTokenizer

    tok = WordTokenizer(list(SPECIALS) + [f"w{i}" for i in range(4000 - len(SPECIALS))])
    model = create_model("effnet-transformer", vocab_size=tok.vocab_size, pad_id=tok.pad_id, bos_id=tok.bos_id,
                         eos_id=tok.eos_id, pretrained=False).eval()
    return Pipeline(model, tok, PipelineInfo(name="effnet-transformer (UNTRAINED fallback)"))


def default_images(tmp: Path, synthetic: bool) -> list[Path]:
    if IU_IMAGES.is_dir() and not synthetic:
        pair = [IU_IMAGES / "1000_IM-0003-1001.dcm.jpg", IU_IMAGES / "1000_IM-0003-2001.dcm.jpg"]  # PA + lateral
        if all(p.is_file() for p in pair):
            return pair
        pair = sorted(IU_IMAGES.glob("*.png")) + sorted(IU_IMAGES.glob("*.jpg"))
        if len(pair) >= 2:
            return pair[:2]
    from PIL import Image

    # The packaged NIH samples re-saved at film size: synthetic patterns would be refused by the gate.
    examples = Path(__file__).resolve().parents[1] / "src" / "cxreport" / "examples" / "nih_cxr14"
    out = []
    for i, src in enumerate(sorted(examples.glob("*.jpg"))[:2]):
        path = tmp / f"film_{i}.png"
        with Image.open(src) as im:
            im.convert("L").resize((2048, 2048), Image.BILINEAR).save(path)
        out.append(path)
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="checkpoint or run folder (default: the bundled model)")
    ap.add_argument("--images", nargs="+", default=None, help="one study's views (default: see above)")
    ap.add_argument("--synthetic", action="store_true", help="time the packaged NIH samples as 2048 px PNGs (film-sized)")
    ap.add_argument("--views", type=int, default=2, choices=[1, 2], help="use the first N images")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--beam", type=int, default=None, help="default: the model's own decoder.default_beam")
    ap.add_argument("--max-len", type=int, default=60)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--no-faithful", dest="faithful", action="store_false",
                    help="time the decoder's text alone (no plan check / repair), as before plan-faithful decoding")
    ap.add_argument("--cold", action="store_true",
                    help="no plan cache, so every run decodes (models/plan_cache.py)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch

    from cxreport.errors import InputError
    from cxreport.inference import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    note = ""
    try:
        pipeline = load_model(args.model)
    except InputError as exc:
        if args.model is not None:
            raise
        note = "bundled model absent: timing an UNTRAINED effnet-transformer (pretrained=False, 4000 words)"
        print(f"{exc}\n{note}", file=sys.stderr)
        pipeline = fallback_pipeline()
    with tempfile.TemporaryDirectory() as tmp:
        images = [Path(p) for p in (args.images or default_images(Path(tmp), args.synthetic))][: args.views]
        opts = dict(beam=args.beam, max_len=args.max_len, faithful=args.faithful)
        for _ in range(args.warmup):
            pipeline.generate(images, **opts)
        total, prep, model, tokens = [], [], [], []
        pipeline.model.use_plan_cache = not args.cold
        for _ in range(args.runs):
            t0 = time.perf_counter()
            r = pipeline.generate(images, **opts)
            total.append((time.perf_counter() - t0) * 1000)
            prep.append(r["timing_ms"]["preprocess"])
            model.append(r["timing_ms"]["model"])
            tokens.append(len(r["report"].split()))
    sizes = [f"{v['width']}x{v['height']}" for v in r["views"]]
    result = {"model": pipeline.name, "note": note, "torch_threads": torch.get_num_threads(),
              "cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2), "views": len(images), "image_sizes": sizes,
              "beam": args.beam or pipeline.model.cfg.decoder.default_beam,
              "faithful": args.faithful, "cold": args.cold, "max_len": args.max_len, "runs": args.runs, "words_per_report": statistics.median(tokens),
              "p50_ms": round(pct(total, 50), 1), "p95_ms": round(pct(total, 95), 1),
              "preprocess_p50_ms": round(pct(prep, 50), 1), "model_p50_ms": round(pct(model, 50), 1)}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"model: {result['model']}" + (f"  [{note}]" if note else ""))
        print(f"{len(images)} view(s) {', '.join(sizes)}; beam {args.beam}; faithful {args.faithful}; "
              f"max_len {args.max_len}; "
              f"torch threads {result['torch_threads']} of {result['cpu_count']} CPUs (load avg "
              f"{result['load_avg_1m']}); {args.runs} runs")
        print(f"per study: p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms "
              f"(preprocess p50 {result['preprocess_p50_ms']} ms, model p50 {result['model_p50_ms']} ms; "
              f"~{result['words_per_report']:.0f} words)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
