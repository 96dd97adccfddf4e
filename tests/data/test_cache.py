import json
import logging
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from cxreport.cli import main
from cxreport.data.cache import Cache, prepare_cache
from cxreport.errors import InputError


def make_csv_dataset(root, n=12, size=(96, 80), bad=()):
    img = root / "images"
    img.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = ["id,text"]
    for i in range(n):
        name = f"im{i:03d}.png"
        if name in bad:
            (img / name).write_bytes(b"\x89PNG\r\n\x1a\n broken")
        else:
            # Smooth content compresses like a radiograph: fast to write even at 900 px.
            small = Image.fromarray((rng.random((size[1] // 8 + 1, size[0] // 8 + 1)) * 255).astype(np.uint8))
            small.resize(size).save(img / name)
        lines.append(f"{name},Report number {i}. No effusion.")
    (root / "reports.csv").write_text("\n".join(lines) + "\n")
    return root


def test_prepare_open_and_skip_when_done(tmp_path, caplog):
    make_csv_dataset(tmp_path / "ds")
    out = prepare_cache("csv", tmp_path / "ds", tmp_path / "cache", size=64, workers=2)
    c = Cache(out)
    assert c.images.shape == (12, 64, 64) and c.images.dtype == np.uint8
    assert c.meta["counts"]["images_ok"] == 12 and c.meta["preprocessing"]["flip"] == "never"
    row = c.rows[0]
    src = np.asarray(Image.open(row["image_paths"][0]))
    assert c.images[row["image_index"][0]].mean() == pytest.approx(src.mean() * (64 * 53) / (64 * 64), rel=0.1)
    assert not list(tmp_path.glob(".cache.partial"))
    mtime = (out / "meta.json").stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        prepare_cache("csv", tmp_path / "ds", tmp_path / "cache", size=64)
    assert "already prepared" in caplog.text and (out / "meta.json").stat().st_mtime_ns == mtime
    with pytest.raises(InputError, match="different cache already exists"):
        prepare_cache("csv", tmp_path / "ds", tmp_path / "cache", size=32)


def test_bad_image_stops_cleanly_then_resumes_with_skip_bad(tmp_path, caplog):
    make_csv_dataset(tmp_path / "ds", bad=("im011.png",))
    with pytest.raises(InputError, match="im011.png.*--skip-bad"):
        prepare_cache("csv", tmp_path / "ds", tmp_path / "cache", size=64, workers=1)
    assert not (tmp_path / "cache").exists()  # nothing half-written under the final name
    with caplog.at_level(logging.INFO):
        out = prepare_cache("csv", tmp_path / "ds", tmp_path / "cache", size=64, skip_bad=True)
    assert "1 of 12 images to process" in caplog.text  # the 11 good ones were kept
    assert "im011.png" in (out / "bad_files.txt").read_text()
    rows = {r["study_id"]: r for r in Cache(out).rows}
    assert rows["im011.png"]["image_index"] == [] and len(rows["im000.png"]["image_index"]) == 1


def test_kill_9_leaves_no_cache_and_rerun_completes(tmp_path):
    make_csv_dataset(tmp_path / "ds", n=80, size=(700, 700))
    cmd = [sys.executable, "-m", "cxreport", "data", "prepare", "--source", "csv", "--root", str(tmp_path / "ds"),
           "--out", str(tmp_path / "cache"), "--size", "64", "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    done = tmp_path / ".cache.partial" / "done.npy"
    deadline = time.monotonic() + 30
    while proc.poll() is None and not done.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "prepare finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "cache").exists()
    rerun = subprocess.run(cmd, capture_output=True, text=True)
    assert rerun.returncode == 0
    todo = int(re.search(r"prepare: (\d+) of 80 images to process", rerun.stderr).group(1))
    assert todo < 80  # what was done before the kill is kept
    c = Cache(tmp_path / "cache")
    assert c.meta["counts"]["images_ok"] == 80 and not (tmp_path / ".cache.partial").exists()
    assert all(c.images[i].max() > 0 for i in range(80))


def test_cli_prepare_and_report(tmp_path):
    make_csv_dataset(tmp_path / "ds")
    assert main(["data", "prepare", "--source", "csv", "--root", str(tmp_path / "ds"), "--out",
                 str(tmp_path / "c"), "--size", "64", "--workers", "1"]) == 0
    assert main(["data", "report", str(tmp_path / "c"), "--out", str(tmp_path / "r")]) == 0
    stats = json.loads((tmp_path / "r" / "stats.json").read_text())
    assert stats["studies"] == 12 and stats["duplicate_reports"]["distinct_texts_repeated"] == 0
    for f in ("length_hist.png", "top_words.png", "views.png", "examples.png", "report.md"):
        assert (tmp_path / "r" / f).stat().st_size > 0
    assert main(["data", "prepare", "--source", "csv", "--root", str(tmp_path / "nope"), "--out",
                 str(tmp_path / "c2")]) == 2


def test_prepare_with_every_image_missing_is_an_error_unless_allowed(tmp_path, capsys):
    make_csv_dataset(tmp_path / "ds", n=5)
    for f in (tmp_path / "ds" / "images").iterdir():
        f.unlink()
    args = ["data", "prepare", "--source", "csv", "--root", str(tmp_path / "ds"), "--out", str(tmp_path / "c"),
            "--size", "64", "--workers", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "all 5 images that source 'csv' lists are missing" in err and "--allow-missing-images" in err
    assert not (tmp_path / "c").exists()
    assert main(args + ["--allow-missing-images"]) == 0
    assert Cache(tmp_path / "c").meta["counts"]["images_missing"] == 5


def test_report_label_table_and_top_words(tmp_path):
    from cxreport.data.report import STOP_WORDS, _label_table, compute_stats

    make_csv_dataset(tmp_path / "ds", n=4)
    stats = compute_stats(Cache(prepare_cache("csv", tmp_path / "ds", tmp_path / "c", size=64)))
    assert stats["top_words"] and not {w for w, _ in stats["top_words"]} & STOP_WORDS
    table = _label_table({"Edema": {"positive": 2, "negative": 5}, "Cardiomegaly": {"uncertain": 1}})
    assert table[0] == "| label | positive | negative | uncertain | labelled |"
    assert table[2] == "| Edema | 2 | 5 | 0 | 7 |" and "{" not in "".join(table)


@pytest.mark.shared
def test_prepare_real_iu(shared_data, tmp_path):
    out = prepare_cache("iu-xray", shared_data / "iu_xray", tmp_path / "iu", size=64, workers=1)
    c = Cache(out)
    assert c.meta["counts"]["studies"] == 3261 and c.meta["counts"]["images_ok"] == 22
    assert c.meta["counts"]["images_missing"] == 6243 - 22


def test_prepare_mimic_miniature_tree(tmp_path):
    from tests.fixtures.mimic_tree import build_mimic_tree

    info = build_mimic_tree(tmp_path / "mimic")
    c = Cache(prepare_cache("mimic-cxr", tmp_path / "mimic", tmp_path / "c", size=32, workers=1))
    assert c.meta["counts"]["studies"] == len(info["studies"])
    assert c.meta["counts"]["images_missing"] >= 1  # the fixture's study whose image file is missing
    assert {r["split"] for r in c.rows} == {"train", "val", "test"}
