"""`cxreport label` and `cxreport regions`: label / split report texts from a CSV."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path



def register(sub) -> None:
    p = sub.add_parser("label", help="CheXpert-14 labels for report texts in a CSV (offline rules or CheXbert)")
    _io_args(p, "LABELS.csv")
    p.add_argument("--labeler", "--backend", dest="labeler", default="rules", choices=["rules", "chexbert", "f1chexbert"],
                   help="our offline rules (default) or CheXbert (published weights: --chexbert-weights, or the "
                        "Hugging Face cache; f1chexbert is an alias)")
    p.add_argument("--chexbert-weights", default=None, metavar="PATH", help="chexbert.pth or its folder")
    p.add_argument("--chexbert-tokenizer", default=None, metavar="DIR", help="folder with bert-base-uncased vocab.txt")
    p.add_argument("--device", default=None, help="CheXbert device (default: cuda if available)")
    p.set_defaults(func=_label)

    p = sub.add_parser("regions", help="split report texts into lung/heart/mediastinal/bone/others")
    _io_args(p, "REGIONS.jsonl")
    p.set_defaults(func=_regions)


def _io_args(p: argparse.ArgumentParser, out_name: str) -> None:
    p.add_argument("reports", metavar="REPORTS.csv", help="CSV file with a header row")
    p.add_argument("--text-column", default="findings", help="column holding the report text")
    p.add_argument("--id-column", default="uid", help="column identifying each row")
    p.add_argument("--out", required=True, metavar=out_name, help="output file")


def read_report_csv(path: str | Path, text_column: str, id_column: str) -> list[tuple[str, str]]:
    """(id, text) rows; a clear error for a missing file or column."""
    from cxreport.fsio import read_csv

    rows = read_csv(Path(path), [id_column, text_column], hint="(choose with --text-column / --id-column)")
    return [(row[id_column] or "", row[text_column] or "") for row in rows]


def _label(args) -> int:
    from cxreport import fsio
    from cxreport.labels import CHEXPERT_LABELS
    from cxreport.metrics.clinical import label_texts

    rows = read_report_csv(args.reports, args.text_column, args.id_column)
    opts = ({"weights": args.chexbert_weights, "tokenizer": args.chexbert_tokenizer, "device": args.device}
            if args.labeler != "rules" else {})
    labels = label_texts([t for _, t in rows], args.labeler, **opts)
    with fsio.atomic_path(args.out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([args.id_column, *CHEXPERT_LABELS])
        for (rid, _), lab in zip(rows, labels):
            w.writerow([rid, *("" if lab[k] is None else lab[k] for k in CHEXPERT_LABELS)])
    print(f"labelled {len(rows)} reports with {args.labeler} -> {args.out}")
    return 0


def _regions(args) -> int:
    from cxreport import fsio
    from cxreport.text.regions import split_regions

    rows = read_report_csv(args.reports, args.text_column, args.id_column)
    fsio.atomic_write_jsonl(args.out, ({args.id_column: rid, **split_regions(text)} for rid, text in rows))
    print(f"split {len(rows)} reports into regions -> {args.out}")
    return 0
