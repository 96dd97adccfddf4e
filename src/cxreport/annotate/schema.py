"""The answer format every annotator must produce, and a validator that explains what is wrong
(the explanation goes back to the model when it is asked to try again)."""

from __future__ import annotations

import json
import re

from cxreport.text.regions import REGIONS

# JSON Schema of one answer, sent with each request in schema mode (constrained decoding, see
# cxreport.annotate.llm). Never shown to the model as text: small models copy its keys back.
REGION_SCHEMA = {
    "type": "object",
    "properties": {r: {"type": "string"} for r in REGIONS},
    "required": list(REGIONS),
    "additionalProperties": False,
}


# What the retry message shows instead of the schema: an object of the right shape.
REGION_EXAMPLE = {"lung": "No pleural effusion.", "heart": "The heart is normal in size.",
                  "mediastinal": "", "bone": "Mild thoracic spondylosis.", "others": ""}


class SchemaError(ValueError):
    """A model answer that is not a valid region annotation (message says why)."""


_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*(.*?)\s*```\s*$", re.DOTALL)


def _first_object(text: str) -> str:
    """The first balanced ``{...}`` in ``text`` (models often wrap JSON in prose or fences)."""
    m = _FENCE.match(text)
    if m:
        text = m.group(1)
    start = text.find("{")
    if start < 0:
        raise SchemaError("no JSON object found in the answer")
    depth, in_str, esc = 0, False, False
    for i in range(start, len(text)):
        c = text[i]
        if in_str:
            esc = c == "\\" and not esc
            if c == '"' and not esc:
                in_str = False
            elif c != "\\":
                esc = False
            continue
        if c == '"':
            in_str = True
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start:i + 1]
    raise SchemaError("the JSON object in the answer is not closed (truncated answer?)")


def _as_text(value):
    """A region's value as text: ``null`` is empty, a list of strings is joined (small models list
    sentences); anything else is returned unchanged for the type check to reject."""
    if value is None:
        return ""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return " ".join(value)
    return value


def validate_regions(obj) -> dict[str, str]:
    """Check one decoded answer against :data:`REGION_SCHEMA`; ``null`` counts as an empty region and
    a list of strings is joined into one text."""
    if not isinstance(obj, dict):
        raise SchemaError(f"expected a JSON object with keys {', '.join(REGIONS)}, got {type(obj).__name__}")
    missing = [r for r in REGIONS if r not in obj]
    extra = [k for k in obj if k not in REGIONS]
    problems = []
    if missing:
        problems.append(f"missing key(s) {', '.join(missing)}")
    if extra:
        problems.append(f"unexpected key(s) {', '.join(map(str, extra))}")
    values = {r: _as_text(obj[r]) for r in REGIONS if r in obj}
    bad = [r for r, v in values.items() if not isinstance(v, str)]
    if bad:
        problems.append(f"value(s) of {', '.join(bad)} must be strings")
    if problems:
        raise SchemaError("; ".join(problems))
    return {r: " ".join(values[r].split()) for r in REGIONS}


def parse_regions(answer: str) -> dict[str, str]:
    """Decode and validate a model's answer text; :class:`SchemaError` when it is malformed."""
    if not answer or not answer.strip():
        raise SchemaError("empty answer")
    raw = _first_object(answer)
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"invalid JSON ({exc.msg} at character {exc.pos})") from exc
    return validate_regions(obj)
