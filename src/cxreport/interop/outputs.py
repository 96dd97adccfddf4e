"""`cxreport generate --format dicom-sr|fhir`: a study's result written as a DICOM SR or a FHIR
DiagnosticReport next to (or instead of) the text and JSON outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from cxreport.errors import InputError

FORMATS = ("text", "json", "dicom-sr", "fhir")
SUFFIX = {"dicom-sr": ".sr.dcm", "fhir": ".fhir.json"}


def dicom_sources(images: Sequence) -> list | None:
    """The DICOM headers of a study's films, or None when any of them is not a DICOM file."""
    from cxreport.data.images import is_dicom

    paths = [p for p in images if isinstance(p, (str, Path))]
    if len(paths) != len(images) or not all(is_dicom(p) for p in paths):
        return None
    from cxreport.interop.sr import read_headers

    return read_headers(paths)


def fhir_json(result, images: Sequence) -> dict:
    from cxreport.interop.fhir import diagnostic_report

    return diagnostic_report(result, dicom_sources(images))


def write_output(result, images: Sequence, fmt: str, out_dir: Path, name: str, force: bool = True) -> Path:
    """Write one study's SR (``dicom-sr``) or DiagnosticReport (``fhir``) as OUT/<name><suffix>."""
    from cxreport.fsio import atomic_write_text

    path = Path(out_dir) / f"{name}{SUFFIX[fmt]}"
    if path.exists() and not force:
        raise InputError(f"{path} exists: pass --force to overwrite it")
    if fmt == "fhir":
        atomic_write_text(path, json.dumps(fhir_json(result, images), indent=2) + "\n")
        return path
    sources = dicom_sources(images)
    if sources is None:
        raise InputError(f"study {name}: a DICOM SR needs DICOM source images (patient and study come from them); "
                         "these are PNG/JPEG: use --format json or fhir")
    from cxreport.interop.sr import build_sr, write_sr

    return write_sr(build_sr(result, sources), path)


def write_batch_outputs(rows: list[dict], studies: list[dict], fmt: str, out_dir: Path) -> tuple[int, list[str]]:
    """After a batch run: an SR / DiagnosticReport for every study whose JSON it wrote (also those an
    earlier run finished). Returns (written, problems)."""
    by_id = {s["study_id"]: s for s in studies}
    written, problems = 0, []
    for row in rows:
        if row.get("status") != "ok":
            continue
        done = json.loads((Path(out_dir) / row["file"]).read_text(encoding="utf-8"))
        try:
            write_output(done, by_id[row["study_id"]]["images"], fmt, out_dir, Path(row["file"]).stem)
            written += 1
        except InputError as exc:
            problems.append(str(exc))
    return written, problems
