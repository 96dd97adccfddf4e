"""Fetch a dataset release robustly (resume, verify, retry, parallel): `cxreport data download`.

A file is written as ``name.part`` and renamed to its final name only once its sha256 matches the
release's SHA256SUMS.txt (or, for sources without checksums, once its size matches the server's),
so a final name always holds a complete, verified file. Verified files are recorded in a ledger
(``.cxreport-download/verified.tsv``) so a rerun skips them without re-hashing; a file found under its
final name but absent from the ledger (e.g. left by wget) is hashed, and resumed if it is short.
Credentials go in an Authorization header to the base URL's host only; they are never logged.
"""

from __future__ import annotations

import logging
import os
import tarfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cxreport.data.download_http import (  # noqa: F401  (re-exported: the public download API)
    AccessDenied,
    Credentials,
    DownloadOptions,
    Downloader,
    DownloadStopped,
    DownloadSummary,
    Ledger,
)
from cxreport.data.download_sources import (
    STATE_DIR,
    Selection,
    Target,
    dataset_names,
    get_dataset,
    parse_sums,
    safe_extract,
)
from cxreport.errors import InputError
from cxreport.fsio import atomic_write_text

log = logging.getLogger(__name__)


# --- a whole run ---------------------------------------------------------------------------------


def download(dataset: str, opts: DownloadOptions, creds: Credentials | None = None,
             selection: Selection = Selection(), stop: threading.Event | None = None,
             version: str | None = None) -> DownloadSummary:
    """Fetch ``dataset`` (a name from `dataset_names`) into ``opts.out``; see the module docstring."""
    spec = get_dataset(dataset)
    if spec.needs_auth and creds is None:
        raise InputError(f"{dataset} needs PhysioNet credentials: pass --user and --password-env VAR")
    page = spec.project_page.format(version=version or spec.default_version)
    hint = (f"Check --user and the password; that your PhysioNet account is credentialed with its CITI "
            f"training on file; and that you signed the data use agreement at {page}."
            if spec.needs_auth else "This source needs no account; check --base-url, or try again later.")
    opts.out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    summary = DownloadSummary()
    dl = Downloader(opts, creds, hint, stop)
    sums: dict[str, str] = {}
    if spec.checksums:
        # The checksum list is the root of trust: fetched whole, then every other file is held to it.
        dl.fetch_all([Target(spec.checksums)], summary, desc=spec.checksums)
        if summary.failed:
            why = summary.failed[spec.checksums]
            raise InputError(f"could not fetch {spec.checksums} from {dl.base}: {why}")
        sums_path = opts.out / spec.checksums
        sums = parse_sums(sums_path.read_text(encoding="utf-8", errors="replace"), str(sums_path))
    dl.fetch_all(spec.first(sums), summary, desc="metadata")
    rest = spec.rest(sums, opts.out, selection)
    dl.fetch_all(rest, summary, desc=dataset)
    wanted = {t.relpath for t in rest}
    for archive, sub in spec.extract.items():
        if archive in wanted and archive not in summary.failed:
            _extract_once(dl.ledger, archive, opts.out / sub if sub else opts.out)
    if not spec.checksums:
        _write_own_manifest(dl.ledger, opts.out, wanted)
    summary.seconds = time.monotonic() - t0
    failed_list = opts.out / STATE_DIR / "failed.txt"
    if summary.failed:
        atomic_write_text(failed_list, "".join(f"{p}\t{r}\n" for p, r in sorted(summary.failed.items())))
    elif failed_list.exists():
        failed_list.unlink()
    return summary


def _extract_once(ledger: Ledger, archive: str, dest: Path) -> None:
    """Unpack a verified archive, once per archive checksum (a marker records it)."""
    digest = ledger.rows[archive][0]
    marker = ledger.path.parent / "extracted" / (archive.replace("/", "__") + ".sha256")
    if marker.is_file() and marker.read_text().strip() == digest:
        return
    log.info("extracting %s into %s", archive, dest)
    path = ledger.path.parent.parent / archive
    try:
        n = safe_extract(path, dest)
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: cannot extract ({exc}); delete it and rerun to fetch it again") from exc
    atomic_write_text(marker, digest + "\n")
    log.info("extracted %d files from %s", n, archive)


def _write_own_manifest(ledger: Ledger, out: Path, relpaths: set[str]) -> None:
    """Sources without published checksums get ours, in sha256sum format (``sha256sum -c`` works)."""
    rows = sorted((p, ledger.rows[p][0]) for p in relpaths if p in ledger.rows)
    if rows:
        atomic_write_text(out / "SHA256SUMS.cxreport.txt", "".join(f"{d}  {p}\n" for p, d in rows))


def is_remote(out: str) -> bool:
    return "://" in out and not out.startswith("file://")


def upload_tree(local: Path, remote: str, workers: int = 4) -> int:
    """Copy the finished files of ``local`` to an fsspec URL, skipping those already there whole."""
    try:
        import fsspec
    except ImportError as exc:
        raise InputError(f"--out {remote} is a URL: install fsspec (and its protocol's package, "
                         "e.g. s3fs or gcsfs), or download to a local folder") from exc
    fs, root = fsspec.core.url_to_fs(remote)
    files = [p for p in local.rglob("*") if p.is_file() and STATE_DIR not in p.relative_to(local).parts
             and not p.name.endswith((".part", ".extract"))]

    def put(path: Path) -> int:
        dst = f"{root.rstrip('/')}/{path.relative_to(local).as_posix()}"
        if fs.exists(dst) and fs.size(dst) == path.stat().st_size:
            return 0
        fs.makedirs(dst.rpartition("/")[0], exist_ok=True)
        fs.put_file(str(path), dst)
        return 1

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return sum(pool.map(put, files))
