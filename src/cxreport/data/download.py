"""`cxreport data download`: fetch a dataset release robustly (resume, verify, retry, parallel).

A file is written as ``name.part`` and renamed to its final name only once its sha256 matches the
release's SHA256SUMS.txt (or, for sources without checksums, once its size matches the server's),
so a final name always holds a complete, verified file. Verified files are recorded in a ledger
(``.cxreport-download/verified.tsv``) so a rerun skips them without re-hashing; a file found under its
final name but absent from the ledger (e.g. left by wget) is hashed, and resumed if it is short.
Credentials go in an Authorization header to the base URL's host only; they are never logged.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
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


def _is_remote(out: str) -> bool:
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


# --- CLI ------------------------------------------------------------------------------------------


def _credentials(args, needs_auth: bool) -> Credentials | None:
    if not needs_auth:
        return None
    tty = sys.stdin.isatty()
    user = args.user
    if not user:
        if not tty:
            raise InputError("no PhysioNet username: pass --user (stdin is not a terminal to ask)")
        user = input("PhysioNet username: ").strip()
    if args.password_env:
        password = os.environ.get(args.password_env, "")
        if not password:
            raise InputError(f"environment variable {args.password_env} is unset or empty; "
                             "export your PhysioNet password in it (e.g. read -s VAR; export VAR)")
    elif tty:
        import getpass

        password = getpass.getpass(f"PhysioNet password for {user}: ")
    else:
        raise InputError("no password: stdin is not a terminal, so it cannot be asked for; pass "
                         "--password-env VAR with the password in that environment variable")
    if not user or not password:
        raise InputError("empty PhysioNet username or password")
    return Credentials(user, password)


def _selection(args) -> Selection:
    if args.files:
        path = Path(args.files).expanduser()
        if not path.is_file():
            raise InputError(f"--files {path}: no such file; give a list of image paths, one per line")
        lines = tuple(ln for ln in path.read_text(encoding="utf-8").splitlines()
                      if ln.strip() and not ln.lstrip().startswith("#"))
        if not lines:
            raise InputError(f"--files {path}: the list is empty")
        return Selection(files=lines, files_source=str(path))
    return Selection(max_studies=args.max_studies)


def _positive(text: str) -> int:
    import argparse

    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def run_download_command(args) -> int:
    spec = get_dataset(args.dataset)
    selection = _selection(args)
    remote = _is_remote(args.out)
    if remote:
        key = hashlib.sha1(f"{args.dataset} {args.out}".encode()).hexdigest()[:10]
        out = Path(args.staging or Path.home() / ".cache" / "cxreport" / "download" / f"{args.dataset}-{key}")
    else:
        out = Path(args.out.removeprefix("file://"))
    opts = DownloadOptions(
        out=out.expanduser(), base_url=args.base_url or spec.url_for(args.version), workers=args.workers,
        retries=args.retries, timeout=args.timeout, progress=not args.no_progress and sys.stderr.isatty())
    creds = _credentials(args, spec.needs_auth)
    summary = download(args.dataset, opts, creds, selection, version=args.version)
    print(summary.format())
    if remote:
        print(f"uploaded {upload_tree(opts.out, args.out, args.workers)} new files to {args.out} "
              f"(local copy kept in {opts.out})")
    if summary.failed:
        for path, reason in list(sorted(summary.failed.items()))[:10]:
            print(f"  failed: {path}: {reason}", file=sys.stderr)
        print(f"{len(summary.failed)} file(s) failed (list in {opts.out / STATE_DIR / 'failed.txt'}); "
              "rerun the same command to retry them", file=sys.stderr)
        return 1
    return 0


def add_download_parser(data_subparsers) -> None:
    """Add ``download`` to the ``cxreport data`` subcommands."""
    p = data_subparsers.add_parser(
        "download", help="download a dataset release (resumable, verified, parallel)",
        description="Download a dataset release with resume, sha256 verification, retries and parallel "
        "workers. Rerun the same command after an interruption to continue. "
        + "; ".join(f"{n}: {get_dataset(n).summary}" for n in dataset_names()))
    p.add_argument("dataset", choices=dataset_names())
    p.add_argument("--out", required=True, help="output folder (or an fsspec URL, see docs/download.md)")
    p.add_argument("--version", default=None, help="release version (PhysioNet datasets; default 2.1.0)")
    p.add_argument("--user", help="PhysioNet username")
    p.add_argument("--password-env", metavar="VAR",
                   help="environment variable holding the password (default: ask on the terminal)")
    subset = p.add_mutually_exclusive_group()
    subset.add_argument("--files", metavar="LIST",
                        help="only these images, one per line (e.g. the release's IMAGE_FILENAMES)")
    subset.add_argument("--max-studies", type=_positive, metavar="N", help="only the first N studies")
    p.add_argument("--workers", type=_positive, default=4, help="parallel downloads (default 4)")
    p.add_argument("--base-url", help="release URL (default: the official one)")
    p.add_argument("--retries", type=int, default=5, help="retries per file without progress (default 5)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds without data before a retry")
    p.add_argument("--staging", help="local folder for an fsspec --out (default under ~/.cache/cxreport)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_download_command)
