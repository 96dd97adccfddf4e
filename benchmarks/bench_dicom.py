"""The DICOM round trip, measured: NIH films as DX studies -> storescu -> `cxreport dicom listen`
(a subprocess, the bundled model) -> SR -> Orthanc, read back through Orthanc's REST API.

Prints: studies per minute through the whole round trip (first instance sent -> last SR stored
in Orthanc), the median and 90th percentile time from a study's last instance received to its
SR stored (Orthanc answered the C-STORE: the listener's spool/events.jsonl), whether each SR's
text equals `cxreport generate`'s report for the same DX file, and dciodvfy's verdict on one SR.
With --kill K the listener is killed with SIGKILL K times mid-stream and restarted on the same
spool (a study whose sending failed is sent again after a pause, as a PACS retries): it then
prints how many SRs each study got.

Needs Orthanc, DCMTK and dicom3tools (Debian packages orthanc, dcmtk, dicom3tools) and, for real
films, ../shared/data/nih_cxr14 (else the two sample films shipped with cxreport are repeated).

    PYTHONPATH=src:. python benchmarks/bench_dicom.py --studies 20 --out /tmp/bench-dicom
    PYTHONPATH=src:. python benchmarks/bench_dicom.py --studies 50 --kill 2 --no-compare
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.pacs import DCIODVFY, ListenerProcess, Orthanc, events, free_port, storescu  # noqa: E402


def nih_films(n: int, shared: Path) -> list[tuple[str, str]]:
    """[(film, ViewPosition)]: the first n NIH films (labels.csv gives the view), else the samples."""
    labels = shared / "nih_cxr14" / "labels.csv"
    if labels.is_file():
        with open(labels, newline="") as fh:
            rows = list(csv.DictReader(fh))[:n]
        return [(str(shared / "nih_cxr14" / "images" / r["image"]), r.get("view") or "PA") for r in rows]
    from cxreport.examples import example_studies

    films = [s["images"][0] for s in example_studies()]
    return [(films[i % len(films)], "PA") for i in range(n)]


def make_studies(films, root: Path) -> list[Path]:
    from cxreport.interop.convert import image_to_dx

    root.mkdir(parents=True, exist_ok=True)
    # A film used twice (the sample fallback) still gets its own study and instance UIDs.
    return [Path(image_to_dx(f, root / f"{i:03d}.dcm", patient_id=f"NIH{i:03d}", view_position=v)["path"])
            for i, (f, v) in enumerate(films)]


def stream(port: int, files: list[Path]) -> int:
    """Send each study (one storescu association each); a failed send is retried after 0.5 s, as a
    PACS retries. Returns the number of failed tries."""
    retries = 0
    for f in files:
        for _ in range(240):
            if storescu(port, [f], timeout=60).returncode == 0:
                break
            retries += 1
            time.sleep(0.5)
    return retries


def killer(box: list, spool: Path, kills: int, n: int, restart, log: list) -> None:
    """kill -9 the listener when 1/(kills+1), 2/(kills+1)... of the instances have been received,
    whatever it is doing then, and restart it on the same spool."""
    for k in range(kills):
        at = n * (k + 1) // (kills + 1)
        while sum(e["event"] == "received" for e in events(spool)) < at:
            time.sleep(0.02)
        box[0].kill9()
        ev = events(spool)
        open_studies = {e["study"] for e in ev if e["event"] == "received"} - \
            {e["study"] for e in ev if e["event"] == "delivered"}
        log.append(f"kill {k + 1} after {sum(e['event'] == 'received' for e in ev)} instances received: "
                   f"{len(open_studies)} acknowledged studies had no delivered SR yet")
        box[0] = restart()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", type=int, default=20)
    ap.add_argument("--kill", type=int, default=0, help="kill -9 the listener this many times mid-stream")
    ap.add_argument("--quiet", type=float, default=1.0, help="the listener's --quiet (seconds)")
    ap.add_argument("--model", default=None, help="default: the bundled model")
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--out", default=None, help="working folder (default: a temporary one)")
    ap.add_argument("--no-compare", action="store_true", help="skip the comparison with `cxreport generate`")
    args = ap.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="bench-dicom-"))
    files = make_studies(nih_films(args.studies, Path(args.shared)), root / "films")
    spool, lport = root / "spool", free_port()
    with Orthanc(root / "pacs") as pacs:
        def start():
            return ListenerProcess(spool, f"ORTHANC@127.0.0.1:{pacs.dicom_port}", model=args.model, port=lport,
                                   quiet=args.quiet, retry_max=2.0).start()

        box = [start()]
        threads = os.environ.get("BENCH_THREADS")
        t0 = time.time()
        kill_log: list[str] = []
        k = threading.Thread(target=killer, args=(box, spool, args.kill, args.studies, start, kill_log))
        k.start()
        retries = stream(lport, files)
        k.join()
        srs = pacs.wait_for("SR", args.studies, 60 + 10 * args.studies)
        wall = time.time() - t0
        box[0].stop()
        per_study: dict[str, list[str]] = {}
        for inst in srs:
            per_study.setdefault(inst["study"], []).append(inst["ID"])
        ev = events(spool)
        last_in = {e["study"]: e["t"] for e in ev if e["event"] == "received"}
        stored = {e["study"]: e["t"] for e in ev if e["event"] == "delivered"}
        lat = sorted(stored[s] - last_in[s] for s in stored if s in last_in)
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end; listener quiet "
              f"period {args.quiet:g} s{'; threads ' + threads if threads else ''}")
        print(f"studies sent: {len(files)}; SRs in Orthanc: {len(srs)} for {len(per_study)} studies; "
              f"studies with more than one SR: {sum(len(v) > 1 for v in per_study.values())}; "
              f"kills: {args.kill}; failed sends retried: {retries}")
        for line in kill_log:
            print(line)
        print(f"throughput: {60 * len(per_study) / wall:.1f} studies/min ({wall:.1f} s from the first send to the "
              f"last SR stored)")
        if lat:
            p90 = lat[min(len(lat) - 1, int(0.9 * len(lat)))]
            print(f"last instance received -> SR stored: median {statistics.median(lat):.2f} s, 90th percentile "
                  f"{p90:.2f} s (includes the {args.quiet:g} s quiet period)")
        compare(pacs, srs, files, args)
    print(f"working folder: {root}")


def compare(pacs, srs, files, args) -> None:
    import pydicom

    from cxreport.cli import main as cli
    from cxreport.interop.sr import sr_text

    by_study = {str(pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID): f for f in files}
    sr_files = {}
    for inst in srs:
        data = pacs.file(inst["ID"])
        sr_files[inst["study"]] = data
    one = Path(files[0]).with_suffix(".sr.dcm")
    one.write_bytes(sr_files[next(iter(by_study))])
    if DCIODVFY:
        out = subprocess.run([DCIODVFY, str(one)], capture_output=True, text=True)
        lines = (out.stdout + out.stderr).splitlines()
        errors = [ln for ln in lines if ln.startswith("Error")]
        other = sorted({ln for ln in lines if "99CXR" not in ln})
        print(f"dciodvfy {one.name}: {len(errors)} error(s), {sum(ln.startswith('Warning') for ln in lines)} "
              f"warning(s) ({sum('99CXR' in ln for ln in lines)} of them: private coding scheme 99CXR unknown to it); "
              f"other lines: {other}")
    if args.no_compare:
        return
    same = 0
    for study, f in by_study.items():
        text = sr_text(pydicom.dcmread(io.BytesIO(sr_files[study])))
        import contextlib

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            cli(["generate", str(f), "--json"] + (["--model", args.model] if args.model else []))
        report = json.loads(buf.getvalue())["report"]
        same += text == report
        if text != report:
            print(f"  differs for {f.name}: SR {text!r} / generate {report!r}")
    print(f"SR text == `cxreport generate` report for the same DX file: {same} of {len(by_study)}")


if __name__ == "__main__":
    main()
