"""The harmonised study table: one row per study, whatever dataset it came from."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any

from cxreport.errors import InputError
from cxreport.labels import CHEXPERT_LABELS, FRONTAL_VIEWS, LATERAL_VIEWS, VIEW_IDS, view_group  # noqa: F401

SPLITS = ("train", "val", "test")


def check_split(split: str, allow_test: bool) -> None:
    """The one test-split guard: the project never scores test while developing."""
    if split == "test" and not allow_test:
        raise InputError("--split test is withheld while developing: score val (or pass --allow-test for the "
                         "final, once-only evaluation)")


@dataclass
class Study:
    """One study. ``labels`` holds CheXpert-14 values (1, 0, -1 uncertain; absent = not mentioned).

    ``image_paths`` are absolute paths; ``views`` is parallel to them (``PA``, ``AP``, ``LATERAL``,
    ``FRONTAL``, ``UNKNOWN``...). Text fields are '' when absent. ``extra`` keeps source-specific
    columns (MeSH terms, raw labels) that later stages may use but the model never depends on.
    """

    study_id: str
    patient_id: str
    split: str
    source: str
    image_paths: list[str] = field(default_factory=list)
    views: list[str] = field(default_factory=list)
    findings: str = ""
    impression: str = ""
    indication: str = ""
    comparison: str = ""
    labels: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Study":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def seeded_split(key: str, seed: int = 42, val: float = 0.1, test: float = 0.2) -> str:
    """Deterministic split from a hash of ``key`` (a patient id, so no patient spans two splits)."""
    h = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    u = int.from_bytes(h[:8], "big") / 2**64
    if u < test:
        return "test"
    if u < test + val:
        return "val"
    return "train"


def normalise_ws(text: str | None) -> str:
    return " ".join((text or "").split())
