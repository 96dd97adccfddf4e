"""A radiologist edits the finding plan: Python API, CLI, manifest column; the report follows."""

import json

import pytest

from cxreport.cli import main
from cxreport.errors import InputError
from cxreport.labels import FINDING_STATES, parse_findings
from cxreport.text.faithful import check


def _plan(result):
    return {k: f["state"] for k, f in result["findings"].items()}


def test_parse_findings_accepts_pairs_json_and_files(tmp_path):
    assert parse_findings("pleural effusion=POS, Pneumonia = negative") == {
        "Pleural Effusion": "positive", "Pneumonia": "negative"}
    assert parse_findings('{"Edema": 1, "Cardiomegaly": "unknown"}') == {
        "Edema": "positive", "Cardiomegaly": "not_assessed"}
    f = tmp_path / "plan.json"
    f.write_text(json.dumps({"Atelectasis": "uncertain"}))
    assert parse_findings(str(f)) == {"Atelectasis": "uncertain"}
    with pytest.raises(InputError, match="unknown finding 'Efusion'"):
        parse_findings("Efusion=positive")
    with pytest.raises(InputError, match="use one of"):
        parse_findings("Edema=maybe")
    with pytest.raises(InputError, match="Finding=state"):
        parse_findings("Edema")
    with pytest.raises(InputError):
        parse_findings(str(f), allow_file=False)  # text from the network never names a server file


def test_edited_plan_rewrites_the_report(pipeline, xrays):
    model_only = pipeline.generate([xrays["cardio"]])
    assert all(f["set_by"] == "model" for f in model_only["findings"].values())
    assert all(f["state"] in FINDING_STATES for f in model_only["findings"].values())
    assert check(model_only["report"], _plan(model_only))["agrees"]
    for beam in (1, 3):
        edited = pipeline.generate([xrays["cardio"]], beam=beam,
                                   findings={"Pneumothorax": "positive", "Cardiomegaly": "negative"})
        f = edited["findings"]
        assert f["Pneumothorax"]["state"] == "positive" and f["Pneumothorax"]["set_by"] == "user"
        assert f["Cardiomegaly"]["state"] == "negative" and f["Cardiomegaly"]["set_by"] == "user"
        assert f["Edema"]["set_by"] == "model"
        reading = check(edited["report"], _plan(edited))
        assert reading["agrees"] and reading["reading"]["Pneumothorax"] == 1
        assert reading["reading"]["Cardiomegaly"] != 1 and edited["report"] != model_only["report"]
    batch = pipeline.generate_batch([{"images": [xrays["cardio"]], "findings": "Edema=positive"},
                                     {"images": [xrays["effusion"]], "findings": "Edema=oops"}], on_error="record")
    assert batch[0]["findings"]["Edema"]["set_by"] == "user" and "oops" in batch[1]["error"]


def test_cli_findings_flag_and_manifest_column(tiny_run, xrays, tmp_path, capsys):
    assert main(["generate", str(xrays["effusion"]), "--model", str(tiny_run), "--json",
                 "--findings", "Pleural Effusion=negative,Edema=positive"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["findings"]["Edema"] == {**r["findings"]["Edema"], "state": "positive", "set_by": "user"}
    assert check(r["report"], _plan(r))["agrees"] and "edema" in r["report"].lower()
    assert main(["generate", str(xrays["effusion"]), "--model", str(tiny_run), "--findings", "Edema"]) == 2
    assert "Finding=state" in capsys.readouterr().err

    manifest = tmp_path / "m.csv"
    manifest.write_text("study_id,path,view,findings\n"
                        f"a,{xrays['cardio']},frontal,Pneumothorax=positive;Cardiomegaly=negative\n"
                        f"b,{xrays['effusion']},frontal,\n")
    out = tmp_path / "out"
    assert main(["generate", "--manifest", str(manifest), "--output-dir", str(out), "--model", str(tiny_run)]) == 0
    a = json.loads((out / "a.json").read_text())
    b = json.loads((out / "b.json").read_text())
    assert a["findings"]["Pneumothorax"]["set_by"] == "user" and "pneumothorax" in a["report"].lower()
    assert all(f["set_by"] == "model" for f in b["findings"].values())
    bad = tmp_path / "bad.csv"
    bad.write_text(f"study_id,path,findings\na,{xrays['cardio']},Pneumothorax=never\n")
    assert main(["generate", "--manifest", str(bad), "--output-dir", str(tmp_path / "o2"),
                 "--model", str(tiny_run)]) == 2
    assert "line 2, column findings" in capsys.readouterr().err
