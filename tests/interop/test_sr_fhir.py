"""The DICOM SR and FHIR DiagnosticReport writers on the tiny model's results, read back; dciodvfy
judges the SR; `cxreport generate --format dicom-sr|fhir` for one study and for a folder."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pydicom
import pytest

from cxreport.cli import main
from cxreport.interop.convert import image_to_dx
from cxreport.interop.fhir import NOTE_EXTENSION, diagnostic_report, validate
from cxreport.interop.sr import _walk, build_sr, read_headers, sr_summary, sr_text, write_sr
from tests.fixtures.pacs import DCIODVFY
from tests.fixtures.tiny_run import write_xray


@pytest.fixture(scope="module")
def study(tmp_path_factory, xrays):
    """One two-view DX study (PA + LL) made from the drawn films."""
    root = tmp_path_factory.mktemp("dx")
    a = image_to_dx(xrays["cardio"], root / "pa.dcm", patient_id="P7", patient_name="Doe^Jane", view_position="PA")
    b = image_to_dx(xrays["effusion"], root / "ll.dcm", patient_id="P7", patient_name="Doe^Jane",
                    study_uid=a["study_uid"], series_uid=a["series_uid"], view_position="LL", instance_number=2)
    return [root / "pa.dcm", root / "ll.dcm"], a, b


def test_sr_carries_text_states_sources_and_identity(pipeline, study, tmp_path):
    paths, a, b = study
    r = pipeline.generate([str(p) for p in paths])
    assert [v["view"] for v in r["views"]] == ["frontal", "lateral"]  # from ViewPosition
    ds = build_sr(r, read_headers(paths))
    path = write_sr(ds, tmp_path / "r.sr.dcm")
    back = pydicom.dcmread(path)
    s = sr_summary(back)
    assert s["read"] and sr_text(back) == r["report"] == s["text"]
    assert set(s["sources"]) == {a["sop_uid"], b["sop_uid"]}
    assert {n: f["state"] for n, f in s["findings"].items()} == {n: f["state"] for n, f in r["findings"].items()}
    for name, f in r["findings"].items():
        got = s["findings"][name]["probability"]
        assert (got is None) == (f["probability"] is None) and (got is None or abs(got - f["probability"]) < 1e-6)
    # same patient and study as the films, a series of its own, research-use and model identity inside
    assert back.StudyInstanceUID == a["study_uid"] and back.PatientID == "P7" and str(back.PatientName) == "Doe^Jane"
    assert back.SeriesInstanceUID != a["series_uid"] and back.Modality == "SR"
    assert back.PreliminaryFlag == "PRELIMINARY" and back.VerificationFlag == "UNVERIFIED"
    texts = " | ".join(str(i.get("TextValue", "")) for i in _walk(back.ContentSequence))
    assert r["disclaimer"] in texts and r["model_sha256"] in texts and f"cxreport {r['model']}" in texts
    # the same films read by the same model: the same SR instance (a PACS stores it once)
    assert build_sr(r, read_headers(paths)).SOPInstanceUID == back.SOPInstanceUID
    assert build_sr(r, read_headers(paths[:1])).SOPInstanceUID != back.SOPInstanceUID


def test_not_assessed_and_user_set_findings_are_marked(pipeline, study):
    paths = study[0][:1]
    r = pipeline.generate([str(p) for p in paths], findings={"Pleural Effusion": "positive"}).to_dict()
    r["findings"]["Fracture"] = {**r["findings"]["Fracture"], "state": "not_assessed", "probability": None}
    s = sr_summary(build_sr(r, read_headers(paths)))
    assert s["findings"]["Fracture"] == {"state": "not_assessed", "probability": None}
    assert s["findings"]["Pleural Effusion"]["state"] == "positive"


def test_not_read_sr_says_why(pipeline, study):
    s = sr_summary(build_sr(pipeline.identity, read_headers(study[0]), not_read="pa.dcm: blank image"))
    assert not s["read"] and s["findings"] == {} and "Not read by cxreport: pa.dcm: blank image" == s["text"]


def test_dciodvfy_finds_no_error(pipeline, study, tmp_path):
    if DCIODVFY is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run dciodvfy (Debian package dicom3tools): see .ci/run")
        pytest.skip("dciodvfy not installed (Debian package dicom3tools; .ci/run installs it)")
    paths = study[0]
    for name, ds in {"read": build_sr(pipeline.generate([str(p) for p in paths]), read_headers(paths)),
                     "not-read": build_sr(pipeline.identity, read_headers(paths), not_read="refused")}.items():
        out = subprocess.run([DCIODVFY, str(write_sr(ds, tmp_path / f"{name}.dcm"))], capture_output=True, text=True)
        text = out.stdout + out.stderr
        assert "ComprehensiveSR" in text, text
        assert "Error" not in text, text
        # the only warnings: dciodvfy does not know this project's private coding scheme
        warnings = [ln for ln in text.splitlines() if ln.startswith("Warning")]
        assert all("99CXR" in w for w in warnings), warnings


def test_fhir_diagnostic_report(pipeline, study):
    paths = study[0]
    r = pipeline.generate([str(p) for p in paths])
    d = diagnostic_report(r, read_headers(paths))
    assert d["conclusion"] == r["report"] and d["code"]["coding"][0]["code"] == "18748-4"
    assert d["extension"][0]["url"] == NOTE_EXTENSION and d["extension"][0]["valueAnnotation"]["text"] == r["disclaimer"]
    obs = [c for c in d["contained"] if c["resourceType"] == "Observation"]
    assessed = {n: f for n, f in r["findings"].items() if f["assessed"] and f["state"] != "not_assessed"}
    assert {o["code"]["text"]: o["valueCodeableConcept"]["coding"][0]["code"] for o in obs} == \
        {n: f["state"] for n, f in assessed.items()}
    assert [x["reference"] for x in d["result"]] == [f"#{o['id']}" for o in obs]
    study_res = next(c for c in d["contained"] if c["resourceType"] == "ImagingStudy")
    assert study_res["identifier"][0]["value"] == f"urn:oid:{study[1]['study_uid']}"
    parsed = validate(d)  # fhir.resources parses the contained resources too
    assert parsed.conclusion == r["report"] and len(parsed.contained) == len(obs) + 2
    for breaks in (lambda x: x["contained"][-1].update(status="guessed"),  # not an Observation status
                   lambda x: x["contained"][-1].pop("code"),  # Observation.code is required
                   lambda x: x["contained"][-1]["component"][0]["valueQuantity"].update(value="high")):
        bad = json.loads(json.dumps(d))
        breaks(bad)
        with pytest.raises(ValueError):
            validate(bad)
    png = diagnostic_report(pipeline.generate([str(paths[0])]))  # no DICOM: no subject, no ImagingStudy
    assert "subject" not in png and all(c["resourceType"] == "Observation" for c in png["contained"])


def test_generate_format_fhir_and_dicom_sr(tiny_run, study, xrays, tmp_path, capsys):
    paths = [str(p) for p in study[0]]
    assert main(["generate", *paths, "--model", str(tiny_run), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["report"]
    assert main(["generate", *paths, "--model", str(tiny_run), "--format", "fhir"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["resourceType"] == "DiagnosticReport" and d["conclusion"] == report
    out = tmp_path / "out"
    assert main(["generate", *paths, "--model", str(tiny_run), "--format", "dicom-sr"]) == 2
    assert "--output-dir" in capsys.readouterr().err
    assert main(["generate", *paths, "--model", str(tiny_run), "--format", "dicom-sr", "--output-dir", str(out)]) == 0
    assert sr_text(pydicom.dcmread(out / "pa.sr.dcm")) == report
    assert main(["generate", str(xrays["cardio"]), "--model", str(tiny_run), "--format", "dicom-sr",
                 "--output-dir", str(out)]) == 2
    assert "needs DICOM source images" in capsys.readouterr().err
    # a folder: one SR (or DiagnosticReport) per study beside its JSON
    folder = tmp_path / "films"
    for i in range(2):
        write_xray(folder / f"s{i}.png", i, 1 - i, 200, seed=i)
        image_to_dx(np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(folder / f"s{i}.png")),
                    folder / f"d{i}.dcm")
        (folder / f"s{i}.png").unlink()
    batch = tmp_path / "batch"
    for fmt, suffix in (("dicom-sr", ".sr.dcm"), ("fhir", ".fhir.json")):
        assert main(["generate", "--input-dir", str(folder), "--output-dir", str(batch), "--model", str(tiny_run),
                     "--format", fmt]) == 0
        for i in range(2):
            done = json.loads((batch / f"d{i}.json").read_text())
            got = (sr_text(pydicom.dcmread(batch / f"d{i}{suffix}")) if fmt == "dicom-sr"
                   else json.loads((batch / f"d{i}{suffix}").read_text())["conclusion"])
            assert got == done["report"]
