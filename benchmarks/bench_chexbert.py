"""Seconds to label N reports with the CheXbert labeler (F1-CheXbert's cost), on this machine.

The published weights cannot be fetched here, so the model is a RANDOMLY initialised CheXbert of the
published size (bert-base: 12 layers, hidden 768, vocab 30522) written in the published format; the
vocabulary is synthetic (every word of the reports whole, then characters, padded to 30522
entries), so token counts are close to but not bert-base-uncased's. Compute per report is what the
real weights cost. Reports: the first N non-empty IU X-Ray training findings (never a test split).
It prints wall time and the process's CPU time: on a shared machine the first stretches with load.

    PYTHONPATH=src python benchmarks/bench_chexbert.py --cache /work/cache/iu_xray [--n 590]
        [--batch-size 32] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path


def reports(cache: Path, n: int) -> list[str]:
    out = []
    with open(cache / "studies.jsonl", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if row.get("split") == "train" and (row.get("findings") or "").strip():
                out.append(row["findings"])
                if len(out) == n:
                    break
    if len(out) < n:
        raise SystemExit(f"{cache}: only {len(out)} non-empty training findings")
    return out


def write_vocab(folder: Path, texts: list[str], size: int = 30522) -> Path:
    words = sorted({w for t in texts for w in re.findall(r"[a-z]+|[0-9]|[^\sa-z0-9]", t.lower())})
    chars = [chr(c) for c in range(33, 127)]
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + [f"##{c}" for c in chars] + words
    tokens = list(dict.fromkeys(tokens))
    tokens += [f"[unused{i}]" for i in range(size - len(tokens))]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", required=True, help="an IU X-Ray cache (cxreport data prepare)")
    ap.add_argument("--n", type=int, default=590)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import torch
    from transformers import BertConfig

    from cxreport.metrics.chexbert import CheXbertLabeler, build_model, save_published_format

    if args.threads:
        torch.set_num_threads(args.threads)
    texts = reports(Path(args.cache), args.n)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        save_published_format(build_model(BertConfig()), tmp / "chexbert.pth")  # bert-base-uncased's shape
        t0 = time.perf_counter()
        labeler = CheXbertLabeler(tmp / "chexbert.pth", write_vocab(tmp / "tok", texts), args.device,
                                  args.batch_size)
        load_s = time.perf_counter() - t0
        tokens = sum(len(labeler.encode(t)) for t in texts)
        labeler.label_many(texts[:args.batch_size])  # warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        labeler.label_many(texts)
        label_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    params = sum(p.numel() for p in labeler.model.parameters())
    print(f"CheXbert labeler, RANDOM weights of the published size ({params / 1e6:.1f}M parameters), "
          f"device {args.device}, {torch.get_num_threads()} threads, batch {args.batch_size}")
    print(f"reports: {len(texts)} IU X-Ray training findings, {tokens} WordPiece tokens "
          f"(mean {tokens / len(texts):.1f} incl. [CLS]/[SEP])")
    print(f"load: {load_s:.1f} s; label {len(texts)} reports: {label_s:.1f} s wall "
          f"({len(texts) / label_s:.1f} reports/s), {cpu_s:.1f} s CPU time of this process")
    print(f"machine load average while running: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
          "(wall time stretches with other processes; CPU time much less)")


if __name__ == "__main__":
    main()
