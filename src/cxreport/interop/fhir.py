"""A cxreport result as an HL7 FHIR R4 DiagnosticReport (built and validated with fhir.resources).

fhir.resources 7 and later default to FHIR R5; its ``R4B`` models (FHIR 4.3.0) are used here:
DiagnosticReport and Observation are the same in R4 (4.0.1) and R4B, so the JSON is R4 JSON.
R4 has no ``DiagnosticReport.note``, so the research-use disclaimer travels in the R5 element's
cross-version extension (``NOTE_EXTENSION``), in the narrative, and as a note on every
Observation.

One self-contained resource: the Observations (one per finding the model assesses, with its
state and calibrated probability) are ``contained`` and listed in ``result``; for DICOM input a
contained Patient (identifier = PatientID) and ImagingStudy (the Study Instance UID, series and
instances that were read) say which films the report is about. docs/dicom.md shows an example.
"""

from __future__ import annotations

import html
import json
from typing import Sequence

from cxreport.errors import require
from cxreport.interop.sr import as_dict, finding_code_value

LOINC = "http://loinc.org"
DICOM_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"
UCUM = "http://unitsofmeasure.org"
FINDING_SYSTEM = "urn:cxreport:finding"
STATE_SYSTEM = "urn:cxreport:finding-state"
NOTE_EXTENSION = "http://hl7.org/fhir/5.0/StructureDefinition/extension-DiagnosticReport.note"
STATE_DISPLAY = {"positive": "Positive (present)", "negative": "Negative (absent)", "uncertain": "Uncertain"}


def diagnostic_report(result, sources: Sequence | None = None, *, report_id: str | None = None,
                      issued: str | None = None) -> dict:
    """The DiagnosticReport as a JSON-ready dict, validated by parsing it with fhir.resources.
    ``sources``: the DICOM headers of the films read (optional; PNG/JPEG studies have none)."""
    r = as_dict(result)
    sources = list(sources or [])
    obs = [_observation(name, f, r) for name, f in r["findings"].items()
           if f.get("assessed") and f.get("state") != "not_assessed"]
    contained: list[dict] = list(obs)
    report: dict = {"resourceType": "DiagnosticReport", "id": report_id or _report_id(r, sources),
                    "status": "preliminary",
                    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                                              "code": "RAD", "display": "Radiology"}]}],
                    "code": {"coding": [{"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"}],
                             "text": "Chest X-ray report draft (cxreport)"},
                    "conclusion": r["report"],
                    "result": [{"reference": f"#{o['id']}"} for o in obs],
                    "extension": [{"url": NOTE_EXTENSION, "valueAnnotation": {"text": r.get("disclaimer") or ""}}]}
    if issued:
        report["issued"] = issued
    if sources:
        patient, study = _patient(sources[0]), _imaging_study(sources)
        contained = [patient, study] + contained
        report["subject"] = {"reference": "#patient"}
        report["imagingStudy"] = [{"reference": "#study"}]
        for o in obs:
            o["subject"] = {"reference": "#patient"}
            o["derivedFrom"] = [{"reference": "#study"}]
    report["contained"] = contained
    report["text"] = {"status": "generated", "div": _narrative(r)}
    report["performer"] = [{"display": f"cxreport {r.get('cxreport_version') or ''}, model {r.get('model')} "
                                       f"(weights sha256 {r.get('model_sha256') or 'unknown'})"}]
    validate(report)
    return report


# Required bindings fhir.resources does not check (it checks structure, types and cardinality).
STATUS = {"DiagnosticReport": {"registered", "partial", "preliminary", "final", "amended", "corrected", "appended",
                               "cancelled", "entered-in-error", "unknown"},
          "Observation": {"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                          "entered-in-error", "unknown"},
          "ImagingStudy": {"registered", "available", "cancelled", "entered-in-error", "unknown"}}


def validate(report: dict):
    """Parse with fhir.resources' R4B models, contained resources included, and check the status
    codes; raises ValueError (pydantic's ValidationError is one) on anything that is not valid."""
    require("fhir.resources", "interop", "FHIR output")
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport

    for res in [report, *report.get("contained", [])]:
        allowed = STATUS.get(res.get("resourceType"))
        if allowed is not None and res.get("status") not in allowed:
            raise ValueError(f"{res['resourceType']}/{res.get('id')}: status {res.get('status')!r} is not one of "
                             f"{sorted(allowed)}")
    return DiagnosticReport.model_validate_json(json.dumps(report))


def _observation(name: str, f: dict, r: dict) -> dict:
    state = f["state"]
    obs = {"resourceType": "Observation", "id": f"finding-{finding_code_value(name).lower()}",
           "status": "preliminary",
           "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                     "code": "imaging", "display": "Imaging"}]}],
           "code": {"coding": [{"system": FINDING_SYSTEM, "code": finding_code_value(name), "display": name}],
                    "text": name},
           "valueCodeableConcept": {"coding": [{"system": STATE_SYSTEM, "code": state,
                                                "display": STATE_DISPLAY.get(state, state)}], "text": state},
           "method": {"text": f"cxreport model {r.get('model')}"
                              + (", state set by the user" if f.get("set_by") == "user" else "")},
           "note": [{"text": r.get("disclaimer") or ""}]}
    if f.get("probability") is not None:
        comp = {"code": {"coding": [{"system": DICOM_SYSTEM, "code": "122157", "display": "Probability"}]},
                "valueQuantity": {"value": float(f["probability"]), "unit": "probability", "system": UCUM,
                                  "code": "1"}}
        obs["component"] = [comp]
        if f.get("threshold") is not None:
            obs["referenceRange"] = [{"text": f"positive at probability >= {f['threshold']}"}]
    return obs


def _patient(ds) -> dict:
    p = {"resourceType": "Patient", "id": "patient"}
    if str(ds.get("PatientID") or ""):
        p["identifier"] = [{"value": str(ds.PatientID)}]
    name = str(ds.get("PatientName") or "").replace("^", " ").strip()
    if name:
        p["name"] = [{"text": name}]
    return p


def _imaging_study(sources: Sequence) -> dict:
    series: dict[str, dict] = {}
    for ds in sources:
        s = series.setdefault(str(ds.SeriesInstanceUID), {
            "uid": str(ds.SeriesInstanceUID),
            "modality": {"system": DICOM_SYSTEM, "code": str(ds.get("Modality") or "OT")}, "instance": []})
        s["instance"].append({"uid": str(ds.SOPInstanceUID),
                              "sopClass": {"system": "urn:ietf:rfc:3986", "code": f"urn:oid:{ds.SOPClassUID}"}})
    return {"resourceType": "ImagingStudy", "id": "study", "status": "available", "subject": {"reference": "#patient"},
            "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{sources[0].StudyInstanceUID}"}],
            "series": list(series.values())}


def _report_id(r: dict, sources: Sequence) -> str:
    """Stable for the same films and model (FHIR ids: letters, digits, '-', '.', 64 at most)."""
    import hashlib

    key = "|".join([r.get("model_sha256") or "", r["report"]] + [str(ds.SOPInstanceUID) for ds in sources])
    return "cxreport-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def _narrative(r: dict) -> str:
    rows = "".join(f"<li>{html.escape(n)}: {html.escape(f['state'].replace('_', ' '))}"
                   + (f" (probability {f['probability']:.2f})" if f.get("probability") is not None else "") + "</li>"
                   for n, f in r["findings"].items())
    return (f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{html.escape(r["report"] or "(empty report)")}</p>'
            f"<ul>{rows}</ul><p><b>{html.escape(r.get('disclaimer') or '')}</b></p></div>")
