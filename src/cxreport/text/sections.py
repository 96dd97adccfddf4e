"""Split a MIMIC-CXR free-text report into its sections (findings, impression, ...).

Behaviour mirrors the official MIT-LCP ``mimic-cxr`` repository, ``txt/section_parser.py``
(``section_text``, ``normalize_section_names``, ``custom_mimic_cxr_rules``) and the selection logic
of ``txt/create_section_files.py`` (last section of each name; conclusion priority
impression > findings > last_paragraph > comparison), so that findings/impression here match the
sections most MIMIC-CXR papers train and evaluate on. The code is our own; the header map and the
per-study overrides are the official tables (data, not logic).

Deliberate differences, all documented in ``parse_report_sections``:
* ``\\r\\n`` is normalised to ``\\n`` first (the official code assumes Unix newlines);
* missing sections are ``''`` rather than ``None``;
* ``indication`` is also returned (the official sectioned CSV omits it);
* the per-study overrides fill ``impression``/``conclusion`` instead of dropping the study.
"""

from __future__ import annotations

import re

# A header is a line that starts with a space, then capitals/space/()/,-, then a colon and a
# whitespace char. MIMIC-CXR reports indent every line by one space, which is what makes this work;
# the title line ("FINAL REPORT") has no colon so it stays in the preamble.
_HEADER = re.compile(r"\n ([A-Z ()/,-]+):\s")
_PARAGRAPH_BREAK = "\n \n"

# Header spelling -> canonical section, from the official frequent-section map (counts over the
# 227k reports are in the official source). Grouped here by target for readability.
_CANONICAL: dict[str, tuple[str, ...]] = {
    "preamble": ("preamble",),
    "impression": (
        "impression", "conclusion", "findings and impression", "findings/impression",
        "findings/ impression", "impresson", "imprression", "imoression", "impressoin",
        "imprssion", "impresion", "imperssion", "mpression", "impession",
        # Official quirk: the single report headed "NDICATION" is mapped to impression.
        "ndication",
    ),
    "comparison": (
        "comparison", "comparisons", "reference exam", "comparison exam", "comparison film",
        "comparision", "comparsion", "comparrison", "comparisions",
    ),
    "indication": (
        "indication", "reason for examination", "reason for exam", "clinical indication",
        "idication",
    ),
    "findings": (
        "findings", "chest, two views", "finding", "findins", "findindgs", "findgings", "findngs",
        "findnings", "finidngs", "reference findings",
    ),
    "examination": ("examination", "exam", "type of examination"),
    "technique": ("technique",),
    "history": ("history", "clinical history", "clinical information", "patient history", "pfi"),
    "notification": ("notification",),
    "recommendations": ("recommendation(s)", "recommendations", "recommendation"),
    "addendum": ("addendum",),
    "date": ("date",),
    "comment": ("comment",),
    "wet read": ("wet read", "wetread"),
}
FREQUENT_SECTIONS: dict[str, str] = {
    spelling: target for target, spellings in _CANONICAL.items() for spelling in spellings
}

# Headers not in the map: the first of these contained as a substring wins...
_MAIN_SECTIONS = ("impression", "findings", "history", "comparison", "addendum")
# ...otherwise a header that describes the whole study ("CHEST, PA AND LATERAL") means findings.
_FINDINGS_LIKE = re.compile(
    "|".join(
        re.escape(p)
        for p in (
            "chest", "portable", "pa and lateral", "lateral and pa", "ap and lateral",
            "lateral and ap", "frontal and", "two views", "frontal view", "pa view", "ap view",
            "one view", "lateral view", "bone window", "frontal upright", "frontal semi-upright",
            "ribs", "pa and lat",
        )
    )
)

# Official manual overrides for reports the rules cannot section (custom_mimic_cxr_rules):
# study -> the section that holds the conclusion, and study -> character span of the conclusion
# ([0, 0] = the report has no findings at all).
CUSTOM_SECTION_NAMES: dict[str, str] = {
    "s50913680": "recommendations", "s59363654": "examination", "s59279892": "technique",
    "s59768032": "recommendations", "s57936451": "indication", "s50058765": "indication",
    "s53356173": "examination", "s53202765": "technique", "s50808053": "technique",
    "s51966317": "indication", "s50743547": "examination", "s56451190": "note",
    "s59067458": "recommendations", "s59215320": "examination", "s55124749": "indication",
    "s54365831": "indication", "s59087630": "recommendations", "s58157373": "recommendations",
    "s56482935": "recommendations", "s58375018": "recommendations", "s54654948": "indication",
    "s55157853": "examination", "s51491012": "history",
}
CUSTOM_INDICES: dict[str, tuple[int, int]] = {
    "s50525523": (201, 349), "s57564132": (233, 554), "s59982525": (313, 717),
    "s53488209": (149, 475), "s54875119": (234, 988), "s50196495": (59, 399),
    "s56579911": (59, 218), "s52648681": (292, 631), "s59889364": (172, 453),
    "s53514462": (73, 377), "s59505494": (59, 450), "s53182247": (59, 412),
    "s51410602": (47, 320), "s56412866": (522, 822), "s54986978": (59, 306),
    "s59003148": (262, 505), "s57150433": (61, 394), "s56760320": (219, 457),
    "s59562049": (158, 348), "s52674888": (145, 296), "s55258338": (192, 568),
    "s59330497": (140, 655), "s52119491": (179, 454),
    "s58235663": (0, 0), "s50798377": (0, 0), "s54168089": (0, 0), "s53071062": (0, 0),
    "s56724958": (0, 0), "s54231141": (0, 0), "s53607029": (0, 0), "s52035334": (0, 0),
}

SECTION_KEYS = ("findings", "impression", "last_paragraph", "comparison", "indication")
_CONCLUSION_PRIORITY = ("impression", "findings", "last_paragraph", "comparison")


def normalize_section_name(name: str) -> str:
    """Canonical name of one raw header (as ``normalize_section_names`` does for a list)."""
    s = name.lower().strip()
    if s in FREQUENT_SECTIONS:
        return FREQUENT_SECTIONS[s]
    for main in _MAIN_SECTIONS:
        if main in s:
            return main
    if _FINDINGS_LIKE.search(s):
        return "findings"
    return s


def split_sections(text: str) -> list[tuple[str, str, int]]:
    """``(canonical_name, raw_text, start_index)`` for each section, in report order.

    Same splitting as the official ``section_text``: text before the first header is the
    ``preamble``; a report without headers is one ``full report`` section; empty findings/impression
    sections are dropped (title lines such as "CHEST, PA LATERAL:" and duplicate empty headers);
    when neither findings nor impression remains, everything after the first paragraph of the last
    section becomes ``last_paragraph``.
    """
    names: list[str] = []
    bodies: list[str] = []
    starts: list[int] = []
    m = _HEADER.search(text)
    if m is None:
        names.append("full report")
        bodies.append(text)
        starts.append(0)
    else:
        names.append("preamble")
        bodies.append(text[: m.start(1)])
        starts.append(0)
        while m is not None:
            name = m.group(1)
            body_start = m.end()
            # The next header is searched for only after the end of the header's own line, as the
            # official parser does (it avoids bad parses of "A: B:" on one line).
            newline = text.find("\n", body_start)
            m = _HEADER.search(text, newline if newline != -1 else body_start)
            body_end = len(text) if m is None else m.start()
            names.append(name)
            bodies.append(text[body_start:body_end])
            starts.append(body_start)
    names = [normalize_section_name(n) for n in names]

    keep = [
        i for i, n in enumerate(names) if not (n in ("impression", "findings") and not bodies[i].strip())
    ]
    names = [names[i] for i in keep]
    bodies = [bodies[i] for i in keep]
    starts = [starts[i] for i in keep]

    if "impression" not in names and "findings" not in names and _PARAGRAPH_BREAK in bodies[-1]:
        first, *rest = bodies[-1].split(_PARAGRAPH_BREAK)
        bodies[-1] = first
        names.append("last_paragraph")
        bodies.append(_PARAGRAPH_BREAK.join(rest))
        starts.append(starts[-1] + len(first))
    return list(zip(names, bodies, starts))


def _last(sections: list[tuple[str, str, int]], name: str) -> str | None:
    for sec_name, body, _ in reversed(sections):
        if sec_name == name:
            return body.strip()
    return None


def parse_report_sections(text: str, study_id: str | None = None) -> dict:
    """Sections of one MIMIC-CXR report.

    Returns ``findings``, ``impression``, ``last_paragraph``, ``comparison``, ``indication`` (the
    *last* section of each name, stripped, ``''`` when absent), ``conclusion`` (the official
    "report conclusion": impression, else findings, else last_paragraph, else comparison), and
    ``sections`` (every ``(name, text)`` pair in order, for callers that need the rest).

    ``study_id`` (``"s50913680"`` or ``"50913680"``) applies the official per-study overrides: a
    character span or a named section becomes ``impression`` and ``conclusion``.
    """
    text = (text or "").replace("\r\n", "\n")
    sections = split_sections(text)
    out: dict = {key: _last(sections, key) or "" for key in SECTION_KEYS}
    out["conclusion"] = next(
        (body for key in _CONCLUSION_PRIORITY if (body := _last(sections, key)) is not None), ""
    )
    out["sections"] = [(name, body.strip()) for name, body, _ in sections]
    out["custom_rule"] = ""

    stem = None
    if study_id:
        stem = str(study_id) if str(study_id).startswith("s") else f"s{study_id}"
    if stem in CUSTOM_INDICES:
        lo, hi = CUSTOM_INDICES[stem]
        out["impression"] = out["conclusion"] = text[lo:hi].strip()
        out["custom_rule"] = "indices"
    elif stem in CUSTOM_SECTION_NAMES:
        body = _last(sections, CUSTOM_SECTION_NAMES[stem])
        if body is not None:  # the official code would raise here; keep the automatic parse
            out["impression"] = out["conclusion"] = body
            out["custom_rule"] = "section_name"
    return out
