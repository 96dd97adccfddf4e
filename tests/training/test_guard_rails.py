"""Guard rails in every model `cxreport train` writes: its training positives per finding, a finding
without positives never called, strict JSON everywhere, validation AUROC that says n/a instead of
NaN, and early stopping that says where and why."""

import json
import math

import numpy as np
import pytest

from cxreport.checkpoint import load_checkpoint
from cxreport.errors import InputError
from cxreport.fsio import atomic_write_json, dumps_json
from cxreport.metrics.classification import auroc_by_label
from cxreport.models.finding_states import assessed, finding_states
from cxreport.training import label_counts
from cxreport.training.loop import Trainer, train
from tests.training.test_train import _cfg, syn_cache  # noqa: F401  (fixture)


def _strict(text: str):
    def refuse(const):
        raise ValueError(f"not JSON: {const}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def trained(syn_cache, tmp_path_factory):  # noqa: F811
    run = tmp_path_factory.mktemp("guard") / "run"
    cfg = _cfg(syn_cache, run, stage=1, max_steps=4, metric="val_auroc", patience=0)
    cfg.model.overrides = {"findings": {"min_positives": 0}}  # the floor must hold even at 0
    train(cfg)
    return run


def test_checkpoint_stores_training_positives_and_zero_is_never_called(trained, syn_cache):  # noqa: F811
    from cxreport.data.dataset import StudyDataset
    from cxreport.text.labeler import label_reports

    model, _, cfg = load_checkpoint(trained / "best")
    fc = model.cfg.findings
    # the counts are those of the labels the run trained with: the labeler's reading of the reports
    ds = StudyDataset(syn_cache, "train", label_fn=label_reports)
    y = np.stack(ds.labels)
    want = {n: int((y[:, j] == 1).sum()) for j, n in enumerate(model.labels)}
    negatives = {n: int((y[:, j] == 0).sum()) for j, n in enumerate(model.labels)}
    assert fc.train_positives == want and fc.train_negatives == negatives and fc.min_positives == 0
    assert want["Edema"] == 0 and want["Cardiomegaly"] > 0
    # reports never say "not normal": No Finding has positives only, and a head that saw no negative
    # of a finding would call it on every film
    assert want["No Finding"] > 0 and negatives["No Finding"] == 0
    ok = assessed(fc, model.labels)
    assert not ok["Edema"] and ok["Cardiomegaly"] and not ok["No Finding"]
    states = finding_states({n: 0.99 for n in model.labels}, fc, model.labels, override=0.0)
    assert states["Edema"] == "not_assessed" and states["Cardiomegaly"] == "positive"
    counts = _strict((trained / "label_counts.json").read_text())
    assert counts["train_positives"] == want and counts["val"]["Cardiomegaly"]["positive"] > 0


def test_generated_plans_never_call_a_finding_without_positives(trained, syn_cache):  # noqa: F811
    import torch

    from cxreport.data.cache import Cache
    from cxreport.data.dataset import Collate, StudyDataset

    model, tok, _ = load_checkpoint(trained / "best")
    model.eval()
    ds = StudyDataset(Cache(syn_cache), "val", tokenizer=tok)
    batch = Collate.for_model(model.cfg)([ds[i] for i in range(len(ds))])
    with torch.no_grad():
        outs = model.generate(batch["images"], batch["image_mask"], batch["view_ids"], max_len=5, threshold=0.0)
    never = [n for n, k in model.cfg.findings.train_positives.items() if k == 0]
    assert never and all(o["finding_plan"][n] == "not_assessed" for o in outs for n in never)


def test_log_checkpoint_and_run_files_are_strict_json(trained):
    for line in (trained / "log.jsonl").read_text().splitlines():
        _strict(line)
    for name in ("config.json", "label_counts.json", "best/config.json", "last/config.json"):
        _strict((trained / name).read_text())
    evals = [_strict(x) for x in (trained / "log.jsonl").read_text().splitlines() if "val_loss" in x]
    by = evals[-1]["val_auroc_by_finding"]
    assert by["Edema"] is None and isinstance(by["Cardiomegaly"], float)


def test_json_writers_turn_nan_into_null(tmp_path):
    atomic_write_json(tmp_path / "m.json", {"val_auroc": float("nan"), "x": [1.0, float("inf")], "ok": 0.5})
    assert _strict((tmp_path / "m.json").read_text()) == {"val_auroc": None, "x": [1.0, None], "ok": 0.5}
    assert dumps_json({"a": float("-inf")}) == '{"a": null}'


def test_validation_auroc_says_why_it_is_missing():
    labels = ["A", "B", "C", "D"]
    t = np.array([[1, 0, np.nan, 1], [0, 0, np.nan, 1], [1, 0, np.nan, 1]], dtype=float)
    p = np.array([[0.9, 0.1, 0.5, 0.2], [0.2, 0.3, 0.5, 0.4], [0.8, 0.2, 0.5, 0.6]])
    table = auroc_by_label(p, t, labels)
    assert table["per_label"]["A"]["auroc"] == 1.0 and table["macro_auroc"] == 1.0 and table["computable"] == 1
    assert [table["per_label"][n]["why"] for n in "BCD"] == ["no positives", "no labels", "no negatives"]
    line = label_counts.auroc_line(table)
    assert "A 1.000" in line and "n/a (no positives in val): B" in line and "n/a (no labels in val): C" in line
    assert "nan" not in line.lower()
    assert auroc_by_label(p[:, 1:2], t[:, 1:2], ["B"])["macro_auroc"] is None  # nothing to average: None, not NaN


def test_table_printed_before_training_with_warnings(syn_cache, tmp_path, capsys):  # noqa: F811
    cfg = _cfg(syn_cache, tmp_path / "run", stage=1, max_steps=2, eval_every=2)
    cfg.model.overrides = {"findings": {"min_positives": 10}}
    train(cfg)
    err = capsys.readouterr().err
    head, _, rest = err.partition("validation at step")
    assert "Labels per finding" in head and "train pos" in head and "val pos" in head
    assert "Support Devices" in head and "NOT ASSESSED (0 positives < 10)" in head
    assert "NOT ASSESSED (0 negatives < 10)" in head and "too few training negatives (< 10)" in head
    assert "warning:" in head and "fewer than findings.min_positives=10" in head
    assert "val AUROC per finding:" in rest and "n/a (no labels in val)" in rest


def test_early_stopping_says_where_and_why(syn_cache, tmp_path, capsys):  # noqa: F811
    t = Trainer(_cfg(syn_cache, tmp_path / "run", stage=1, max_steps=4, patience=1))
    capsys.readouterr()
    assert not t._after_eval({"val_loss": 1.0})
    t.step = 2
    assert t._after_eval({"val_loss": 1.5})
    err = capsys.readouterr().err
    assert "early stopping at step 2 (epoch 0): val_loss has not improved for 1 validation(s)" in err
    assert "best val_loss 1.0000 at step 0" in err and str(tmp_path / "run" / "best") in err


def test_auroc_metric_without_any_val_positive_fails_before_training(syn_cache, tmp_path):  # noqa: F811
    cfg = _cfg(syn_cache, tmp_path / "run", stage=1, max_steps=2, metric="val_auroc")
    cfg.data.label_reports = False  # csv reports without label columns: no labels at all
    with pytest.raises(InputError, match="train.metric=val_auroc: no finding has both positive and negative"):
        Trainer(cfg)


def test_init_from_keeps_the_larger_count(trained, syn_cache, tmp_path):  # noqa: F811
    cfg = _cfg(syn_cache, tmp_path / "text", stage=1, max_steps=2, init_from=str(trained / "best"))
    cfg.data.sources[0].use = "text"  # no film: the head is not trained here, it keeps what it saw
    cfg.model.overrides = {"findings": {"min_positives": 0}}
    train(cfg)
    before = load_checkpoint(trained / "best")[0].cfg.findings
    after = load_checkpoint(tmp_path / "text" / "best")[0].cfg.findings
    assert after.train_positives == before.train_positives and not math.isnan(sum(after.train_positives.values()))
    assert after.train_negatives == before.train_negatives


def test_counts_without_negatives_leave_positives_to_decide():
    from cxreport.models.config import FindingsConfig

    labels = ["A", "B"]
    fc = FindingsConfig(labels=labels, train_positives={"A": 40, "B": 40}, min_positives=30)
    assert assessed(fc, labels) == {"A": True, "B": True}  # a head whose negatives were never counted
    fc.train_negatives = {"A": 500, "B": 3}
    assert assessed(fc, labels) == {"A": True, "B": False}
    counts = {"A": {"positive": 5, "negative": 9, "uncertain": 2, "unknown": 0}}
    assert label_counts.class_counts(counts, ["A"], "ignore") == ({"A": 5}, {"A": 9})
    assert label_counts.class_counts(counts, ["A"], "negative", ({"A": 50}, {"A": 1})) == ({"A": 50}, {"A": 11})
