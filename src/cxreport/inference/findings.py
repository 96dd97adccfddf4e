"""Finding-head evaluation: per-label AUROC of a checkpoint's predicted probabilities on a cache split.

    cxreport evaluate-findings --checkpoint RUN/best --cache cache/nih_cxr14 --split val --out DIR

Labels come from the cache (NIH / Kermany / MIMIC label tables mapped to CheXpert-14); a label
is scored where the split has both classes. The test split needs --allow-test: select on val.
"""

from __future__ import annotations

from cxreport.errors import InputError
from cxreport.metrics.classification import auroc_table


def evaluate_findings(checkpoint, cache, split: str = "val", allow_test: bool = False, threads: int = 0,
                      progress: bool | None = False) -> dict:
    """``checkpoint``: a bundled model name ("default"), a checkpoint folder or a run folder."""
    from cxreport.checkpoint import load_checkpoint
    from cxreport.data.dataset import StudyDataset
    from cxreport.data.study import check_split
    from cxreport.inference.pipeline import resolve_model_path
    from cxreport.inference.predict import for_inference, predict_findings
    from cxreport.inference.threads import apply_threads, plan_threads

    check_split(split, allow_test)
    apply_threads(plan_threads(threads, decode=False))
    model, _, cfg = load_checkpoint(resolve_model_path(checkpoint))
    for_inference(model)
    from cxreport.text.labeler import label_reports

    # Report-only label sources (IU, CSV) get their targets from the labeler, as in training.
    ds = StudyDataset(cache, split, require="image", max_views=model.cfg.views.max_views, label_fn=label_reports)
    if not len(ds):
        raise InputError(f"{cache}: no studies with images in split {split!r}")
    probs, targets, _ = predict_findings(model, ds, progress=progress)
    table = auroc_table(probs, targets, model.labels)
    return {"checkpoint": str(checkpoint), "cache": str(cache), "split": split, "studies": len(ds),
            "step": cfg.get("step"), **table}


def markdown(result: dict) -> str:
    lines = [f"Finding AUROC — {result['cache']} split `{result['split']}` ({result['studies']} images), "
             f"checkpoint `{result['checkpoint']}`", "", "| finding | AUROC | positives | n |", "|---|---:|---:|---:|"]
    for name, r in result["per_label"].items():
        lines.append(f"| {name} | {r['auroc']:.3f} | {r['positives']} | {r['n']} |")
    macro = result["macro_auroc"]
    shown = "n/a (no finding has positives and negatives here)" if macro is None or macro != macro else f"{macro:.3f}"
    lines.append(f"| **macro** | **{shown}** | | |")
    return "\n".join(lines) + "\n"
