"""`cxreport dicom listen` against a real PACS: Orthanc and DCMTK's storescu/echoscu as processes on
loopback ports. Films go in as DX DICOM, SRs come back into Orthanc and are read through its REST
API. Skipped (with the reason) where Orthanc or DCMTK is missing; on CI (.ci/run installs both)
a missing tool fails instead."""

from __future__ import annotations

import json
import os
import threading
import time

import numpy as np
import pydicom
import pytest

from cxreport.cli import main
from cxreport.interop.convert import image_to_dx
from cxreport.interop.sender import Destination
from cxreport.interop.service import Service
from cxreport.interop.sr import sr_summary
from tests.fixtures.pacs import (ORTHANC, ROUTING_LUA, STORESCU, ListenerProcess, Orthanc, echoscu, events, free_port,
                                 storescu)
from tests.fixtures.synthetic_cxr import draw

MISSING = [name for name, exe in (("Orthanc (apt-get install orthanc)", ORTHANC),
                                  ("DCMTK storescu/echoscu (apt-get install dcmtk)", STORESCU)) if exe is None]
if MISSING and os.environ.get("CI"):
    raise RuntimeError(f"CI must run the PACS tests, but {', '.join(MISSING)} is missing: see .ci/run")
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)}")


def _study(root, n_views=1, seed=0, patient="P1"):
    """Drawn films as one DX study; returns the file paths."""
    rng = np.random.default_rng(seed)
    first, paths = None, []
    for v in range(n_views):
        img = draw(int(rng.integers(0, 2)), int(rng.integers(0, 2)), 192, rng)
        info = image_to_dx(img, root / f"{seed}-{v}.dcm", patient_id=patient, study_uid=first and first["study_uid"],
                           series_uid=first and first["series_uid"], view_position="PA" if v == 0 else "LL",
                           instance_number=v + 1)
        first = first or info
        paths.append(root / f"{seed}-{v}.dcm")
    return paths


def _srs(pacs) -> dict:
    """{StudyInstanceUID: [SR summaries]} of every SR in Orthanc."""
    out: dict = {}
    for inst in pacs.instances_by_modality("SR"):
        ds = pydicom.dcmread(__import__("io").BytesIO(pacs.file(inst["ID"])))
        out.setdefault(str(ds.StudyInstanceUID), []).append(sr_summary(ds))
    return out


def _generate_cli(paths, model, capsys) -> str:
    args = ["generate", *map(str, paths), "--json"] + (["--model", str(model)] if model else [])
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)["report"]


def _wait(cond, timeout, what):
    end = time.time() + timeout
    while not cond():
        if time.time() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def test_round_trip_echo_allow_list_skips_and_duplicates(pipeline, tiny_run, tmp_path, capsys):
    two, one = _study(tmp_path, 2, seed=1), _study(tmp_path, 1, seed=2)
    ct = tmp_path / "ct.dcm"
    image_to_dx(draw(0, 0, 128, np.random.default_rng(3)), ct)
    d = pydicom.dcmread(ct)
    d.Modality = "CT"  # a study of another modality: acknowledged, logged, not read
    d.save_as(ct)
    lport = free_port()
    with Orthanc(tmp_path / "pacs", modalities={"cxreport": ("CXREPORT", lport)}) as pacs:
        svc = Service(pipeline, tmp_path / "spool", Destination("ORTHANC", "127.0.0.1", pacs.dicom_port), port=lport,
                      allow=["STORESCU", "ECHOSCU"], quiet=0.3).start()
        try:
            assert echoscu(lport).returncode == 0
            assert echoscu(lport, calling="STRANGER").returncode != 0  # rejected at association
            refused = storescu(lport, one, calling="STRANGER")
            assert refused.returncode != 0 and svc.listener.received == 0
            sent = storescu(lport, [*two, *one, ct])
            assert sent.returncode == 0, sent.stderr
            _wait(lambda: len(svc.spool.counts() and list(svc.spool.sent.glob("*.dcm"))) == 2, 60, "two SRs delivered")
            srs = _srs(pacs)
            assert sorted(len(v) for v in srs.values()) == [1, 1] and svc.listener.skipped == 1
            for paths in (two, one):
                study = str(pydicom.dcmread(paths[0]).StudyInstanceUID)
                (sr,) = srs[study]
                assert sr["read"] and set(sr["sources"]) == {str(pydicom.dcmread(p).SOPInstanceUID) for p in paths}
                assert sr["text"] == _generate_cli(paths, tiny_run, capsys)
            # the same study again (same SOP Instance UIDs): no second SR
            assert storescu(lport, two).returncode == 0
            time.sleep(1.5)
            assert svc.spool.counts()["outbox"] == 0 and len(list(svc.spool.sent.glob("*.dcm"))) == 2
            assert sorted(len(v) for v in _srs(pacs).values()) == [1, 1]
        finally:
            svc.stop()


def test_destination_down_is_retried_until_it_is_up(pipeline, tmp_path):
    lport = free_port()
    pacs = Orthanc(tmp_path / "pacs", modalities={"cxreport": ("CXREPORT", lport)})  # ports chosen, not started
    svc = Service(pipeline, tmp_path / "spool", Destination("ORTHANC", "127.0.0.1", pacs.dicom_port), port=lport,
                  quiet=0.2, retry_min=0.2, retry_max=0.5).start()
    try:
        assert storescu(lport, _study(tmp_path, 1, seed=4)).returncode == 0
        _wait(lambda: svc.spool.counts()["outbox"] == 1, 30, "the SR in the outbox")
        time.sleep(1.5)  # several failed tries: it stays in the outbox
        assert svc.spool.counts()["outbox"] == 1 and not any(e["event"] == "delivered" for e in events(svc.spool.root))
        with pacs:
            _wait(lambda: svc.spool.counts()["outbox"] == 0, 30, "delivery once Orthanc is up")
            assert len(pacs.instances_by_modality("SR")) == 1
    finally:
        svc.stop()


def test_orthanc_routing_rule_from_the_docs(pipeline, tmp_path):
    """The Lua rule of docs/dicom.md: films stored into Orthanc are routed to cxreport when the
    study is stable; the SR comes back into the same study; the second routing (the SR made the
    study change) gives no second SR."""
    lport = free_port()
    with Orthanc(tmp_path / "pacs", modalities={"cxreport": ("CXREPORT", lport)}, lua=[ROUTING_LUA],
                 stable_age=1) as pacs:
        svc = Service(pipeline, tmp_path / "spool", Destination("ORTHANC", "127.0.0.1", pacs.dicom_port), port=lport,
                      allow=["ORTHANC"], quiet=0.3).start()
        try:
            films = _study(tmp_path, 2, seed=5)
            assert storescu(pacs.dicom_port, films, called="ORTHANC").returncode == 0
            srs = pacs.wait_for("SR", 1, 60)
            assert len(srs) == 1 and srs[0]["study"] == str(pydicom.dcmread(films[0]).StudyInstanceUID)
            _wait(lambda: sum(e["event"] == "received" for e in events(svc.spool.root)) >= 4, 30,
                  "Orthanc routing the study again after the SR arrived")
            time.sleep(1.5)
            assert len(pacs.instances_by_modality("SR")) == 1
        finally:
            svc.stop()


def test_bundled_model_reads_a_film_and_says_why_it_did_not_read_another(tmp_path, capsys):
    from cxreport import load_model
    from cxreport.examples import example_studies

    film = example_studies()[0]["images"][0]
    real = image_to_dx(film, tmp_path / "nih.dcm", patient_id="NIH1")["path"]
    noise = np.random.default_rng(0).integers(0, 255, (256, 256), dtype=np.uint8)  # not a radiograph
    junk = image_to_dx(noise, tmp_path / "noise.dcm", patient_id="J1")["path"]
    lport = free_port()
    with Orthanc(tmp_path / "pacs") as pacs:
        svc = Service(load_model(), tmp_path / "spool", Destination("ORTHANC", "127.0.0.1", pacs.dicom_port),
                      port=lport, quiet=0.2).start()
        try:
            assert storescu(lport, [real, junk]).returncode == 0
            pacs.wait_for("SR", 2, 60)
        finally:
            svc.stop()
        srs = _srs(pacs)
    read = srs[str(pydicom.dcmread(real).StudyInstanceUID)][0]
    refused = srs[str(pydicom.dcmread(junk).StudyInstanceUID)][0]
    assert read["read"] and read["text"] == _generate_cli([real], None, capsys)
    assert not refused["read"] and refused["text"].startswith("Not read by cxreport: ")
    assert "chest radiograph" in refused["text"] and refused["findings"] == {}


def test_kill_9_twice_mid_stream_loses_nothing_and_doubles_nothing(tiny_run, tmp_path):
    """A listener process killed with SIGKILL twice while studies stream in, restarted on the same
    spool; a study whose sending failed is sent again after a pause, as a PACS retries: every
    study gets exactly one SR in Orthanc."""
    n = 12
    studies = [_study(tmp_path / "films", 1, seed=100 + i, patient=f"K{i}") for i in range((tmp_path / "films").mkdir()
                                                                                          or n)]
    lport = free_port()
    spool = tmp_path / "spool"
    with Orthanc(tmp_path / "pacs") as pacs:
        proc = ListenerProcess(spool, f"ORTHANC@127.0.0.1:{pacs.dicom_port}", model=tiny_run, port=lport,
                               quiet=0.2, retry_max=1.0).start()
        retries = []

        def send_all():
            for s in studies:
                for _ in range(120):
                    if storescu(lport, s, timeout=30).returncode == 0:
                        break
                    retries.append(s)
                    time.sleep(0.5)

        sender = threading.Thread(target=send_all)
        sender.start()
        try:
            for at in (n // 4, n // 2):
                _wait(lambda: sum(e["event"] == "received" for e in events(spool)) >= at, 120, f"{at} instances")
                proc.kill9()
                proc = ListenerProcess(spool, f"ORTHANC@127.0.0.1:{pacs.dicom_port}", model=tiny_run, port=lport,
                                       quiet=0.2, retry_max=1.0).start()
            sender.join(300)
            assert not sender.is_alive()
            srs = pacs.wait_for("SR", n, 120)
        finally:
            proc.stop()
            sender.join(60)
    per_study = {}
    for inst in srs:
        per_study.setdefault(inst["study"], []).append(inst["ID"])
    assert len(per_study) == n and all(len(v) == 1 for v in per_study.values()), per_study
    assert {str(pydicom.dcmread(s[0]).StudyInstanceUID) for s in studies} == set(per_study)
    assert sum(e["event"] == "started" for e in events(spool)) == 3 and retries  # the kills did cut sends
