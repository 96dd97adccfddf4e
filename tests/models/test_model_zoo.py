import json

import pytest
import torch

from cxreport.config import from_dict, to_dict
from cxreport.errors import InputError
from cxreport.models import ModelConfig, create_model, list_models, model_config
from cxreport.models.registry import ENCODERS, PROJECTORS, DECODERS, _load_components

from tests.fixtures.tiny_models import TINY_OVERRIDES, TINY_SIZE, VOCAB, make_batch


def test_list_models_has_the_named_configs():
    assert {"tiny", "cnn-transformer", "effnet-transformer", "densenet-gpt2", "vit-gpt2"} <= set(list_models())
    assert set(TINY_OVERRIDES) == set(list_models()), "add tiny overrides for every new bundled config"


def test_registries_hold_the_components():
    _load_components()
    assert {"small-cnn", "efficientnet-lite0", "densenet121", "hf"} <= set(ENCODERS)
    assert {"linear", "mlp", "transformer"} <= set(PROJECTORS)
    assert {"transformer", "gpt2"} <= set(DECODERS)


@pytest.mark.parametrize("name", list_models())
def test_config_roundtrips_through_json(name, tmp_path):
    cfg = model_config(name)
    assert cfg.name == name
    again = from_dict(ModelConfig, json.loads(json.dumps(to_dict(cfg))))
    assert again == cfg
    path = tmp_path / "my-model.json"
    path.write_text(json.dumps(to_dict(cfg)))
    assert model_config(path) == cfg


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("views", [1, 2])
def test_every_model_trains_a_step_and_generates(name, views):
    torch.manual_seed(0)
    model = create_model(name, **VOCAB, **TINY_OVERRIDES[name])
    batch = make_batch(views=views, size=TINY_SIZE.get(name, 64))
    out = model(batch)
    assert set(out) >= {"loss", "lm_loss", "finding_loss", "finding_logits"}
    assert out["finding_logits"].shape == (2, 14)
    assert torch.isfinite(out["loss"]) and out["lm_loss"] > 0 and out["finding_loss"] > 0
    out["loss"].backward()
    grads = [p.grad for p in model.decoder.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert any(p.grad is not None for p in model.encoder.parameters())
    gen = model.generate(images=batch["images"], image_mask=batch["image_mask"], view_ids=batch["view_ids"],
                         max_len=5)
    assert len(gen) == 2
    for g in gen:
        assert len(g["token_ids"]) <= 5 and all(0 <= t < 50 for t in g["token_ids"])
        assert set(g["finding_probs"]) == set(model.labels)


def test_unknown_names_and_keys_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="unknown model 'nope'"):
        model_config("nope")
    with pytest.raises(InputError, match="no such key"):
        model_config("tiny", decoder={"layerz": 2})
    with pytest.raises(InputError, match="not found"):
        model_config(tmp_path / "missing.json")
    with pytest.raises(InputError, match="unknown encoder"):
        create_model("tiny", encoder={"name": "resnet-9000"})


def test_overrides_and_vocab_kwargs_reach_the_modules():
    model = create_model("tiny", vocab_size=77, pad_id=5, bos_id=6, eos_id=7, decoder={"layers": 1})
    assert model.decoder.vocab_size == 77 and model.decoder.eos_id == 7
    assert len(model.decoder.layers) == 1
    assert model.cfg.decoder.vocab_size == 77


@pytest.mark.parametrize("name", ["vit-gpt2", "effnet-transformer", "tiny"])
def test_checkpoint_rebuilds_from_the_resolved_config(name, tmp_path):
    from cxreport.models.report_model import build_model

    torch.manual_seed(0)
    model = create_model(name, **VOCAB, **TINY_OVERRIDES[name]).eval()
    saved = json.loads(json.dumps(to_dict(model.cfg)))  # what a checkpoint would store
    if name == "vit-gpt2":
        assert saved["encoder"]["hf_config"]["model_type"] == "vit"
        assert saved["decoder"]["hf_config"]["add_cross_attention"] is True
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    again = build_model(from_dict(ModelConfig, saved), pretrained=False).eval()
    again.load_state_dict(torch.load(path, weights_only=True), strict=True)
    batch = make_batch(views=2, size=TINY_SIZE.get(name, 64))
    with torch.no_grad():
        torch.testing.assert_close(again(batch)["loss"], model(batch)["loss"])


def test_models_command_lists_and_shows(capsys):
    import argparse

    from cxreport.cli import models as commands

    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["models", "list"])
    assert args.func(args) == 0
    assert "effnet-transformer" in capsys.readouterr().out.split()
    args = parser.parse_args(["models", "show", "tiny", "--set", "decoder.layers=1", "--params"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert '"layers": 1' in out and "parameters:" in out
