"""Validate the labeler against IU X-Ray MeSH codes and the region annotator against the curated
region reports; writes docs/text_validation.md.

    python -m cxreport.text.validate --data /work/shared/data/iu_xray --out docs/text_validation.md

Uncertain (-1) counts as not positive ("U-zeros") in the main figures: MeSH codes what the
radiologist asserted, and differential lists ("may represent atelectasis or pneumonia") are
not coded; U-ones F1 is reported alongside.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

from cxreport.data.study import CHEXPERT_LABELS
from cxreport.errors import InputError

MIN_CASES = 30


def load_iu(root: str | Path) -> list[dict]:
    """IU train/val rows: uid, split, text (findings + impression), mesh."""
    root = Path(root)
    reports, splits = root / "indiana_reports.csv", root / "splits.csv"
    for p in (reports, splits):
        if not p.is_file():
            raise InputError(f"{p}: not found (point --data at the iu_xray folder)")
    with open(splits, newline="", encoding="utf-8") as fh:
        split_of = {r["uid"]: r["split"] for r in csv.DictReader(fh)}
    rows = []
    with open(reports, newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            if r["uid"] not in split_of:
                continue
            text = " ".join(t.strip() for t in (r["findings"], r["impression"]) if t and t.strip())
            rows.append({"uid": r["uid"], "split": split_of[r["uid"]], "text": text, "mesh": r["MeSH"]})
    return rows


def agreement(preds: list[dict], refs: list[dict], uncertain_positive: bool = True) -> dict[str, dict]:
    pos = {1, -1} if uncertain_positive else {1}
    table = {}
    for obs in CHEXPERT_LABELS:
        tp = fp = fn = 0
        for p, r in zip(preds, refs):
            yp, yr = p.get(obs) in pos, r.get(obs) == 1
            tp += yp and yr
            fp += yp and not yr
            fn += yr and not yp
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        table[obs] = {"n": tp + fn, "tp": tp, "fp": fp, "fn": fn, "precision": prec, "recall": rec, "f1": f1}
    return table


def labeler_eval(rows: list[dict], split: str):
    from cxreport.text.labeler import label_reports
    from cxreport.text.mesh import mesh_to_labels

    items = [(r, mesh_to_labels(r["mesh"])) for r in rows if r["split"] == split and r["text"]]
    items = [(r, ref) for r, ref in items if ref is not None]
    preds = label_reports([r["text"] for r, _ in items])
    return items, preds, [ref for _, ref in items]


def _fmt_table(train: dict, val: dict, train_u1: dict, val_u1: dict) -> list[str]:
    lines = ["| observation | train n | P | R | F1 | F1 (U-ones) | val n | P | R | F1 | F1 (U-ones) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for obs in CHEXPERT_LABELS:
        a, b = train[obs], val[obs]
        lines.append(f"| {obs} | {a['n']} | {a['precision']:.3f} | {a['recall']:.3f} | **{a['f1']:.3f}** | "
                     f"{train_u1[obs]['f1']:.3f} | {b['n']} | {b['precision']:.3f} | {b['recall']:.3f} | "
                     f"**{b['f1']:.3f}** | {val_u1[obs]['f1']:.3f} |")
    return lines


def disagreements(items, preds, obs: str, limit: int = 4) -> tuple[list[str], list[str]]:
    fps, fns = [], []
    for (r, ref), p in zip(items, preds):
        yp, yr = p.get(obs) == 1, ref.get(obs) == 1
        if yp and not yr:
            fps.append(f"uid {r['uid']} (MeSH: {r['mesh'][:80]}): {r['text'][:220]}")
        elif yr and not yp:
            fns.append(f"uid {r['uid']} (MeSH: {r['mesh'][:80]}): {r['text'][:220]}")
    return fps[:limit], fns[:limit]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/work/shared/data/iu_xray")
    ap.add_argument("--out", default="")
    ap.add_argument("--show", default="", help="print disagreements for this observation")
    args = ap.parse_args(argv)
    rows = load_iu(args.data)
    results = {}
    for split in ("train", "val"):
        items, preds, refs = labeler_eval(rows, split)
        results[split] = (items, preds, refs, agreement(preds, refs, False), agreement(preds, refs, True))
    t0 = time.perf_counter()
    texts = [r["text"] for r in rows]
    from cxreport.text.labeler import label_reports

    label_reports(texts)
    rate = len(texts) / (time.perf_counter() - t0)
    lines = _fmt_table(results["train"][3], results["val"][3], results["train"][4], results["val"][4])
    print("\n".join(lines))
    print(f"throughput: {rate:.0f} reports/s on {len(texts)} reports")
    if args.show:
        items, preds = results["train"][:2]
        fps, fns = disagreements(items, preds, args.show, limit=40)
        print("FALSE POSITIVES"); print("\n".join(fps))
        print("FALSE NEGATIVES"); print("\n".join(fns))
    if args.out:
        from cxreport.text.report_doc import write_doc

        write_doc(args.out, args.data, results, lines, rate)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
