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

from cxreport.checkpoint import load_checkpoint, save_checkpoint, write_lean_graphs
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


def decoding_overrides(decoder_cfg, args) -> None:
    """``--no-repeat-ngram`` and ``--default-beam`` over the decoder run's own decoding settings."""
    if args.no_repeat_ngram is not None:
        decoder_cfg.no_repeat_ngram = args.no_repeat_ngram
    if args.default_beam is not None:
        decoder_cfg.default_beam = args.default_beam


HEAD_FIELDS = ("head", "calibration", "prior", "thresholds", "uncertain_thresholds", "train_positives", "min_positives",
               "threshold")


def bundle_with_head(args, model, tok, cfg, provenance) -> None:
    """The decoder run's text side + a calibrated head's image side, config and gate files."""
    import dataclasses
    import shutil

    from cxreport.inference.gate import GATE_FILES
    from cxreport.models.report_model import build_model

    head, _, hcfg = load_checkpoint(args.head)
    findings = dataclasses.replace(model.cfg.findings, **{k: getattr(head.cfg.findings, k) for k in HEAD_FIELDS})
    # The head's encoder settings and input size come with its image side.
    mcfg = dataclasses.replace(model.cfg, encoder=head.cfg.encoder, preprocess=head.cfg.preprocess,
                               projector=head.cfg.projector, findings=findings, views=head.cfg.views)
    merged = build_model(mcfg, pretrained=False)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(IMAGE_SIDE)}
    state.update({k: v for k, v in head.state_dict().items() if k.startswith(IMAGE_SIDE)})
    merged.load_state_dict(state, strict=True)
    merged.cfg.views.head_views = args.head_views
    decoding_overrides(merged.cfg.decoder, args)
    provenance.update(head_checkpoint=args.head, head_step=hcfg.get("step"), head_metrics=hcfg.get("metrics"))
    card = Path(args.out) / "MODEL_CARD.md"
    card_text = card.read_text() if card.is_file() else None  # hand-written: survives a re-bundle
    out = save_checkpoint(args.out, merged, tokenizer=tok, step=cfg.get("step", 0), metrics=provenance, half=True)
    if card_text is not None:
        (out / "MODEL_CARD.md").write_text(card_text)
    for f in GATE_FILES:
        if (Path(args.head) / f).is_file():
            shutil.copyfile(Path(args.head) / f, out / f)
    write_lean_graphs(out)  # the encoder graph of the runtime without PyTorch (lean/, ~0.1 MB)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    print(json.dumps({"out": str(out), "bundle_mb": round(size, 2)}, indent=1))
    if size > 25:
        raise SystemExit(f"the bundle is {size:.1f} MB: over the 25 MB budget of a bundled model")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--decoder", required=True)
    ap.add_argument("--findings", default=None)
    ap.add_argument("--head", default=None,
                    help="a finding head from scripts/train_finding_head.py (a checkpoint folder): its image side, "
                         "head config (calibration, prior, thresholds, training positives) and gate files are kept "
                         "as they are, with no threshold tuning")
    ap.add_argument("--threshold-cache", default=None)
    ap.add_argument("--split", default="val")
    ap.add_argument("--min-positives", type=int, default=5)
    ap.add_argument("--tune", choices=["none", "youden"], default="none",
                    help="per-finding thresholds: keep findings.threshold (0.5), or Youden's J on the split")
    ap.add_argument("--out", required=True)
    ap.add_argument("--no-repeat-ngram", type=int, default=None,
                    help="n-gram blocking of the bundled model (default: the decoder run's own decoder.no_repeat_ngram)")
    ap.add_argument("--default-beam", type=int, default=None,
                    help="default beam of the bundled model (default: the decoder run's own decoder.default_beam)")
    ap.add_argument("--head-views", choices=["all", "frontal"], default="frontal",
                    help="views the finding head reads (NIH trains it on frontal films only)")
    args = ap.parse_args()

    model, tok, cfg = load_checkpoint(args.decoder)
    provenance = {"decoder_checkpoint": args.decoder, "decoder_step": cfg.get("step"),
                  "decoder_metrics": cfg.get("metrics"), "decoder_run": cfg.get("run")}
    if args.head:
        return bundle_with_head(args, model, tok, cfg, provenance)
    if not args.threshold_cache:
        raise SystemExit("--threshold-cache is needed unless --head gives a calibrated head")
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
    decoding_overrides(model.cfg.decoder, args)
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
    write_lean_graphs(out)  # the encoder graph of the runtime without PyTorch (lean/, ~0.1 MB)
    size = (out / "model.safetensors").stat().st_size / 2**20
    print(json.dumps({"out": str(out), "weights_mb": round(size, 2), "thresholds": thresholds,
                      "val_macro_auroc": val["macro_auroc"]}, indent=1))
    if size > 25:
        raise SystemExit(f"weights are {size:.1f} MB: over the 25 MB budget of a bundled model")


if __name__ == "__main__":
    main()
