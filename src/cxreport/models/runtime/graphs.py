"""The image encoder's ONNX graph without weights, and the ONNX Runtime session that runs it.

``models export`` and bundling write ``CKPT/lean/encoder.onnx`` + ``CKPT/lean/manifest.json``
(``models.runtime.export``, which needs PyTorch once). The graph holds the network's structure
and no weights: every parameter is an initializer marked external, and the session takes its
values from the checkpoint's own model.safetensors (``SessionOptions.add_external_initializers``),
so a folder ships ~0.1 MB of graph beside its weights instead of a second 14 MB copy, and a
re-fitted checkpoint of the same architecture runs on the same graph.

A graph depends on the encoder's architecture, never on its weights: its key hashes the
encoder's config section, the input size and this module's ``FORMAT``, and a checkpoint without
its own ``lean/`` folder finds graphs exported earlier in the cache
(``$CXREPORT_CACHE`` or ``~/.cache/cxreport``, under ``lean/<key>``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from cxreport.errors import InputError

LEAN_DIR = "lean"
MANIFEST = "manifest.json"
# Bump when the exported network or what the runtime expects of it changes.
FORMAT = 1
INSTALL = 'pip install "cxreport[infer]"  (onnxruntime + numpy, no PyTorch)'
# Encoder settings that shape the graph (weights, freezing and drop-path do not).
_ARCH_FIELDS = ("name", "channels", "hf_model", "hf_config", "pool", "norm")
ENCODERS = ("efficientnet-lite0", "small-cnn", "densenet121")
PROJECTORS = ("linear", "mlp", "pool", "transformer")
# Films per ONNX Runtime call: the encoder's activations at 320 px take ~35 MB per film, and the
# runtime's memory arena keeps its largest call's worth for the life of the process. Small calls
# are also faster per film (32 films at one thread, median of 5 alternated rounds on busy cores:
# 20.9 / 21.5 / 24.0 / 27.5 ms per film at 1 / 2 / 4 / 8 per call).
ENCODER_CHUNK = 2


def unsupported(cfg) -> list[str]:
    """Why a model config cannot run without PyTorch (empty: it can)."""
    why = []
    if cfg.encoder.name not in ENCODERS:
        why.append(f"encoder {cfg.encoder.name!r} (the runtime without PyTorch runs {', '.join(ENCODERS)})")
    if cfg.projector.name not in PROJECTORS:
        why.append(f"projector {cfg.projector.name!r} (it runs {', '.join(PROJECTORS)})")
    if cfg.decoder.name != "transformer":
        why.append(f"decoder {cfg.decoder.name!r} (it runs cxreport's own transformer decoder)")
    if cfg.findings.head not in ("attention", "pooled"):
        why.append(f"finding head {cfg.findings.head!r}")
    return why


def architecture_key(cfg) -> str:
    """Which graph fits a model config: a hash of what shapes the encoder's network."""
    enc = dataclasses.asdict(cfg.encoder)
    spec = {"format": FORMAT, "encoder": {k: enc.get(k) for k in _ARCH_FIELDS},
            "image_size": int(cfg.preprocess.image_size)}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def cache_root() -> Path:
    env = os.environ.get("CXREPORT_CACHE", "").strip()
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache"
    return Path(base) / "cxreport"


def cache_dir(cfg) -> Path:
    return cache_root() / LEAN_DIR / architecture_key(cfg)


def read_manifest(folder: Path) -> dict | None:
    f = Path(folder) / MANIFEST
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def find_graphs(checkpoint: Path, cfg) -> Path | None:
    """The folder with graphs for this checkpoint: its own ``lean/``, else the cache; None when
    neither holds graphs of this architecture and format."""
    key = architecture_key(cfg)
    for folder in (Path(checkpoint) / LEAN_DIR, cache_dir(cfg)):
        man = read_manifest(folder)
        if man and man.get("format") == FORMAT and man.get("architecture") == key \
                and (folder / man["encoder"]["file"]).is_file():
            return folder
    return None


def ort_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


class EncoderSession:
    """The encoder's graph in ONNX Runtime with the checkpoint's weights: images N x 1 x S x S
    float32 in [0, 1] -> (tokens N x T x C, pooled N x C), ``chunk`` films per call."""

    def __init__(self, folder: Path, weights: dict[str, np.ndarray], threads: int = 1,
                 chunk: int = ENCODER_CHUNK, manifest: dict | None = None):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise InputError(f"the runtime without PyTorch needs ONNX Runtime: {INSTALL}") from exc
        self.folder, self.chunk = Path(folder), max(1, int(chunk))
        man = manifest or read_manifest(self.folder) or {}
        enc = man.get("encoder") or {}
        self.input, self.grid = enc.get("input", "images"), tuple(enc["grid"]) if enc.get("grid") else None
        names = list(enc.get("initializers", []))
        missing = [n for n in names if n not in weights]
        if missing:
            raise InputError(f"{self.folder}: the graph needs weights the checkpoint lacks ({missing[:3]}); "
                             "re-export it with `cxreport models lean CKPT`")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = max(1, int(threads)), 1
        opts.log_severity_level = 3
        # Idle pool threads sleep instead of spinning: the cores are shared with image decoding.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # ONNX Runtime copies these into the graph while the session is built; ours can go after.
        values = [ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(weights[n], dtype=np.float32))
                  for n in names]
        opts.add_external_initializers(names, values)
        try:
            self.session = ort.InferenceSession(str(self.folder / enc.get("file", "encoder.onnx")), opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # a graph of another architecture: shapes do not match
            raise InputError(f"{self.folder}: ONNX Runtime cannot build the encoder from this graph and "
                             f"checkpoint ({str(exc)[:300]}); re-export it with `cxreport models lean CKPT`") from exc
        del values

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(images, dtype=np.float32)
        parts = [self.session.run(None, {self.input: x[i:i + self.chunk]}) for i in range(0, len(x), self.chunk)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
