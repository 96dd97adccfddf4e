"""The download engine: an HTTP client (keep-alive, redirects, auth to the base host only, ranged
resume), the verified-files ledger, the progress bar, and `Downloader`, which fetches `Target`s in
parallel with retries and sha256 verification. `cxreport.data.download` drives it for a whole release.

A file is written as ``name.part`` and renamed to its final name only once it is verified, so a final
name always holds a complete file; credentials are never logged.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import logging
import os
import random
import ssl
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from cxreport.data.download_sources import STATE_DIR, Target, safe_relpath
from cxreport.errors import CXReportError, InputError

log = logging.getLogger(__name__)
USER_AGENT = "cxreport-download/0.1 (+https://github.com/cxreport)"
_REDIRECTS = {301, 302, 303, 307, 308}


class AccessDenied(InputError):
    """401/403: wrong credentials, or an account not yet allowed to fetch this project."""


class _Transient(Exception):
    """Worth retrying: 5xx, 429, dropped or timed-out connections."""


class _FileFailed(Exception):
    """This file cannot be fetched (404, checksum keeps failing, retries spent)."""


class _Stopped(Exception):
    """The run is stopping (Ctrl-C or an access error in another worker)."""


class DownloadStopped(CXReportError):
    """The caller's stop event was set; finished files are kept and a rerun resumes the rest."""


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str = field(repr=False)

    def header(self) -> str:
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode("ascii")
        return f"Basic {token}"


@dataclass(frozen=True)
class DownloadOptions:
    out: Path
    base_url: str
    workers: int = 4
    retries: int = 5  # consecutive failed attempts per file without progress
    checksum_retries: int = 2  # fresh downloads after a checksum mismatch
    timeout: float = 60.0
    backoff: float = 1.0  # first wait in seconds; doubles per failure
    backoff_max: float = 60.0
    chunk_size: int = 1 << 20
    progress: bool = True


@dataclass
class DownloadSummary:
    ok: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # relpath -> reason
    bytes: int = 0
    seconds: float = 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def format(self) -> str:
        return (
            f"files ok {self.ok}, skipped (already complete) {self.skipped}, failed {len(self.failed)}; "
            f"{self.bytes / 1e6:.1f} MB in {self.seconds:.1f} s ({self.mb_per_s:.1f} MB/s)"
        )


class _Http:
    """Keep-alive GET per worker thread; redirects followed, auth sent to the base host only."""

    def __init__(self, base_url: str, creds: Credentials | None, timeout: float):
        self.auth_netloc = urlsplit(base_url).netloc
        self._auth = creds.header() if creds else None
        self.timeout = timeout
        self._local = threading.local()
        self._ssl = ssl.create_default_context()
        self._opened: list[http.client.HTTPConnection] = []  # every thread's, to close at the end

    def _conn(self, scheme: str, netloc: str, fresh: bool):
        conns = self._local.__dict__.setdefault("conns", {})
        key = (scheme, netloc)
        if fresh and key in conns:
            conns.pop(key).close()
        if key not in conns:
            if scheme == "https":
                conns[key] = http.client.HTTPSConnection(netloc, timeout=self.timeout, context=self._ssl)
            elif scheme == "http":
                conns[key] = http.client.HTTPConnection(netloc, timeout=self.timeout)
            else:
                raise InputError(f"unsupported URL scheme {scheme!r}; use https:// (or http:// for tests)")
            self._opened.append(conns[key])
            return conns[key], False
        return conns[key], True

    def close_all(self) -> None:
        while self._opened:
            self._opened.pop().close()
        self._local = threading.local()

    def drop(self, url: str) -> None:
        parts = urlsplit(url)
        conn = self._local.__dict__.get("conns", {}).pop((parts.scheme, parts.netloc), None)
        if conn is not None:
            conn.close()

    def get(self, url: str, headers: dict) -> tuple[http.client.HTTPResponse, str]:
        for _ in range(8):
            parts = urlsplit(url)
            hdrs = {"User-Agent": USER_AGENT, **headers}
            if self._auth and parts.netloc == self.auth_netloc:
                hdrs["Authorization"] = self._auth
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn, reused = self._conn(parts.scheme, parts.netloc, fresh=False)
            try:
                conn.request("GET", path, headers=hdrs)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException):
                if not reused:  # a kept-alive socket the server closed, or one left mid-body: retry fresh
                    raise
                conn, _ = self._conn(parts.scheme, parts.netloc, fresh=True)
                conn.request("GET", path, headers=hdrs)
                resp = conn.getresponse()
            location = resp.getheader("Location")
            if resp.status not in _REDIRECTS or not location:
                return resp, url
            resp.read()
            url = urljoin(url, location)
        raise _Transient("too many redirects")


class Ledger:
    """Append-only record of verified files: ``sha256<TAB>size<TAB>mtime_ns<TAB>relpath``."""

    def __init__(self, out: Path):
        self.path = out / STATE_DIR / "verified.tsv"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.rows: dict[str, tuple[str, int, int]] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                parts = line.split("\t")
                if len(parts) == 4 and parts[1].isdigit() and parts[2].isdigit():
                    self.rows[parts[3]] = (parts[0], int(parts[1]), int(parts[2]))

    def is_current(self, relpath: str, final: Path, sha: str | None) -> bool:
        row = self.rows.get(relpath)
        if row is None or (sha and row[0] != sha):
            return False
        st = final.stat()
        return (row[1], row[2]) == (st.st_size, st.st_mtime_ns)

    def add(self, relpath: str, final: Path, sha: str) -> None:
        st = final.stat()
        with self._lock:
            self.rows[relpath] = (sha, st.st_size, st.st_mtime_ns)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(f"{sha}\t{st.st_size}\t{st.st_mtime_ns}\t{relpath}\n")


class _Progress:
    """A tqdm byte bar; its total is estimated from the mean size of the files fetched so far."""

    def __init__(self, n_files: int, enabled: bool, desc: str):
        from tqdm import tqdm

        self._lock = threading.Lock()
        self.n_files, self.done, self.fetched, self.fetched_bytes = n_files, 0, 0, 0
        self.counts: dict[str, int] = {}
        self.bar = tqdm(total=None, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                        disable=not enabled, dynamic_ncols=True, smoothing=0.05)

    def update(self, n: int) -> None:
        with self._lock:
            self.bar.update(n)

    def file_done(self, status: str, nbytes: int) -> None:
        with self._lock:
            self.done += 1
            self.counts[status] = self.counts.get(status, 0) + 1
            if status == "ok":
                self.fetched, self.fetched_bytes = self.fetched + 1, self.fetched_bytes + nbytes
            if self.fetched:
                left = self.n_files - self.done
                self.bar.total = self.bar.n + int(left * self.fetched_bytes / self.fetched)
            c = self.counts
            self.bar.set_postfix_str(f"files {self.done}/{self.n_files}: ok {c.get('ok', 0)} "
                                     f"skipped {c.get('skipped', 0)} failed {c.get('failed', 0)}", refresh=True)

    def close(self) -> None:
        self.bar.close()


class Downloader:
    """Fetches `Target`s under ``opts.base_url`` into ``opts.out``; one instance per run."""

    def __init__(self, opts: DownloadOptions, creds: Credentials | None, access_hint: str = "",
                 stop: threading.Event | None = None):
        self.opts = opts
        self.base = opts.base_url if opts.base_url.endswith("/") else opts.base_url + "/"
        if urlsplit(self.base).username or urlsplit(self.base).password:
            raise InputError("--base-url must not hold credentials; use --user and --password-env")
        self.http = _Http(self.base, creds, opts.timeout)
        self.ledger = Ledger(opts.out)
        self.access_hint = access_hint
        self.stop = stop or threading.Event()
        self._progress: _Progress | None = None

    # --- one file ---
    def fetch(self, target: Target) -> tuple[str, int]:
        """Return ("ok" | "skipped", bytes downloaded); raise _FileFailed, AccessDenied or _Stopped."""
        rel = safe_relpath(target.relpath, "download target")
        final, part = self.opts.out / rel, self.opts.out / (rel + ".part")
        # No published checksum (Open-i): hold the file to the sha256 recorded when it was first fetched.
        known = target.sha256 or self.ledger.rows.get(rel, (None,))[0]
        if final.is_file():
            if self.ledger.is_current(rel, final, target.sha256):
                return "skipped", 0
            if known and _sha256_file(final) == known:
                self.ledger.add(rel, final, known)
                return "skipped", 0
            # Unverified (e.g. wget's partial file): resume it; the checksum decides.
            if not part.exists() or part.stat().st_size < final.stat().st_size:
                os.replace(final, part)
            else:
                final.unlink()
        final.parent.mkdir(parents=True, exist_ok=True)
        url = urljoin(self.base, rel)
        failures = bad_sums = downloaded = 0
        while True:
            if self.stop.is_set():
                raise _Stopped()
            before = part.stat().st_size if part.exists() else 0
            try:
                digest, got = self._transfer(url, part, rel)
                downloaded += got
            except _Transient as exc:
                self.http.drop(url)
                progressed = part.exists() and part.stat().st_size > before
                downloaded += max(0, (part.stat().st_size if part.exists() else 0) - before)
                failures = 1 if progressed else failures + 1
                if failures > self.opts.retries:
                    raise _FileFailed(f"{exc} (gave up after {self.opts.retries} retries)") from None
                delay = min(self.opts.backoff_max, self.opts.backoff * 2 ** (failures - 1))
                log.info("%s: %s; retry in %.1f s", rel, exc, delay)
                if self.stop.wait(delay * random.uniform(0.8, 1.2)):
                    raise _Stopped() from None
                continue
            if known and digest != known:
                part.unlink()
                bad_sums += 1
                log.warning("%s: sha256 mismatch (download %d); fetching it again from zero", rel, bad_sums)
                if bad_sums > self.opts.checksum_retries:
                    extra = "" if target.sha256 else (
                        f" (recorded in {self.ledger.path}; delete its line if the source changed)")
                    raise _FileFailed(f"sha256 mismatch on {bad_sums} downloads{extra}")
                continue
            os.replace(part, final)
            self.ledger.add(rel, final, digest)
            return "ok", downloaded

    def _check_status(self, resp, url: str, part: Path, rel: str, offset: int) -> tuple[str, int] | None:
        """Raise what a non-content answer means (denied, transient, gone); (sha256, 0) when a
        416 says the partial file is already whole; None when the body is the file from ``offset``."""
        status = resp.status
        if status in (401, 403):
            resp.read()
            why = "username or password not accepted" if status == 401 else "this account may not fetch it"
            host = urlsplit(url).netloc
            raise AccessDenied(f"HTTP {status} for {rel} from {host}: {why}. {self.access_hint}")
        if status == 416 and offset:
            # The part may already be whole: the server tells the full size in Content-Range.
            resp.read()
            total = (resp.getheader("Content-Range") or "").rpartition("/")[2]
            if total.isdigit() and int(total) == offset:
                return _sha256_file(part), 0
            part.unlink()
            raise _Transient("stale partial file (HTTP 416); restarting it")
        if status >= 500 or status == 429:
            resp.read()
            raise _Transient(f"HTTP {status}")
        if status == 404:
            resp.read()
            raise _FileFailed(f"not found on the server (HTTP 404): {url}")
        if status not in (200, 206):
            resp.read()
            raise _FileFailed(f"unexpected HTTP {status}")
        if status == 206:
            start = (resp.getheader("Content-Range") or "").removeprefix("bytes ").partition("-")[0]
            if start != str(offset):
                resp.read()
                part.unlink()
                raise _Transient(f"server answered Range {offset}- with Content-Range {start}-; restarting")
        return None

    def _transfer(self, url: str, part: Path, rel: str) -> tuple[str, int]:
        """Fetch ``url`` into ``part`` from its current size on; return (sha256 of all, new bytes)."""
        offset = part.stat().st_size if part.exists() else 0
        try:
            resp, _ = self.http.get(url, {"Range": f"bytes={offset}-"} if offset else {})
        except (OSError, http.client.HTTPException) as exc:
            raise _Transient(f"connection failed: {type(exc).__name__}: {exc}") from None
        early = self._check_status(resp, url, part, rel, offset)
        if early is not None:
            return early
        if resp.status != 206:
            offset = 0  # the server ignored Range: start over
        length = resp.getheader("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        h = hashlib.sha256()
        if offset:
            _hash_into(h, part)
        got = 0
        with open(part, "ab" if offset else "wb") as fh:  # a write error (disk full) fails the file
            while True:
                if self.stop.is_set():
                    raise _Stopped()
                try:  # read1: what has arrived, so progress and Ctrl-C stay live on slow links
                    chunk = resp.read1(self.opts.chunk_size)
                except (OSError, http.client.HTTPException) as exc:
                    raise _Transient(f"connection dropped after {got} bytes: {type(exc).__name__}") from None
                if not chunk:
                    break
                fh.write(chunk)
                h.update(chunk)
                got += len(chunk)
                if self._progress:
                    self._progress.update(len(chunk))
        if expected is not None and got < expected:
            raise _Transient(f"connection dropped after {got} of {expected} bytes")
        resp.close()  # read1 never marks a whole body done; closing frees the kept-alive connection
        return h.hexdigest(), got

    # --- many files ---
    def fetch_all(self, targets: list[Target], summary: DownloadSummary, desc: str = "") -> None:
        """Fetch in parallel, recording results in ``summary``; Ctrl-C stops cleanly and re-raises."""
        if not targets:
            return
        self._progress = _Progress(len(targets), self.opts.progress, desc)
        denied: AccessDenied | None = None
        workers = max(1, self.opts.workers)
        pool = ThreadPoolExecutor(workers, thread_name_prefix="download")
        queue = iter(targets)  # submitted a few at a time: 377k futures at once would cost ~1 GB
        pending: dict = {}
        try:
            while True:
                while len(pending) < 4 * workers and not self.stop.is_set():
                    target = next(queue, None)
                    if target is None:
                        break
                    pending[pool.submit(self.fetch, target)] = target
                if not pending:
                    break
                done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    target = pending.pop(fut)
                    status, nbytes = "failed", 0
                    try:
                        status, nbytes = fut.result()
                    except _FileFailed as exc:
                        summary.failed[target.relpath] = str(exc)
                        log.warning("failed: %s: %s", target.relpath, exc)
                    except AccessDenied as exc:
                        denied = denied or exc
                        self.stop.set()
                    except _Stopped:
                        continue
                    except OSError as exc:  # disk full, permissions: this file fails, say why
                        summary.failed[target.relpath] = f"{type(exc).__name__}: {exc}"
                        log.warning("failed: %s: %s", target.relpath, exc)
                    if status == "ok":
                        summary.ok += 1
                    elif status == "skipped":
                        summary.skipped += 1
                    summary.bytes += nbytes
                    self._progress.file_done(status, nbytes)
        except KeyboardInterrupt:
            self.stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self.http.close_all()
            self._progress.close()
        if denied:
            raise denied
        if self.stop.is_set():
            raise DownloadStopped("download stopped; rerun the same command to continue where it stopped")


def _hash_into(h, path: Path) -> None:
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    _hash_into(h, path)
    return h.hexdigest()
