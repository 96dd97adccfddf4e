import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from cxreport.checkpoint import load_checkpoint, save_checkpoint
from cxreport.cli import main
from cxreport.config import load_config, save_config
from cxreport.data.cache import prepare_cache
from cxreport.models import create_model
from cxreport.training.config import DataConfig, LoopConfig, ModelSection, RunConfig, SourceConfig
from cxreport.training.loop import Trainer, train
from tests.fixtures.synthetic_cxr import make_synthetic_cxr


@pytest.fixture(scope="module")
def syn_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    make_synthetic_cxr(root / "data", n=64, n_test=8)
    return str(prepare_cache("csv", root / "data", root / "cache", size=64, workers=1))


def _cfg(cache, out, **loop):
    base = dict(stage=2, max_steps=8, batch_size=8, lr=1e-3, encoder_lr=1e-3, warmup_steps=2, eval_every=4,
                patience=0, progress=False, log_every=2)
    return RunConfig(out_dir=str(out), data=DataConfig(sources=[SourceConfig(cache=cache)], max_tokens=30),
                     model=ModelSection(name="tiny"), train=LoopConfig(**{**base, **loop}))


def _params(path):
    model, _, _ = load_checkpoint(path)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_resume_after_crash_is_exact(syn_cache, tmp_path, monkeypatch):
    train(_cfg(syn_cache, tmp_path / "a"))
    want = _params(tmp_path / "a" / "last")

    real = Trainer._after_eval

    def crash_after_first_checkpoint(self, metrics):
        real(self, metrics)
        raise KeyboardInterrupt  # like kill -9 right after the step-4 checkpoint

    monkeypatch.setattr(Trainer, "_after_eval", crash_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(syn_cache, tmp_path / "b"))
    monkeypatch.setattr(Trainer, "_after_eval", real)
    torch.manual_seed(1234)  # a fresh process has other RNG state; resume must restore it
    assert train(_cfg(syn_cache, tmp_path / "b"))["step"] == 8
    got = _params(tmp_path / "b" / "last")
    assert all(torch.equal(want[k], got[k]) for k in want)
    steps = [json.loads(x)["step"] for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)


def test_stage1_freezes_encoder_then_stage2_finetunes(syn_cache, tmp_path):
    train(_cfg(syn_cache, tmp_path / "s1", stage=1, max_steps=4))
    init = _params(tmp_path / "s1" / "best")
    enc_keys = [k for k in init if k.startswith("encoder.") and init[k].is_floating_point()]
    assert enc_keys
    train(_cfg(syn_cache, tmp_path / "s2", stage=2, max_steps=4, init_from=str(tmp_path / "s1" / "best")))
    after = _params(tmp_path / "s2" / "best")
    assert any(not torch.equal(init[k], after[k]) for k in enc_keys)  # stage 2 moves the encoder
    cfg = json.loads((tmp_path / "s2" / "best" / "config.json").read_text())
    assert cfg["run"]["train"]["stage"] == 2 and cfg["model"]["name"] == "tiny"


def test_stage1_encoder_weights_do_not_change(syn_cache, tmp_path):
    t = Trainer(_cfg(syn_cache, tmp_path / "f", stage=1, max_steps=3))
    before = {k: v.clone() for k, v in t.model.encoder.state_dict().items()}
    t.fit()
    assert all(torch.equal(before[k], v) for k, v in t.model.encoder.state_dict().items())


def test_checkpoint_is_self_describing_and_prefix_free(tmp_path):
    m = create_model("tiny", vocab_size=20)
    wrapped = torch.nn.Module()
    wrapped.module = m  # what DDP looks like from outside
    save_checkpoint(tmp_path / "ck", wrapped, half=True)
    from safetensors.torch import load_file

    keys = load_file(str(tmp_path / "ck" / "model.safetensors")).keys()
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in keys)
    loaded, tok, cfg = load_checkpoint(tmp_path / "ck", map_location="cpu")
    assert tok is None and cfg["model"]["decoder"]["vocab_size"] == 20
    assert json.loads((tmp_path / "ck" / "preprocessing.json").read_text())["flip"] == "never"


def test_cli_train_with_set_overrides(syn_cache, tmp_path):
    save_config(_cfg(syn_cache, tmp_path / "unused"), tmp_path / "run.json")
    rc = main(["train", "--config", str(tmp_path / "run.json"), "--set", "train.max_steps=2",
               "--set", "train.lr=5e-4", "--out-dir", str(tmp_path / "run")])
    assert rc == 0
    saved = load_config(RunConfig, tmp_path / "run" / "config.json")
    assert saved.train.max_steps == 2 and saved.train.lr == 5e-4
    assert main(["train", "--config", str(tmp_path / "run.json"), "--set", "train.lrr=1"]) == 2


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, cache, out, result_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    t = Trainer(_cfg(cache, out, max_steps=3, eval_every=3))
    t.fit()
    flat = torch.cat([p.detach().flatten() for p in t.model.parameters()])
    torch.save(flat, os.path.join(result_dir, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


def test_ddp_two_cpu_processes_keep_parameters_identical(syn_cache, tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), syn_cache, str(tmp_path / "run"), str(tmp_path)), nprocs=2)
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert torch.equal(a, b)
    assert (tmp_path / "run" / "last" / "model.safetensors").is_file()
    evals = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines() if "val_auroc" in x]
    assert evals and all(e["val_auroc"] == e["val_auroc"] for e in evals)  # gathered from both ranks, not NaN


def test_stage1_feature_cache_matches_uncached(syn_cache, tmp_path):
    from cxreport.data.dataset import Collate, StudyDataset
    from cxreport.training.feature_cache import enable_feature_cache

    model = create_model("tiny", vocab_size=30).eval()
    batch = Collate(image_size=64)([StudyDataset(syn_cache, "train")[i] for i in range(4)])
    x = batch["images"][:, 0]
    want = model.encoder(x)
    store = enable_feature_cache(model.encoder, dtype=torch.float32)
    first, again = model.encoder(x), model.encoder(x)
    assert len(store) == 4 and torch.allclose(first.tokens, want.tokens) and torch.equal(first.tokens, again.tokens)
    cfg = _cfg(syn_cache, tmp_path / "fc", stage=1, max_steps=3, cache_features=True)
    cfg.data.augment = False
    assert train(cfg)["step"] == 3


def test_checkpoint_files_are_world_readable(tmp_path):
    save_checkpoint(tmp_path / "ck", create_model("tiny", vocab_size=20))
    for f in (tmp_path / "ck").rglob("*"):
        assert f.stat().st_mode & 0o004, f
