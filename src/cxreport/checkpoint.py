"""Self-describing checkpoints: weights + resolved config + tokenizer + preprocessing, one folder.

    CKPT/model.safetensors    weights (no ``module.`` / ``_orig_mod.`` prefixes), loadable on CPU
    CKPT/config.json          {"model": ModelConfig, "run": RunConfig, "step", "metrics", "version"}
    CKPT/preprocessing.json   what the image pipeline must feed the model
    CKPT/tokenizer/           the tokenizer, saved by its own ``save``
    CKPT/trainer_state.pt     optimizer, scheduler, scaler, RNG and counters (only to resume)

A checkpoint is written to a temporary folder and renamed into place, so its final name always
holds a complete checkpoint, even after kill -9. ``CKPT/lean/`` (optional) holds the encoder graph
of the runtime without PyTorch (``models.runtime``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from cxreport import __version__
from cxreport.config import from_dict, to_dict
from cxreport.labels import VIEW_IDS
from cxreport.errors import InputError
from cxreport.fsio import atomic_write_json

# DDP wraps in ``module.``, torch.compile in ``_orig_mod.``: neither belongs in a portable file.
_PREFIX_RE = re.compile(r"(^|\.)(?:module|_orig_mod)\.")


def clean_state_dict(state: dict) -> dict:
    """Strip DDP / torch.compile prefixes and make tensors contiguous CPU copies."""
    out = {}
    for k, v in state.items():
        while _PREFIX_RE.search(k):
            k = _PREFIX_RE.sub(r"\1", k)
        out[k] = v.detach().to("cpu").contiguous()
    return out


def unwrap(model):
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or getattr(model, "_orig_mod")
    return model


def save_checkpoint(path, model, *, tokenizer=None, run_config=None, step: int = 0, metrics: dict | None = None,
                    trainer_state: dict | None = None, half: bool = False) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = unwrap(model)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        state = clean_state_dict(model.state_dict())
        if half:
            state = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
        # Tied embeddings share storage; safetensors refuses shared tensors, so store copies.
        seen, flat = set(), {}
        for k, v in state.items():
            ptr = v.untyped_storage().data_ptr()
            flat[k] = v.clone() if ptr in seen else v
            seen.add(ptr)
        save_file(flat, str(tmp / "model.safetensors"), metadata={"format": "pt", "cxreport": __version__})
        cfg = {"version": __version__, "model": to_dict(model.cfg), "step": step, "metrics": metrics or {},
               "run": to_dict(run_config) if run_config is not None else None}
        atomic_write_json(tmp / "config.json", cfg)
        atomic_write_json(tmp / "preprocessing.json", {
            "image_size": model.cfg.preprocess.image_size, "channels": 1, "range": [0.0, 1.0],
            "resize": "letterbox: longer side to image_size, centred on black", "flip": "never",
            "max_views": model.cfg.views.max_views, "view_ids": VIEW_IDS})
        if tokenizer is not None:
            tokenizer.save(tmp / "tokenizer")
        if trainer_state is not None:
            import torch

            torch.save(trainer_state, tmp / "trainer_state.pt")
        # mkdtemp makes 0700 and some writers 0600: a checkpoint (the bundled model included) must be
        # readable by every user of an installation.
        os.chmod(tmp, 0o755)
        for f in tmp.rglob("*"):
            os.chmod(f, 0o755 if f.is_dir() else 0o644)
        old = path.parent / f".{path.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def resolve_checkpoint(path) -> Path:
    """A checkpoint folder as given, a training run folder's ``best/``, or ``hf://OWNER/NAME[@REV]``."""
    from cxreport import hub

    if hub.is_hub_ref(str(path)):
        return fetch_hub_checkpoint(str(path))
    path = Path(path)
    for cand in (path, path / "best"):
        if (cand / "config.json").is_file() and (cand / "model.safetensors").is_file():
            return cand
    raise InputError(f"{path}: not a cxreport checkpoint or run folder (needs config.json + model.safetensors, "
                     "or best/ with them)")


def read_config(path) -> dict:
    path = Path(path)
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise InputError(f"{path}: not a cxreport checkpoint (needs config.json and model.safetensors)")
    return json.loads((path / "config.json").read_text())


def load_checkpoint(path, map_location="cpu", with_tokenizer: bool = True):
    """Return (model, tokenizer or None, config dict). Works on CPU for a GPU-trained checkpoint.
    Needs PyTorch (imported here, so reading a checkpoint's config and files does not)."""
    import torch
    from safetensors.torch import load_file

    from cxreport.models.config import ModelConfig
    from cxreport.models.report_model import build_model

    path = Path(path)
    cfg = read_config(path)
    # The weights come from the checkpoint: build the architecture only, fetch nothing.
    model = build_model(from_dict(ModelConfig, cfg["model"]), pretrained=False)
    state = load_file(str(path / "model.safetensors"), device=str(map_location))
    state = {k: v.float() if v.dtype == torch.float16 else v for k, v in clean_state_dict(state).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.endswith("num_batches_tracked")]:
        raise InputError(f"{path}: weights do not match the model config (missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]})")
    model.to(map_location)
    tok = None
    if with_tokenizer and (path / "tokenizer").is_dir():
        from cxreport.text.tokenizer import load_tokenizer

        tok = load_tokenizer(path / "tokenizer")
        from cxreport.models.decoding import resolve_decoding

        resolve_decoding(model, tok)
    return model, tok, cfg


# What inference needs: the files `export_checkpoint` writes and hf:// fetches (never trainer_state.pt).
HUB_FILES = ["config.json", "model.safetensors", "preprocessing.json", "tokenizer/*", "README.md", "MODEL_CARD.md",
             "lean/*"]


def _is_checkpoint_config(cfg) -> bool:
    return isinstance(cfg, dict) and isinstance(cfg.get("model"), dict) and "version" in cfg


def fetch_hub_checkpoint(ref: str) -> Path:
    """``hf://OWNER/NAME[@REVISION]`` as a local checkpoint folder in the Hugging Face cache.

    Its config.json is fetched and checked first, so a repository that is not a cxreport
    checkpoint is refused before any weights are downloaded. A pinned revision is read from the
    cache when there; ``main`` follows the Hub's rule (online: check for a newer one)."""
    from cxreport import hub

    repo, rev = hub.parse_hub_ref(ref)
    cfg_path = hub.hub_file(repo, "config.json", rev, what="model", cache_first=rev is not None, whole_repo=True)
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{ref}: its config.json is not readable JSON ({exc})") from exc
    if not _is_checkpoint_config(cfg):
        raise InputError(f"{ref}: not a cxreport checkpoint (its config.json has no cxreport 'model' and "
                         "'version'); publish one made by `cxreport models export CKPT DIR`")
    path = hub.snapshot(repo, rev, what="model", cache_first=rev is not None, allow_patterns=HUB_FILES)
    if not (path / "model.safetensors").is_file():
        raise InputError(f"{ref}: the repository has no model.safetensors; upload the folder written by "
                         "`cxreport models export`")
    return path


def _model_card(src: Path, cfg: dict) -> str:
    """README.md for the Hub: metadata the Hub reads, how to use the model, then the model card."""
    head = ("---\nlibrary_name: cxreport\npipeline_tag: image-to-text\n"
            "tags: [cxreport, radiology, chest-x-ray, report-generation]\n---\n\n")
    use = ("## Use\n\n```\npip install cxreport\ncxreport generate --model hf://OWNER/NAME frontal.png\n```\n\n"
           "Python: `cxreport.load_model('hf://OWNER/NAME')`. Offline (`HF_HUB_OFFLINE=1`) it is read from the "
           "Hugging Face cache. **Research software, not for clinical use.**\n\n")
    if (src / "MODEL_CARD.md").is_file():
        return head + use + (src / "MODEL_CARD.md").read_text(encoding="utf-8")
    model = cfg.get("model") or {}
    return head + f"# cxreport checkpoint\n\n" + use + (
        f"- cxreport version: {cfg.get('version')}\n- training step: {cfg.get('step')}\n"
        f"- encoder: {(model.get('encoder') or {}).get('name')}; decoder: {(model.get('decoder') or {}).get('name')}\n"
        f"- metrics recorded at save: {json.dumps(cfg.get('metrics') or {})}\n\n"
        "No model card was written for this checkpoint: say what it was trained on, how it was "
        "evaluated and where it fails before publishing it.\n")


def write_lean_graphs(checkpoint, to_cache: bool = False) -> Path:
    """Export a checkpoint folder's encoder graph for the runtime without PyTorch into its
    ``lean/`` folder (``to_cache``: into the cache every checkpoint of its architecture shares).
    Needs PyTorch and onnx, once."""
    from cxreport.errors import require
    from cxreport.models.runtime.export import export_graphs
    from cxreport.models.runtime.graphs import LEAN_DIR, cache_dir

    require("torch", "torch", "exporting the encoder graph of the runtime without PyTorch")
    checkpoint = resolve_checkpoint(checkpoint)
    model, _, _ = load_checkpoint(checkpoint, with_tokenizer=False)
    return export_graphs(model, cache_dir(model.cfg) if to_cache else checkpoint / LEAN_DIR)


def _add_lean_graphs(model, folder: Path) -> None:
    """``folder/lean/``: the encoder graph of the runtime without PyTorch, when it can run the model
    (and onnx is installed to write it); else the folder runs in PyTorch only."""
    import importlib.util

    from cxreport.models.runtime.graphs import LEAN_DIR, unsupported

    if not unsupported(model.cfg) and importlib.util.find_spec("onnx") is not None:
        from cxreport.models.runtime.export import export_graphs

        export_graphs(model, folder / LEAN_DIR)


def export_checkpoint(src, dest) -> Path:
    """Write ``dest``: the files a Hub repository needs (weights, config, tokenizer, preprocessing,
    README.md model card, ``lean/`` graph for the runtime without PyTorch), checked to load, without
    the optimiser state. Refuses to overwrite."""
    src, dest = resolve_checkpoint(src), Path(dest)
    cfg = read_config(src)
    if not (src / "tokenizer").is_dir():
        raise InputError(f"{src}: no tokenizer/ folder, so the exported model could not write text")
    if dest.exists() and any(dest.iterdir()):
        raise InputError(f"{dest}: exists and is not empty; choose a new folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        for name in ("model.safetensors", "config.json", "preprocessing.json", "MODEL_CARD.md"):
            if (src / name).is_file():
                shutil.copyfile(src / name, tmp / name)
        shutil.copytree(src / "tokenizer", tmp / "tokenizer")
        (tmp / "README.md").write_text(_model_card(src, cfg), encoding="utf-8")
        model, _, _ = load_checkpoint(tmp)  # what users will download must load
        _add_lean_graphs(model, tmp)
        os.chmod(tmp, 0o755)
        if dest.exists():
            dest.rmdir()
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
