"""A cxreport result as a DICOM Comprehensive SR (highdicom), and the SR read back.

The document (docs/dicom.md draws the tree):

    CONTAINER  (LN 18748-4 "Diagnostic Imaging Report")
      HAS OBS CONTEXT  device observer: cxreport, the model's name, its weights' SHA-256
      CONTAINS  CODE (99CXR READSTATUS) = READ | NOTREAD
      CONTAINS  CONTAINER (DCM 121070 "Findings")
                  TEXT (DCM 121071 "Finding") = the report, exactly as `cxreport generate` prints it
                  CODE (99CXR <finding>) = POSITIVE | NEGATIVE | UNCERTAIN | NOTASSESSED
                    HAS PROPERTIES  NUM (DCM 122157 "Probability", UCUM "1")   (when the model gives one)
      CONTAINS  TEXT (DCM 121106 "Comment") = the research-use disclaimer (and why a study was not read)
      CONTAINS  algorithm identification (TID 4019): model name, versions, weights hash
      CONTAINS  CONTAINER (DCM 111028 "Image Library") of IMAGE items: the films that were read

Patient and study come from the source images, the SR has its own series; the finding and state
codes are this project's private scheme 99CXR (declared in the Coding Scheme Identification
Sequence). UIDs are derived from the study, its source instances and the model's weights, so the
same study read twice by the same model gives the same SR instance: a PACS stores it once.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Sequence

from cxreport.errors import InputError, require

SCHEME = "99CXR"
SCHEME_NAME = "cxreport findings and finding states"
STATES = {"positive": ("POSITIVE", "Positive (present)"), "negative": ("NEGATIVE", "Negative (absent)"),
          "uncertain": ("UNCERTAIN", "Uncertain"), "not_assessed": ("NOTASSESSED", "Not assessed by the model")}
READ_STATUS = ("READSTATUS", "cxreport read status")
READ, NOT_READ = ("READ", "Read by the model"), ("NOTREAD", "Not read by the model")
SERIES_NUMBER = 9901  # high, so the AI series sorts after the acquired ones in a viewer
SERIES_DESCRIPTION = "cxreport draft report (research use)"
# Type 2 attributes highdicom copies from the first source image; DX files carry them, other
# files may not, and an empty value is what the standard asks for when one is unknown.
_TYPE2 = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
          "StudyDate", "StudyTime", "ReferringPhysicianName")


def as_dict(result) -> dict:
    """The pipeline's dict, also from a typed result object."""
    return result.to_dict() if hasattr(result, "to_dict") else result


def finding_code_value(name: str) -> str:
    """'Pleural Effusion' -> 'PLEURALEFFUSION' (a DICOM code value holds at most 16 characters)."""
    return re.sub(r"[^A-Z0-9]", "", name.upper())[:16] or "FINDING"


def sr_uids(study_uid: str, source_uids: Sequence[str], model_sha256: str | None) -> tuple[str, str]:
    """(series, SOP instance) UIDs of the SR for these source instances read by this model; the
    same inputs always give the same UIDs, which is what makes re-delivery idempotent."""
    from pydicom.uid import generate_uid

    series = generate_uid(entropy_srcs=["cxreport-sr-series", study_uid, model_sha256 or ""])
    instance = generate_uid(entropy_srcs=["cxreport-sr", study_uid, *sorted(source_uids), model_sha256 or ""])
    return str(series), str(instance)


def read_headers(paths: Sequence) -> list:
    """The source images' headers (no pixel data), each checked for the UIDs an SR must cite."""
    pydicom = require("pydicom", "interop", "DICOM SR output")
    out = []
    for p in paths:
        try:
            ds = pydicom.dcmread(str(p), stop_before_pixels=True)
        except Exception as exc:  # pydicom raises many types for non-DICOM files
            raise InputError(f"{p}: not a DICOM file ({exc}); a DICOM SR needs DICOM source images "
                             "(use --format json or fhir for PNG/JPEG films)") from None
        missing = [k for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
                   if not ds.get(k)]
        if missing:
            raise InputError(f"{p}: DICOM file without {', '.join(missing)}; the SR cannot refer to it")
        out.append(ds)
    if len({str(ds.StudyInstanceUID) for ds in out}) > 1:
        raise InputError("the images belong to different studies (StudyInstanceUID differs): one SR covers one "
                         "study; give each study's images on their own")
    return out


def build_sr(result, sources: Sequence, *, not_read: str | None = None):
    """The SR dataset for one study: ``result`` from the pipeline (for ``not_read`` only its
    identity fields are used: model, model_sha256, cxreport_version, disclaimer); ``sources``
    the source images' headers (``read_headers``), in the order they were given to the pipeline."""
    hd = require("highdicom", "interop", "DICOM SR output")
    from pydicom.sr.codedict import codes

    quiet = logging.getLogger("highdicom")
    if quiet.level == logging.NOTSET:  # it logs a line per module copied from the source image
        quiet.setLevel(logging.WARNING)
    r = as_dict(result)
    if not sources:
        raise InputError("a DICOM SR needs at least one DICOM source image (patient and study come from it)")
    evidence = [_with_type2(ds) for ds in sources]
    series_uid, sop_uid = sr_uids(str(evidence[0].StudyInstanceUID), [str(ds.SOPInstanceUID) for ds in evidence],
                                  r.get("model_sha256"))
    rel = hd.sr.RelationshipTypeValues
    items = [hd.sr.CodeContentItem(_code(*READ_STATUS), _code(*(NOT_READ if not_read else READ)), rel.CONTAINS)]
    findings = hd.sr.ContainerContentItem(codes.DCM.Findings, relationship_type=rel.CONTAINS)
    if not_read:
        text = f"Not read by cxreport: {not_read}"
        findings.ContentSequence = hd.sr.ContentSequence([hd.sr.TextContentItem(codes.DCM.Finding, text, rel.CONTAINS)])
    else:
        findings.ContentSequence = hd.sr.ContentSequence(
            [hd.sr.TextContentItem(codes.DCM.Finding, r["report"] or "(empty report)", rel.CONTAINS)]
            + [_finding_item(hd, codes, name, f) for name, f in r["findings"].items()])
    items.append(findings)
    comments = ([] if not_read else [w for w in r.get("warnings") or []]) + [r.get("disclaimer") or ""]
    items += [hd.sr.TextContentItem(codes.DCM.Comment, c, rel.CONTAINS) for c in comments if c]
    items += list(hd.sr.AlgorithmIdentification(
        name=f"cxreport {r.get('model') or 'model'}"[:64], version=str(r.get("cxreport_version") or "unknown"),
        parameters=[f"weights sha256={r.get('model_sha256') or 'unknown'}"]))
    used = {v["index"] for v in r.get("views") or [] if v.get("used", True)} if not not_read else set()
    library = hd.sr.ContainerContentItem(codes.DCM.ImageLibrary, relationship_type=rel.CONTAINS)
    library.ContentSequence = hd.sr.ContentSequence(
        [hd.sr.ImageContentItem(codes.DCM.SourceImage, ds.SOPClassUID, ds.SOPInstanceUID, relationship_type=rel.CONTAINS)
         for i, ds in enumerate(evidence) if not used or i in used])
    items.append(library)
    return _document(hd, codes, r, evidence, items, series_uid, sop_uid)


def _document(hd, codes, r: dict, evidence: list, items: list, series_uid: str, sop_uid: str):
    from highdicom.coding_schemes import CodingSchemeIdentificationItem

    rel = hd.sr.RelationshipTypeValues
    observer = hd.sr.ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=sop_uid, name="cxreport", manufacturer_name="cxreport (research software)",
            model_name=str(r.get("model") or "model")[:64], serial_number=(r.get("model_sha256") or "unknown")[:64]))
    root = hd.sr.ContainerContentItem(codes.LN.DiagnosticImagingReport)
    root.ContentSequence = hd.sr.ContentSequence(list(observer) + items)
    for item in observer:  # highdicom templates leave the relationship to the caller's tree
        item.RelationshipType = rel.HAS_OBS_CONTEXT.value
    return hd.sr.ComprehensiveSR(
        evidence=evidence, content=root, series_instance_uid=series_uid, series_number=SERIES_NUMBER,
        sop_instance_uid=sop_uid, instance_number=1, manufacturer="cxreport", is_complete=True,
        is_final=False, is_verified=False, series_description=SERIES_DESCRIPTION,
        manufacturer_model_name=str(r.get("model") or "model")[:64],
        software_versions=f"cxreport {r.get('cxreport_version') or 'unknown'}",
        specific_character_set="ISO_IR 192",
        coding_schemes=[CodingSchemeIdentificationItem(SCHEME, name=SCHEME_NAME,
                                                       responsible_organization="cxreport project")])


def _finding_item(hd, codes, name: str, f: dict):
    rel = hd.sr.RelationshipTypeValues
    state = f.get("state") or "not_assessed"
    item = hd.sr.CodeContentItem(_code(finding_code_value(name), name), _code(*STATES[state]), rel.CONTAINS)
    props = []
    if f.get("probability") is not None:
        props.append(hd.sr.NumContentItem(codes.DCM.Probability, float(f["probability"]), codes.UCUM.NoUnits,
                                          relationship_type=rel.HAS_PROPERTIES))
    if f.get("set_by") == "user":
        props.append(hd.sr.TextContentItem(codes.DCM.Comment, "state set by the user", rel.HAS_PROPERTIES))
    if props:
        item.ContentSequence = hd.sr.ContentSequence(props)
    return item


def _code(value: str, meaning: str):
    from highdicom.sr import CodedConcept

    return CodedConcept(value, SCHEME, meaning[:64])


def _with_type2(ds):
    """A copy of a source header with every Type 2 attribute highdicom reads present (empty when
    the file had none)."""
    from copy import deepcopy

    ds = deepcopy(ds)
    for k in _TYPE2:
        if k not in ds:
            setattr(ds, k, "")
    return ds


# ---- reading an SR back -----------------------------------------------------------------------
def _walk(items):
    for item in items or []:
        yield item
        yield from _walk(item.get("ContentSequence"))


def _name(item) -> tuple[str, str]:
    c = item.ConceptNameCodeSequence[0]
    return str(c.CodingSchemeDesignator), str(c.CodeValue)


def sr_text(ds) -> str:
    """The report text of a cxreport SR (the first DCM 121071 'Finding' TEXT item)."""
    for item in _walk(ds.ContentSequence):
        if item.ValueType == "TEXT" and _name(item) == ("DCM", "121071"):
            return str(item.TextValue)
    raise InputError("not a cxreport SR: no Finding text item")


def sr_summary(ds) -> dict:
    """{"read": bool, "text": str, "findings": {name: {"state", "probability"}}, "sources": [uids]}."""
    states = {code: state for state, (code, _) in STATES.items()}
    findings, read = {}, None
    for item in _walk(ds.ContentSequence):
        if item.ValueType != "CODE":
            continue
        scheme, value = _name(item)
        code = str(item.ConceptCodeSequence[0].CodeValue)
        if (scheme, value) == (SCHEME, READ_STATUS[0]):
            read = code == READ[0]
        elif scheme == SCHEME and code in states:
            probs = [float(c.MeasuredValueSequence[0].NumericValue) for c in item.get("ContentSequence", [])
                     if c.ValueType == "NUM"]
            name = str(item.ConceptNameCodeSequence[0].CodeMeaning)
            findings[name] = {"state": states[code], "probability": probs[0] if probs else None}
    sources = [str(i.ReferencedSOPInstanceUID) for s in ds.get("CurrentRequestedProcedureEvidenceSequence", [])
               for se in s.ReferencedSeriesSequence for i in se.ReferencedSOPSequence]
    return {"read": bool(read), "text": sr_text(ds), "findings": findings, "sources": sources}


def write_sr(ds, path: Path) -> Path:
    """Save atomically (a final name always holds a whole file)."""
    from cxreport.fsio import atomic_path

    with atomic_path(path) as tmp:
        ds.save_as(str(tmp), enforce_file_format=True)
    return Path(path)
