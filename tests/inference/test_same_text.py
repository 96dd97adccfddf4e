"""`cxreport evaluate` and `cxreport generate` write the same report, byte for byte, for the same
checkpoint, study and decoding settings: both run inference.predict (one loop, one decode)."""

import json

import pytest

from cxreport.cli import main
from cxreport.data.cache import Cache
from cxreport.data.dataset import StudyDataset
from cxreport.fsio import read_jsonl
from cxreport.inference.evaluate import generate_reports
from cxreport.inference.pipeline import PreparedStudy, load_model


@pytest.mark.parametrize("beam", [1, 3])
def test_evaluate_and_generate_write_identical_text(tiny_run, tmp_path, beam):
    cache = Cache(tiny_run.parent / "cache")
    pipeline = load_model(tiny_run)
    ds = StudyDataset(cache, "val", max_views=pipeline.max_views, require="both")
    items = [ds[i] for i in range(len(ds))]
    assert len(items) >= 4
    # generate: the Pipeline's model step on the very films the cache holds
    prepared = [PreparedStudy(it["images"], list(it["view_ids"])) for it in items]
    # (without the coverage line generate adds for the findings the tiny run does not assess)
    generated = {it["study_id"]: r["report"]
                 for it, r in zip(items, pipeline.run(prepared, beam=beam, max_len=30, coverage_line=False))}
    # evaluate: the split loop, one batch as in generate
    rows = generate_reports(pipeline.model, pipeline.tokenizer, cache, "val", batch_size=len(items), beam=beam,
                            max_len=30, no_image="skip")
    evaluated = {r["id"]: r["text"] for r in rows}
    assert evaluated == generated
    assert any(t for t in generated.values())  # the tiny model writes something

    # and through the command: hyps.jsonl holds the same text
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(tiny_run), "--cache", str(cache.path), "--split", "val",
                 "--out", str(out), "--beam", str(beam), "--max-len", "30", "--batch-size", str(len(items)),
                 "--no-image", "skip", "--no-baselines", "--metrics", "bleu", "--bootstrap", "0",
                 "--permutations", "0"]) == 0
    hyps = {r["id"]: r["text"] for r in read_jsonl(out / "hyps.jsonl")}
    assert json.dumps(hyps, sort_keys=True) == json.dumps(generated, sort_keys=True)
