"""Finding-head evaluation: per-label AUROC of a checkpoint's predicted probabilities on a cache split.

    cxreport evaluate-findings --checkpoint RUN/best --cache cache/nih_cxr14 --split val --out DIR

Labels come from the cache (NIH / Kermany / MIMIC label tables mapped to CheXpert-14); a label
is scored where the split has both classes. The test split needs --allow-test: select on val.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cxreport.errors import InputError
from cxreport.fsio import atomic_write_json, atomic_write_text
from cxreport.metrics.classification import auroc_table


@torch.no_grad()
def predict_findings(model, dataset, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from cxreport.data.dataset import Collate

    mc = model.cfg
    collate = Collate(image_size=mc.preprocess.image_size, max_views=mc.views.max_views)
    model.eval()
    probs, targets, ids = [], [], []
    for start in range(0, len(dataset), batch_size):
        batch = collate([dataset[i] for i in range(start, min(len(dataset), start + batch_size))])
        img_tok, img_mask = model.encode_images(batch["images"], batch["image_mask"], batch["view_ids"])
        probs.append(torch.sigmoid(model.finding_logits(img_tok, img_mask, batch["view_ids"])).float().numpy())
        targets.append(batch["finding_targets"].numpy())
        ids += batch["study_id"]
    return np.concatenate(probs), np.concatenate(targets), ids


def evaluate_findings(checkpoint, cache, split: str = "val", allow_test: bool = False, threads: int = 0) -> dict:
    from cxreport.checkpoint import load_checkpoint, resolve_checkpoint
    from cxreport.data.dataset import StudyDataset

    if split == "test" and not allow_test:
        raise InputError("--split test is held out for the final report: select on val, or pass --allow-test")
    if threads:
        torch.set_num_threads(threads)
    model, _, cfg = load_checkpoint(resolve_checkpoint(checkpoint))
    from cxreport.text.labeler import label_reports

    # Report-only label sources (IU, CSV) get their targets from the labeler, as in training.
    ds = StudyDataset(cache, split, require="image", max_views=model.cfg.views.max_views, label_fn=label_reports)
    if not len(ds):
        raise InputError(f"{cache}: no studies with images in split {split!r}")
    probs, targets, _ = predict_findings(model, ds)
    table = auroc_table(probs, targets, model.labels)
    return {"checkpoint": str(checkpoint), "cache": str(cache), "split": split, "studies": len(ds),
            "step": cfg.get("step"), **table}


def markdown(result: dict) -> str:
    lines = [f"Finding AUROC — {result['cache']} split `{result['split']}` ({result['studies']} images), "
             f"checkpoint `{result['checkpoint']}`", "", "| finding | AUROC | positives | n |", "|---|---:|---:|---:|"]
    for name, r in result["per_label"].items():
        lines.append(f"| {name} | {r['auroc']:.3f} | {r['positives']} | {r['n']} |")
    lines.append(f"| **macro** | **{result['macro_auroc']:.3f}** | | |")
    return "\n".join(lines) + "\n"


def _cli(args):
    res = evaluate_findings(args.checkpoint, args.cache, args.split, args.allow_test, args.threads)
    md = markdown(res)
    if args.out:
        out = Path(args.out)
        atomic_write_json(out / "findings_auroc.json", res)
        atomic_write_text(out / "findings_auroc.md", md)
    print(md)
    return 0


def register(sub) -> None:
    p = sub.add_parser("evaluate-findings", help="per-finding AUROC of a checkpoint on a labelled cache split")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--cache", required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--allow-test", action="store_true", help="score the test split (final reporting only)")
    p.add_argument("--out", help="folder for findings_auroc.json / .md")
    p.add_argument("--threads", type=int, default=0)
    p.set_defaults(func=_cli)
