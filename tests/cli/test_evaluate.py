"""CLI end to end on tiny data: score (one and two systems), baselines, evaluate (tiny trained model)."""

import json

import pytest

from cxreport.cli import main
from cxreport.data.cache import prepare_cache
from cxreport.fsio import atomic_write_jsonl, read_jsonl
from tests.fixtures.synthetic_cxr import make_synthetic_cxr

FAST = ["--metrics", "bleu,rouge,cider,ce", "--bootstrap", "100", "--permutations", "100"]


@pytest.fixture(scope="module")
def syn_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    make_synthetic_cxr(root / "data", n=48, n_test=8)
    return str(prepare_cache("csv", root / "data", root / "cache", size=64, workers=1))


def _jsonl(path, texts):
    atomic_write_jsonl(path, [{"id": f"s{i}", "text": t} for i, t in enumerate(texts)])
    return str(path)


def test_score_cli_one_and_two_systems(tmp_path, capsys):
    refs = _jsonl(tmp_path / "refs.jsonl", ["The heart is enlarged. No effusion.", "Lungs are clear."] * 4)
    a = _jsonl(tmp_path / "a.jsonl", ["The heart is enlarged. No effusion.", "Lungs clear."] * 4)
    b = _jsonl(tmp_path / "b.jsonl", ["Normal.", "There is a large effusion."] * 4)
    assert main(["score", "--hyps", a, "--refs", refs, "--out", str(tmp_path / "m.json"),
                 "--per-study", str(tmp_path / "ps.jsonl"), "--protocol", "r2gen", *FAST]) == 0
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["protocol"]["name"] == "r2gen" and m["clinical"]["uncertain"] == "positive"
    assert set(m["metrics"]) >= {"BLEU-4", "ROUGE-L", "CIDEr-D", "CE14-micro-F1", "CE5-macro-F1"}
    assert len(read_jsonl(tmp_path / "ps.jsonl")) == 8
    assert "| BLEU-4 |" in capsys.readouterr().out
    assert main(["score", "--hyps", a, "--hyps-b", b, "--refs", refs, "--out", str(tmp_path / "c.json"), *FAST]) == 0
    c = json.loads((tmp_path / "c.json").read_text())
    assert c["comparison"]["metrics"]["BLEU-4"]["diff"] > 0 and 0 < c["comparison"]["metrics"]["BLEU-4"]["p_value"] <= 1


def test_score_cli_bad_input_is_one_line_error(tmp_path, capsys):
    refs = _jsonl(tmp_path / "refs.jsonl", ["a b c", "d e f"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "s0", "text": "a b"}\nnot json\n')
    assert main(["score", "--hyps", str(bad), "--refs", refs, *FAST]) == 2
    assert "bad.jsonl:2: not valid JSON" in capsys.readouterr().err
    short = _jsonl(tmp_path / "short.jsonl", ["a b c"])
    assert main(["score", "--hyps", short, "--refs", refs, *FAST]) == 2
    assert "have no hypothesis" in capsys.readouterr().err


def test_baselines_cli_and_test_split_refused(syn_cache, tmp_path, capsys):
    out = tmp_path / "base"
    assert main(["baselines", "--cache", syn_cache, "--split", "val", "--out", str(out), *FAST]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["baselines"]) == {"constant", "random", "retrieval"}
    assert m["info"]["retrieval"]["methods"] == {"image": 8}  # synthetic studies all have images
    const = {r["text"] for r in read_jsonl(out / "constant.jsonl")}
    assert len(const) == 1
    # image retrieval finds the drawn findings far better than chance
    assert m["baselines"]["retrieval"]["metrics"]["CE14-micro-F1"]["value"] > \
        m["baselines"]["random"]["metrics"]["CE14-micro-F1"]["value"]
    assert (out / "per_label_f1.png").read_bytes()[:4] == b"\x89PNG" and "Baselines on val" in (out / "summary.md").read_text()
    assert main(["baselines", "--cache", syn_cache, "--split", "test", "--out", str(tmp_path / "t")]) == 2
    assert "withheld" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_cli_with_a_tiny_trained_model(syn_cache, tmp_path, capsys):
    from cxreport.training.config import DataConfig, LoopConfig, ModelSection, RunConfig, SourceConfig
    from cxreport.training.loop import train

    cfg = RunConfig(out_dir=str(tmp_path / "run"), data=DataConfig(sources=[SourceConfig(cache=syn_cache)], max_tokens=20),
                    model=ModelSection(name="tiny"),
                    train=LoopConfig(stage=2, max_steps=2, batch_size=8, warmup_steps=1, eval_every=2, patience=0,
                                     progress=False, max_val_batches=1))
    train(cfg)
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(tmp_path / "run"), "--cache", syn_cache, "--split", "test",
                 "--out", str(out)]) == 2
    assert "--allow-test" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(tmp_path / "run"), "--cache", syn_cache, "--split", "val",
                 "--out", str(out), "--max-len", "12", "--batch-size", "4", *FAST]) == 0
    for f in ("hyps.jsonl", "refs.jsonl", "per_study.jsonl", "metrics.json", "summary.md", "per_label_f1.png"):
        assert (out / f).is_file(), f
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == 8 and m["decoding"]["method"] == "greedy" and set(m["baselines"]) == {"constant", "random", "retrieval"}
    assert set(m["comparisons"]["results"]) == {"model vs constant", "model vs random", "model vs retrieval"}
    hyps = read_jsonl(out / "hyps.jsonl")
    assert all(h["has_image"] and isinstance(h["text"], str) for h in hyps)
    assert main(["evaluate", "--checkpoint", str(tmp_path / "run"), "--cache", syn_cache, "--split", "val",
                 "--out", str(tmp_path / "oracle"), "--max-len", "12", "--oracle-findings", "--no-baselines",
                 *FAST]) == 0
    m = json.loads((tmp_path / "oracle" / "metrics.json").read_text())
    assert m["oracle_findings"] is True and "ORACLE" in (tmp_path / "oracle" / "summary.md").read_text()


def _without_train_split(cache, dest):
    """A copy of ``cache`` whose training studies are gone (like a cache built from a test set)."""
    import shutil

    shutil.copytree(cache, dest)
    rows = [r for r in read_jsonl(dest / "studies.jsonl") if r["split"] != "train"]
    atomic_write_jsonl(dest / "studies.jsonl", rows)
    return str(dest)


def test_evaluate_checks_everything_before_generating(syn_cache, tiny_run, tmp_path, capsys, monkeypatch):
    import cxreport.inference.evaluate as ev

    no_train = _without_train_split(syn_cache, tmp_path / "no_train")
    real, calls = ev.generate_reports, []
    monkeypatch.setattr(ev, "generate_reports", lambda *a, **k: calls.append(1) or real(*a, **k))
    base = ["evaluate", "--checkpoint", str(tiny_run), "--split", "val", "--max-len", "8", "--no-progress"]
    assert main(base + ["--cache", no_train, "--out", str(tmp_path / "a"), *FAST]) == 2
    assert "no training studies with a 'findings' text to draw baselines from" in capsys.readouterr().err
    assert main(base + ["--cache", syn_cache, "--out", str(tmp_path / "b"), "--metrics", "bleuu"]) == 2
    assert "unknown metric 'bleuu'" in capsys.readouterr().err
    assert not calls and not (tmp_path / "a").exists()

    # Without a training split, R2Gen's <unk> vocabulary comes from the checkpoint's word tokenizer.
    assert main(base + ["--cache", no_train, "--out", str(tmp_path / "c"), "--no-baselines", *FAST]) == 0
    m = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert "the checkpoint tokenizer's" in m["unk_vocabulary"] and calls == [1]
    assert m["metrics"]["BLEU-1"]["value"] > 0


def test_evaluate_and_evaluate_findings_accept_the_bundled_model_name(syn_cache, tmp_path, capsys):
    assert main(["evaluate-findings", "--checkpoint", "default", "--cache", syn_cache, "--split", "val"]) == 0
    out = capsys.readouterr()
    assert "checkpoint `default`" in out.out and "findings: 100%" in out.err  # progress bar on stderr
    assert main(["evaluate", "--checkpoint", "default", "--cache", syn_cache, "--split", "val", "--limit", "2",
                 "--out", str(tmp_path / "e"), "--no-baselines", "--metrics", "ce", "--bootstrap", "0",
                 "--permutations", "0", "--max-len", "5"]) == 0
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert m["n"] == 2
    # Without --beam the model decodes with its own default, as generate and serve do.
    from cxreport.inference.pipeline import resolve_model_path

    own = json.loads((resolve_model_path("default") / "config.json").read_text())["model"]["decoder"]["default_beam"]
    assert m["decoding"]["beams"] == own
