"""MIMIC-CXR-JPG 2.x (images, split, metadata, labels) + MIMIC-CXR reports -> `Study` rows.

Expected layout (PhysioNet releases)::

    root/files/p10/p10000032/s50414267/<dicom_id>.jpg
    root/mimic-cxr-2.0.0-split.csv(.gz)       dicom_id,study_id,subject_id,split   (required)
    root/mimic-cxr-2.0.0-metadata.csv(.gz)    dicom_id,subject_id,study_id,...,ViewPosition,... (required)
    root/mimic-cxr-2.0.0-chexpert.csv(.gz)    subject_id,study_id + 14 CheXpert columns (optional)
    root/mimic-cxr-2.0.0-negbio.csv(.gz)      same columns (optional)
    reports_root/files/p10/p10000032/s50414267.txt   (the separate MIMIC-CXR package; default root)

Identifiers: ``study_id`` is ``"s50414267"`` (the release's folder/report name, and the key the
official section-parser overrides use); ``patient_id`` is the bare ``subject_id`` (``"10000032"``).
Views are ordered PA, AP, other frontal, lateral, unknown, so ``image_paths[0]`` is the best frontal.
Studies whose images are missing are kept for text-only use unless ``require_images=True``.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from pathlib import Path

from cxreport.data.sources import register_source
from cxreport.fsio import iter_csv as _iter_csv
from cxreport.data.study import Study, normalise_ws
from cxreport.labels import CHEXPERT_LABELS, view_group
from cxreport.errors import InputError
from cxreport.text.sections import parse_report_sections

log = logging.getLogger(__name__)

SOURCE = "mimic-cxr"
CSV_NAME = "mimic-cxr-2.0.0-{}.csv"
SPLIT_COLUMNS = ("dicom_id", "study_id", "subject_id", "split")
# Only the metadata columns we read are required; the release has eight more.
METADATA_COLUMNS = ("dicom_id", "subject_id", "study_id", "ViewPosition", "StudyDate")
LABEL_COLUMNS = ("subject_id", "study_id") + CHEXPERT_LABELS
LABEL_SETS = ("chexpert", "negbio")
_SPLITS = {"train": "train", "validate": "val", "val": "val", "test": "test"}
_LABEL_VALUES = {"1.0": 1, "1": 1, "0.0": 0, "0": 0, "-1.0": -1, "-1": -1}


def find_csv(root: Path, kind: str) -> Path | None:
    """The ``kind`` CSV under ``root``, gzipped (as released) or plain; ``None`` when absent."""
    for name in (CSV_NAME.format(kind) + ".gz", CSV_NAME.format(kind)):
        if (root / name).is_file():
            return root / name
    return None


def iter_csv(path: Path, required: tuple[str, ...]):
    return _iter_csv(path, required, "(is this the MIMIC-CXR-JPG 2.x file?)")


def view_rank(view: str) -> int:
    """Sort key: PA before AP (PA is the preferred primary frontal), then laterals, then unknown."""
    v = view.strip().upper()
    if v == "PA":
        return 0
    if v == "AP":
        return 1
    return {"frontal": 2, "lateral": 3}.get(view_group(v), 4)


def _group_dir(subject: str) -> str:
    return f"p{subject[:2]}"


def _parse_labels(row: dict, path: Path) -> dict[str, int]:
    out = {}
    for name in CHEXPERT_LABELS:
        value = (row.get(name) or "").strip()
        if not value:
            continue  # blank = not mentioned
        if value not in _LABEL_VALUES:
            raise InputError(f"{path}: label {name!r} has value {value!r}; expected 1.0, 0.0, -1.0 or blank")
        out[name] = _LABEL_VALUES[value]
    return out


def _load_labels(root: Path, labels: str | None) -> tuple[dict[tuple[str, str], dict], str]:
    if labels is None or labels == "none":
        return {}, ""
    if labels not in LABEL_SETS:
        raise InputError(f"labels={labels!r} is not supported; choose one of {', '.join(LABEL_SETS)} or none")
    path = find_csv(root, labels)
    if path is None:
        log.warning("%s: no %s labels (%s[.gz] not found); studies get no labels", root, labels, CSV_NAME.format(labels))
        return {}, ""
    table = {}
    for row in iter_csv(path, LABEL_COLUMNS):
        table[(row["subject_id"].strip(), row["study_id"].strip())] = _parse_labels(row, path)
    return table, labels


def _reports_dir(root: Path, reports_root) -> Path:
    base = Path(reports_root) if reports_root is not None else root
    if reports_root is not None and not base.is_dir():
        raise InputError(f"reports_root {base} is not a folder; point it at the MIMIC-CXR reports (the folder holding files/)")
    # Accept both the package root (holding files/) and the files/ folder itself.
    return base / "files" if (base / "files").is_dir() else base


def _group_split(split_csv: Path):
    """(subject, study) -> dicom ids in CSV order, (subject, study) -> split, number of images."""
    grouped: dict[tuple[str, str], list[str]] = defaultdict(list)
    study_split: dict[tuple[str, str], str] = {}
    n_images = 0
    for row in iter_csv(split_csv, SPLIT_COLUMNS):
        n_images += 1
        key = (row["subject_id"].strip(), row["study_id"].strip())
        raw_split = row["split"].strip()
        if raw_split not in _SPLITS:
            raise InputError(f"{split_csv}: unknown split {raw_split!r} for study {key[1]}; expected train, validate or test")
        study_split.setdefault(key, _SPLITS[raw_split])
        grouped[key].append(row["dicom_id"].strip())
    if not grouped:
        raise InputError(f"{split_csv}: no rows; the split CSV of the release lists 377k images, download it again")
    return grouped, study_split, n_images


def _study(reports_dir: str, rel: str, sid: str, subject: str, split: str, image_paths, image_views, dicom_ids,
           missing, study_date: str, labels, label_source: str) -> tuple[Study, bool]:
    """One Study with its report's sections; and whether the report file exists."""
    try:
        with open(os.path.join(reports_dir, rel, f"{sid}.txt"), encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        found = True
    except FileNotFoundError:
        text, found = "", False
    sec = parse_report_sections(text, study_id=sid)
    return Study(
        study_id=sid,
        patient_id=subject,
        split=split,
        source=SOURCE,
        image_paths=image_paths,
        views=image_views,
        findings=normalise_ws(sec["findings"]),
        impression=normalise_ws(sec["impression"]),
        indication=normalise_ws(sec["indication"]),
        comparison=normalise_ws(sec["comparison"]),
        labels=dict(labels or {}),
        extra={
            "last_paragraph": normalise_ws(sec["last_paragraph"]),
            "conclusion": normalise_ws(sec["conclusion"]),
            "dicom_ids": dicom_ids,
            "missing_dicom_ids": missing,
            "missing_images": len(missing),
            "StudyDate": study_date,
            "has_report": bool(text),
            "labels_source": label_source if labels is not None else "",
        },
    ), found


def _images_on_disk(study_dir: str, dicom_ids: list[str], views: list[str]):
    """(image paths, their views, dicom ids whose JPG is missing) of one study, in view order."""
    paths, found_views, missing = [], [], []
    for dicom, view in zip(dicom_ids, views):
        path = os.path.join(study_dir, f"{dicom}.jpg")
        if os.path.isfile(path):
            paths.append(path)
            found_views.append(view)
        else:
            missing.append(dicom)
    return paths, found_views, missing


def _log_gaps(root, split_csv: Path, reports_dir: str, require_images: bool, n_images: int, n_missing_img: int,
              example_missing, n_dropped: int, n_missing_report: int, n_studies: int) -> None:
    """Say what the download lacks: images, whole studies dropped, reports."""
    if n_missing_img:
        log.warning(
            "%s: %d of %d image files listed in %s are missing (e.g. %s); their studies are %s",
            root, n_missing_img, n_images, split_csv.name, example_missing,
            "dropped when they have no image left" if require_images else "kept for text-only use",
        )
    if n_dropped:
        log.warning("%s: dropped %d studies with no image on disk (require_images=True)", root, n_dropped)
    if n_missing_report:
        log.warning(
            "%s: %d of %d studies have no report under %s; their text fields are empty",
            root, n_missing_report, n_studies - n_dropped, reports_dir,
        )


def _release_csvs(root: Path) -> dict[str, Path]:
    csvs = {kind: find_csv(root, kind) for kind in ("split", "metadata")}
    for kind, path in csvs.items():
        if path is None:
            raise InputError(
                f"{root}: {CSV_NAME.format(kind)}.gz (or .csv) not found; the MIMIC-CXR-JPG adapter needs "
                f"the split and metadata CSVs from the release next to files/"
            )
    return csvs


@register_source(SOURCE)
def load(root, labels: str | None = "chexpert", reports_root=None, require_images: bool = False) -> list[Study]:
    """Load MIMIC-CXR-JPG studies under ``root``.

    Options:
      labels: chexpert, negbio or none: which label table of the release to read
      reports_root: where the MIMIC-CXR report files/ tree lives when it is not under root
      require_images: drop studies with no image file on disk (otherwise kept, text only)
    """
    root = Path(root).expanduser().absolute()  # absolute() not resolve(): no per-file syscalls
    if not root.is_dir():
        raise InputError(f"MIMIC-CXR root {root} is not a folder; point it at the MIMIC-CXR-JPG download")
    csvs = _release_csvs(root)
    # dicom -> (ViewPosition, StudyDate): all we need of the metadata
    meta = {
        r["dicom_id"].strip(): ((r["ViewPosition"] or "").strip().upper(), (r["StudyDate"] or "").strip())
        for r in iter_csv(csvs["metadata"], METADATA_COLUMNS)
    }
    label_table, label_source = _load_labels(root, labels)
    reports_dir = str(_reports_dir(root, reports_root))
    images_dir = str(root / "files")

    grouped, study_split, n_images = _group_split(csvs["split"])

    studies: list[Study] = []
    n_missing_img = n_missing_report = n_dropped = 0
    example_missing = None
    for subject, study in sorted(grouped, key=lambda k: (k[0].zfill(12), k[1].zfill(12))):
        sid = f"s{study}"
        dicoms = grouped[(subject, study)]
        views = [meta.get(d, ("", ""))[0] or "UNKNOWN" for d in dicoms]
        order = sorted(range(len(dicoms)), key=lambda i: view_rank(views[i]))
        # Plain string paths: pathlib joins were the top cost when profiling a 208k-study table.
        rel = os.path.join(_group_dir(subject), f"p{subject}")
        study_dir = os.path.join(images_dir, rel, sid)
        image_paths, image_views, missing = _images_on_disk(study_dir, [dicoms[i] for i in order],
                                                            [views[i] for i in order])
        example_missing = example_missing or (os.path.join(study_dir, f"{missing[0]}.jpg") if missing else None)
        n_missing_img += len(missing)
        if require_images and not image_paths:
            n_dropped += 1
            continue

        study_rec, has_report = _study(reports_dir, rel, sid, subject, study_split[(subject, study)], image_paths,
                                       image_views, [dicoms[i] for i in order], missing,
                                       meta.get(dicoms[order[0]], ("", ""))[1], label_table.get((subject, study)),
                                       label_source)
        n_missing_report += not has_report
        studies.append(study_rec)

    _log_gaps(root, csvs["split"], reports_dir, require_images, n_images, n_missing_img, example_missing, n_dropped,
              n_missing_report, len(grouped))
    if require_images and not studies:
        raise InputError(f"{root}: no image files found under {root / 'files'}; download the JPGs or set require_images=False")
    log.info("%s: %d studies, %d images", root, len(studies), sum(len(s.image_paths) for s in studies))
    return studies
