"""`cxreport generate`: one study, batches from folders and manifests, no-overwrite, sharding."""

import json
import shutil

import pytest
from PIL import Image

from cxreport.cli import main
from cxreport.inference.heatmaps import BAR_WIDTH
from cxreport.fsio import read_jsonl
from cxreport.inference.batch import safe_name


def test_single_study_text_json_and_heatmaps(tiny_run, xrays, tmp_path, capsys):
    assert main(["generate", str(xrays["cardio"]), str(xrays["effusion"]), "--model", str(tiny_run)]) == 0
    out = capsys.readouterr().out
    assert "Report (model run; views: frontal, lateral)" in out and "Cardiomegaly" in out

    maps = tmp_path / "maps"
    args = ["generate", str(xrays["effusion"]), "--model", str(tiny_run), "--json", "--heatmaps", str(maps),
            "--beam", "2", "--threshold", "0.6"]
    assert main(args) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["threshold"] == 0.6 and r["heatmaps"] and r["views"][0]["view"] == "frontal"
    for h in r["heatmaps"]:
        assert Image.open(h["file"]).size == (256 + BAR_WIDTH, 256) and "overlay" not in h and h["has_signal"]
    assert main(args) == 2  # the overlays exist: no silent overwrite
    assert "pass --force" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0


def test_heatmap_folder_is_checked_before_the_model_runs(tiny_run, xrays, tmp_path, capsys, monkeypatch):
    import cxreport.inference.pipeline as pl

    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "Edema_frontal_1.png").write_bytes(b"old")
    (tmp_path / "file").write_text("x")
    monkeypatch.setattr(pl, "load_model", lambda *a, **k: pytest.fail("the model ran before the check"))
    for folder, message in ((tmp_path / "maps", "already holds 1 overlay PNG(s)"), (tmp_path / "file", "not a folder")):
        assert main(["generate", str(xrays["cardio"]), "--model", str(tiny_run), "--heatmaps", str(folder)]) == 2
        assert message in capsys.readouterr().err


def test_views_without_signal_get_no_overlay(pipeline, xrays, monkeypatch):
    import cxreport.inference.heatmaps as hm

    real = hm.gradcam

    def lateral_blank(*a, **k):
        cams = real(*a, **k)
        cams[:, 1] = 0  # as when the finding head reads the frontal film only
        return cams

    monkeypatch.setattr(hm, "gradcam", lateral_blank)
    maps = pipeline.generate([xrays["cardio"], xrays["effusion"]], heatmaps=True)["heatmaps"]
    assert maps and {m["view"] for m in maps} == {"frontal"}


def test_outputs_say_which_model_and_version_wrote_them(tiny_run, xrays, capsys):
    from cxreport import __version__
    from cxreport.inference.pipeline import DISCLAIMER, weights_sha256

    assert main(["generate", str(xrays["cardio"]), "--model", str(tiny_run), "--json", "--max-len", "5"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["cxreport_version"] == __version__ and r["model"] == "run" and r["disclaimer"] == DISCLAIMER
    assert len(r["model_sha256"]) == 64 and r["model_sha256"] == weights_sha256(tiny_run / "best")
    assert main(["generate", str(xrays["cardio"]), "--model", str(tiny_run), "--max-len", "5"]) == 0
    assert capsys.readouterr().out.rstrip().endswith(DISCLAIMER)


def test_regions_in_text_json_and_batch(tiny_run, xrays, tmp_path, capsys):
    """Issue 17, problem 9: the generated report split into regions by the rules annotator."""
    from cxreport.text.coverage import without_coverage
    from cxreport.text.regions import REGIONS, split_regions

    assert main(["generate", str(xrays["cardio"]), "--model", str(tiny_run), "--json", "--regions"]) == 0
    r = json.loads(capsys.readouterr().out)
    # regions split what the report says of the patient: its coverage line (the findings the tiny
    # run has no positives of) is about the model
    assert list(r["regions"]) == list(REGIONS) and r["regions"] == split_regions(without_coverage(r["report"]))
    assert main(["generate", str(xrays["cardio"]), "--model", str(tiny_run), "--json"]) == 0
    assert "regions" not in json.loads(capsys.readouterr().out)  # opt-in: the default output is unchanged
    assert main(["generate", str(xrays["cardio"]), "--model", str(tiny_run), "--regions"]) == 0
    assert "Regions:\n  lung" in capsys.readouterr().out
    src, out = _input_dir(tmp_path / "in", xrays), tmp_path / "out"
    assert main(["generate", "--input-dir", str(src), "--output-dir", str(out), "--model", str(tiny_run),
                 "--regions", "--max-len", "20"]) == 0
    ok = [row for row in read_jsonl(out / "summary.jsonl") if row["status"] == "ok"]
    assert ok and all(row["regions"] == split_regions(without_coverage(row["report"])) for row in ok)
    assert json.loads((out / f"{ok[0]['study_id']}.json").read_text())["regions"] == ok[0]["regions"]


def test_single_study_errors(tiny_run, xrays, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    assert main(["generate", str(bad), "--model", str(tiny_run)]) == 2
    assert "bad.png" in capsys.readouterr().err
    assert main(["generate", "--model", str(tiny_run)]) == 2
    assert "nothing to do" in capsys.readouterr().err
    assert main(["generate", str(xrays["cardio"]), "--view", "lateral", "--view", "frontal",
                 "--model", str(tiny_run)]) == 2
    assert "2 --view given for 1 images" in capsys.readouterr().err
    assert main(["generate", str(xrays["cardio"]), "--model", str(tmp_path / "nope")]) == 2
    assert "no such model" in capsys.readouterr().err


def test_example_runs_on_the_packaged_sample_films(tiny_run, capsys):
    assert main(["generate", "--example", "--model", str(tiny_run), "--max-len", "8"]) == 0
    out = capsys.readouterr().out
    assert out.count("== sample study nih-") == 2 and "00000129_000.jpg; NIH labels: No Finding" in out
    assert main(["generate", "--example", "--json", "--model", str(tiny_run), "--max-len", "8"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["nih_labels"] for r in rows] == ["No Finding", "Cardiomegaly"]
    assert all(r["views"][0]["view"] == "frontal" for r in rows)
    assert main(["generate", "--example", "x.png", "--model", str(tiny_run)]) == 2
    assert "--example runs on the bundled sample films" in capsys.readouterr().err


def _input_dir(root, xrays):
    (root / "s1").mkdir(parents=True)
    shutil.copy(xrays["cardio"], root / "s1" / "a_pa.png")
    shutil.copy(xrays["both"], root / "s1" / "b_lat.jpg")
    (root / "s2").mkdir()
    shutil.copy(xrays["effusion"], root / "s2" / "x.png")
    shutil.copy(xrays["both"], root / "s3.jpg")
    (root / "broken.png").write_bytes(xrays["cardio"].read_bytes()[:500])
    (root / "notes.txt").write_text("ignored")
    (root / "s4").mkdir()
    for name in ("1.png", "2.png", "3.png"):
        shutil.copy(xrays["cardio"], root / "s4" / name)
    return root


def test_batch_folder_summary_bad_file_and_no_overwrite(tiny_run, xrays, tmp_path, capsys):
    src, out = _input_dir(tmp_path / "in", xrays), tmp_path / "out"
    args = ["generate", "--input-dir", str(src), "--output-dir", str(out), "--model", str(tiny_run),
            "--batch-size", "2", "--max-len", "20"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "4 of 5 studies written" in err and "1 failed" in err
    rows = read_jsonl(out / "summary.jsonl")
    assert [r["study_id"] for r in rows] == ["s1", "s2", "s4", "broken", "s3"]
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "error", "ok"]
    assert "3 images: read" in rows[2]["warnings"][0]  # 3+ images: one frontal and one lateral are read
    assert "broken.png: corrupt or truncated image" in rows[3]["error"]
    s1 = json.loads((out / "s1.json").read_text())
    assert s1["study_id"] == "s1" and [v["view"] for v in s1["views"]] == ["frontal", "lateral"]
    assert sorted(p.name for p in out.glob("*.json")) == ["s1.json", "s2.json", "s3.json", "s4.json"]
    assert not list(out.glob(".*tmp"))  # atomic writes leave no temp files

    # A rerun continues: finished studies are verified and skipped, failed ones are tried again.
    before = (out / "s1.json").read_text()
    (out / "s2.json").write_text('{"study_id": "s2", "rep')  # incomplete: generated again
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "4 of 5 studies written" in err and "(3 already done by an earlier run, skipped, 1 incomplete" in err
    assert (out / "s1.json").read_text() == before and json.loads((out / "s2.json").read_text())["report"]
    assert [r["status"] for r in read_jsonl(out / "summary.jsonl")] == ["ok", "ok", "ok", "error", "ok"]
    s3 = json.loads((out / "s3.json").read_text())
    (out / "s3.json").write_text(json.dumps(s3 | {"model_sha256": "0" * 64}))
    assert main(args) == 2  # outputs of another model are never mixed in silently
    assert "s3.json was written by another model" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0
    assert "skipped" not in capsys.readouterr().err


def test_batch_interrupted_writes_summary_and_rerun_continues(tiny_run, xrays, tmp_path, monkeypatch, capsys):
    from cxreport.inference.pipeline import Pipeline

    src, out = _input_dir(tmp_path / "in", xrays), tmp_path / "out"
    args = ["generate", "--input-dir", str(src), "--output-dir", str(out), "--model", str(tiny_run),
            "--batch-size", "2", "--max-len", "10"]
    real, calls = Pipeline.run_recorded, []

    def ctrl_c_on_second_chunk(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(Pipeline, "run_recorded", ctrl_c_on_second_chunk)
    assert main(args) == 130
    assert "rerun the same command to continue" in capsys.readouterr().err
    rows = read_jsonl(out / "summary.jsonl")
    assert [r["status"] for r in rows] == ["ok", "ok", "pending", "pending", "pending"]
    monkeypatch.setattr(Pipeline, "run_recorded", real)
    assert main(args) == 0
    assert "(2 already done by an earlier run, skipped)" in capsys.readouterr().err
    assert [r["status"] for r in read_jsonl(out / "summary.jsonl")] == ["ok", "ok", "ok", "error", "ok"]


def test_batch_manifest_views_and_safe_names(tiny_run, xrays, tmp_path, capsys):
    shutil.copy(xrays["cardio"], tmp_path / "f.png")
    shutil.copy(xrays["both"], tmp_path / "l.jpg")
    manifest = tmp_path / "m.csv"
    manifest.write_text("study_id,path,view\n../../evil,f.png,\na/b,l.jpg,lateral\na/b,f.png,frontal\n"
                        f"ok,{xrays['effusion']},\n")
    out = tmp_path / "deep" / "out"
    assert main(["generate", "--manifest", str(manifest), "--output-dir", str(out), "--model", str(tiny_run),
                 "--max-len", "15", "--heatmaps", str(tmp_path / "maps")]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted([f"{safe_name('../../evil')}.json", f"{safe_name('a/b')}.json", "ok.json",
                            "summary.jsonl"])
    assert not (tmp_path / "evil.json").exists() and all("/" not in f and not f.startswith(".") for f in files)
    ab = json.loads((out / f"{safe_name('a/b')}.json").read_text())
    assert ab["study_id"] == "a/b" and [v["view"] for v in ab["views"]] == ["lateral", "frontal"]
    assert all((tmp_path / "maps").glob(f"{safe_name('a/b')}/*.png"))
    assert safe_name("a/b") != safe_name("a_b") and safe_name("..") != ".."

    manifest.write_text("id,file\nx,f.png\n")
    assert main(["generate", "--manifest", str(manifest), "--output-dir", str(out), "--model", str(tiny_run)]) == 2
    assert "needs the columns study_id,path" in capsys.readouterr().err


def test_batch_shards_across_ranks(tiny_run, xrays, tmp_path, monkeypatch, capsys):
    src, out = _input_dir(tmp_path / "in", xrays), tmp_path / "out"
    args = ["generate", "--input-dir", str(src), "--output-dir", str(out), "--model", str(tiny_run),
            "--max-len", "15"]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")  # rank 1 finishes first: it cannot merge yet
    assert main(args) == 0
    assert not (out / "summary.jsonl").exists()
    part1 = read_jsonl(out / "summary.part-1-of-2.jsonl")
    assert [r["study_id"] for r in part1] == ["s2", "broken"]
    monkeypatch.setenv("RANK", "0")
    assert main(args) == 0
    part0 = read_jsonl(out / "summary.part-0-of-2.jsonl")
    assert [r["study_id"] for r in part0] == ["s1", "s4", "s3"]
    assert [r["study_id"] for r in read_jsonl(out / "summary.jsonl")] == ["s1", "s2", "s4", "broken", "s3"]
    monkeypatch.setenv("RANK", "2")
    assert main(args) == 2
    assert "RANK=2 WORLD_SIZE=2" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--input-dir", "X", "img.png"], "not both"),
    (["--input-dir", "X"], "needs --output-dir"),
])
def test_batch_argument_errors(tiny_run, argv, message, capsys):
    assert main(["generate", *argv]) == 2
    assert message in capsys.readouterr().err
