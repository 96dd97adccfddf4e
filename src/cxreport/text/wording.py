"""Wording a report must not use without cause: comparison with an earlier study, de-identification
residue, two-view phrasing for one film. Shared by training (clean the training reports) and
decoding (suppress the words, then drop or rewrite what slipped through).
"""

from __future__ import annotations

import re

from cxreport.errors import InputError

# Words that only make sense against an earlier study. The decoder never generates them unless
# the input includes a prior study or a comparison text.
COMPARISON_WORDS = ("stable", "stably", "unchanged", "interval", "again", "compared", "comparison", "prior",
                    "previous", "previously", "redemonstrated", "redemonstrates", "persistent", "persists",
                    "persisting", "improved", "improving", "improvement", "worsened", "worsening", "resolved",
                    "resolution", "since", "new", "newly")
_COMPARISON = re.compile(
    r"\b(?:stabl[ey]|unchanged|interval|again|compar(?:ed|ison)|prior|previous(?:ly)?|redemonstrat\w*|"
    r"persist\w*|improv\w*|worsen\w*|resolv\w*|resolution|since|(?:in|de)creas(?:ed|ing) in|"
    r"ha(?:s|ve) been (?:an? )?(?:(?:slight|mild|minimal)(?:ly)? )?(?:in|de)creas\w*|there ha(?:s|ve) been|"
    r"ha(?:s|ve) been (?:removed|placed|inserted|advanced|withdrawn|repositioned|exchanged)|"
    r"new(?:ly)?|no (?:significant |acute )?change)\b", re.IGNORECASE)
_DEID = re.compile(r"x{3,}", re.IGNORECASE)
# "frontal and lateral views of the chest", "PA and lateral radiographs": two films.
_TWO_VIEWS = re.compile(r"\b(frontal|pa|ap)(?: and| ,) lateral (views?|radiographs?|images?|films?|examination|"
                        r"chest (?:x-rays?|radiographs?|examination|images?))", re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")

# Findings outside the CheXpert-14 plan that an IU-trained decoder writes whatever the image shows
# ("calcified granuloma", "degenerative changes of the spine", "hyperinflated lungs"): the model
# has no evidence for them, so asserting one is invention. Denying one ("no scoliosis") is kept.
_UNSUPPORTED = re.compile(
    r"\b(?:granulom\w*|calcifi\w*|degenerative|spondylo\w*|osteophyt\w*|scolio\w*|kyphos\w*|kyphotic|"
    r"hyperinflat\w*|hyperexpan\w*|emphysem\w*|copd|chronic obstructive|hypoinflat\w*|"
    r"low lung volumes?|scar(?:ring|s)?|fibros\w*|fibrotic|hiatal hernia|tortuous|tortuosity|ectatic|"
    r"atheroscleros\w*|atherosclerotic|eventration|elevat\w* (?:of the )?(?:right |left )?hemidiaphragm|"
    r"bronchiectasis|cholecystectomy)\b", re.IGNORECASE)

# Where and how big: the plan gives each finding a state and nothing else, so a side, a lobe or
# zone, or a size stated with a finding ("a small right lower lobe opacity") is invented.
_DETAIL = re.compile(
    r"\b(?:right|left|bilateral(?:ly)?|bibasilar|bibasal|unilateral|(?:upper|middle|lower) (?:lobes?|lungs?|zones?)|"
    r"lung (?:bases?|apex|apices)|bases?|basilar|apex|apices|apical|lingula\w*|perihilar|retrocardiac|"
    r"small|large|moderate|mild(?:ly)?|minimal|tiny|trace|severe|massive|\w+-sized|sized)\b", re.IGNORECASE)

# A decoder that ran on past its sentence: "No acute bony abnormality is seen is identified is seen".
_RUN_ON = re.compile(r"\b(?:is|are) (?:seen|identified|noted|present|visualized) (?:is|are)\b", re.IGNORECASE)

SENTENCE_KINDS = ("deid", "comparison")


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE.split((text or "").strip()) if s.strip()]


def has_comparison(text: str) -> bool:
    return bool(_COMPARISON.search(text or ""))


def has_unsupported(sentence: str) -> bool:
    """Whether ``sentence`` asserts (or hedges) a finding outside the CheXpert-14 plan."""
    from cxreport.text.negation import CLAUSE_SPLIT, NEG, classify_mention

    for clause in CLAUSE_SPLIT.split((sentence or "").lower()):
        if any(classify_mention(clause, m.start(), m.end()) != NEG for m in _UNSUPPORTED.finditer(clause)):
            return True
    return False


def has_detail(sentence: str) -> bool:
    """Whether ``sentence`` names a side, a lobe or zone, or a size (``_DETAIL``)."""
    return bool(_DETAIL.search(sentence or ""))


# What a word decoder trained on a few thousand reports gets wrong: an article before a mass noun
# ("There is a pneumonia."), a plural verb before a singular noun, "air space". Each fix keeps the
# meaning and what the labeler reads.
_GRAMMAR = [
    (re.compile(r"\b(?:a|an) (pneumonia|atelectasis|consolidation|edema|cardiomegaly|pulmonary edema)\b", re.I),
     r"\1"),
    (re.compile(r"\bthere are no (focal )?air ?space (opacity|disease|consolidation)\b", re.I), r"there is no \1airspace \2"),
    (re.compile(r"\bair space\b", re.I), "airspace"),
    (re.compile(r"\b(within normal limits) in appearance\b", re.I), r"\1"),
]


def grammar(sentence: str) -> str:
    """``sentence`` with the decoder's known grammar slips mended (its first letter kept upper case)."""
    out = sentence
    for rx, repl in _GRAMMAR:
        out = rx.sub(repl, out)
    return out[:1].upper() + out[1:] if out != sentence and out else out


def is_run_on(sentence: str) -> bool:
    """Whether ``sentence`` strings verb phrases together ("is seen is identified"), as no
    report does."""
    return bool(_RUN_ON.search(sentence or ""))


def has_deid(text: str) -> bool:
    return bool(_DEID.search(text or ""))


def _unwanted(sentence: str, kinds) -> bool:
    return ("deid" in kinds and has_deid(sentence)) or ("comparison" in kinds and has_comparison(sentence))


def drop_sentences(text: str, kinds=SENTENCE_KINDS) -> str:
    """``text`` without its sentences of the given kinds ("deid": de-identification residue,
    "comparison": wording against an earlier study)."""
    bad = set(kinds) - set(SENTENCE_KINDS)
    if bad:
        raise InputError(f"drop_sentences: unknown kind(s) {sorted(bad)}; choose from {SENTENCE_KINDS}")
    return " ".join(s for s in sentences(text) if not _unwanted(s, kinds))


def single_view(text: str) -> str:
    """Two-view phrasing rewritten for one film: "frontal and lateral views" -> "frontal view"."""
    def one(m: re.Match) -> str:
        noun = m.group(2)
        for plural, singular in (("views", "view"), ("radiographs", "radiograph"), ("images", "image"),
                                 ("films", "film"), ("x-rays", "x-ray")):
            noun = noun.replace(plural, singular)
        return f"{m.group(1)} {noun}"

    return _TWO_VIEWS.sub(one, text)
