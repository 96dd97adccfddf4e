"""What `cxreport data download` can fetch: where each dataset lives, which files, which subset.

Each dataset is a planner registered with ``@register_dataset``. A planner works in two phases
because a subset (``--max-studies``) is chosen from the release's own CSVs: ``first`` names the
small top-level files (fetched before anything else), ``rest`` names the bulk once they are on disk.
Archives named in ``extract`` are unpacked with `safe_extract` after they are verified.
"""

from __future__ import annotations

import csv
import gzip
import os
import re
import stat
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

from cxreport.errors import InputError
from cxreport.registry import Registry

SUMS_NAME = "SHA256SUMS.txt"
STATE_DIR = ".cxreport-download"  # ledger, failed list, extraction markers; never a dataset file
_STUDY_RE = re.compile(r"p(\d+)/s(\d+)")
_ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz")


@dataclass(frozen=True)
class Target:
    """One file to fetch: its path relative to the base URL and output folder, and its sha256."""

    relpath: str
    sha256: str | None = None  # None: the source publishes no checksum (Open-i)


@dataclass(frozen=True)
class Selection:
    """A subset of a release: the first N studies, or the lines of a ``--files`` list."""

    max_studies: int | None = None
    files: tuple[str, ...] | None = None
    files_source: str = "--files"

    @property
    def is_subset(self) -> bool:
        return self.max_studies is not None or self.files is not None


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    base_url: str  # may hold {version}
    default_version: str | None
    needs_auth: bool
    checksums: str | None  # the release's checksum file, or None
    first: Callable[[dict], list[Target]]
    rest: Callable[[dict, Path, Selection], list[Target]]
    extract: dict[str, str] = field(default_factory=dict)  # archive relpath -> folder under out
    project_page: str = ""
    summary: str = ""

    def url_for(self, version: str | None) -> str:
        return self.base_url.format(version=version or self.default_version)


DATASETS = Registry("dataset")


def register_dataset(**spec_fields):
    """Register the decorated class's ``first``/``rest`` static methods as a dataset planner."""

    def deco(cls):
        spec = DatasetSpec(first=cls.first, rest=cls.rest, **spec_fields)
        DATASETS.add(spec.name, spec)
        return cls

    return deco


def dataset_names() -> list[str]:
    return DATASETS.names()


def get_dataset(name: str) -> DatasetSpec:
    return DATASETS.get(name)


# --- checksums ---------------------------------------------------------------------------------


def parse_sums(text: str, where: str) -> dict[str, str]:
    """Parse ``<sha256>  <relative path>`` lines (sha256sum's format) into {path: sha256}."""
    sums: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        digest = parts[0].lower()
        if len(parts) != 2 or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise InputError(
                f"{where}: line {n} is not '<sha256>  <path>' ({line[:80]!r}); delete the file so it "
                "is fetched again, or check --base-url points at the release folder"
            )
        sums[safe_relpath(parts[1].strip().lstrip("*"), where)] = digest
    if not sums:
        raise InputError(f"{where} lists no files; check --base-url points at the release folder")
    return sums


def safe_relpath(path: str, where: str) -> str:
    """A relative POSIX path that stays inside the output folder, or InputError."""
    p = PurePosixPath(path.replace("\\", "/"))
    if p.is_absolute() or not p.parts or any(part in ("..", "") for part in p.parts) or ":" in p.parts[0]:
        raise InputError(f"{where}: refusing path {path!r} (absolute or leaves the output folder)")
    if p.parts[0] == STATE_DIR:
        raise InputError(f"{where}: refusing path {path!r} (reserved for download state)")
    return p.as_posix()


def _top_level(sums: dict) -> list[str]:
    return [p for p in sums if "/" not in p]


def _study_key(path: str) -> tuple[int, int] | None:
    m = _STUDY_RE.search(path)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _study_prefix(key: tuple[int, int]) -> str:
    subject = str(key[0])
    return f"files/p{subject[:2]}/p{subject}/s{key[1]}"


def _normalise_line(line: str) -> str:
    line = line.strip().replace("\\", "/")
    i = line.find("files/")  # accept absolute paths and URLs that contain the release tree
    return line[i:] if i >= 0 else line.removeprefix("./")


def _unmatched_error(sel: Selection, missing: list[str], what: str) -> InputError:
    shown = ", ".join(repr(m) for m in missing[:3])
    return InputError(
        f"{sel.files_source}: {len(missing)} line(s) match no {what} in {SUMS_NAME} of this release "
        f"(e.g. {shown}); list paths like files/p10/p10000032/s50414267/<dicom_id>.jpg or dicom ids"
    )


# --- MIMIC-CXR-JPG -----------------------------------------------------------------------------

MIMIC_JPG_METADATA = "mimic-cxr-2.0.0-metadata.csv.gz"


def _read_study_keys(path: Path) -> list[tuple[int, int]]:
    if not path.is_file():
        raise InputError(f"{path}: metadata CSV missing, so --max-studies cannot pick studies; rerun")
    try:
        with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            cols = set(reader.fieldnames or ())
            if not {"subject_id", "study_id"} <= cols:
                raise InputError(f"{path}: needs columns subject_id and study_id, found {sorted(cols)}")
            return sorted({(int(r["subject_id"]), int(r["study_id"])) for r in reader})
    except (OSError, EOFError, ValueError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read the metadata CSV ({exc}); delete it and rerun") from exc


def _read_dicom_studies(path: Path) -> dict[str, tuple[int, int]]:
    if not path.is_file():
        return {}
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if not {"dicom_id", "subject_id", "study_id"} <= set(reader.fieldnames or ()):
            raise InputError(f"{path}: needs columns dicom_id, subject_id, study_id")
        return {r["dicom_id"]: (int(r["subject_id"]), int(r["study_id"])) for r in reader}


@register_dataset(
    name="mimic-cxr-jpg",
    base_url="https://physionet.org/files/mimic-cxr-jpg/{version}/",
    default_version="2.1.0",
    needs_auth=True,
    checksums=SUMS_NAME,
    project_page="https://physionet.org/content/mimic-cxr-jpg/{version}/",
    summary="MIMIC-CXR-JPG images + label/metadata CSVs (PhysioNet credentialed, ~570 GB)",
)
class MimicCxrJpg:
    @staticmethod
    def first(sums: dict) -> list[Target]:
        return [Target(p, sums[p]) for p in _top_level(sums)]

    @staticmethod
    def rest(sums: dict, out: Path, sel: Selection) -> list[Target]:
        images = [p for p in sums if p.startswith("files/")]
        if sel.max_studies is not None:
            keys = _read_study_keys(out / MIMIC_JPG_METADATA)[: sel.max_studies]
            wanted = {_study_prefix(k) for k in keys}
            images = [p for p in images if p.rsplit("/", 1)[0] in wanted]
        elif sel.files is not None:
            by_stem = {PurePosixPath(p).stem: p for p in images}
            by_study: dict[str, list[str]] = {}
            for p in images:
                by_study.setdefault(p.rsplit("/", 1)[0], []).append(p)
            chosen, missing = set(), []
            for raw in sel.files:
                line = _normalise_line(raw)
                stem = PurePosixPath(line).name.removesuffix(".jpg").removesuffix(".dcm")
                if line in sums:
                    chosen.add(line)
                elif stem in by_stem:
                    chosen.add(by_stem[stem])
                elif line.rstrip("/") in by_study:
                    chosen.update(by_study[line.rstrip("/")])
                else:
                    missing.append(raw.strip())
            if missing:
                raise _unmatched_error(sel, missing, "image")
            images = [p for p in images if p in chosen]
        return [Target(p, sums[p]) for p in images]


# --- MIMIC-CXR reports (the `mimic-cxr` PhysioNet project) -------------------------------------

REPORTS_ZIP = "mimic-cxr-reports.zip"
REPORTS_RECORDS = "cxr-record-list.csv.gz"


@register_dataset(
    name="mimic-cxr-reports",
    base_url="https://physionet.org/files/mimic-cxr/{version}/",
    default_version="2.1.0",
    needs_auth=True,
    checksums=SUMS_NAME,
    extract={REPORTS_ZIP: ""},
    project_page="https://physionet.org/content/mimic-cxr/{version}/",
    summary="MIMIC-CXR free-text reports (files/pXX/pSUBJECT/sSTUDY.txt), never the DICOMs",
)
class MimicCxrReports:
    @staticmethod
    def first(sums: dict) -> list[Target]:
        # Skip the archives here: a full run takes the zip in `rest`, a subset the single .txt files.
        return [Target(p, sums[p]) for p in _top_level(sums) if not p.endswith(_ARCHIVE_SUFFIXES)]

    @staticmethod
    def rest(sums: dict, out: Path, sel: Selection) -> list[Target]:
        reports = sorted((p for p in sums if p.startswith("files/") and p.endswith(".txt")), key=_study_key)
        if not sel.is_subset:
            if REPORTS_ZIP in sums:
                return [Target(REPORTS_ZIP, sums[REPORTS_ZIP])]
            return [Target(p, sums[p]) for p in reports]
        if sel.max_studies is not None:
            return [Target(p, sums[p]) for p in reports[: sel.max_studies]]
        chosen, missing, by_dicom = [], [], None
        for raw in sel.files or ():
            line = _normalise_line(raw)
            key = _study_key(line)
            if key is None:  # a bare dicom id: the release's record list knows its study
                by_dicom = by_dicom if by_dicom is not None else _read_dicom_studies(out / REPORTS_RECORDS)
                key = by_dicom.get(PurePosixPath(line).name.removesuffix(".jpg").removesuffix(".dcm"))
            path = f"{_study_prefix(key)}.txt" if key else None
            if path in sums:
                chosen.append(path)
            else:
                missing.append(raw.strip())
        if missing:
            raise _unmatched_error(sel, missing, "study report")
        return [Target(p, sums[p]) for p in dict.fromkeys(chosen)]


# --- IU X-Ray from Open-i ----------------------------------------------------------------------


@register_dataset(
    name="openi",
    base_url="https://openi.nlm.nih.gov/imgs/collections/",
    default_version=None,
    needs_auth=False,
    checksums=None,
    extract={"NLMCXR_png.tgz": "NLMCXR_png", "NLMCXR_reports.tgz": ""},
    summary="IU X-Ray (Open-i): NLMCXR_png.tgz + NLMCXR_reports.tgz, extracted",
)
class OpenI:
    @staticmethod
    def first(sums: dict) -> list[Target]:
        return []

    @staticmethod
    def rest(sums: dict, out: Path, sel: Selection) -> list[Target]:
        if sel.is_subset:
            raise InputError("openi is published as two whole archives: drop --max-studies/--files")
        return [Target("NLMCXR_png.tgz"), Target("NLMCXR_reports.tgz")]


# --- safe extraction ---------------------------------------------------------------------------


def _member_target(dest: Path, name: str, archive: Path) -> Path:
    if PurePosixPath(name).parts in ((), (".",)):  # tar's own "./" entry
        return dest.resolve()
    rel = safe_relpath(name.rstrip("/"), f"{archive} member")
    target = (dest / rel).resolve()
    if not target.is_relative_to(dest.resolve()):
        raise InputError(f"{archive}: member {name!r} resolves outside {dest}; archive refused")
    return target


def _write_member(target: Path, size: int, src) -> bool:
    """Write one member through a temp name (no fsync: 200k small files); False if already there."""
    if target.is_file() and target.stat().st_size == size:
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.extract")
    with open(tmp, "wb") as fh:
        while chunk := src.read(1 << 20):
            fh.write(chunk)
    os.replace(tmp, target)
    return True


def safe_extract(archive: Path, dest: Path) -> int:
    """Extract a .tgz/.tar.gz/.zip into ``dest``: regular files and folders only, none outside it.

    Links, devices, absolute names and ``..`` are refused before anything is written. Files already
    present with the right size are kept, so an interrupted extraction resumes. Returns files written.
    """
    dest.mkdir(parents=True, exist_ok=True)
    written = 0
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise InputError(f"{archive}: member {info.filename!r} is a symlink; archive refused")
                _member_target(dest, info.filename, archive)
            for info in infos:
                if not info.is_dir():
                    target = _member_target(dest, info.filename, archive)
                    with zf.open(info) as src:
                        written += _write_member(target, info.file_size, src)
        return written
    with tarfile.open(archive, "r:*") as tf:
        members = tf.getmembers()
        for m in members:
            if not (m.isfile() or m.isdir()):
                raise InputError(f"{archive}: member {m.name!r} is a link or device; archive refused")
            _member_target(dest, m.name, archive)
        for m in members:
            if m.isfile():
                with tf.extractfile(m) as src:
                    written += _write_member(_member_target(dest, m.name, archive), m.size, src)
    return written
