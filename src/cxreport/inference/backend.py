"""Which runtime runs a checkpoint: the one choice behind ``load_model(runtime=...)``,
``CXREPORT_RUNTIME`` and the CLI's ``--runtime``.

    lean         no PyTorch: the encoder in ONNX Runtime from the checkpoint's weightless graph,
                 the rest in NumPy (``models.runtime``); needs ``cxreport[infer]`` and the graphs
    torch        everything in PyTorch
    onnxruntime  the PyTorch model with its image encoder in ONNX Runtime (exported in memory)
    auto         (default) lean when the graphs and ONNX Runtime are there; else PyTorch, with
                 ONNX Runtime for the encoder when installed (``predict.for_inference``)

Both runtimes give the same reports (``benchmarks/bench_identity.py``). The graphs come with a
checkpoint folder (``lean/``: bundled models, ``models export``, ``models lean``) or from the
cache; ``lean`` asked for explicitly exports them into the cache once when PyTorch is installed.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

from cxreport.errors import InputError

log = logging.getLogger("cxreport.inference")
RUNTIMES = ("auto", "lean", "torch", "onnxruntime")
INSTALL_TORCH = "pip install 'cxreport[torch]'"


def choose_runtime(runtime: str | None = None, device: str = "cpu") -> str:
    """``runtime`` or ``CXREPORT_RUNTIME`` or auto, checked."""
    name = (runtime or os.environ.get("CXREPORT_RUNTIME") or "auto").strip().lower()
    if name not in RUNTIMES:
        raise InputError(f"runtime {name!r} (CXREPORT_RUNTIME / --runtime): choose one of {', '.join(RUNTIMES)}")
    if name == "lean" and str(device) != "cpu":
        raise InputError(f"the runtime without PyTorch runs on the CPU only; device {device!r} needs runtime torch")
    return name


def torch_available() -> bool:
    try:
        return importlib.util.find_spec("torch") is not None
    except ValueError:  # sys.modules["torch"] is None: deliberately blocked
        return False


def open_model(path: Path, runtime: str | None = None, device: str = "cpu"):
    """(model, tokenizer, checkpoint config dict) for a checkpoint folder; the model is a
    ``LeanModel`` or an inference-ready PyTorch ``ReportModel``."""
    name = choose_runtime(runtime, device)
    if name in ("torch", "onnxruntime") or str(device) != "cpu":
        return _torch(path, device, name)
    from cxreport.checkpoint import read_config
    from cxreport.config import from_dict
    from cxreport.models.config import ModelConfig
    from cxreport.models.runtime import graphs

    raw = read_config(path)
    cfg = from_dict(ModelConfig, raw["model"])
    why = graphs.unsupported(cfg)
    if not graphs.ort_available():
        why.append(f"ONNX Runtime is not installed ({graphs.INSTALL})")
    folder = graphs.find_graphs(path, cfg) if not why else None
    if folder is None and not why:
        if name == "lean" and torch_available():
            from cxreport.checkpoint import write_lean_graphs

            folder = write_lean_graphs(path, to_cache=True)
            log.info("exported the encoder graph of %s once, into %s", path, folder)
        else:
            why.append(f"no encoder graph in {path / graphs.LEAN_DIR} or the cache "
                       f"(`cxreport models lean {path}` writes it, with PyTorch installed)")
    if not why:
        return _lean(path, cfg, folder, raw)
    if name == "lean":
        raise InputError(f"{path} cannot run without PyTorch: " + "; ".join(why))
    if not torch_available():
        raise InputError(f"{path} needs PyTorch here ({'; '.join(why)}): {INSTALL_TORCH}")
    if graphs.ort_available() and not graphs.unsupported(cfg):
        log.warning("%s: running in PyTorch (%s)", path, why[-1])
    return _torch(path, device, "auto")


def _torch(path: Path, device: str, runtime: str):
    if not torch_available():
        raise InputError(f"runtime {runtime!r} needs PyTorch: {INSTALL_TORCH} (or use the runtime without it: "
                         "pip install 'cxreport[infer]', runtime lean)")
    from cxreport.checkpoint import load_checkpoint
    from cxreport.inference.predict import for_inference

    model, tok, cfg = load_checkpoint(path, map_location=device)
    for_inference(model, device, None if runtime == "auto" else runtime)
    return model, tok, cfg


def _lean(path: Path, cfg, folder: Path, raw: dict):
    from cxreport.inference.threads import model_threads
    from cxreport.models.decoding import resolve_decoding
    from cxreport.models.runtime.model import LeanModel

    model = LeanModel.load(path, cfg, folder, threads=model_threads(), version=str(path))
    tok = None
    if (path / "tokenizer").is_dir():
        from cxreport.text.tokenizer import load_tokenizer

        tok = load_tokenizer(path / "tokenizer")
        resolve_decoding(model, tok)
    return model, tok, raw


# ---- heatmaps: Grad-CAM needs PyTorch's gradients ---------------------------------------------------
def check_heatmaps() -> None:
    if not torch_available():
        raise InputError(f"heatmaps need PyTorch (Grad-CAM): {INSTALL_TORCH}; reports alone run without it")


def gradcam_inputs(pipeline, images, mask, view_ids) -> tuple:
    """(pipeline-like object with the PyTorch ``model``, images, mask, view_ids) for
    ``heatmaps.finding_heatmaps``: under the lean runtime the same checkpoint is loaded into
    PyTorch once, on the first heatmap request, and the NumPy batch becomes tensors."""
    if pipeline.runtime != "lean":
        return pipeline, images, mask, view_ids
    check_heatmaps()
    import torch

    if pipeline._heatmap_model is None:
        from types import SimpleNamespace

        from cxreport.checkpoint import load_checkpoint
        from cxreport.inference.predict import for_inference

        model, _, _ = load_checkpoint(pipeline.info.path, with_tokenizer=False)
        pipeline._heatmap_model = SimpleNamespace(model=for_inference(model, "cpu", "torch"), labels=pipeline.labels)
    return pipeline._heatmap_model, torch.from_numpy(images), torch.from_numpy(mask), torch.from_numpy(view_ids)


# ---- the contract between the runtimes ---------------------------------------------------------
# Calibrated probabilities may differ by 1e-4, the last decimal results keep: a difference of 1e-7
# can round to 0.0698 on one side and 0.0697 on the other. The gate's distance keeps 3 decimals.
PROB_TOL = 1e-4 + 1e-9
DIST_TOL = 1e-3 + 1e-9


def differences(a: dict, b: dict) -> list[str]:
    """How two results for the same study differ beyond what the runtimes may: report text,
    states, plan check, population, refusals and every other field must be equal; probabilities
    within ``PROB_TOL``; the gate's distances within ``DIST_TOL``; timings are free. Empty: same.
    Results may be typed (``inference.result``): they are compared as their JSON dicts."""
    a, b = (r.to_dict() if hasattr(r, "to_dict") else r for r in (a, b))
    out = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if k in ("timing_ms", "heatmaps"):
            continue
        if k == "findings" and isinstance(x, dict) and isinstance(y, dict) and x.keys() == y.keys():
            for name in x:
                fx, fy = dict(x[name]), dict(y[name])
                px, py = fx.pop("probability", None), fy.pop("probability", None)
                if fx != fy:
                    out.append(f"findings[{name}]: {fx} != {fy}")
                if (px is None) != (py is None) or (px is not None and abs(px - py) > PROB_TOL):
                    out.append(f"findings[{name}].probability: {px} vs {py}")
        elif k == "views" and isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
            for i, (vx, vy) in enumerate(zip(x, y)):
                vx, vy = dict(vx), dict(vy)
                dx, dy = vx.pop("ood_distance", None), vy.pop("ood_distance", None)
                if vx != vy or (dx is None) != (dy is None) or (dx is not None and abs(dx - dy) > DIST_TOL):
                    out.append(f"views[{i}]: {vx | {'ood_distance': dx}} != {vy | {'ood_distance': dy}}")
        elif x != y:
            out.append(f"{k}: {x!r} != {y!r}")
    return out
