"""Our default model side by side with the architectures users would otherwise pick.

    PYTHONPATH=src python benchmarks/bench_peers.py [--threads 1] [--batch 16] [--tokens 60]

One table from one run: every model writes exactly --tokens tokens (end-of-report disabled) for
the same synthetic study (a frontal and a lateral 1024 px film, prepared at each model's own input
size), and we time generation from prepared tensors (image encoder + decoding; file decoding is
the same for all and left out): ms per study at batch 1 (median of 3), studies/s at --batch (best
of 2), the process's peak resident memory (each model runs in its own subprocess; the figure
includes torch and transformers themselves, so the column after it subtracts the same process's
memory before the model was built), and parameters. Ratios are against our default model; on a shared machine compare
ratios, not absolute times. The ``ours-lean`` rows run the same model without PyTorch
(``models.runtime``: the encoder in ONNX Runtime, the rest in NumPy): their processes never import
torch or transformers, so their peak is the whole report path's.

Peers, built from their published configurations with RANDOM weights (speed and memory do not
depend on the weights; the end-of-report token is disabled so every report is full length):

* chexpert-plus: the CheXpert-Plus baseline shape, an HF ``VisionEncoderDecoderModel`` of
  SwinV2-tiny (patch 4, window 8, 256 px, embed 96, depths 2-2-6-2) and a 2-layer BERT-base
  decoder with cross-attention (hidden 768, 12 heads, BERT's 30,522-word vocabulary), frontal view
  only, HF ``generate`` with beam 2.
* r2gen: the R2Gen shape, ResNet-101 (transformers' ResNetModel, ImageNet layout) on both views
  at 224 px -> 2 x 49 patch features -> a 3-layer transformer encoder and a 3-layer decoder
  (d_model 512, 8 heads, feed-forward 512; IU vocabulary of 761 words), beam 3. Decoded with our
  KV-cached beam search; R2Gen's own code recomputes the prefix at every step and adds a
  relational memory, both of which make it slower than measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PEERS = {
    "ours": "cxreport default model (bundled weights), greedy, PyTorch (encoder in ONNX Runtime)",
    "ours-lean": "the same, greedy, without PyTorch (ONNX Runtime + NumPy)",
    "ours-lean-beam2": "the same, beam 2, without PyTorch",
    "ours-beam2": "cxreport default model, beam 2 (its default)",
    "ours-beam3": "cxreport default model, beam 3",
    "chexpert-plus": "SwinV2-tiny + 2-layer BERT (VisionEncoderDecoder), beam 2",
    "r2gen": "ResNet-101 + 3-layer transformer enc/dec, beam 3",
}


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def films(size: int = 1024):
    import numpy as np

    y, x = np.mgrid[0:size, 0:size] / size
    rng = np.random.default_rng(0)
    frontal = 120 + 60 * np.sin(6 * x) * np.cos(4 * y) + rng.normal(0, 10, (size, size))
    lateral = 110 + 50 * np.cos(5 * x) * np.sin(3 * y) + rng.normal(0, 10, (size, size))
    return [np.clip(a, 0, 255).astype(np.uint8) for a in (frontal, lateral)]


def build_ours(beam: int, tokens: int, runtime: str = "onnxruntime"):
    """The PyTorch path as batches and the service ran it before the lean runtime (its encoder in
    ONNX Runtime), or ``runtime``."""
    from cxreport.inference import load_model

    pipe = load_model(runtime=runtime)
    pipe.model.decoder.eos_id = -1  # never stops early: every report is `tokens` long
    # Every study decodes, as the peers do: the plan cache (models/plan_cache.py) would decode this
    # one repeated study once and skip the decoder after that. Its effect on real films is in
    # bench_generate.py and bench_serve_load.py.
    pipe.model.use_plan_cache = False
    prepared = pipe.prepare(films(), ["frontal", "lateral"])

    def make(batch):
        return pipe.collate([prepared] * batch)

    def generate(inputs):
        images, mask, view_ids = inputs
        out = pipe.model.generate(images, mask, view_ids, max_len=tokens,
                                  method="beam" if beam > 1 else "greedy", num_beams=beam)
        return len(out[0]["token_ids"])

    return pipe.model, make, generate


def build_lean(beam: int, tokens: int, threads: int):
    """``build_ours`` on the runtime without PyTorch: this process never imports torch."""
    from cxreport.inference.threads import apply_threads, plan_threads

    apply_threads(plan_threads(threads, decode=False))
    return build_ours(beam, tokens, runtime="lean")


def _image_tensor(gray, size: int):
    """ImageNet-normalised 3 x size x size float tensor (no flips, bilinear resize)."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(gray).float()[None, None] / 255
    t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0].expand(3, -1, -1)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    return (t - mean) / std


def build_chexpert_plus(tokens: int):
    from transformers import BertConfig, Swinv2Config, VisionEncoderDecoderConfig, VisionEncoderDecoderModel

    enc = Swinv2Config(image_size=256, patch_size=4, window_size=8, embed_dim=96, depths=[2, 2, 6, 2],
                       num_heads=[3, 6, 12, 24])
    dec = BertConfig(num_hidden_layers=2, is_decoder=True, add_cross_attention=True)
    model = VisionEncoderDecoderModel(VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)).eval()
    model.config.decoder_start_token_id, model.config.pad_token_id = 101, 0  # BERT's [CLS] and [PAD]
    frontal = _image_tensor(films()[0], 256)

    def make(batch):
        return frontal[None].expand(batch, -1, -1, -1).contiguous()

    def generate(pixels):
        out = model.generate(pixel_values=pixels, num_beams=2, max_new_tokens=tokens, min_new_tokens=tokens,
                             eos_token_id=102, decoder_start_token_id=101, pad_token_id=0, do_sample=False)
        return out.shape[1] - 1  # minus the start token

    return model, make, generate


def build_r2gen(tokens: int):
    import torch
    from torch import nn
    from transformers import ResNetConfig, ResNetModel

    from cxreport.models.config import DecoderConfig
    from cxreport.models.decoders import TransformerDecoder
    from cxreport.models.generator import generate_tokens

    class R2GenShape(nn.Module):
        def __init__(self):
            super().__init__()
            self.cnn = ResNetModel(ResNetConfig(depths=[3, 4, 23, 3], layer_type="bottleneck", embedding_size=64,
                                                hidden_sizes=[256, 512, 1024, 2048]))
            self.proj = nn.Linear(2048, 512)
            layer = nn.TransformerEncoderLayer(512, 8, 512, dropout=0.1, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 3)
            self.decoder = TransformerDecoder(DecoderConfig(vocab_size=761, d_model=512, layers=3, heads=8, ff_mult=1,
                                                            max_len=tokens + 2, tie_embeddings=False), 512)
            self.decoder.eos_id = -1

        def memory(self, views):  # B x V x 3 x 224 x 224
            b, v = views.shape[:2]
            feats = self.cnn(pixel_values=views.flatten(0, 1)).last_hidden_state  # BV x 2048 x 7 x 7
            feats = feats.flatten(2).transpose(1, 2).reshape(b, v * 49, 2048)
            return self.encoder(self.proj(feats))

    model = R2GenShape().eval()
    study = torch.stack([_image_tensor(f, 224) for f in films()])

    def make(batch):
        return study[None].expand(batch, -1, -1, -1, -1).contiguous()

    def generate(views):
        mem = model.memory(views)
        mask = torch.ones(mem.shape[:2], dtype=torch.bool)
        out = generate_tokens(model.decoder, mem, mask, max_len=tokens, method="beam", num_beams=3,
                              length_penalty=1.0)
        return len(out[0]["token_ids"])

    return model, make, generate


def measure(name: str, batch: int, tokens: int, threads: int) -> dict:
    from contextlib import nullcontext

    lean = name.startswith("ours-lean")
    if lean:
        sys.modules["torch"] = None  # the lean rows prove it: any import of torch fails
        no_grad = nullcontext()
    else:
        import torch

        import transformers  # noqa: F401 - imported before the baseline so no model is charged for it

        torch.set_num_threads(threads)
        torch.manual_seed(0)
        no_grad = torch.inference_mode()
    base = rss_mb()
    builders = {"ours": lambda: build_ours(1, tokens), "ours-beam2": lambda: build_ours(2, tokens),
                "ours-lean": lambda: build_lean(1, tokens, threads),
                "ours-lean-beam2": lambda: build_lean(2, tokens, threads),
                "ours-beam3": lambda: build_ours(3, tokens),
                "chexpert-plus": lambda: build_chexpert_plus(tokens), "r2gen": lambda: build_r2gen(tokens)}
    model, make, generate = builders[name]()
    params = model.num_parameters() if lean else sum(p.numel() for p in model.parameters())
    one, many = make(1), make(batch)
    with no_grad:
        n = generate(one)  # warm-up
        if n != tokens:
            raise SystemExit(f"{name}: wrote {n} tokens, not {tokens}")
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            generate(one)
            times.append(time.perf_counter() - t0)
        big = []
        for _ in range(2):
            t0 = time.perf_counter()
            generate(many)
            big.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"name": name, "params_m": params / 1e6, "ms_b1": statistics.median(times) * 1000,
            "per_s_batch": batch / min(big), "peak_mb": peak, "model_mb": peak - base, "tokens": n}


def table(rows: list[dict], batch: int) -> str:
    ref = next(r for r in rows if r["name"] == "ours")
    head = (f"| model | params (M) | ms/study, batch 1 | x ours | studies/s, batch {batch} | x ours | "
            "peak RSS (MB) | model + work (MB) | x ours |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(f"| {r['name']}: {PEERS[r['name']]} | {r['params_m']:.1f} | {r['ms_b1']:.0f} | "
                     f"{r['ms_b1'] / ref['ms_b1']:.2f} | {r['per_s_batch']:.2f} | "
                     f"{r['per_s_batch'] / ref['per_s_batch']:.2f} | {r['peak_mb']:.0f} | {r['model_mb']:.0f} | "
                     f"{r['model_mb'] / ref['model_mb']:.2f} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads in every model's process")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=60)
    ap.add_argument("--only", default=",".join(PEERS), help="comma-separated subset of " + ", ".join(PEERS))
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child process: measure one model
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.batch, args.tokens, args.threads)))
        return 0
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": str(args.threads)}
    rows = []
    for name in args.only.split(","):
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        out = subprocess.run([sys.executable, __file__, "--one", name, "--batch", str(args.batch), "--tokens",
                              str(args.tokens), "--threads", str(args.threads)],
                             env=env, capture_output=True, text=True)
        if out.returncode:
            print(out.stderr[-3000:], file=sys.stderr)
            return 1
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]) | {"load": load})
        print(f"{name}: done (load average before: {load})", file=sys.stderr, flush=True)
    print(f"{args.tokens} tokens per report, {args.threads} torch thread(s), random weights for the peers")
    print(table(rows, args.batch))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
