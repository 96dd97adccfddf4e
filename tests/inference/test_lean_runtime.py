"""The runtime without PyTorch (models/runtime): PyTorch's reports, states and probabilities, and
no torch import anywhere on the report path (CLI, Python API, service).

The comparisons need PyTorch and skip without it; the bundled-model and no-torch tests also run
in a torch-free install (``pip install "cxreport[infer]"``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from cxreport.errors import InputError
from cxreport.inference import default_model_dir
from cxreport.inference.backend import differences

pytest.importorskip("onnxruntime")
SRC = Path(__file__).resolve().parents[2] / "src"


def _bundled() -> Path:
    if not (default_model_dir() / "model.safetensors").is_file():
        pytest.skip("no bundled default model in this checkout")
    return default_model_dir()


@pytest.fixture(scope="module")
def lean_ckpt(request, tmp_path_factory) -> Path:
    """A copy of the tiny checkpoint (small CNN, attention head, image tokens in the decoder's
    memory) with its encoder graph in lean/."""
    pytest.importorskip("torch")
    from cxreport.checkpoint import write_lean_graphs

    folder = tmp_path_factory.mktemp("lean") / "best"
    shutil.copytree(request.getfixturevalue("tiny_run") / "best", folder)
    write_lean_graphs(folder)
    return folder


def _assert_same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        assert not differences(x, y), (i, differences(x, y))


def test_tiny_model_writes_pytorchs_reports(lean_ckpt, xrays):
    from cxreport.inference import load_model

    torch_p, lean_p = load_model(lean_ckpt, runtime="torch"), load_model(lean_ckpt, runtime="lean")
    assert (torch_p.runtime, lean_p.runtime) == ("torch", "lean")
    assert lean_p.describe() == {**torch_p.describe(), "runtime": "lean"}
    studies = [[xrays["cardio"]], {"images": [xrays["effusion"], xrays["both"]], "views": ["PA", "LL"]},
               {"images": [xrays["both"]], "findings": {"Pleural Effusion": "positive", "Cardiomegaly": "negative"}}]
    for opts in ({}, {"beam": 1}, {"beam": 3, "regions": True}, {"threshold": 0.3, "faithful": False}):
        _assert_same(torch_p.generate_batch(studies, **opts), lean_p.generate_batch(studies, **opts))


def test_tiny_model_generate_outputs_match(lean_ckpt, xrays):
    import torch

    from cxreport.inference import load_model

    torch_p, lean_p = load_model(lean_ckpt, runtime="torch"), load_model(lean_ckpt, runtime="lean")
    prepared = [lean_p.prepare([xrays["cardio"], xrays["effusion"]]), lean_p.prepare([xrays["both"]])]
    arrays = lean_p.collate(prepared)
    tensors = torch_p.collate(prepared)
    for t, a in zip(tensors, arrays):  # the NumPy batch is the collate's, bit for bit
        np.testing.assert_array_equal(t.numpy(), a)
    plan = {"Cardiomegaly": "positive", "Pleural Effusion": "uncertain"}
    for kw in ({"num_beams": 3, "num_return": 3}, {"num_beams": 1, "findings": [plan, None]},
               {"num_beams": 2, "overrides": plan, "population": ["adult", None]}):
        with torch.no_grad():
            want = torch_p.model.generate(*tensors, max_len=30, **kw)
        got = lean_p.model.generate(*arrays, max_len=30, **kw)
        for w, g in zip(want, got):
            assert g["token_ids"] == w["token_ids"] and abs(g["score"] - w["score"]) < 1e-4
            assert [c["token_ids"] for c in g.get("candidates", [])] == [c["token_ids"] for c in w.get("candidates", [])]
            assert (g["finding_states"], g["finding_plan"], g["population"]) == \
                (w["finding_states"], w["finding_plan"], w["population"])
            assert max(abs(g["finding_probs"][k] - w["finding_probs"][k]) for k in w["finding_probs"]) < 1e-4
    # A plan alone, no images (text-only conditioning): the same report.
    with torch.no_grad():
        want = torch_p.model.generate(None, findings=[plan], max_len=30)
    assert lean_p.model.generate(None, findings=[plan], max_len=30)[0]["token_ids"] == want[0]["token_ids"]


ARCHITECTURES = {
    # EfficientNet, ClipCap transformer mapper, attention head, image tokens in the decoder's memory.
    "effnet-small": dict(d_model=48, projector={"num_prefix": 4, "heads": 2}, preprocess={"image_size": 64},
                         decoder={"d_model": 48, "layers": 1, "heads": 2}),
    # MLP projector, pooled head on frontal films only, no finding tokens, no view embedding.
    "cnn-transformer": dict(d_model=32, encoder={"channels": [8, 16]}, projector={"name": "mlp"},
                            decoder={"d_model": 32, "layers": 2, "heads": 2}, preprocess={"image_size": 64},
                            findings={"head": "pooled", "condition": False},
                            views={"view_embedding": False, "head_views": "frontal"}),
    # A population with a head of its own (`cxreport adapt`): its studies read through it.
    "tiny": dict(findings={"populations": {"site": {"own_head": True}}}),
}


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_other_architectures_decode_pytorchs_tokens(name, tmp_path):
    torch = pytest.importorskip("torch")
    from cxreport.checkpoint import load_checkpoint, save_checkpoint, write_lean_graphs
    from cxreport.models import create_model
    from cxreport.models.runtime.graphs import find_graphs
    from cxreport.models.runtime.model import LeanModel

    torch.manual_seed(0)
    model = create_model(name, vocab_size=40, pad_id=0, bos_id=1, eos_id=2, pretrained=False,
                         **ARCHITECTURES[name]).eval()
    ckpt = save_checkpoint(tmp_path / "ckpt", model, half=True)  # fp16 on disk, as the bundle
    model = load_checkpoint(ckpt)[0].eval()
    write_lean_graphs(ckpt)
    lean = LeanModel.load(ckpt, model.cfg, find_graphs(ckpt, model.cfg))
    assert lean.num_parameters() == sum(p.numel() for p in model.parameters())
    x = torch.rand(2, 2, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    mask, views = torch.tensor([[True, True], [True, False]]), torch.tensor([[0, 1], [1, 2]])
    kw = dict(num_beams=2, num_return=2, max_len=12, no_repeat_ngram=2, population=["site", None])
    with torch.no_grad():
        want = model.generate(x, mask, views, **kw)
    got = lean.generate(x.numpy(), mask.numpy(), views.numpy(), **kw)
    for w, g in zip(want, got):
        assert [c["token_ids"] for c in g["candidates"]] == [c["token_ids"] for c in w["candidates"]]
        assert abs(g["score"] - w["score"]) < 1e-4 and g["finding_plan"] == w["finding_plan"]
        assert (g["model_plan"], g["population"]) == (w["model_plan"], w["population"])
        if w["finding_probs"] is not None:
            assert max(abs(g["finding_probs"][k] - w["finding_probs"][k]) for k in w["finding_probs"]) < 1e-4


def test_bundled_model_same_reports_on_both_runtimes(xrays):
    pytest.importorskip("torch")
    from cxreport.examples import example_studies
    from cxreport.inference import load_model

    _bundled()
    lean_p = load_model(runtime="auto")
    assert lean_p.runtime == "lean"  # the bundle ships its encoder graph
    for runtime in ("torch", "onnxruntime"):
        other = load_model(runtime=runtime)
        studies = [{"images": s["images"], "views": s["views"]} for s in example_studies()]
        _assert_same(other.generate_batch(studies), lean_p.generate_batch(studies))
        gates = lean_p.gate, other.gate
        lean_p.gate = other.gate = None  # drawn films are no radiographs: read them anyway
        try:
            drawn = [[xrays["cardio"]], [xrays["effusion"], xrays["both"]]]
            _assert_same(other.generate_batch(drawn, beam=3), lean_p.generate_batch(drawn, beam=3))
        finally:
            lean_p.gate, other.gate = gates


def test_bundle_ships_its_graph_within_budget():
    from cxreport.checkpoint import read_config
    from cxreport.config import from_dict
    from cxreport.models.config import ModelConfig
    from cxreport.models.runtime.graphs import LEAN_DIR, find_graphs

    folder = _bundled()
    cfg = from_dict(ModelConfig, read_config(folder)["model"])
    # A re-fitted bundle of another architecture must be re-exported (`cxreport bundle` does).
    assert find_graphs(folder, cfg) == folder / LEAN_DIR
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size < 25 * 2**20 and (folder / LEAN_DIR / "encoder.onnx").stat().st_size < 2**20


def test_runtime_choice(lean_ckpt, request, tmp_path, monkeypatch, caplog):
    from cxreport.inference import load_model

    tiny_run = request.getfixturevalue("tiny_run")  # after lean_ckpt, which skips without torch

    monkeypatch.setenv("CXREPORT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CXREPORT_RUNTIME", raising=False)
    assert load_model(lean_ckpt).runtime == "lean"
    with caplog.at_level("WARNING", logger="cxreport.inference"):
        assert load_model(tiny_run).runtime == "torch"  # no graph: PyTorch, with a one-line notice
    assert "running in PyTorch" in caplog.text and "cxreport models lean" in caplog.text
    monkeypatch.setenv("CXREPORT_RUNTIME", "torch")
    assert load_model(lean_ckpt).runtime == "torch"
    # Asked for explicitly, lean exports the graph into the cache once; then auto finds it there.
    assert load_model(tiny_run, runtime="lean").runtime == "lean"
    assert list((tmp_path / "cache" / "lean").glob("*/manifest.json"))
    assert load_model(tiny_run, runtime="auto").runtime == "lean"
    with pytest.raises(InputError, match="choose one of auto, lean, torch, onnxruntime"):
        load_model(lean_ckpt, runtime="tensorrt")
    with pytest.raises(InputError, match="CPU only"):
        load_model(lean_ckpt, runtime="lean", device="cuda")


def test_unsupported_architectures_say_why():
    from cxreport.models.registry import model_config
    from cxreport.models.runtime.graphs import unsupported

    assert unsupported(model_config("effnet-small")) == [] and unsupported(model_config("tiny")) == []
    why = " ".join(unsupported(model_config("vit-gpt2")))
    assert "encoder 'hf'" in why and "decoder 'gpt2'" in why


def test_heatmaps_under_lean_load_pytorch_for_gradcam(lean_ckpt, xrays):
    pytest.importorskip("torch")
    from cxreport.inference import load_model

    want = load_model(lean_ckpt, runtime="torch").generate([xrays["both"]], heatmaps=True)
    got = load_model(lean_ckpt, runtime="lean").generate([xrays["both"]], heatmaps=True)
    assert [h["finding"] for h in got["heatmaps"]] == [h["finding"] for h in want["heatmaps"]]
    for g, w in zip(got["heatmaps"], want["heatmaps"]):
        assert np.abs(g["overlay"].astype(int) - w["overlay"].astype(int)).max() <= 1


NO_TORCH = """
import sys
for name in ("torch", "transformers", "onnx"):
    sys.modules[name] = None  # any import of them fails
import io, json, contextlib
from pathlib import Path
from cxreport import load_model
from cxreport.cli import main
from cxreport.errors import InputError

args = json.loads(sys.argv[1])
film, out = args["film"], Path(args["out"])
for ckpt in [None] + args["ckpts"]:
    p = load_model(ckpt)
    assert p.runtime == "lean", p.runtime
    if p.gate is not None:
        p.gate = None  # a drawn film: read it anyway
    r = p.generate([film], findings={"Pleural Effusion": "positive"}, regions=True)
    assert r["report"] and r["regions"], r
    try:
        p.generate([film], heatmaps=True)
        raise AssertionError("heatmaps without torch")
    except InputError as exc:
        assert "cxreport[torch]" in str(exc)
runs = [["generate", "--example", "--json"],
        ["generate", "--example", "--regions", "--findings", "Pneumonia=positive"],
        ["generate", "--input-dir", str(out / "in"), "--output-dir", str(out / "reports"), "--json"]]
(out / "in").mkdir(parents=True)
import shutil
from cxreport.examples import example_studies
shutil.copy(example_studies()[0]["images"][0], out / "in" / "a.jpg")  # a real film: the gate reads it
import importlib.util
if importlib.util.find_spec("fhir") is not None:  # the interop outputs (cxreport[interop])
    runs.append(["generate", "--example", "--format", "fhir"])
if args.get("dicom"):
    runs.append(["generate", args["dicom"], "--format", "dicom-sr", "--output-dir", str(out / "sr")])
for argv in runs:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        assert main(argv) == 0, argv
assert json.loads((out / "reports" / "a.json").read_text())["report"]
try:
    from fastapi.testclient import TestClient
except ImportError:
    served = "no fastapi"
else:
    from cxreport.serve.app import ServeConfig, create_app
    with TestClient(create_app(load_model(), ServeConfig())) as client:
        path = example_studies()[0]["images"][0]
        resp = client.post("/v1/reports", files=[("images", ("a.jpg", open(path, "rb").read(), "image/jpeg"))])
        assert resp.status_code == 200 and resp.json()["report"], resp.text
        assert client.get("/v1/models").json()["models"][0]["runtime"] == "lean"
        resp = client.post("/v1/reports", files=[("images", ("a.jpg", open(path, "rb").read(), "image/jpeg"))],
                           data={"heatmaps": "true"})
        assert resp.status_code == 400 and "cxreport[torch]" in resp.json()["error"], resp.text
    served = "served"
if importlib.util.find_spec("pynetdicom") is not None:  # `cxreport dicom listen`: the service's modules
    import cxreport.interop.service, cxreport.interop.listener, cxreport.interop.sender  # noqa: E401
    from pynetdicom import AE  # noqa: F401  (the listener's network side)
bad = [m for m in ("torch", "transformers", "onnx") if sys.modules.get(m) is not None]
assert not bad, bad
print("NO TORCH", served)
"""


def test_report_path_never_imports_torch(request, xrays, tmp_path):
    """CLI (one study, --example, --json, --regions, --findings, a batch, FHIR and DICOM SR output
    where cxreport[interop] is installed), the Python API and the service, on the bundled model (and the tiny one where PyTorch can export its graph), in a
    process where importing torch, transformers or onnx fails."""
    _bundled()
    ckpts = []
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        ckpts.append(str(request.getfixturevalue("lean_ckpt")))
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "CXREPORT_CACHE": str(tmp_path / "cache")}
    env.pop("CXREPORT_RUNTIME", None)
    dicom = None
    if importlib.util.find_spec("highdicom") is not None:
        from cxreport.examples import example_studies
        from cxreport.interop.convert import image_to_dx

        dicom = str(tmp_path / "pa.dcm")  # a real film as a DX study: an SR needs DICOM input
        image_to_dx(example_studies()[0]["images"][0], Path(dicom), view_position="PA")
    arg = json.dumps({"film": str(xrays["both"]), "out": str(tmp_path / "run"), "ckpts": ckpts, "dicom": dicom})
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(NO_TORCH), arg], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "NO TORCH" in done.stdout
