"""What the reports claim, read as a user reads them: every film of a cache split through the
pipeline (files from disk, the input gate, the model's own decoding defaults), then per finding
the plan's states, the text read back with our labeler, and the sentences that speak of a finding
the model did not assess.

    python benchmarks/bench_claims.py --model default --cache cache/nih_cxr14 --split test --allow-test

Prints: refused films; plan -> text agreement per assessed finding (P(text positive | plan
positive) and P(text positive | plan not positive), hedges read as uncertain, so not positive);
hedged findings read back as uncertain; sentences about not-assessed findings; distinct reports
and the commonest; the claims table of ``cxreport score-head`` from these runs' states.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--cache", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--allow-test", action="store_true")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--skip-gate", action="store_true", help="read refused films too")
    ap.add_argument("--out", default=None, help="write the per-film results (JSONL) and the summary here")
    args = ap.parse_args()
    from cxreport import load_model
    from cxreport.data.cache import Cache
    from cxreport.data.study import check_split
    from cxreport.text.coverage import without_coverage
    from cxreport.text.labeler import label_report
    from cxreport.text.wording import sentences
    from cxreport.training.films import frontal_rows
    from cxreport.training.head_scores import claims_table, markdown

    check_split(args.split, args.allow_test)
    m = load_model(args.model)
    cache = Cache(args.cache)
    labels = list(m.labels)
    idx, y, _ = frontal_rows(cache, (args.split,), None, labels)
    paths = {i: p for r in cache.rows for i, p in zip(r.get("image_index") or [], r.get("image_paths") or [])}
    studies = [{"images": [paths[int(i)]], "views": ["frontal"]} for i in idx]
    t0 = time.perf_counter()
    results = []
    for k in range(0, len(studies), args.batch_size):
        results += m.generate_batch(studies[k:k + args.batch_size], on_error="record", skip_gate=args.skip_gate)
    wall = time.perf_counter() - t0
    ok = [i for i, r in enumerate(results) if r.ok]
    refused = [(Path(studies[i]["images"][0]).name, results[i].error) for i in range(len(results)) if not results[i].ok]
    agree: dict = {n: {"plan_pos": 0, "text_pos_given_plan_pos": 0, "plan_not_pos": 0, "text_pos_given_plan_not_pos": 0,
                       "plan_unc": 0, "text_unc_given_plan_unc": 0} for n in labels if n != "No Finding"}
    about_unassessed, texts = [], collections.Counter()
    for i in ok:
        r = results[i]
        body = without_coverage(r.report)
        texts[body] += 1
        reading = label_report(body)
        for n, a in agree.items():
            st = r.findings[n].state
            if st == "not_assessed":
                continue
            pos = reading.get(n) == 1
            a["plan_pos" if st == "positive" else "plan_not_pos"] += 1
            a["text_pos_given_plan_pos" if st == "positive" else "text_pos_given_plan_not_pos"] += pos
            if st == "uncertain":
                a["plan_unc"] += 1
                a["text_unc_given_plan_unc"] += reading.get(n) == -1
        for s in sentences(body):
            read = label_report(s)
            bad = [n for n in r.not_assessed if read.get(n) is not None]
            if bad:
                about_unassessed.append((s, bad))
    rates = {n: {"plan positive": a["plan_pos"], "P(text pos | plan pos)": round(a["text_pos_given_plan_pos"] / a["plan_pos"], 3)
                 if a["plan_pos"] else None, "plan not positive": a["plan_not_pos"],
                 "P(text pos | plan not pos)": round(a["text_pos_given_plan_not_pos"] / a["plan_not_pos"], 3)
                 if a["plan_not_pos"] else None, "plan uncertain": a["plan_unc"],
                 "P(text uncertain | plan uncertain)": round(a["text_unc_given_plan_unc"] / a["plan_unc"], 3)
                 if a["plan_unc"] else None} for n, a in agree.items() if a["plan_pos"] or a["plan_not_pos"]}
    states = [{n: f.state for n, f in results[i].findings.items()} for i in ok]
    probs = np.array([[results[i].findings[n].probability if results[i].findings[n].probability is not None else np.nan
                       for n in labels] for i in ok])
    table = claims_table(np.nan_to_num(probs, nan=0.0), states, y[ok], labels)
    table["populations"] = dict(collections.Counter(str(results[i].population) for i in ok))
    summary = {"model": m.name, "cache": args.cache, "split": args.split, "films": len(studies), "read": len(ok),
               "refused": refused, "seconds": round(wall, 1), "agreement": rates,
               "sentences_about_not_assessed": len(about_unassessed), "examples_about_not_assessed": about_unassessed[:10],
               "distinct_reports": len(texts), "commonest": texts.most_common(10),
               "reports_agreeing_with_plan": sum(bool((results[i].plan_check or {}).get("agrees")) for i in ok),
               "claims": table}
    print(json.dumps({k: v for k, v in summary.items() if k != "claims"}, indent=1))
    print(markdown(f"{m.name} on {Path(args.cache).name} {args.split} (through the pipeline)", table))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"claims_{Path(args.cache).name}_{args.split}.json").write_text(json.dumps(summary, indent=1))
        with open(out / f"reports_{Path(args.cache).name}_{args.split}.jsonl", "w") as fh:
            for s, r in zip(studies, results):
                fh.write(json.dumps({"image": Path(s["images"][0]).name, **r.to_dict()}) + "\n")


if __name__ == "__main__":
    sys.exit(main())
