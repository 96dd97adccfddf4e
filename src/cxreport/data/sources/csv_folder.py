"""Your own films: a CSV of reports and/or CheXpert-14 labels + a folder of images.

One row per film. Rows sharing a study id are one study with several films (e.g. PA + lateral);
its report, labels, patient and split may be given on every row or on one (blank cells are filled
from the study's other rows, different values are an error). Columns (names are options):

    id          study id; without an ``image`` column it also names the single film (extension optional)
    image       film file, relative to images_dir (default images/ beside the CSV) or to the CSV's folder
    text        the report (findings) text; optional when label columns are given
    patient_id  patient: the seeded split keeps each patient's studies together
    view        PA, AP, LATERAL, LL... (blank: unknown); the model reads frontal films first
    split       train / val / test (validate, valid also accepted); blank: seeded by patient
    No Finding, Cardiomegaly, ...   CheXpert-14 labels: 1 positive, 0 negative, -1 uncertain, blank not
                mentioned; names match case-insensitively, "_" for a space (Pleural_Effusion)

A study with any label cell filled takes its labels from the CSV (blank = not mentioned); a study
without any is labelled by reading its report with the rule labeler when a run trains on it.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from cxreport.data.sources import register_source
from cxreport.data.sources._common import log
from cxreport.data.study import SPLITS, Study, normalise_ws, seeded_split
from cxreport.errors import InputError
from cxreport.fsio import read_csv
from cxreport.labels import CHEXPERT_LABELS

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".dcm")
SPLIT_ALIASES = {"validate": "val", "valid": "val", "validation": "val", "training": "train", "testing": "test"}
LABEL_VALUES = {"1": 1, "1.0": 1, "0": 0, "0.0": 0, "-1": -1, "-1.0": -1}


def _resolve(folders: list[Path], ident: str) -> Path | None:
    for d in folders:
        p = d / ident
        if p.suffix.lower() in IMAGE_EXTS and p.is_file():
            return p
        for ext in IMAGE_EXTS:
            if (d / f"{ident}{ext}").is_file():
                return d / f"{ident}{ext}"
    return None


def _find_csv(root: Path, csv_file) -> Path:
    if csv_file:
        return Path(csv_file).expanduser()
    if root.is_file():
        return root
    cands = sorted(root.glob("*.csv")) if root.is_dir() else []
    if len(cands) != 1:
        where = "folder not found" if not root.is_dir() else f"found {len(cands)} CSV files"
        raise InputError(f"{root}: expected one CSV of films with reports and/or labels ({where}); "
                         "pass --root FILE.csv or -o csv_file=PATH")
    return cands[0]


def label_columns(header: list[str], path: Path) -> dict[str, str]:
    """{CSV column: CheXpert label} for the columns named like a CheXpert-14 finding."""
    by_key = {n.lower(): n for n in CHEXPERT_LABELS}
    out, seen = {}, {}
    for col in header:
        key = " ".join((col or "").replace("_", " ").replace("-", " ").lower().split())
        if key in by_key:
            name = by_key[key]
            if name in seen:
                raise InputError(f"{path}: columns {seen[name]!r} and {col!r} both give {name!r}; keep one")
            out[col], seen[name] = name, col
    return out


def _label(value: str, col: str, path: Path, line: int):
    v = (value or "").strip()
    if not v:
        return None
    if v not in LABEL_VALUES:
        raise InputError(f"{path}: line {line}: column {col!r} has {v!r}; a label is 1 (positive), 0 (negative), "
                         "-1 (uncertain) or blank (not mentioned)")
    return LABEL_VALUES[v]


def _split(value: str, path: Path, line: int) -> str:
    v = (value or "").strip().lower()
    v = SPLIT_ALIASES.get(v, v)
    if v and v not in SPLITS:
        raise InputError(f"{path}: line {line}: split {value.strip()!r}; use train, val or test (blank: a seeded "
                         "split by patient)")
    return v


def _merge(study: dict, key: str, value, path: Path, line: int, what: str, into: dict | None = None) -> None:
    """Fill one field of a study (or of ``into``, its labels) from one of its rows; two different
    non-blank values are an error."""
    into = study if into is None else into
    if value in (None, ""):
        return
    old = into.get(key)
    if old not in (None, "") and old != value:
        raise InputError(f"{path}: line {line}: study {study['id']!r} has {what} {value!r}, but line {study['line']} "
                         f"gave {old!r}; one study has one {what} (give it on every row or on one)")
    into[key] = value


@register_source("csv")
def load(root, csv_file=None, images_dir=None, id_column: str = "id", text_column: str = "text",
         image_column: str = "image", patient_column: str = "patient_id", view_column: str = "view",
         split_column: str = "split", labels: str = "auto", seed: int = 42, val: float = 0.1, test: float = 0.2,
         allow_empty: bool = False) -> list[Study]:
    """Studies of a CSV of films with reports and/or labels (see the module docstring).

    Options:
      csv_file: the CSV (default: --root when it is a file, else the one *.csv in --root)
      images_dir: folder the image names are relative to (default: images/ beside the CSV, then the CSV's folder)
      id_column: study id column; rows sharing an id are one study with several films
      text_column: report column; may be absent when the CSV has label columns
      image_column: film file column; without it the id names the film (one per study)
      patient_column: patient id column; without it each study is its own patient
      view_column: view column (PA, AP, LATERAL...); without it views are unknown
      split_column: train/val/test column; blank cells or no column: a split seeded by patient
      labels: auto (read CheXpert-14 label columns) or none (ignore them: label the reports)
      seed: seed of the seeded split
      val: share of patients in val when seeded
      test: share of patients in test when seeded
      allow_empty: keep studies with neither a report nor a label (image-only)
    """
    if labels not in ("auto", "none"):
        raise InputError(f"csv source: labels={labels!r}; choose auto or none")
    path = _find_csv(Path(root).expanduser(), csv_file)
    rows = read_csv(path, [id_column], "films with reports and/or labels",
                    hint="(-o id_column=NAME names the study id column)")
    header = list(rows[0].keys()) if rows else []
    lab_cols = label_columns(header, path) if labels == "auto" else {}
    if lab_cols:
        log.info("csv: CheXpert labels from column(s) %s (-o labels=none ignores them)",
                 ", ".join(c if c == n else f"{c} ({n})" for c, n in lab_cols.items()))
    if text_column not in header and not lab_cols:
        raise InputError(f"{path}: no report column {text_column!r} and no CheXpert label columns "
                         f"({', '.join(CHEXPERT_LABELS[:3])}...); found columns [{', '.join(header)}]; "
                         "name the report column with -o text_column=NAME or add label columns")
    if not rows:
        raise InputError(f"{path}: no rows")
    folders = [Path(images_dir).expanduser()] if images_dir else [path.parent / "images", path.parent]
    has_image_col = image_column in header
    studies: dict[str, dict] = {}
    for line, r in enumerate(rows, start=2):  # line 1 is the header
        ident = (r[id_column] or "").strip()
        if not ident:
            raise InputError(f"{path}: line {line} has an empty {id_column!r}")
        if ident in studies and not has_image_col:
            raise InputError(f"{path}: line {line}: duplicate {id_column} {ident!r}; for several films per study "
                             f"add an {image_column!r} column naming each row's film")
        s = studies.setdefault(ident, {"id": ident, "line": line, "films": [], "labels": {}})
        _merge(s, "text", normalise_ws(r.get(text_column)), path, line, "report")
        if patient_column in header:
            patient = (r[patient_column] or "").strip()
            if not patient:
                raise InputError(f"{path}: line {line} has an empty {patient_column!r}; fill it (or drop the column "
                                 "to treat each study as its own patient)")
            _merge(s, "patient", patient, path, line, patient_column)
        if split_column in header:
            _merge(s, "split", _split(r[split_column], path, line), path, line, "split")
        for col, name in lab_cols.items():
            _merge(s, name, _label(r[col], col, path, line), path, line, f"{name} label", into=s["labels"])
        film = (r[image_column] or "").strip() if has_image_col else ident
        if film:
            view = (r.get(view_column) or "").strip().upper() or "UNKNOWN"
            s["films"].append((film, view))
    return _studies(studies, path, folders, seed, val, test, allow_empty, text_column)


def _studies(studies: dict, path: Path, folders: list[Path], seed: int, val: float, test: float,
             allow_empty: bool, text_column: str) -> list[Study]:
    out, missing, splits_of = [], 0, defaultdict(set)
    for ident, s in studies.items():
        text = s.get("text") or ""
        if not text and not s["labels"] and not allow_empty:
            raise InputError(f"{path}: line {s['line']} ({ident}) has an empty {text_column!r} and no label; "
                             "fill it or drop the row (-o allow_empty=true keeps image-only rows)")
        patient = s.get("patient") or ident
        split = s.get("split") or seeded_split(patient, seed, val, test)
        splits_of[patient].add(split)
        paths, views = [], []
        for film, view in s["films"]:
            f = film if Path(film).is_absolute() else None
            p = Path(f) if f and Path(f).is_file() else _resolve(folders, film)
            if p is None:
                missing += 1
                continue
            paths.append(str(p.resolve()))
            views.append(view)
        out.append(Study(study_id=ident, patient_id=patient, split=split, source="csv", image_paths=paths,
                         views=views, findings=text, labels=dict(s["labels"]),
                         extra={"missing_images": len(s["films"]) - len(paths)}))
    leaks = [p for p, sp in splits_of.items() if len(sp) > 1]
    if leaks:
        log.warning("csv: %d patient(s) have studies in more than one split (e.g. %s): their films can leak "
                    "between training and evaluation; fix the split column", len(leaks), leaks[0])
    log.info("csv: %d studies from %s, %d films, %d listed films not found under %s", len(out), path,
             sum(len(s.image_paths) for s in out), missing, " or ".join(map(str, folders)))
    return out
