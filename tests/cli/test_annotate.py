"""`cxreport annotate` run / compare / export-iu end to end against the loopback server.

The server's answers are scripted (our rules splitter, changed per prompt version), so the
comparison table measures those scripted changes, not any real model."""

from __future__ import annotations

import csv
import json
import zlib

import pytest

from cxreport.annotate.llm import load_prompt
from cxreport.cli import main
from cxreport.fsio import read_jsonl
from tests.fixtures.openai_server import ScriptedOpenAIServer, report_of, rules_responder

REPORTS = [
    "The heart is normal in size. The mediastinum is unremarkable. The lungs are clear.",
    "Heart size and mediastinal contours are normal. No pneumothorax. Degenerative changes of the spine.",
    "Cardiomegaly. Tortuous aorta. Small left pleural effusion. Cholecystectomy clips.",
    "Lungs are clear without focal consolidation. No acute bony abnormality.",
    "",
]


def v1_merges_mediastinum(regions, req):
    """Scripted 'v1': mediastinal findings reported under heart."""
    out = dict(regions)
    out["heart"] = " ".join(x for x in (out["heart"], out["mediastinal"]) if x)
    out["mediastinal"] = ""
    return out


def v2_drops_others_and_stumbles(regions, req):
    """Scripted 'v2': 'others' folded into lung; the first answer to some reports is prose."""
    if len(req["messages"]) == 2 and zlib.crc32(report_of(req).encode()) % 2 == 0:
        return "The report describes a normal chest."
    out = dict(regions)
    out["lung"] = " ".join(x for x in (out["lung"], out["others"]) if x)
    out["others"] = ""
    return "```json\n" + json.dumps(out) + "\n```"


PERTURB = {"v1": v1_merges_mediastinum, "v2": v2_drops_others_and_stumbles}


@pytest.fixture
def server():
    prompts = {p: load_prompt(p) for p in ("v1", "v2")}
    with ScriptedOpenAIServer(rules_responder(PERTURB, prompts), schema_style="llamacpp") as srv:
        yield srv


@pytest.fixture
def reports_csv(tmp_path):
    from cxreport.text.regions import split_regions

    path = tmp_path / "reports.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["uid", "findings"])
        w.writerows((f"s{i}", t) for i, t in enumerate(REPORTS))
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps({"uid": f"s{i}", **split_regions(t)}) + "\n" for i, t in enumerate(REPORTS)))
    return path, gold


def test_annotate_llm_run_writes_jsonl_and_usage(server, reports_csv, tmp_path, capsys):
    path, _ = reports_csv
    out = tmp_path / "out.jsonl"
    args = ["annotate", "--backend", "llm", "--prompt", "v1", "--base-url", server.base_url, "--model", "m",
            "--input", str(path), "--out", str(out), "--cache-dir", str(tmp_path / "c"), "--price-in", "0.15",
            "--price-out", "0.6"]
    assert main(args) == 0
    rows = read_jsonl(out)
    assert [r["uid"] for r in rows] == [f"s{i}" for i in range(5)]
    assert rows[1]["mediastinal"] == "" and "Mediastinal contours are normal." in rows[1]["heart"]
    meta = json.loads((tmp_path / "out.jsonl.meta.json").read_text())
    assert meta["requests"] == 4 and meta["prompt"] == "v1" and meta["cost_usd"] > 0  # the empty report: no call
    assert meta["schema_mode"] == "llamacpp" and meta["schema_probe_requests"] == 2
    assert "schema mode llamacpp: requests 4, tokens" in capsys.readouterr().out
    assert len(server.requests) == 2 + 4  # the schema-mode probe (json_schema refused, llama.cpp's accepted)
    assert main(args) == 0 and len(server.requests) == 6  # all cached the second time, no probe either


def test_annotate_rules_backend(reports_csv, tmp_path):
    path, _ = reports_csv
    out = tmp_path / "rules.jsonl"
    assert main(["annotate", "--backend", "rules", "--input", str(path), "--out", str(out)]) == 0
    assert read_jsonl(out)[2]["others"] == "Cholecystectomy clips."


def test_compare_prints_table_per_prompt(server, reports_csv, tmp_path, capsys):
    path, gold = reports_csv
    res = tmp_path / "cmp.json"
    assert main(["annotate", "compare", "--prompts", "rules,v1,v2", "--base-url", server.base_url, "--input", str(path),
                 "--gold", str(gold), "--no-cache", "--out", str(res)]) == 0
    table = capsys.readouterr().out
    assert "| prompt | n | lung | heart | mediastinal | bone | others | mean |" in table
    by = {r["prompt"]: r for r in json.loads(res.read_text())["results"]}
    assert by["rules"]["scores"]["mean"] == 1.0
    assert by["v1"]["scores"]["mediastinal"] < 1.0 and by["v1"]["scores"]["lung"] == 1.0
    assert by["v2"]["scores"]["others"] < 1.0 and by["v2"]["scores"]["heart"] == 1.0
    assert by["v2"]["usage"]["malformed_answers"] >= 1 and by["v2"]["failed"] == 0


def test_bad_input_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "r.csv"
    bad.write_text("uid,text\n1,hello\n")
    assert main(["annotate", "--backend", "rules", "--input", str(bad), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "'findings'" in capsys.readouterr().err
    assert main(["annotate", "compare", "--input", str(bad), "--text-column", "text"]) == 2
    assert main(["annotate", "--prompt", "nope", "--input", str(bad), "--text-column", "text",
                 "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "unknown prompt 'nope'" in capsys.readouterr().err


@pytest.mark.shared
def test_compare_on_iu_xray(server, shared_data, tmp_path, capsys):
    iu = shared_data / "iu_xray"
    assert main(["annotate", "export-iu", "--iu-xray", str(iu), "--limit", "12", "--out", str(tmp_path / "iu")]) == 0
    assert len(read_jsonl(tmp_path / "iu" / "gold.jsonl")) == 12
    assert main(["annotate", "compare", "--prompts", "rules,v1", "--iu-xray", str(iu), "--limit", "12",
                 "--base-url", server.base_url, "--no-cache"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| rules") or ln.startswith("| v1")]
    assert len(lines) == 2


def test_compare_with_green_metric(server, reports_csv, tmp_path, capsys):
    from tests.fixtures.green_replies import TYPICAL

    path, gold = reports_csv
    with ScriptedOpenAIServer(lambda req: TYPICAL) as judge:
        assert main(["annotate", "compare", "--prompts", "rules", "--input", str(path), "--gold", str(gold),
                     "--metric", "green", "--green-base-url", judge.base_url, "--out", str(tmp_path / "g.json")]) == 0
    res = json.loads((tmp_path / "g.json").read_text())["results"][0]["scores"]
    # every non-empty region pair gets the scripted 3 matched / 2 significant errors; empty pairs count 1.0
    assert res["lung"] == pytest.approx((4 * 0.6 + 1.0) / 5) and res["others"] == pytest.approx((0.6 + 4 * 1.0) / 5)
    assert "green per region" in capsys.readouterr().out
    assert all(req["messages"][0]["content"].startswith("Objective: Evaluate") for req in judge.requests)


@pytest.mark.shared
def test_iu_region_examples_join(shared_data):
    from cxreport.annotate.data import load_iu_region_examples

    ex = load_iu_region_examples(shared_data / "iu_xray", "train")
    assert len(ex) == 2069  # every curated train item joins to its R2Gen findings
    first = next(e for e in ex if e.id == "CXR2384_IM-0942")
    assert first.regions["others"] == "A large hiatal hernia is noted." and "hiatal hernia" in first.text
    with_images = [e for e in ex if e.image_paths]
    assert with_images and all(p.is_file() for e in with_images for p in e.image_paths)
    assert load_iu_region_examples(shared_data / "iu_xray", "val") == []  # val items carry no regions
    sample = load_iu_region_examples(shared_data / "iu_xray", "train", limit=5)
    assert len(sample) == 5 and sample == load_iu_region_examples(shared_data / "iu_xray", "train", limit=5)


# --- issue 17: what a real server taught us ----------------------------------------------------
def test_compare_help_is_compares(capsys):
    """Problem 6: `annotate compare --help` printed `annotate --help`."""
    with pytest.raises(SystemExit):
        main(["annotate", "compare", "--help"])
    out = capsys.readouterr().out
    assert "--prompts" in out and "--gold" in out and "--metric" in out and "--backend" not in out
    with pytest.raises(SystemExit):
        main(["annotate", "export-iu", "--help"])
    out = capsys.readouterr().out
    assert "--annotations" in out and "--base-url" not in out


def test_compare_prompt_is_not_ignored(server, reports_csv, tmp_path):
    path, gold = reports_csv
    res = tmp_path / "cmp.json"
    assert main(["annotate", "compare", "--prompt", "v1", "--base-url", server.base_url, "--model", "m",
                 "--input", str(path), "--gold", str(gold), "--no-cache", "--out", str(res)]) == 0
    results = json.loads(res.read_text())["results"]
    assert [r["prompt"] for r in results] == ["v1"]
    preds = results[0]["predictions"]  # per-report predictions are kept, not only scores
    assert [p["id"] for p in preds] == [f"s{i}" for i in range(5)] and "Mediastinal" in preds[1]["heart"]


def test_dead_endpoint_is_an_error_and_errors_are_kept(reports_csv, tmp_path, capsys):
    path, gold = reports_csv
    with ScriptedOpenAIServer() as srv:
        dead = srv.base_url  # closed on exit: connection refused from here on
    res = tmp_path / "cmp.json"
    common = ["--base-url", dead, "--model", "m", "--input", str(path), "--http-retries", "0", "--no-cache"]
    assert main(["annotate", "compare", "--prompts", "rules,v1", "--gold", str(gold), "--out", str(res), *common]) == 1
    err = capsys.readouterr().err
    assert "error: v1: every request failed" in err and "rules" not in err.split("error:")[-1]
    v1 = json.loads(res.read_text())["results"][1]
    assert v1["failed"] == 4 and all("error" in p for p in v1["predictions"] if p["id"] != "s4")
    assert main(["annotate", "run", "--out", str(tmp_path / "o.jsonl"), *common]) == 1
    assert "every request failed" in capsys.readouterr().err


def test_default_model_to_another_server_is_warned(server, reports_csv, tmp_path, caplog):
    """Problem 3: forgetting --model stored a local model's answers as gpt-4o-mini."""
    path, _ = reports_csv
    with caplog.at_level("WARNING"):
        assert main(["annotate", "--base-url", server.base_url, "--input", str(path), "--no-cache",
                     "--out", str(tmp_path / "o.jsonl")]) == 0
    assert "--model is the default 'gpt-4o-mini'" in caplog.text


def test_compare_and_export_any_annotation_file_any_split(server, tmp_path, capsys):
    """Problem 7: a held-out file (here its 'test' split) is scored and exported."""
    quiz = {"train": [], "test": [{"id": f"t{i}", "findings": t, "report": split_regions_of(t)}
                                  for i, t in enumerate(REPORTS[:4])]}
    ann = tmp_path / "annotation_quiz_all.json"
    ann.write_text(json.dumps(quiz))
    assert main(["annotate", "compare", "--prompts", "rules", "--annotations", str(ann), "--split", "test"]) == 0
    assert "| rules | 4 | 1.000 |" in capsys.readouterr().out
    assert main(["annotate", "export-iu", "--annotations", str(ann), "--split", "test", "--out", str(tmp_path / "x")]) == 0
    assert [r["uid"] for r in read_jsonl(tmp_path / "x" / "gold.jsonl")] == ["t0", "t1", "t2", "t3"]


def split_regions_of(text):
    from cxreport.text.regions import split_regions

    return split_regions(text)
