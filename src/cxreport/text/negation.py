"""NegEx-style negation / uncertainty scopes for the CheXpert labeler.

Scopes never cross a clause boundary (sentence end, ``;``, "but", "however", "although",
"which", ", there is"...). Within a clause the nearest preceding trigger decides, so
"no definite pneumonia, possible atelectasis" negates pneumonia and leaves atelectasis uncertain,
while a list ("no pneumothorax, effusion or consolidation") stays under one "no".
"""

from __future__ import annotations

import re

POS, NEG, UNC = 1, 0, -1

# Sentence ends: a period not inside a number ("2.5 cm"), ?, !, newline-like breaks.
SENTENCE_SPLIT = re.compile(r"(?<!\d)\.(?!\d)|[?!]|\s\d\.\s")

CLAUSE_SPLIT = re.compile(
    r";|:|\bbut\b|\bhowever\b|\balthough\b|\bthough\b|\bwhich\b|\bwhereas\b|\bwhile\b|"
    r"\bexcept\b|\baside from\b|\bapart from\b|\bwith the exception of\b|\bnevertheless\b|"
    r"\botherwise\b|\byet\b|,\s*(?=(?:and )?(?:there (?:is|are|has|may)|the |with |this |these |"
    r"likely|possibly|probably|suggest|consistent|compatible|which|as well)\b)"
)

# Phrases that look like negations but assert stability of what they name ("no change in the
# small effusion" = effusion present); replaced by a neutral mark before labelling.
PSEUDO = re.compile(
    r"\b(?:no|without|not)(?: (?:significant|appreciable|substantial|definite|interval|significantly|"
    r"visible|apparent|radiographic|major|gross|other|further|real))* "
    r"(?:interval )?(?:change|changes|changed|increase|increased|decrease|decreased|worsening|worsened|"
    r"improvement|improved|progression|enlargement of the known)\b"
    r"|\bnot (?:only|necessarily)\b|\bno longer (?:enlarged|present|seen)?(?=x)"
    r"|\bgram[- ]negative\b"
)

_NEG_PRE = (
    r"no", r"not", r"without", r"free of", r"negative for", r"absence of", r"absent", r"clear of",
    r"resolution of", r"resolved", r"resolving of", r"interval resolution of", r"removal of",
    r"removed", r"rule out", r"ruled out", r"r/o", r"never", r"none", r"nor", r"neither",
    r"lack of", r"no evidence of", r"no signs? of", r"no longer", r"cleared", r"clearing of",
    r"no radiographic evidence of", r"rather than", r"instead of",
)
_UNC_PRE = (
    r"may", r"might", r"could", r"can", r"possible", r"possibly",
    r"questionable", r"question of", r"questioned", r"suspect(?:ed)?", r"suspicious(?: for)?",
    r"concern(?:ing)? for", r"suggest(?:s|ed|ing|ive of|ion of)?", r"cannot exclude", r"can not exclude",
    r"can't exclude", r"cannot rule out", r"can not rule out", r"not excluded", r"difficult to exclude",
    r"not (?:be )?ruled out", r"differential(?: diagnosis)?(?: includes?)?", r"versus", r"vs\.?",
    r"consider(?:ed|ation)?", r"borderline", r"equivocal", r"indeterminate", r"underlying", r"superimposed",
    r"developing", r"early", r"atypical", r"either", r"or (?:possibly|less likely)",
    r"versus early", r"cannot be entirely excluded", r"less likely", r"not likely", r"unlikely",
    r"correlat(?:e|ion) (?:clinically )?for", r"evaluat(?:e|ion) for", r"history of", r"known",
    r"sensitive (?:in|for) detecting", r"includes?", r"including",
)
_NEG_POST = (
    r"(?:is|are|was|were|has|have|has been|have been)? ?(?:not|no longer) (?:seen|identified|present|"
    r"visualized|appreciated|evident|demonstrated|noted|detected|visible|apparent|definitely seen)",
    r"(?:has|have)? ?(?:resolved|cleared)", r"(?:is|are|was|were)? ?(?:absent|excluded|gone|removed)",
    r"(?:is|are|has been) ruled out", r"free", r"negative",
    r"(?:appears?|is|are)? ?within (?:the )?(?:limits of )?normal",
)
_UNC_POST = (
    r"(?:cannot|can not|can't|could not|may not) be (?:entirely |completely |confidently |definitely )?(?:excluded|ruled out)",
    r"(?:is|are)? ?not (?:entirely |completely )?(?:excluded|ruled out)", r"(?:is|are)? ?(?:possible|suspected|questioned|likely|not certain)",
    r"(?:is|are) (?:not|less) (?:well|clearly)", r"(?:would be|is) difficult to exclude",
)
# Alternatives ("atelectasis or pneumonia", "scar versus effusion") are uncertain unless negated.
_ALT_POST = (
    r"versus", r"vs\.?",
)

# "no"/"not" close to a later trigger word would otherwise shadow it; match the longest first.
# Post-mention triggers look a few words ahead and never across a comma.
_TRIGGER = re.compile(
    r"(?P<unc>\b(?:" + "|".join(sorted(_UNC_PRE, key=len, reverse=True)) + r")\b)|"
    r"(?P<neg>\b(?:" + "|".join(sorted(_NEG_PRE, key=len, reverse=True)) + r")\b)"
)
_POST_NEG = re.compile(r"^\s*(?:[\w'/-]+\s+){0,3}?(?:" + "|".join(_NEG_POST) + r")\b")
_POST_UNC = re.compile(r"^\s*(?:[\w'/-]+\s+){0,4}?(?:" + "|".join(_UNC_POST) + r")\b")
_POST_ALT = re.compile(r"^\s*(?:[\w'/-]+\s+){0,2}?(?:" + "|".join(_ALT_POST) + r")\b")
# "no" right before an attribute word ("no acute", "no focal") still negates the next finding;
# but a positive finding word between the trigger and the mention resets the scope.
# A hedge starting a new list item ("no pneumonia, possibly atelectasis") escapes an earlier "no".
_HEDGE_AFTER_COMMA = re.compile(
    r",\s*(?:and |but |though )?(?:possible|possibly|probable|probably|likely|may|might|could|question|"
    r"questionable|cannot|can not|perhaps)\b")
_SCOPE_BREAK = re.compile(r"\b(?:is|are|was|were)\b(?!\s+(?:no|not|seen|identified))")


def classify_mention(clause: str, start: int, end: int) -> int:
    """Status of the mention at ``clause[start:end]``: POS, NEG or UNC."""
    after = clause[end:]
    if _POST_UNC.search(after):
        return UNC
    if _POST_NEG.search(after):
        return NEG
    before = clause[:start]
    triggers = list(_TRIGGER.finditer(before))
    if not triggers:
        return UNC if _POST_ALT.search(after) else POS
    last = triggers[-1]
    negs = [m for m in triggers if m.lastgroup == "neg"]
    if negs and last.lastgroup == "unc" and not _HEDGE_AFTER_COMMA.search(before, negs[-1].end()):
        last = negs[-1]  # "no consolidation, suspicious opacity or pneumothorax": the list stays negated
    between = before[last.end():]
    if _SCOPE_BREAK.search(between) and last.lastgroup == "neg" and len(between.split()) > 3:
        return POS
    return UNC if last.lastgroup == "unc" else NEG
