"""What ``Pipeline.generate`` returns: a typed result per study, and its JSON (schema version 2).

    r = load_model().generate(["pa.png"])
    r.report, r.findings["Pleural Effusion"].state, r.not_assessed, r.warnings
    json.dumps(r.to_dict())

``StudyReport`` is a study that was read; ``StudyError`` a study that was not (an unreadable
file, bad finding states, or an image the input gate refused), as ``generate_batch(...,
on_error="record")`` and the batch command give them. Both keep read-only ``r["key"]`` access to
their JSON (schema 1 code reads ``out["report"]``), and ``r.ok`` tells them apart.

The JSON is documented in docs/report_schema.md; ``SCHEMA_VERSION`` changes whenever a key
changes meaning or goes away (adding a key does not change it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

SCHEMA_VERSION = "2"


class _JsonView(Mapping):
    """``obj["key"]``, ``"key" in obj``, ``dict(obj)``: a read-only view of ``to_dict()``."""

    def to_dict(self) -> dict:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __getitem__(self, key):
        return self.to_dict()[key]

    def __iter__(self):
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    __eq__ = object.__eq__  # a Mapping compares its items; results compare by identity
    __hash__ = object.__hash__


@dataclass(eq=False)
class Finding(_JsonView):
    """One finding of one study.

    ``state`` is what the report was written from (the model's call, or the user's edit);
    ``model_state`` is the model's own call, also after an edit. ``probability`` and
    ``threshold`` are the model's (for the study's population), None when the model did not
    assess the finding for this study."""

    name: str
    state: str
    model_state: str
    probability: float | None
    threshold: float | None
    set_by: str = "model"  # model | user | edit (changed by the user's edits: No Finding beside a positive)

    @property
    def assessed(self) -> bool:
        """The model assessed this finding on this study (enough training examples, a film it reads)."""
        return self.model_state != "not_assessed"

    @property
    def positive(self) -> bool | None:
        """The report states it (True), does not (False), or says nothing of it (None: not assessed)."""
        return None if self.state == "not_assessed" else self.state == "positive"

    def to_dict(self) -> dict:
        return {"state": self.state, "probability": self.probability, "positive": self.positive,
                "threshold": self.threshold, "assessed": self.assessed, "set_by": self.set_by,
                "model_state": self.model_state}


@dataclass(eq=False)
class Identity:
    """Which software and weights wrote a result, and the research-use disclaimer."""

    model: str
    model_sha256: str | None
    cxreport_version: str
    disclaimer: str

    def to_dict(self) -> dict:
        return {"model": self.model, "model_sha256": self.model_sha256, "cxreport_version": self.cxreport_version,
                "disclaimer": self.disclaimer}


@dataclass(eq=False)
class StudyReport(_JsonView):
    """A study the model read. ``views`` are dicts (index, view, view_from, source, height, width,
    used, turned_upright_degrees, greys_inverted, ood_distance); ``heatmaps`` (when asked for)
    dicts with an RGB ``overlay`` array."""

    report: str
    findings: dict[str, Finding]
    identity: Identity
    population: str | None = None
    views: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    plan_check: dict | None = None
    threshold: float | None = None  # the one threshold a caller set for every finding, else None
    input_check: str = "passed"  # passed | skipped (skip_gate) | none (a model without an input gate)
    timing_ms: dict = field(default_factory=dict)
    regions: dict | None = None
    heatmaps: list | None = None

    ok = True

    @property
    def not_assessed(self) -> list[str]:
        """Findings the report says nothing about: the model did not assess them for this study
        and no user set them (or a user set them not assessed)."""
        return [n for n, f in self.findings.items() if f.state == "not_assessed"]

    @property
    def positive(self) -> list[str]:
        return [n for n, f in self.findings.items() if f.state == "positive"]

    @property
    def edited(self) -> bool:
        """A user set the state of at least one finding."""
        return any(f.set_by == "user" for f in self.findings.values())

    # identity, flat as in the JSON
    model = property(lambda self: self.identity.model)
    model_sha256 = property(lambda self: self.identity.model_sha256)
    cxreport_version = property(lambda self: self.identity.cxreport_version)
    disclaimer = property(lambda self: self.identity.disclaimer)

    def to_dict(self) -> dict:
        """The JSON of docs/report_schema.md (``heatmaps`` keep their ``overlay`` arrays: the CLI
        writes them as files, the service as base64 PNGs)."""
        out = {"schema_version": SCHEMA_VERSION, "report": self.report,
               "findings": {n: f.to_dict() for n, f in self.findings.items()},
               "not_assessed": self.not_assessed, "population": self.population, "plan_check": self.plan_check,
               "views": self.views, "warnings": list(self.warnings), "input_check": self.input_check,
               **self.identity.to_dict(), "threshold": self.threshold, "timing_ms": self.timing_ms}
        if self.regions is not None:
            out["regions"] = self.regions
        if self.heatmaps is not None:
            out["heatmaps"] = self.heatmaps
        return out


@dataclass(eq=False)
class StudyError(_JsonView):
    """A study that was not read: ``error`` names the file and the fix; ``refused`` is True when
    the input gate refused an image (``skip_gate=True`` reads it anyway)."""

    error: str
    identity: Identity
    refused: bool = False
    views: list[dict] | None = None

    ok = False
    model = property(lambda self: self.identity.model)

    def to_dict(self) -> dict:
        out = {"schema_version": SCHEMA_VERSION, "error": self.error, "refused": self.refused}
        if self.views is not None:
            out["views"] = self.views
        return out | self.identity.to_dict()
