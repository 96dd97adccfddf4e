"""Assemble the bundled default model from trained runs, tune finding thresholds on val, save fp16.

    python scripts/bundle_model.py --decoder runs/default-decoder/best \
        --findings runs/default-findings-ft/best --threshold-cache cache/nih_cxr14 \
        --out src/cxreport/weights/default

The decoder run was initialised from a findings run and trained on reports only, so its encoder,
projector and finding head are those of that findings run. ``--findings`` grafts the image side
of a later (fine-tuned) findings run onto it: the decoder never reads image tokens
(``findings.image_memory=false``), so it only sees the image through the finding plan.
Thresholds stay at 0.5 by default: a head trained on 704 images is over-confident, and thresholds
tuned on 77 validation images (``--tune youden``: the *validation* split only, findings with >= 5
positives) came out at 1e-5..0.8, too fragile to ship. Findings never labelled in training are
never called positive.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cxreport.checkpoint import load_checkpoint, save_checkpoint
from cxreport.data.dataset import StudyDataset
from cxreport.metrics.classification import auroc_table
from cxreport.inference.predict import predict_findings

IMAGE_SIDE = ("encoder.", "projector.", "finding_head.", "view_embed.")


def youden_threshold(p: np.ndarray, y: np.ndarray) -> float:
    """The threshold maximising sensitivity + specificity - 1 (F1-optimal thresholds degenerate to
    "everything positive" for findings present in half the studies, as Pneumonia is in NIH val)."""
    best, best_j = 0.5, -1.0
    for t in np.unique(p):
        pred = p >= t
        j = (pred & y).sum() / max(1, y.sum()) + (~pred & ~y).sum() / max(1, (~y).sum()) - 1
        if j > best_j:
            best, best_j = float(t), j
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--decoder", required=True)
    ap.add_argument("--findings", default=None)
    ap.add_argument("--threshold-cache", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--min-positives", type=int, default=5)
    ap.add_argument("--tune", choices=["none", "youden"], default="none",
                    help="per-finding thresholds: keep findings.threshold (0.5), or Youden's J on the split")
    ap.add_argument("--out", required=True)
    ap.add_argument("--no-repeat-ngram", type=int, default=None,
                    help="n-gram blocking of the bundled model (default: the decoder run's own decoder.no_repeat_ngram)")
    ap.add_argument("--head-views", choices=["all", "frontal"], default="frontal",
                    help="views the finding head reads (NIH trains it on frontal films only)")
    args = ap.parse_args()

    model, tok, cfg = load_checkpoint(args.decoder)
    provenance = {"decoder_checkpoint": args.decoder, "decoder_step": cfg.get("step"),
                  "decoder_metrics": cfg.get("metrics"), "decoder_run": cfg.get("run")}
    if args.findings:
        fmodel, _, fcfg = load_checkpoint(args.findings)
        graft = {k: v for k, v in fmodel.state_dict().items() if k.startswith(IMAGE_SIDE)}
        model.load_state_dict(graft, strict=False)
        provenance.update(findings_checkpoint=args.findings, findings_step=fcfg.get("step"),
                          findings_metrics=fcfg.get("metrics"), findings_run=fcfg.get("run"))
    ds = StudyDataset(args.threshold_cache, args.split, require="image")
    probs, targets, _ = predict_findings(model, ds)
    thresholds = {}
    for j, name in enumerate(model.labels):
        keep = (targets[:, j] == 0) | (targets[:, j] == 1)
        y = targets[keep, j] == 1
        if args.tune == "youden" and y.sum() >= args.min_positives and (~y).sum():
            thresholds[name] = youden_threshold(probs[keep, j], y)
    # Findings the image side never saw a label for (NIH has no Fracture, Support Devices, Enlarged
    # Cardiomediastinum): their logits are untrained, so they are never called positive.
    train = StudyDataset(args.threshold_cache, "train", require="image")
    seen = ~np.isnan(np.stack(train.labels)).all(axis=0)
    for j, name in enumerate(model.labels):
        if not seen[j]:
            thresholds[name] = 1.01
    model.cfg.findings.thresholds = thresholds
    # Decoding settings (n-gram blocking, suppressed words, default beam and length, faithful
    # decoding) come from the decoder run's config, so a trained run decodes like the bundle;
    # load_checkpoint resolved its suppressed words with the tokenizer.
    if args.no_repeat_ngram is not None:
        model.cfg.decoder.no_repeat_ngram = args.no_repeat_ngram
    model.cfg.views.head_views = args.head_views
    val = auroc_table(probs, targets, model.labels)
    provenance["threshold_tuning"] = {"cache": args.threshold_cache, "split": args.split,
                                      "tune": args.tune, "min_positives": args.min_positives,
                                      "thresholds": thresholds,
                                      "never_positive": [n for j, n in enumerate(model.labels) if not seen[j]],
                                      "val_macro_auroc": val["macro_auroc"]}
    card = Path(args.out) / "MODEL_CARD.md"
    card_text = card.read_text() if card.is_file() else None  # hand-written: survives a re-bundle
    out = save_checkpoint(args.out, model, tokenizer=tok, step=cfg.get("step", 0), metrics=provenance, half=True)
    if card_text is not None:
        (out / "MODEL_CARD.md").write_text(card_text)
    size = (out / "model.safetensors").stat().st_size / 2**20
    print(json.dumps({"out": str(out), "weights_mb": round(size, 2), "thresholds": thresholds,
                      "val_macro_auroc": val["macro_auroc"]}, indent=1))
    if size > 25:
        raise SystemExit(f"weights are {size:.1f} MB: over the 25 MB budget of a bundled model")


if __name__ == "__main__":
    main()
