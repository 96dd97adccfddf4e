"""Models from the Hugging Face Hub (hf://OWNER/NAME[@REV]), offline, from a Hub cache written here.

`cxreport models export` writes the folder a user uploads; the test puts that folder into a Hub
cache in huggingface_hub's layout and reads it back through hf:// with HF_HUB_OFFLINE=1.
"""

import json

import pytest

from cxreport.cli import main
from cxreport.errors import InputError
from cxreport.hub import HubUnavailable
from tests.fixtures.hub_cache import add_snapshot, offline_cache


@pytest.fixture
def exported(tiny_run, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["models", "export", str(tiny_run), str(out)]) == 0
    assert "hf upload OWNER/NAME" in capsys.readouterr().out
    return out


@pytest.fixture
def hub(tmp_path, monkeypatch):
    return offline_cache(monkeypatch, tmp_path / "hub")


def test_export_writes_an_upload_ready_folder(exported, tiny_run, tmp_path):
    files = sorted(str(p.relative_to(exported)) for p in exported.rglob("*") if p.is_file())
    assert {"README.md", "config.json", "model.safetensors", "preprocessing.json"} <= set(files)
    assert any(f.startswith("tokenizer/") for f in files) and "trainer_state.pt" not in files
    readme = (exported / "README.md").read_text()
    assert readme.startswith("---\nlibrary_name: cxreport") and "hf://OWNER/NAME" in readme
    assert main(["models", "export", str(tiny_run), str(exported)]) == 2  # never overwrites


def test_load_model_from_the_hub_cache_offline(exported, hub, xrays):
    from cxreport import load_model

    snap = add_snapshot(hub, "someone/cxr-tiny", exported)
    pipe = load_model("hf://someone/cxr-tiny")
    out = pipe.generate([str(xrays["cardio"])])
    assert out["report"].strip() and len(out["findings"]) == 14
    assert pipe.name == f"hf://someone/cxr-tiny@{snap.name[:12]}"
    pinned = load_model(f"hf://someone/cxr-tiny@{snap.name}")  # a pinned revision reads the same snapshot
    assert pinned.generate([str(xrays["cardio"])])["report"] == out["report"]


def test_generate_cli_with_hf_model_offline(exported, hub, xrays, capsys):
    add_snapshot(hub, "someone/cxr-tiny", exported)
    assert main(["generate", str(xrays["cardio"]), "--model", "hf://someone/cxr-tiny", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["report"].strip()


def test_empty_cache_offline_says_what_to_download(hub, capsys):
    from cxreport.inference import resolve_model_path

    with pytest.raises(HubUnavailable, match=r"HF_HUB_OFFLINE=1 and it is not in the Hugging Face cache .*"
                                             r"`hf download someone/cxr-tiny`"):
        resolve_model_path("hf://someone/cxr-tiny")
    assert main(["evaluate-findings", "--model", "hf://someone/cxr-tiny", "--cache", "nowhere"]) == 2
    assert "hf://someone/cxr-tiny" in capsys.readouterr().err


def test_a_repository_that_is_not_a_cxreport_checkpoint_is_refused(hub, tmp_path):
    from cxreport.inference import resolve_model_path

    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "bert", "hidden_size": 8}')
    (other / "model.safetensors").write_bytes(b"not ours")
    add_snapshot(hub, "someone/bert", other)
    with pytest.raises(InputError, match="not a cxreport checkpoint"):
        resolve_model_path("hf://someone/bert")
    with pytest.raises(InputError, match="hf://OWNER/NAME"):
        resolve_model_path("hf://not a repo")
