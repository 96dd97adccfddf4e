"""`cxreport data download` against a loopback PhysioNet look-alike with injected faults."""

from __future__ import annotations

import argparse
import base64
import gzip
import csv
import io
import logging
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import pytest

from cxreport.cli.data import add_download_parser
from cxreport.data.download import AccessDenied, Credentials, DownloadOptions, download
from cxreport.data.download_sources import STATE_DIR, Selection, safe_extract
from cxreport.errors import InputError
from tests.fixtures.physionet_server import (
    JPG, OPENI, PASSWORD, REPORTS, USER, Faults, PhysioNetServer, build_served_tree,
)

CREDS = Credentials(USER, PASSWORD)
SECRETS = (PASSWORD, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("physionet")
    return root, build_served_tree(root)


def _opts(out: Path, server: PhysioNetServer, sub: str, **kw) -> DownloadOptions:
    kw = {"workers": 3, "backoff": 0.01, "progress": False, "timeout": 10.0, **kw}
    return DownloadOptions(out=out, base_url=server.url + sub + "/", **kw)


def _tree(root: Path, skip_state: bool = True) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and not (skip_state and STATE_DIR in p.relative_to(root).parts)}


def _images(served_root: Path) -> list[str]:
    return sorted(p for p in _tree(served_root / JPG) if p.startswith("files/"))


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_download_parser(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["download", *argv])
    return args.func(args)


def test_faults_recovered_and_tree_byte_identical(served, tmp_path, caplog, capsys):
    root, _ = served
    imgs = [f"/{JPG}/{p}" for p in _images(root)]
    faults = Faults(
        drop_after={imgs[0]: [700, 300]},  # hang up mid-file twice
        errors={imgs[1]: [500, 502, 503], f"/{JPG}/SHA256SUMS.txt": [500]},
        corrupt={imgs[2]: 1},  # wrong bytes once: deleted, fetched again from zero
    )
    out = tmp_path / "mimic"
    caplog.set_level(logging.DEBUG)
    with PhysioNetServer(root, faults) as srv:
        summary = download("mimic-cxr-jpg", _opts(out, srv, JPG), CREDS)
        drops = srv.hits_for(imgs[0])
        corrupt_hits = srv.hits_for(imgs[2])
    assert summary.failed == {}
    assert summary.ok == len(_tree(root / JPG)) and summary.skipped == 0
    assert _tree(out) == _tree(root / JPG)
    assert not list(out.rglob("*.part"))
    assert [h.range for h in drops] == [None, "bytes=700-", "bytes=1000-"]
    assert [h.status for h in drops] == [200, 206, 206]
    assert len(corrupt_hits) == 2 and corrupt_hits[1].range is None  # retried from zero
    logs = caplog.text + "".join(capsys.readouterr())
    assert "sha256 mismatch" in logs and "HTTP 500" in logs
    assert not any(s in logs for s in SECRETS)

    with PhysioNetServer(root) as srv:  # rerun: nothing to fetch but the requests it needs
        again = download("mimic-cxr-jpg", _opts(out, srv, JPG), CREDS)
        assert len(srv.hits) == 0
    assert again.ok == 0 and again.skipped == summary.ok and again.bytes == 0


def test_permanent_checksum_mismatch_is_reported_failed(served, tmp_path):
    root, _ = served
    bad = _images(root)[3]
    out = tmp_path / "mimic"
    with PhysioNetServer(root, Faults(corrupt={f"/{JPG}/{bad}": -1})) as srv:
        summary = download("mimic-cxr-jpg", _opts(out, srv, JPG, checksum_retries=2), CREDS)
        assert len(srv.hits_for(f"/{JPG}/{bad}")) == 3
    assert list(summary.failed) == [bad] and "sha256 mismatch" in summary.failed[bad]
    assert not (out / bad).exists() and not (out / (bad + ".part")).exists()
    assert bad in (out / STATE_DIR / "failed.txt").read_text()
    assert summary.ok == len(_tree(root / JPG)) - 1


@pytest.mark.parametrize("password,status,words", [
    (PASSWORD, 403, ["data use agreement", "credentialed", "mimic-cxr-jpg/2.1.0"]),
    ("wrong-" + PASSWORD, 401, ["username or password not accepted"]),
])
def test_access_refused_gives_clear_message(served, tmp_path, caplog, password, status, words):
    root, _ = served
    caplog.set_level(logging.DEBUG)
    with PhysioNetServer(root, Faults(forbidden_prefix=f"/{JPG}/")) as srv:
        with pytest.raises(AccessDenied) as err:
            download("mimic-cxr-jpg", _opts(tmp_path / "o", srv, JPG), Credentials(USER, password))
    msg = str(err.value)
    assert f"HTTP {status}" in msg and all(w in msg for w in words)
    assert password not in msg + repr(err.value) + caplog.text and PASSWORD not in msg
    assert password not in repr(Credentials(USER, password))


def test_interrupted_run_resumes_with_range(served, tmp_path):
    root, _ = served
    target = _images(root)[0]
    out = tmp_path / "mimic"
    with PhysioNetServer(root, Faults(drop_after={f"/{JPG}/{target}": [1500]})) as srv:
        first = download("mimic-cxr-jpg", _opts(out, srv, JPG, retries=0), CREDS)
    assert list(first.failed) == [target] and "dropped after 1500" in first.failed[target]
    assert not (out / target).exists() and (out / (target + ".part")).stat().st_size == 1500
    with PhysioNetServer(root) as srv:
        second = download("mimic-cxr-jpg", _opts(out, srv, JPG), CREDS)
        hits = srv.hits
    assert second.ok == 1 and second.failed == {}
    assert [(h.path, h.range, h.status) for h in hits if "files/" in h.path] == [
        (f"/{JPG}/{target}", "bytes=1500-", 206)]
    assert _tree(out) == _tree(root / JPG) and not list(out.rglob("*.part"))


def test_leftovers_under_final_names_are_verified(served, tmp_path):
    """A wget-style partial file is resumed; a wrong file is replaced; a server ignoring Range works."""
    root, _ = served
    a, b = _images(root)[:2]
    out = tmp_path / "mimic"
    (out / a).parent.mkdir(parents=True)
    (out / a).write_bytes((root / JPG / a).read_bytes()[:1000])
    (out / b).parent.mkdir(parents=True, exist_ok=True)
    (out / b).write_bytes(b"not the image at all" * 100)
    with PhysioNetServer(root) as srv:
        download("mimic-cxr-jpg", _opts(out, srv, JPG), CREDS)
        assert srv.hits_for(f"/{JPG}/{a}")[0].range == "bytes=1000-"
    assert _tree(out) == _tree(root / JPG)
    out2 = tmp_path / "norange"
    faults = Faults(no_range=True, drop_after={f"/{JPG}/{a}": [800]})
    with PhysioNetServer(root, faults) as srv:
        assert download("mimic-cxr-jpg", _opts(out2, srv, JPG), CREDS).failed == {}
    assert _tree(out2) == _tree(root / JPG)


def _metadata_keys(path: Path) -> list[tuple[int, int]]:
    with gzip.open(path, "rt") as fh:
        return sorted({(int(r["subject_id"]), int(r["study_id"])) for r in csv.DictReader(fh)})


def test_cli_max_studies_subset(served, tmp_path, monkeypatch, capsys):
    root, info = served
    monkeypatch.setenv("PN_PASSWORD", PASSWORD)
    out = tmp_path / "subset"
    with PhysioNetServer(root) as srv:
        rc = _cli(["mimic-cxr-jpg", "--out", str(out), "--base-url", srv.url + JPG, "--user", USER,
                   "--password-env", "PN_PASSWORD", "--max-studies", "2", "--workers", "2", "--no-progress"])
    assert rc == 0
    stdout = capsys.readouterr().out
    assert "files ok" in stdout and "MB/s" in stdout and PASSWORD not in stdout
    keys = _metadata_keys(out / "mimic-cxr-2.0.0-metadata.csv.gz")[:2]
    assert keys == info["keys"][:2]
    got = {p for p in _tree(out) if p.startswith("files/")}
    want = {p for p in _images(root) if any(f"/p{s}/s{t}/" in p for s, t in keys)}
    assert got == want and len(got) == 4
    for name in ("SHA256SUMS.txt", "LICENSE.txt", "README", "mimic-cxr-2.0.0-split.csv.gz",
                 "mimic-cxr-2.0.0-chexpert.csv.gz", "mimic-cxr-2.0.0-negbio.csv.gz"):
        assert (out / name).read_bytes() == (root / JPG / name).read_bytes()


def test_files_subset_for_images_and_reports(served, tmp_path):
    root, _ = served
    imgs = _images(root)
    listing = tmp_path / "IMAGE_FILENAMES"
    listing.write_text(f"# chosen\n{imgs[0]}\n{Path(imgs[5]).stem}\n")
    with PhysioNetServer(root) as srv:
        sel = Selection(files=tuple(listing.read_text().splitlines()[1:]), files_source=str(listing))
        download("mimic-cxr-jpg", _opts(tmp_path / "jpg", srv, JPG), CREDS, sel)
        download("mimic-cxr-reports", _opts(tmp_path / "rep", srv, REPORTS), CREDS, sel)
        with pytest.raises(InputError, match="IMAGE_FILENAMES.*match no image"):
            download("mimic-cxr-jpg", _opts(tmp_path / "x", srv, JPG), CREDS,
                     Selection(files=("files/p99/p99999999/s1/nope.jpg",), files_source=str(listing)))
        assert not any(h.path.endswith((".dcm", ".zip")) for h in srv.hits)
    assert sorted(p for p in _tree(tmp_path / "jpg") if p.startswith("files/")) == [imgs[0], imgs[5]]
    reports = sorted(p for p in _tree(tmp_path / "rep") if p.startswith("files/"))
    assert reports == sorted({p.rsplit("/", 1)[0] + ".txt" for p in (imgs[0], imgs[5])})
    for p in reports:
        assert (tmp_path / "rep" / p).read_bytes() == (root / REPORTS / p).read_bytes()


def test_full_reports_zip_extracted_without_dicoms(served, tmp_path):
    root, _ = served
    out = tmp_path / "rep"
    with PhysioNetServer(root) as srv:
        assert download("mimic-cxr-reports", _opts(out, srv, REPORTS), CREDS).failed == {}
        assert not any(h.path.endswith(".dcm") for h in srv.hits)
    served_txt = {p: b for p, b in _tree(root / REPORTS).items() if p.startswith("files/") and p.endswith(".txt")}
    assert {p: b for p, b in _tree(out).items() if p.startswith("files/")} == served_txt
    assert "FINDINGS:" in (out / next(iter(served_txt))).read_text()


def test_openi_download_extract_and_own_manifest(served, tmp_path):
    root, _ = served
    out = tmp_path / "openi"
    with PhysioNetServer(root, Faults(drop_after={f"/{OPENI}/NLMCXR_png.tgz": [2000]})) as srv:
        s = download("openi", _opts(out, srv, OPENI), None)
        assert s.failed == {} and s.ok == 2
        assert not any(h.authorization for h in srv.hits)
    for name in ("NLMCXR_png.tgz", "NLMCXR_reports.tgz"):
        assert (out / name).read_bytes() == (root / OPENI / name).read_bytes()
    assert sorted(p.name for p in (out / "NLMCXR_png").iterdir())[0] == "CXR1_1_IM-0001-2001.png"
    assert "<AbstractText Label=\"FINDINGS\">" in (out / "ecgen-radiology" / "1.xml").read_text()
    manifest = (out / "SHA256SUMS.cxreport.txt").read_text()
    assert "NLMCXR_png.tgz" in manifest and len(manifest.splitlines()) == 2
    (out / "NLMCXR_reports.tgz").write_bytes(b"tampered")  # the recorded sha256 catches this
    with PhysioNetServer(root) as srv:
        again = download("openi", _opts(out, srv, OPENI), None)
    assert again.ok == 1 and again.skipped == 1
    assert (out / "NLMCXR_reports.tgz").read_bytes() == (root / OPENI / "NLMCXR_reports.tgz").read_bytes()


@pytest.mark.parametrize("evil", ["../escape.txt", "/abs.txt", "link"])
def test_safe_extract_refuses_traversal_and_links(tmp_path, evil):
    archive = tmp_path / "evil.tgz"
    with tarfile.open(archive, "w:gz") as tf:
        ok = tarfile.TarInfo("fine.txt")
        ok.size = 2
        tf.addfile(ok, io.BytesIO(b"ok"))
        info = tarfile.TarInfo(evil)
        if evil == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        else:
            info.size = 4
        tf.addfile(info, io.BytesIO(b"evil"))
    dest = tmp_path / "dest"
    with pytest.raises(InputError, match="refus"):
        safe_extract(archive, dest)
    assert not (dest / "fine.txt").exists() and not (tmp_path / "escape.txt").exists()


def test_no_tty_and_no_password_env_refuses_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    with pytest.raises(InputError, match="not a terminal.*--password-env"):
        _cli(["mimic-cxr-jpg", "--out", str(tmp_path), "--user", USER, "--base-url", "http://127.0.0.1:9/"])
    monkeypatch.delenv("NOPE_PW", raising=False)
    with pytest.raises(InputError, match="NOPE_PW is unset"):
        _cli(["mimic-cxr-jpg", "--out", str(tmp_path), "--user", USER, "--password-env", "NOPE_PW"])


def test_cli_writes_to_fsspec_url(served, tmp_path, monkeypatch, capsys):
    fsspec = pytest.importorskip("fsspec")
    root, _ = served
    monkeypatch.setenv("PN_PASSWORD", PASSWORD)
    with PhysioNetServer(root) as srv:
        rc = _cli(["mimic-cxr-jpg", "--out", "memory://bucket/mimic", "--staging", str(tmp_path / "stage"),
                   "--base-url", srv.url + JPG, "--user", USER, "--password-env", "PN_PASSWORD",
                   "--max-studies", "1", "--no-progress"])
    assert rc == 0 and "uploaded" in capsys.readouterr().out
    fs = fsspec.filesystem("memory")
    local = _tree(tmp_path / "stage")
    assert {p: fs.cat(f"/bucket/mimic/{p}") for p in local} == local


def test_ctrl_c_then_rerun_continues(served, tmp_path):
    """SIGINT a real CLI process mid-file: exit 130, .part kept, rerun resumes with a Range request."""
    root, _ = served
    release = tmp_path / "release"
    big = "files/p10/p10000001/s50000001/0badf00d-00000000-00000000-00000000-00000001.jpg"
    (release / big).parent.mkdir(parents=True)
    (release / big).write_bytes(os.urandom(300_000))
    import hashlib

    (release / "SHA256SUMS.txt").write_text(f"{hashlib.sha256((release / big).read_bytes()).hexdigest()}  {big}\n")
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import argparse, sys
        from cxreport.cli.data import add_download_parser
        p = argparse.ArgumentParser(); add_download_parser(p.add_subparsers())
        args = p.parse_args(sys.argv[1:])
        try:
            sys.exit(args.func(args))
        except KeyboardInterrupt:
            sys.exit(130)
    """)
    # 0.05 s per 4 KiB: a 3.7 s window to interrupt in, wide enough for a loaded 2-core runner
    # (at 0.02 s the download once finished before the poller saw its .part file).
    with PhysioNetServer(tmp_path, Faults(slow={f"/release/{big}": 0.05})) as srv:
        argv = [sys.executable, "-c", script, "download", "mimic-cxr-jpg", "--out", str(out), "--base-url",
                srv.url + "release/", "--user", USER, "--password-env", "PN_PASSWORD", "--no-progress"]
        env = {**os.environ, "PN_PASSWORD": PASSWORD, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
        # A runner that starts the suite in the background of a shell without job control hands
        # every child SIGINT ignored, and Python then installs no KeyboardInterrupt handler: give
        # the CLI the default disposition, as a terminal would.
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        part = out / (big + ".part")
        deadline = time.monotonic() + 20
        while not (part.exists() and part.stat().st_size > 20_000) and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 130, err.decode()
        assert not (out / big).exists() and part.stat().st_size > 20_000
        srv.faults.slow.clear()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        last = srv.hits_for(f"/release/{big}")[-1]
    assert last.range and last.range.startswith("bytes=") and last.status == 206
    assert (out / big).read_bytes() == (release / big).read_bytes() and not part.exists()
    assert PASSWORD not in err.decode() + done.stdout + done.stderr


def test_password_prompt_on_a_terminal(served, tmp_path, monkeypatch, capsys):
    import getpass

    root, _ = served
    prompts = []
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(getpass, "getpass", lambda prompt: prompts.append(prompt) or PASSWORD)
    with PhysioNetServer(root) as srv:
        rc = _cli(["mimic-cxr-jpg", "--out", str(tmp_path / "o"), "--base-url", srv.url + JPG,
                   "--user", USER, "--max-studies", "1", "--no-progress"])
    assert rc == 0 and prompts == [f"PhysioNet password for {USER}: "]
    assert PASSWORD not in "".join(capsys.readouterr())


def test_stalled_connection_times_out_and_resumes(tmp_path):
    import hashlib

    release = tmp_path / "release"
    rel = "files/p10/p10000001/s50000001/0badf00d-00000000-00000000-00000000-00000002.jpg"
    (release / rel).parent.mkdir(parents=True)
    (release / rel).write_bytes(os.urandom(14_000))
    (release / "SHA256SUMS.txt").write_text(f"{hashlib.sha256((release / rel).read_bytes()).hexdigest()}  {rel}\n")
    out = tmp_path / "out"
    with PhysioNetServer(tmp_path, Faults(slow={f"/release/{rel}": 0.6})) as srv:  # 4 KiB, then a stall
        s = download("mimic-cxr-jpg", _opts(out, srv, "release", timeout=0.25), CREDS)
        ranges = [h.range for h in srv.hits_for(f"/release/{rel}")]
    assert s.failed == {} and (out / rel).read_bytes() == (release / rel).read_bytes()
    assert ranges == [None, "bytes=4096-", "bytes=8192-", "bytes=12288-"]


def test_missing_file_fails_alone(served, tmp_path):
    root, _ = served
    gone = _images(root)[4]
    with PhysioNetServer(root, Faults(errors={f"/{JPG}/{gone}": [404]})) as srv:
        s = download("mimic-cxr-jpg", _opts(tmp_path / "o", srv, JPG), CREDS)
    assert list(s.failed) == [gone] and "HTTP 404" in s.failed[gone]
    assert s.ok == len(_tree(root / JPG)) - 1


def test_real_cli_download_then_prepare_cache(served, tmp_path, monkeypatch):
    """`cxreport data download` (images + reports) then `cxreport data prepare --source mimic-cxr`."""
    from cxreport.cli import main
    from cxreport.data.cache import Cache

    root, info = served
    monkeypatch.setenv("PN_PASSWORD", PASSWORD)
    with PhysioNetServer(root) as srv:
        for sub, name in ((JPG, "mimic-cxr-jpg"), (REPORTS, "mimic-cxr-reports")):
            assert main(["data", "download", name, "--out", str(tmp_path / name), "--base-url", srv.url + sub,
                         "--user", USER, "--password-env", "PN_PASSWORD", "--no-progress"]) == 0
    assert _tree(tmp_path / "mimic-cxr-jpg") == _tree(root / JPG)
    assert main(["data", "prepare", "--source", "mimic-cxr", "--root", str(tmp_path / "mimic-cxr-jpg"),
                 "--option", f"reports_root={tmp_path / 'mimic-cxr-reports'}", "--out", str(tmp_path / "cache"),
                 "--size", "32", "--workers", "1"]) == 0
    c = Cache(tmp_path / "cache")
    assert c.meta["counts"]["images_ok"] == len(_images(root)) and c.meta["counts"]["images_missing"] == 0
    assert sum(bool(r["findings"] or r["impression"]) for r in c.rows) == len(c.rows)
