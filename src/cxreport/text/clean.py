"""Report text normalisation under named protocols.

``r2gen`` reproduces R2Gen's ``clean_report_iu_xray`` / ``clean_report_mimic_cxr`` character for
character (including its quirks) so that scores are comparable with published IU X-Ray / MIMIC-CXR
numbers. ``default`` is ours: it keeps negations, numbers, decimals and units, and gives the
de-identification token one spelling, so that clinically meaningful text survives.
"""

from __future__ import annotations

import re

from cxreport.errors import InputError
from cxreport.registry import Registry

DEID_TOKEN = "xxxx"

PROTOCOLS = Registry("cleaning protocol")
register_protocol = PROTOCOLS.register


def protocols() -> list[str]:
    return PROTOCOLS.names()


def clean_report(text: str | None, protocol: str = "default", dataset: str = "iu") -> str:
    """Normalise one report. ``dataset`` is ``iu`` or ``mimic`` (only ``r2gen`` tells them apart)."""
    clean = PROTOCOLS.get(protocol)
    if dataset not in ("iu", "mimic"):
        raise InputError(f"unknown dataset {dataset!r} for cleaning; choose 'iu' or 'mimic'")
    return clean(text or "", dataset)


# --- r2gen -------------------------------------------------------------------------------------
# R2Gen's character class is written "[.,?;*!%^&_+():-\[\]{}]": the unescaped "-" between ":" and
# "\[" makes a range (":" .. "["), so hyphens survive and ": ; < = > ? @ A-Z [" are removed.
_R2GEN_STRIP = re.compile(r"[.,?;*!%^&_+():-\[\]{}]")
_R2GEN_LIST_MARKERS = (("1. ", ""), (". 2. ", ". "), (". 3. ", ". "), (". 4. ", ". "), (". 5. ", ". "),
                       (" 2. ", ". "), (" 3. ", ". "), (" 4. ", ". "), (" 5. ", ". "))


def _replace_n(t: str, old: str, new: str, times: int) -> str:
    # R2Gen chains str.replace a fixed number of times rather than looping to a fixed point.
    for _ in range(times):
        t = t.replace(old, new)
    return t


def _r2gen_sentence(t: str) -> str:
    t = t.replace('"', "").replace("/", "").replace("\\", "").replace("'", "").strip().lower()
    return _R2GEN_STRIP.sub("", t)


@register_protocol("r2gen")
def _clean_r2gen(report: str, dataset: str) -> str:
    t = report
    if dataset == "mimic":
        t = t.replace("\n", " ")
        t = _replace_n(t, "__", "_", 7)
        t = _replace_n(t, "  ", " ", 6)
        t = _replace_n(t, "..", ".", 8)
    else:
        t = _replace_n(t, "..", ".", 3)
    for old, new in _R2GEN_LIST_MARKERS:
        t = t.replace(old, new)
    sentences = t.strip().lower().split(". ")
    # R2Gen filters with ``!= []`` on strings, which keeps empty sentences; so do we.
    return " . ".join(_r2gen_sentence(s) for s in sentences) + " ."


# --- default -----------------------------------------------------------------------------------
_DEID = re.compile(r"[a-z0-9]*-?x{3,}(?:-[a-z0-9]+)*", re.IGNORECASE)
_DEID_RUN = re.compile(rf"\b{DEID_TOKEN}(?:[\s,]+{DEID_TOKEN})+\b")
_LIST_MARKER = re.compile(r"(^|(?<=[.:;]\s)|(?<=\n))\s*\(?\d{1,2}[.)]\s+(?=[a-z])", re.IGNORECASE)
_MULTI_DOT = re.compile(r"\.(?:\s*\.)+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:?!])")
_PUNCT_NO_SPACE = re.compile(r"([,;:?!]|\.(?!\d))(?=[a-z])")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-",
                         "\u2014": "-", "\u00a0": " "})


def normalise_deid(text: str) -> str:
    """Every de-identified span (``XXXX``, ``x-XXXX``, ``XXXX-year-old``, runs of them) -> ``xxxx``."""
    text = _DEID.sub(DEID_TOKEN, text)
    return _DEID_RUN.sub(DEID_TOKEN, text)


@register_protocol("default")
def _clean_default(report: str, dataset: str) -> str:
    t = report.translate(_QUOTES).lower()
    t = normalise_deid(t)
    t = _LIST_MARKER.sub(lambda m: m.group(1), t)
    t = " ".join(t.split())
    t = _MULTI_DOT.sub(".", t)
    t = _SPACE_BEFORE_PUNCT.sub(r"\1", t)
    t = _PUNCT_NO_SPACE.sub(r"\1 ", t)  # "effusion.there" -> "effusion. there"; "2.5" untouched
    t = t.strip(" ,;")
    if t and t[-1] not in ".?!":
        t += "."
    return t


_WORD = re.compile(r"\d+(?:\.\d+)?%?|[a-z]+(?:['\-][a-z0-9]+)*|[^\s\w]|_")


def split_words(cleaned: str) -> list[str]:
    """Words, numbers (with decimals / %) and single punctuation marks of a cleaned text."""
    return _WORD.findall(cleaned)
