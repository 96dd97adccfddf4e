"""The typed result of generate (inference/result.py) and its JSON, schema version 2
(docs/report_schema.md): attributes, the model's call beside a user's edit, not-assessed findings
as null, errors typed, and the keys the schema documents."""

from __future__ import annotations

import dataclasses
import json

import pytest

from cxreport.inference import Pipeline
from cxreport.inference.result import SCHEMA_VERSION, Finding, StudyError, StudyReport

REPORT_KEYS = {"schema_version", "report", "findings", "not_assessed", "population", "plan_check", "views", "warnings",
               "input_check", "model", "model_sha256", "cxreport_version", "disclaimer", "threshold", "timing_ms"}
FINDING_KEYS = {"state", "probability", "positive", "threshold", "assessed", "set_by", "model_state"}
ERROR_KEYS = {"schema_version", "error", "refused", "model", "model_sha256", "cxreport_version", "disclaimer"}


@pytest.fixture(scope="module")
def partial(tiny_run):
    """The tiny model with too few training positives for two findings: it does not assess them."""
    from cxreport.checkpoint import load_checkpoint

    model, tok, _ = load_checkpoint(tiny_run / "best")
    counts = {n: 100 for n in model.labels} | {"Fracture": 1, "Lung Lesion": 0}
    negatives = {n: 100 for n in model.labels}  # the tiny run's own counts would leave most findings out
    model.cfg = dataclasses.replace(model.cfg, findings=dataclasses.replace(
        model.cfg.findings, train_positives=counts, train_negatives=negatives, min_positives=10))
    return Pipeline(model, tok)


def test_a_report_is_typed_and_its_json_has_the_schema_keys(pipeline, xrays):
    r = pipeline.generate([xrays["cardio"]], regions=True)
    assert isinstance(r, StudyReport) and r.ok and isinstance(r.report, str) and r.report
    f = r.findings["Cardiomegaly"]
    assert isinstance(f, Finding) and f.assessed and f.set_by == "model" and f.state == f.model_state
    assert 0 <= f.probability <= 1 and f.positive == (f.state == "positive")
    d = r.to_dict()
    assert set(d) == REPORT_KEYS | {"regions"} and d["schema_version"] == SCHEMA_VERSION == "2"
    assert all(set(x) == FINDING_KEYS for x in d["findings"].values())
    assert json.loads(json.dumps(d)) == d  # plain JSON, nothing else inside
    assert d["model"] == r.model == pipeline.name and r.disclaimer and r.input_check == "none"  # no gate here
    # schema-1 code reads it like a dict
    assert r["report"] == r.report and r["findings"]["Cardiomegaly"]["probability"] == f.probability
    assert "report" in r and "error" not in r and dict(r)["views"] == r.views


def test_not_assessed_findings_are_null_and_listed(partial, xrays):
    r = partial.generate([xrays["cardio"]])
    assert r.not_assessed == ["Lung Lesion", "Fracture"]
    for name in r.not_assessed:
        f = r.to_dict()["findings"][name]
        assert f == {"state": "not_assessed", "probability": None, "positive": None, "threshold": None,
                     "assessed": False, "set_by": "model", "model_state": "not_assessed"}
    assert r.to_dict()["not_assessed"] == ["Lung Lesion", "Fracture"]
    models = partial.describe()
    assert models["thresholds"]["Fracture"] is None and models["thresholds"]["Edema"] == 0.5
    assert models["not_assessed"] == ["Lung Lesion", "Fracture"] and models["threshold"] == 0.5
    assert models["decoding"] == {"beam": partial.model.cfg.decoder.default_beam,
                                  "max_len": partial.model.cfg.decoder.default_max_len,
                                  "faithful": partial.model.cfg.decoder.faithful}


def test_an_edit_keeps_the_model_s_call(partial, xrays):
    own = partial.generate([xrays["cardio"]])
    flip = "negative" if own.findings["Edema"].state == "positive" else "positive"
    edited = partial.generate([xrays["cardio"]], findings={"Edema": flip, "Fracture": "positive"})
    e, fr = edited.findings["Edema"], edited.findings["Fracture"]
    assert (e.state, e.model_state, e.set_by) == (flip, own.findings["Edema"].state, "user")
    assert e.probability == own.findings["Edema"].probability
    # a finding the model does not assess, set by the user: stated, but still no probability
    assert (fr.state, fr.positive, fr.model_state, fr.assessed, fr.probability, fr.threshold) == \
        ("positive", True, "not_assessed", False, None, None)
    assert edited.edited and "Fracture" not in edited.not_assessed
    nf = edited.findings["No Finding"]
    assert nf.state != "positive" and (nf.set_by == "edit") == (nf.model_state == "positive")


def test_errors_are_typed(pipeline, xrays):
    out = pipeline.generate_batch([[b"junk"], [xrays["cardio"]]], on_error="record")
    err, ok = out
    assert isinstance(err, StudyError) and not err.ok and not err.refused and ok.ok
    assert err.error.startswith("image 1: not a readable image")
    assert set(err.to_dict()) == ERROR_KEYS and err["error"] == err.error and "error" in err


def test_http_shows_not_assessed_as_null(partial, xrays):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from cxreport.serve.app import ServeConfig, create_app

    client = TestClient(create_app(partial, ServeConfig()))
    model = client.get("/v1/models").json()["models"][0]
    assert model["thresholds"]["Fracture"] is None and model["thresholds"]["Lung Lesion"] is None  # was 1.01
    assert model["decoding"]["beam"] == partial.model.cfg.decoder.default_beam
    body = client.post("/v1/reports", files=[("images", ("a.png", xrays["cardio"].read_bytes(), "image/png"))]).json()
    assert body["schema_version"] == "2" and body["not_assessed"] == ["Lung Lesion", "Fracture"]
    assert body["findings"]["Fracture"]["positive"] is None and body["findings"]["Fracture"]["threshold"] is None


def test_the_schema_doc_lists_every_key():
    """docs/report_schema.md documents exactly the keys the code writes."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "report_schema.md").read_text(encoding="utf-8")
    tables = {}
    for title, body in re.findall(r"\n##+ ([^\n]+)\n(.*?)(?=\n##|\Z)", doc, flags=re.S):
        tables[title] = {k for row in re.findall(r"^\| `([^|]+)` \|", body, flags=re.M) for k in row.split("`, `")}
    assert tables["A study that was read: `StudyReport`"] == REPORT_KEYS | {"regions", "heatmaps"}
    assert tables["`findings[name]`: `Finding`"] == FINDING_KEYS
    assert tables["A study that was not read: `StudyError`"] == ERROR_KEYS | {"views"}
