"""The project's names for findings and views: the ground floor every layer may import."""

from __future__ import annotations

import json
import math
from pathlib import Path

from cxreport.errors import InputError

# The 14 CheXpert observations, in CheXpert's column order.
CHEXPERT_LABELS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)

# The state of each finding in a report plan: what the decoder is told and what the labeler reads
# back. "not_assessed": the model has no say on it (a finding its head never learned, or one left open).
FINDING_STATES = ("positive", "negative", "uncertain", "not_assessed")
# Other spellings accepted from users, manifests and older checkpoints.
STATE_ALIASES = {"unknown": "not_assessed", "not assessed": "not_assessed", "notassessed": "not_assessed",
                 "pos": "positive", "neg": "negative", "unc": "uncertain", "+": "positive", "-": "negative",
                 "?": "uncertain"}

FRONTAL_VIEWS = {"PA", "AP", "FRONTAL", "AP AXIAL", "PA LLD", "PA RLD", "AP LLD", "AP RLD", "XTABLE LATERAL_"}
LATERAL_VIEWS = {"LATERAL", "LL", "RL", "XTABLE LATERAL", "LAO", "RAO", "LPO"}


# Model view ids, shared by training (collate), inference and checkpoints' preprocessing.json.
VIEW_IDS = {"frontal": 0, "lateral": 1, "unknown": 2}


def view_group(view: str) -> str:
    """Map a dataset's view code to ``frontal``, ``lateral`` or ``unknown``."""
    v = (view or "").strip().upper()
    if v in LATERAL_VIEWS or "LAT" in v:
        return "lateral"
    if v in FRONTAL_VIEWS or v.startswith(("PA", "AP")):
        return "frontal"
    return "unknown"


def state_name(value) -> str:
    """A state as given (name, alias, 1/0/-1/None) -> one of FINDING_STATES, or an InputError."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "not_assessed"
    if isinstance(value, str):
        v = " ".join(value.strip().lower().replace("_", " ").split())
        v = STATE_ALIASES.get(v, v.replace(" ", "_"))
        if v in FINDING_STATES:
            return v
        raise InputError(f"finding state {value!r}: use one of {', '.join(FINDING_STATES)}")
    if not isinstance(value, bool) and value in (1, 0, -1):
        return {1: "positive", 0: "negative", -1: "uncertain"}[int(value)]
    raise InputError(f"finding state {value!r}: use one of {', '.join(FINDING_STATES)} (or 1/0/-1/null)")


def parse_findings(spec, labels=CHEXPERT_LABELS, where: str = "findings", allow_file: bool = True) -> dict[str, str]:
    """A user's finding plan -> {label: state}. ``spec``: a dict, a JSON object, a JSON file's path
    (only with ``allow_file``: never for text from the network), or "Pleural Effusion=positive,
    Pneumonia=negative". Label names match case-insensitively."""
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return {}
    if isinstance(spec, (str, Path)) and not isinstance(spec, dict):
        text = str(spec).strip()
        if allow_file and not text.startswith("{") and "=" not in text and text.lower().endswith(".json"):
            path = Path(text).expanduser()
            if not path.is_file():
                raise InputError(f"{where}: {path} not found (give a JSON file, a JSON object or "
                                 "'Finding=state,...')")
            text, where = path.read_text(encoding="utf-8"), str(path)
        if text.startswith("{"):
            try:
                spec = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: not valid JSON ({exc.msg}, char {exc.pos})") from None
        else:
            pairs = [p for p in text.replace(";", ",").split(",") if p.strip()]
            if any("=" not in p for p in pairs):
                raise InputError(f"{where}: {text!r}: write 'Finding=state,...', e.g. "
                                 "'Pleural Effusion=positive,Pneumonia=negative'")
            spec = dict(p.split("=", 1) for p in pairs)
    if not isinstance(spec, dict):
        raise InputError(f"{where}: give an object of finding -> state, not {type(spec).__name__}")
    by_lower = {name.lower(): name for name in labels}
    out = {}
    for key, value in spec.items():
        name = by_lower.get(" ".join(str(key).split()).lower())
        if name is None:
            raise InputError(f"{where}: unknown finding {key!r}; choose from {', '.join(labels)}")
        try:
            out[name] = state_name(value)
        except InputError as exc:
            raise InputError(f"{where}: {name}: {exc}") from None
    return out
