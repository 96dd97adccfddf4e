"""`cxreport bundle`: one model folder from a decoder run's text side and a fitted head's image side.

The decoder reads only the finding plan (``findings.image_memory=false``), so the image side of a
head fitted later (``cxreport fit-head``: encoder settings, projector, view embedding, finding head,
calibration, populations) is grafted onto it unchanged, with the gate files fitted beside that
head. Weights are stored in fp16. Provenance names the runs and the committed configs (with the git
commit when known), never a folder of the machine it was built on. The package's own model
folder is written only with ``into_package``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path

from cxreport.errors import InputError

IMAGE_SIDE = ("encoder.", "projector.", "finding_head.", "view_embed.", "population_heads.")
HEAD_FIELDS = ("head", "calibration", "prior", "thresholds", "uncertain_thresholds", "train_positives", "train_negatives",
               "min_positives", "threshold", "populations")
MAX_BUNDLE_MB = 25


def guard_output(out, into_package: bool) -> Path:
    """``out``, refusing the installed package's weights folder unless ``into_package``."""
    from cxreport.inference.pipeline import PACKAGE_WEIGHTS

    out = Path(out)
    inside = Path(os.path.abspath(out)).is_relative_to(PACKAGE_WEIGHTS.resolve())
    if inside and not into_package:
        raise InputError(f"{out}: is inside the package's bundled models ({PACKAGE_WEIGHTS.name}/); writing there "
                         "replaces a shipped model. Choose another --out, or pass --into-package to do it on purpose")
    return out


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def portable(obj):
    """Provenance without machine paths: absolute paths become relative to the working folder
    when inside it, else just their last two parts."""
    if isinstance(obj, dict):
        return {k: portable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [portable(v) for v in obj]
    if isinstance(obj, str) and os.path.isabs(obj) and len(obj) > 1:
        p, cwd = Path(obj), Path.cwd()
        return str(p.relative_to(cwd)) if p.is_relative_to(cwd) else str(Path(*p.parts[-2:]))
    if isinstance(obj, float) and obj != obj:
        return None
    return obj


def bundle(decoder: str, head: str, out, *, default_beam: int | None = None, no_repeat_ngram: int | None = None,
           head_views: str = "frontal", card: str | None = None, configs: dict | None = None,
           into_package: bool = False) -> dict:
    """Write the model folder ``out``; returns {"out", "bundle_mb"}."""
    from cxreport.checkpoint import load_checkpoint, save_checkpoint, write_lean_graphs
    from cxreport.inference.gate import GATE_FILES
    from cxreport.models.report_model import build_model

    from cxreport.inference.pipeline import resolve_model_path

    out = guard_output(out, into_package)
    model, tok, dcfg = load_checkpoint(resolve_model_path(decoder))
    head = resolve_model_path(head)
    hmodel, _, hcfg = load_checkpoint(head)
    findings = dataclasses.replace(model.cfg.findings, **{k: getattr(hmodel.cfg.findings, k) for k in HEAD_FIELDS})
    # The head's encoder settings and input size come with its image side.
    mcfg = dataclasses.replace(model.cfg, encoder=hmodel.cfg.encoder, preprocess=hmodel.cfg.preprocess,
                               projector=hmodel.cfg.projector, findings=findings, views=hmodel.cfg.views)
    merged = build_model(mcfg, pretrained=False)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(IMAGE_SIDE)}
    state.update({k: v for k, v in hmodel.state_dict().items() if k.startswith(IMAGE_SIDE)})
    merged.load_state_dict(state, strict=True)
    merged.cfg.views.head_views = head_views
    if no_repeat_ngram is not None:
        merged.cfg.decoder.no_repeat_ngram = no_repeat_ngram
    if default_beam is not None:
        merged.cfg.decoder.default_beam = default_beam
    provenance = portable({"commit": git_commit(), "configs": configs or {}, "decoder_run": str(decoder),
                           "decoder_step": dcfg.get("step"), "decoder_run_config": dcfg.get("run"),
                           "head_run": str(head), "head_step": hcfg.get("step"),
                           "head_report": (hcfg.get("metrics") or {}).get("finding_head")})
    card_text = Path(card).read_text(encoding="utf-8") if card else None
    if card_text is None and (out / "MODEL_CARD.md").is_file():
        card_text = (out / "MODEL_CARD.md").read_text(encoding="utf-8")  # hand-written: survives a re-bundle
    saved = save_checkpoint(out, merged, tokenizer=tok, step=dcfg.get("step", 0), metrics=provenance, half=True)
    if card_text is not None:
        (saved / "MODEL_CARD.md").write_text(card_text, encoding="utf-8")
    for f in GATE_FILES:
        if (Path(head) / f).is_file():
            shutil.copyfile(Path(head) / f, saved / f)
    write_lean_graphs(saved)  # the encoder graph of the runtime without PyTorch (lean/, ~0.1 MB)
    size = sum(p.stat().st_size for p in saved.rglob("*") if p.is_file()) / 2**20
    result = {"out": str(saved), "bundle_mb": round(size, 2)}
    print(json.dumps(result, indent=1))
    if size > MAX_BUNDLE_MB:
        raise InputError(f"the bundle is {size:.1f} MB: over the {MAX_BUNDLE_MB} MB budget of a bundled model")
    return result
