"""The answer format every annotator must produce, and a validator that explains what is wrong
(the explanation goes back to the model when it is asked to try again)."""

from __future__ import annotations

import json
import re

from cxreport.text.regions import REGIONS

# JSON Schema of one answer; shipped to endpoints that accept ``response_format`` json_schema and
# written into the prompts so models see the exact keys.
REGION_SCHEMA = {
    "type": "object",
    "properties": {r: {"type": "string"} for r in REGIONS},
    "required": list(REGIONS),
    "additionalProperties": False,
}


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


def validate_regions(obj) -> dict[str, str]:
    """Check one decoded answer against :data:`REGION_SCHEMA`; ``null`` counts as an empty region."""
    if not isinstance(obj, dict):
        raise SchemaError(f"expected a JSON object with keys {', '.join(REGIONS)}, got {type(obj).__name__}")
    missing = [r for r in REGIONS if r not in obj]
    extra = [k for k in obj if k not in REGIONS]
    problems = []
    if missing:
        problems.append(f"missing key(s) {', '.join(missing)}")
    if extra:
        problems.append(f"unexpected key(s) {', '.join(map(str, extra))}")
    bad = [r for r in REGIONS if r in obj and obj[r] is not None and not isinstance(obj[r], str)]
    if bad:
        problems.append(f"value(s) of {', '.join(bad)} must be strings")
    if problems:
        raise SchemaError("; ".join(problems))
    return {r: " ".join((obj[r] or "").split()) for r in REGIONS}


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
