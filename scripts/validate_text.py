"""Recompute docs/text_validation.md: the labeler and region splitter against IU X-Ray's codes.

    python scripts/validate_text.py --data ../shared/data/iu_xray --out docs/text_validation.md
"""

from __future__ import annotations

import argparse

from cxreport.text import validate


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=validate.__doc__.splitlines()[0])
    ap.add_argument("--data", default="/work/shared/data/iu_xray", help="the iu_xray folder")
    ap.add_argument("--out", default="", help="write the markdown report here")
    ap.add_argument("--show", default="", help="print train disagreements for this observation")
    args = ap.parse_args(argv)
    rows = validate.load_iu(args.data)
    tables = validate.labeler_tables(rows)
    texts = [r["text"] for r in rows]
    rate = validate.throughput(texts)
    regions = validate.region_scores(args.data)
    print("\n".join(validate.labeler_table(tables)))
    print(f"throughput: {rate:.0f} reports/s on {len(texts)} reports")
    print("\n".join(validate.region_table(regions)))
    if args.show:
        fps, fns = validate.disagreements(tables["train"]["items"], tables["train"]["preds"], args.show, limit=40)
        print("FALSE POSITIVES", *fps, "FALSE NEGATIVES", *fns, sep="\n")
    if args.out:
        validate.write_doc(args.out, tables, regions, rate, len(texts), validate.NOTES)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
