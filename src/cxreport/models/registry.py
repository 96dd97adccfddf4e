"""Component registries and named model configs (``list_models`` / ``model_config``).

Components register with decorators, e.g. ``@register_encoder("small-cnn")``; each builder takes
its typed sub-config plus the explicit dimensions it needs. Names map to classes, never to code
strings, so a config file can only pick among what is registered here.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from cxreport.config import from_dict, to_dict
from cxreport.errors import InputError
from cxreport.registry import Registry


def _load_components() -> None:
    # Importing the modules runs their decorators; kept lazy so `import registry` stays cheap.
    from cxreport.models import decoders, densenet, efficientnet, encoders, hf_backbones  # noqa: F401
    from cxreport.models import hf_decoders, projectors  # noqa: F401


ENCODERS = Registry("encoder", _load_components)
PROJECTORS = Registry("projector", _load_components)
DECODERS = Registry("decoder", _load_components)
register_encoder = ENCODERS.register
register_projector = PROJECTORS.register
register_decoder = DECODERS.register


def _config_dir():
    return resources.files("cxreport.models") / "configs"


def list_models() -> list[str]:
    """Names of the bundled model configs (``create_model(name)`` builds each)."""
    return sorted(p.name[:-5] for p in _config_dir().iterdir() if p.name.endswith(".json"))


# Dict-valued fields whose keys are data (config kwargs, label names), not config sections.
_FREE_FORM = ("hf_config", "thresholds", "calibration", "prior", "uncertain_thresholds", "train_positives",
              "train_negatives", "populations")


def _deep_merge(base: dict, extra: dict, where: str = "") -> dict:
    out = dict(base)
    for key, value in extra.items():
        if key not in out:
            raise InputError(f"model override {where}{key!r}: no such key; valid keys: {sorted(out)}")
        if isinstance(value, dict) and isinstance(out[key], dict) and key not in _FREE_FORM:
            out[key] = _deep_merge(out[key], value, f"{where}{key}.")
        else:
            out[key] = value
    return out


def model_config(name_or_path: str | Path, **overrides):
    """Resolve a named config or a JSON file into a ``ModelConfig``; overrides are deep-merged.

    ``model_config("tiny", decoder={"layers": 1}, d_model=64)``. Unknown keys raise InputError.
    """
    from cxreport.models.config import ModelConfig

    text = None
    source = str(name_or_path)
    path = Path(name_or_path)
    if source.endswith(".json") or path.is_file():
        if not path.is_file():
            raise InputError(f"{path}: model config file not found")
        text = path.read_text()
    else:
        res = _config_dir() / f"{source}.json"
        if not res.is_file():
            raise InputError(
                f"unknown model {source!r}: pass one of {list_models()} or a path to a config .json"
            )
        text = res.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}: not valid JSON ({exc})") from exc
    base = to_dict(ModelConfig())
    merged = _deep_merge(base, data)
    merged = _deep_merge(merged, overrides)
    if not merged.get("name") or merged["name"] == "custom":
        merged["name"] = path.stem if path.suffix == ".json" else source
    return from_dict(ModelConfig, merged)
