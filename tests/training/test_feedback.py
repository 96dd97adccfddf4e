"""Run configs fail before training starts; training reports each validation; resume keeps log.jsonl true."""

import json

import pytest

from cxreport.cli import main
from cxreport.config import save_config
from cxreport.errors import InputError
from cxreport.training.config import config_problems
from cxreport.training.curves import plot_curves
from cxreport.training.loop import Trainer, train
from tests.training.test_train import _cfg, syn_cache  # noqa: F401  (fixture)


@pytest.mark.parametrize("override, message", [
    ("train.schedule=cosinus", "train.schedule='cosinus': choose one of cosine, linear, constant"),
    ("train.metric=val_aurok", "train.metric='val_aurok': choose one of val_loss"),
    ("train.lr=-1", "train.lr=-1.0: must be > 0"),
    ("train.batch_size=0", "train.batch_size=0: must be >= 1"),
    ("train.precision=fp8", "train.precision='fp8'"),
    ("data.sources=[{\"cache\": \"/nope\"}]", "data.sources[0].cache='/nope': not a prepared cache"),
    ("model.name=tinny", "unknown model 'tinny'"),
    ("tokenizer.kind=bytes", "tokenizer.kind='bytes'"),
])
def test_bad_run_configs_fail_before_any_data_or_model(syn_cache, tmp_path, capsys, override, message):
    save_config(_cfg(syn_cache, tmp_path / "run"), tmp_path / "run.json")
    assert main(["train", "--config", str(tmp_path / "run.json"), "--set", override]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing was started


def test_every_problem_is_listed_at_once(syn_cache, tmp_path):
    cfg = _cfg(syn_cache, tmp_path / "run", lr=0.0, schedule="cosinus", min_lr_ratio=2.0)
    assert len(config_problems(cfg)) == 3
    cfg.data.sources[0].use = "findings"
    cfg.train.metric = "val_lm_loss"
    with pytest.raises(InputError, match="no source has report text"):
        Trainer(cfg)


def test_validation_lines_without_progress_bar(syn_cache, tmp_path, capsys):
    train(_cfg(syn_cache, tmp_path / "run", progress=False))
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("validation at step")]
    assert len(lines) == 2 and "val_loss" in lines[0] and "val_auroc" in lines[0] and "(new best)" in lines[0]


def test_findings_only_run_logs_and_plots_no_lm_loss(syn_cache, tmp_path):
    cfg = _cfg(syn_cache, tmp_path / "run", max_steps=4, metric="val_auroc")
    cfg.data.sources[0].use = "findings"
    train(cfg)
    evals = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines() if "val_loss" in x]
    assert evals and all("val_lm_loss" not in e and "val_finding_loss" in e for e in evals)
    assert (tmp_path / "run" / "curves.png").stat().st_size > 0
    plot_curves([{"step": 1, "val_loss": 1.0}], tmp_path / "text_only.png")  # no AUROC, no crash


def test_resume_after_kill_between_checkpoints_drops_stale_log_rows(syn_cache, tmp_path, monkeypatch):
    real = Trainer._log

    def killed_after_step6_row(self, row):
        real(self, row)
        if row["step"] == 6:
            raise KeyboardInterrupt  # like kill -9: the step-6 row is on disk, the last checkpoint is step 4

    monkeypatch.setattr(Trainer, "_log", killed_after_step6_row)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(syn_cache, tmp_path / "run"))
    monkeypatch.setattr(Trainer, "_log", real)
    train(_cfg(syn_cache, tmp_path / "run"))
    rows = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    keys = [(r["step"], "val_loss" in r) for r in rows]
    assert len(keys) == len(set(keys)) and (6, False) in keys and keys == sorted(keys)
