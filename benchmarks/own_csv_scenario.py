"""Build the "own CSV" scenario of docs/training.md from real films: N studies of NIH ChestX-ray14
(train split films only, drawn by patient with a seed) with a report composed from each film's
labels, written as a site would bring them: one CSV (id, image, patient_id, view, text) beside
nothing else (image paths are absolute, so no film is copied).

    python benchmarks/own_csv_scenario.py --nih ../shared/data/nih_cxr14 --out OUT --n 162

Then follow docs/training.md with ``--root OUT/studies.csv``; after ``cxreport generate --model
RUN/best --manifest OUT/films.csv --output-dir GEN``, ``--check RUN/best GEN`` prints each finding's
training counts beside the states it was given over the films, and counts positive calls of
findings with no training positive (and strict-parses every JSON file). With ``--labels`` the CSV also
carries CheXpert label columns (mapped from NIH, as the nih-cxr14 source maps them: real
negatives), which win over the labeler's reading of the reports; ``--no-reports`` leaves the
reports out (a site with labels only). Prints the NIH findings of the studies it wrote.
"""

from __future__ import annotations

import argparse
import csv
import random
from collections import Counter
from pathlib import Path

SENTENCE = {
    "Atelectasis": "There is atelectasis at the lung base.",
    "Cardiomegaly": "The heart is enlarged.",
    "Effusion": "There is a small pleural effusion.",
    "Infiltration": "There is an airspace opacity.",
    "Mass": "There is a mass in the right lung.",
    "Nodule": "There is a pulmonary nodule.",
    "Pneumonia": "The findings are compatible with pneumonia.",
    "Pneumothorax": "There is a pneumothorax.",
    "Consolidation": "There is consolidation in the lower lobe.",
    "Edema": "There is pulmonary edema.",
    "Emphysema": "The lungs are hyperinflated, compatible with emphysema.",
    "Fibrosis": "There are fibrotic changes in both lungs.",
    "Pleural_Thickening": "There is pleural thickening.",
    "Hernia": "There is a hiatal hernia.",
}
NORMAL = "The heart is normal in size. The mediastinum is unremarkable. The lungs are clear. No pleural effusion " \
         "or pneumothorax."


def report(positive: list[str]) -> str:
    if not positive:
        return NORMAL
    text = [SENTENCE[n] for n in positive]
    if "Cardiomegaly" not in positive:
        text.insert(0, "The heart is normal in size.")
    if "Pneumothorax" not in positive:
        text.append("No pneumothorax.")
    return " ".join(text)


def _strict(text: str):
    import json

    def refuse(const):
        raise ValueError(f"not JSON: {const}")

    return json.loads(text, parse_constant=refuse)


def check(model: Path, outputs: Path) -> None:
    """States over the generated films beside the model's training counts."""
    fc = _strict((model / "config.json").read_text())["model"]["findings"]
    pos, neg = fc["train_positives"], fc.get("train_negatives") or {}
    states, files = Counter(), sorted(outputs.glob("*.json"))
    for f in files:
        for name, v in _strict(f.read_text())["findings"].items():
            states[name, v["state"]] += 1
    for f in outputs.glob("*.jsonl"):
        [_strict(line) for line in f.read_text().splitlines() if line.strip()]
    zero = [n for n, k in pos.items() if k == 0]
    called = sum(states[n, "positive"] for n in zero)
    print(f"{len(files)} films; findings with 0 training positives: {', '.join(zero)}; positive calls of them: {called}")
    for n in fc["labels"]:
        got = ", ".join(f"{s} {states[n, s]}" for s in ("positive", "uncertain", "negative", "not_assessed"))
        print(f"  {n:28s} train pos {pos.get(n)!s:>4} neg {neg.get(n, '-')!s:>4} | {got}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nih", help="NIH ChestX-ray14 folder (labels.csv, metadata.csv, images/)")
    ap.add_argument("--out", help="folder for studies.csv and films.csv (a generate manifest)")
    ap.add_argument("--check", nargs=2, metavar=("MODEL", "GENERATED"), help="check generated JSON instead")
    ap.add_argument("--n", type=int, default=162, help="studies (default 162)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--labels", action="store_true", help="add CheXpert label columns")
    ap.add_argument("--no-reports", action="store_true", help="leave the report column out")
    args = ap.parse_args()
    if args.check:
        return check(Path(args.check[0]), Path(args.check[1]))
    if not (args.nih and args.out):
        ap.error("--nih and --out are needed to build the CSV")

    from cxreport.data.sources.nih import NIH_FINDINGS, map_nih_labels
    from cxreport.labels import CHEXPERT_LABELS

    root = Path(args.nih).resolve()
    meta = {r["image"]: r for r in csv.DictReader(open(root / "metadata.csv", newline=""))}
    rows = [r for r in csv.DictReader(open(root / "labels.csv", newline=""))
            if meta.get(r["image"], {}).get("chexnet_split") == "train" and (root / "images" / r["image"]).is_file()]
    by_patient: dict[str, list] = {}
    for r in rows:
        by_patient.setdefault(r["patient_id"], []).append(r)
    patients = sorted(by_patient)
    random.Random(args.seed).shuffle(patients)
    chosen = []
    for p in patients:  # whole patients, so the CSV's patient-wise split has something to keep together
        if len(chosen) >= args.n:
            break
        chosen += by_patient[p][: args.n - len(chosen)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    head = ["id", "image", "patient_id", "view"] + ([] if args.no_reports else ["text"])
    head += list(CHEXPERT_LABELS) if args.labels else []
    counts = Counter()
    with open(out / "studies.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(head)
        for r in chosen:
            raw = {n: int(float(r[n] or 0)) for n in NIH_FINDINGS}
            positive = [n for n in NIH_FINDINGS if raw[n]]
            counts.update(positive or ["(normal)"])
            row = [Path(r["image"]).stem, str(root / "images" / r["image"]), r["patient_id"], r["view"]]
            row += [] if args.no_reports else [report(positive)]
            lab = map_nih_labels(raw)
            row += [lab.get(n, "") for n in CHEXPERT_LABELS] if args.labels else []
            w.writerow(row)
    with open(out / "films.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["study_id", "path", "view"])
        w.writerows([Path(r["image"]).stem, str(root / "images" / r["image"]), "frontal"] for r in chosen)
    print(f"wrote {out / 'studies.csv'}: {len(chosen)} studies of {len({r['patient_id'] for r in chosen})} patients")
    print("NIH findings in them:", ", ".join(f"{k} {v}" for k, v in counts.most_common()))


if __name__ == "__main__":
    main()
