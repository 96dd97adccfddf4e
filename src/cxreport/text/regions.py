"""Split a report into anatomical regions (lung, heart, mediastinal, bone, others) the way IU X-Ray's
curated region annotations (``annotation_quiz_all.json``) do, and score predictions against them.

The curators rewrote rather than cut: a sentence about two regions becomes one sentence per region
("Heart size and mediastinal contours are normal" -> "Heart size is normal." + "Mediastinal
contours are normal."; "cardiomediastinal silhouette" -> cardiac + mediastinal contours), negated
lists are split by region ("No effusion or adenopathy" -> lung "No effusion." + mediastinal "No
adenopathy."), and de-identification tokens are dropped except in sentences about nothing nameable
(those go to ``others`` as they are). Each sentence goes to the region of its first region keyword
(the subject of a report sentence comes first). Lists that pair the heart with pulmonary
vascularity stay whole in heart, de-identified list subjects ("pulmonary XXXX") are dropped, and
opening remarks on technique ("Considering technical factors, ...") go to ``others``.
The keyword table and word-level rewrites live in `cxreport.text.region_rules`.
"""

from __future__ import annotations

import re
from collections import Counter

from cxreport.text.region_rules import region_of, rewrite

REGIONS = ("lung", "heart", "mediastinal", "bone", "others")


_SENT_SPLIT = re.compile(r"(?<!\d)\.(?!\d)\s*|[?!;]\s*")
_LIST_NUM = re.compile(r"^\s*\d{1,2}[.)]\s+")
_XXXX = re.compile(r"\s*\bx{2,}\b[-,]?", re.IGNORECASE)
_CARDIOMED = re.compile(
    r"\b(?:the )?(?:cardiomediastinal|cardio[- ]mediastinal|cardiac and mediastinal|heart and mediastinal)"
    r" (?:silhouettes?|contours?|structures|shadows?|borders?|size|x{4})\b", re.IGNORECASE)
_VASCULAR = re.compile(r"\bvascul\w*|\bvessels\b|\bpulmonary x{4}", re.IGNORECASE)
_NORMAL_PRED = re.compile(r"^\s*(?:is|are|appears?|remains?)?\s*(?:grossly |otherwise |again |both )?"
                          r"(?:normal|within (?:the )?normal limits|unremarkable|within limits)", re.IGNORECASE)
_ABNORMAL = re.compile(r"\b(?:enlarg\w*|but|except|with|widen\w*|prominen\w*|tortuous|calcifi\w*)\b", re.IGNORECASE)
_HEART_AND_MED = re.compile(r"\b(?:the )?heart and (?:the )?mediastinum\b", re.IGNORECASE)
_VERB = r"(?:is|are|appears?|remains?|was|were|within|of|normal|unremarkable|stable|unchanged|grossly|have|has|demonstrates?)"
_COMPOUND = re.compile(
    r"^(?P<lead>(?:the |both |there is |there are )?)(?P<a>[a-z][\w\-, ]*?),? (?:and|x{4}(?! and\b)) (?:the )?(?P<b>[a-z][\w\- ]*?)"
    r"(?P<pred> " + _VERB + r"\b.*)$", re.IGNORECASE)
_NEG_LIST = re.compile(r"^(?P<neg>(?:there is |there are )?(?:no|negative for|without) (?:evidence of |definite )?)"
                       r"(?P<items>.+)$", re.IGNORECASE)


def _tidy(text: str, keep_xxxx: bool = False) -> str:
    t = text if keep_xxxx else _XXXX.sub("", text)
    t = " ".join(t.split()).strip(" ,;:-")
    if not t:
        return ""
    return t[0].upper() + t[1:] + ("" if t.endswith((".", "?", "!")) else ".")


def _split_cardiomediastinal(sentence: str) -> list[tuple[str | None, str]] | None:
    m = _CARDIOMED.search(sentence) or _HEART_AND_MED.search(sentence)
    if not m:
        return None
    before, after = sentence[:m.start()], sentence[m.end():]
    if _HEART_AND_MED.fullmatch(m.group(0)):
        return [("heart", before + "heart" + after), ("mediastinal", before + "mediastinum" + after)]
    # The curators' house phrase for a normal cardiomediastinal silhouette.
    single_word = re.search(r"cardio[- ]?mediastinal", m.group(0), re.IGNORECASE)
    if single_word and not before.strip() and _NORMAL_PRED.match(after) and not _ABNORMAL.search(after):
        # even "unremarkable" was rewritten to "within normal limits"
        pred = "are within normal limits"
        return [("heart", f"cardiac contours {pred}"), ("mediastinal", f"mediastinal contours {pred}")]
    noun = m.group(0).split()[-1].lower()
    noun = "silhouette" if noun.startswith("silhouette") else "contours" if noun == "xxxx" else noun
    if single_word and re.fullmatch(r"\s*normal\s*", before, re.IGNORECASE) and not after.strip():
        noun = "contours"  # "Normal cardiomediastinal silhouette" -> "Normal cardiac contours."
    if re.search(r"\b(?:heart|cardiac)\b", before + after, re.IGNORECASE):
        # "Heart size and cardiomediastinal silhouette are normal": the heart already has a subject
        return [(None, before + f"mediastinal {noun}" + after)]
    if not single_word and noun.endswith("s") is False:
        after = re.sub(r"^ are\b", " is", after)  # "cardiac and mediastinal silhouettes are" -> "cardiac silhouette is"
    return [("heart", before + f"cardiac {noun}" + after), ("mediastinal", before + f"mediastinal {noun}" + after)]


def _split_compound(sentence: str) -> list[tuple[str | None, str]] | None:
    """"A, B and C are normal" with A, B, C in different regions -> one sentence per region."""
    m = _COMPOUND.match(sentence)
    if not m:
        return None
    subjects = [x for x in re.split(r",\s*(?:and )?|\s+and\s+", m.group("a")) if x.strip()] + [m.group("b")]
    if any(x.strip().lower() in ("cardiac", "mediastinal", "hilar", "pulmonary") for x in subjects):
        return None  # "Cardiac and mediastinal contours": adjectives sharing one noun
    pred = m.group("pred")
    named = [x for x in subjects if not _PULMONARY_XXXX.fullmatch(x.strip())]
    if re.search(r"cardio[- ]?mediastinal", subjects[0], re.IGNORECASE):
        # "The cardiomediastinal silhouette and vasculature are normal": the curators kept the silhouette
        named = [x for x in named if not _VASCULAR.search(x)]
    if len(named) == 1 and len(subjects) > 1:  # "Heart and pulmonary XXXX are normal" -> "Heart is normal"
        return [(region_of(named[0]), named[0].strip() + _singular(pred, named[0]))]
    subjects = named or subjects
    regions = [region_of(x) for x in subjects]
    if None in regions or len(set(regions)) < 2:
        return None
    if (len(subjects) == 2 and regions[0] == "heart" and _VASCULAR.search(subjects[1])
            and not re.search(r"mediastin", subjects[0], re.IGNORECASE) and not region_of(pred)):
        # "Heart size and pulmonary vascularity appear within normal limits" stays whole, in heart
        return [("heart", sentence)]
    if re.match(r"^ \w+ x{4}", pred, re.IGNORECASE):
        return [("others", sentence)]  # "The heart and lungs have XXXX XXXX ...": predicate de-identified
    grouped: dict[str, list[str]] = {}
    for i, (subj, region) in enumerate(zip(subjects, regions)):
        if i and region == "others" and re.search(r"soft tissue", subj, re.IGNORECASE):
            region = regions[0]  # "Bony thorax and soft tissues are unremarkable" stays together
        grouped.setdefault(region, []).append(subj.strip())
    if len(grouped) < 2:
        return None
    out = []
    for region, subs in grouped.items():
        verb = _singular(pred, subs[0]) if len(subs) == 1 else pred
        out.append((region, " and ".join(subs) + verb))
    return out


# A de-identified pulmonary subject in a list ("The heart, pulmonary XXXX and mediastinum are normal"):
# the curators dropped it.
_PULMONARY_XXXX = re.compile(r"(?:the )?pulmonary x{4}", re.IGNORECASE)


def _singular(pred: str, subject: str) -> str:
    """"heart and mediastinum are" -> "heart is": the verb agrees with one remaining subject."""
    if subject.strip().endswith("s"):
        return pred
    return re.sub(r"^ are\b", " is", re.sub(r"^ appear\b", " appears", pred))


def _split_negated_list(sentence: str) -> list[tuple[str | None, str]] | None:
    m = _NEG_LIST.match(sentence)
    if not m:
        return None
    items = [i for i in re.split(r",\s*(?:or |and |nor )?|\s+(?:or|and|nor)\s+", m.group("items")) if i.strip()]
    if len(items) < 2:
        return None
    by_region: dict[str, list[str]] = {}
    first = region_of(items[0]) or "lung"
    for item in items:
        region = region_of(item) or "lung"
        # "No bony or soft tissue abnormality": an others item stays with the list's first region
        if region == "others" and not re.search(r"soft tissue", item, re.IGNORECASE):
            region = first
        by_region.setdefault(region, []).append(item.strip())
    if len(by_region) < 2:
        return None
    neg = m.group("neg")
    shared = re.search(r"\b(abnormalit(?:y|ies)|findings?|disease|process|injury|change)$", items[-1])
    if shared:  # "No acute bony or pulmonary abnormality": adjectives share the last noun
        by_region = {r: [i if i.endswith(shared.group(1)) else f"{i} {shared.group(1)}" for i in its]
                     for r, its in by_region.items()}
    out = []
    for region, its in by_region.items():
        joined = its[0] if len(its) == 1 else ", ".join(its[:-1]) + " or " + its[-1]
        out.append((region, neg + joined))
    return out


_PREPOSITION_START = re.compile(r"^(?:in|within|at|on|over|along|overlying|projecting)\b", re.IGNORECASE)
_SEGMENT = re.compile(r",\s+|\s+and\s+(?=(?:mild|moderate|severe|stable|small|"
                      r"large|calcified|tortuous|unfolded|ectatic|atherosclerotic)\b)|"
                      r"\s+and\s+(?=(?:the )?[\w\- ]{0,30}?\b(?:is|are)\b)")


def _split_segments(sentence: str) -> list[tuple[str | None, str]] | None:
    """"Stable mild cardiomegaly with normal pulmonary vasculature" -> heart + lung pieces.

    Only when the comma / "with" segments name different regions; a segment naming none stays
    with the one before it.
    """
    if _PREPOSITION_START.match(sentence):
        return None  # "Within the heart, there is a small density": one finding, one region
    segs = [x for x in _SEGMENT.split(sentence) if x and x.strip()]
    if len(segs) < 2:
        return None
    out: list[list] = []
    for seg in segs:
        region = region_of(seg)
        if out and (region is None or region == out[-1][0]):
            out[-1][1] += (", " if region is None else ", ") + seg
        else:
            out.append([region, seg])
    if len({r for r, _ in out if r}) < 2:
        return None
    return [(r, t) for r, t in out]


# "Pulmonary XXXX normal", "The XXXX are intact": the curators kept sentences whose subject was
# de-identified whole, in others.
_XXXX_BONES = re.compile(r"^x{4} x{4} (?:are|is) (?:grossly )?intact\b", re.IGNORECASE)
_XXXX_SUBJECT = re.compile(r"^(?:the |both |visualized )?(?:pulmonary |bony |osseous )?x{4}(?: x{4})? (?:is|are|have|has|appears?|normal|unremarkable|"
                           r"within|grossly|intact|clear)\b", re.IGNORECASE)


_XXXX_PRED = re.compile(r"\b(?:is|are|remains?|appears?)(?: in)? x{4}$|\bno x{4} of\b", re.IGNORECASE)


# Remarks on technique that open a sentence about an organ: the curators filed them under others
# ("Considering technical factors, heart size within normal limits").
_LEAD_CLAUSE = re.compile(
    r"^(?P<lead>(?:[\w ]*?\brotat\w*[\w ]*?,\s*)?(?:considering|accounting for|allowing for|given)"
    r"(?: differences in)? (?:technical factors|technique)(?: x{4})?|(?:with )?overlying external cardiac monitor leads)"
    r",?\s+(?:shows? )?(?P<rest>\w.+)$", re.IGNORECASE)


def _split_lead_clause(sentence: str) -> list[tuple[str | None, str]] | None:
    m = _LEAD_CLAUSE.match(sentence)
    if not m:
        return None
    lead = re.sub(r"^with ", "", m.group("lead"), flags=re.IGNORECASE)
    return [("others", lead), (None, m.group("rest"))]


def _pieces(sentence: str, depth: int = 0) -> list[tuple[str, str]]:
    if _XXXX_BONES.match(sentence):
        return [("bone", sentence)]  # "XXXX XXXX are intact": the bony structures, de-identified
    if _XXXX_SUBJECT.match(sentence) or _XXXX_PRED.search(sentence):
        return [("others", sentence)]
    for splitter in (_split_lead_clause, _split_compound, _split_cardiomediastinal, _split_normal_and, _split_negated_list,
                     _split_segments):
        parts = splitter(sentence) if depth < 3 else None
        if parts:
            out = []
            for region, text in parts:
                sub = _pieces(text, depth + 1) if region or depth < 2 else [(region_of(text) or "others", text)]
                # a piece that cannot be split further keeps the region its splitter gave it
                if len(sub) == 1 and region:
                    sub = [(region, sub[0][1])]
                out.extend(sub)
            return out
    return [(region_of(sentence) or "others", sentence)]


_EXAM = re.compile(r"^(?:\d+|two|three|four) images?(?: submitted| obtained)?$|^.{0,40}\b(?:chest )?(?:examination|exam|views?|radiographs?) (?:was|were) obtained$|"
                   r"^(?:two-view )?chest$|^.{0,40}\b(?:views?|radiographs?)(?: of)? the chest (?:was|were) obtained\b.*$|"
                   r"^(?:the )?(?:xxxx )?(?:(?:pa|ap|frontal|portable|upright)(?: and lateral)?|two) "
                   r"(?:views?|radiographs?|images?)(?: of the chest)?(?: (?:show|shows|demonstrate|demonstrates|"
                   r"were obtained|are provided|obtained))?\s*|^(?:the )?(?:xxxx )?examination consists of .*$",
                   re.IGNORECASE)
_CONTINUATION = re.compile(r"^(?:however,? )?(?:this|these|it|they|which)\b", re.IGNORECASE)
_NORMAL_AND = re.compile(r"^(?P<adj>(?:mildly |mild |grossly )?(?:normal|stable|unremarkable|unchanged|enlarged)) "
                         r"(?P<a>[a-z][\w\- ]*?),? and "
                         r"(?P<b>[a-z][\w\- ]*?)$", re.IGNORECASE)


def _sentences(text: str) -> list[str]:
    out = []
    for s in _SENT_SPLIT.split(text or ""):
        s = _EXAM.sub("", _LIST_NUM.sub("", s).strip()).strip()
        if s:
            out.append(s)
    return out


def _split_normal_and(sentence: str) -> list[tuple[str | None, str]] | None:
    """Normal heart size and mediastinal contours -> normal heart size + normal mediastinal contours."""
    m = _NORMAL_AND.match(sentence)
    if not m:
        return None
    ra, rb = region_of(m.group("a")), region_of(m.group("b"))
    if not ra or not rb or ra == rb:
        return None
    return [(ra, f"{m.group('adj')} {m.group('a')}"), (rb, f"{m.group('adj')} {m.group('b')}")]


def split_regions(text: str) -> dict[str, str]:
    """The five region texts for one report ('' where a region is not mentioned)."""
    parts: dict[str, list[str]] = {r: [] for r in REGIONS}
    seen: set[tuple[str, str]] = set()
    last_region = None
    for sentence in map(rewrite, _sentences(text)):
        pieces = _pieces(sentence)
        if len(pieces) == 1 and last_region and _CONTINUATION.match(sentence) and not region_of(sentence):
            pieces = [(last_region, sentence)]  # "This may represent ..." follows what it describes
        for region, piece in pieces:
            last_region = region
            tidy = _tidy(piece, keep_xxxx=region == "others" or bool(_XXXX_BONES.match(piece)))
            key = (region, tidy.lower())
            if tidy and key not in seen:  # repeated impression sentences are written once
                seen.add(key)
                parts[region].append(tidy)
    return {r: " ".join(_drop_subsumed(parts[r])) for r in REGIONS}


def _drop_subsumed(sentences: list[str]) -> list[str]:
    """Drop a sentence whose content words all appear in another sentence of the same region (a
    clause split can give "Normal hilar contours." beside "Normal mediastinal ... and hilar contours.")."""
    words = [set(content_words(s)) for s in sentences]
    keep = []
    for i, s in enumerate(sentences):
        if not any(j != i and words[i] < words[j] for j in range(len(sentences))):
            keep.append(s)
    return keep


# --- scoring -----------------------------------------------------------------------------------
STOP_WORDS = frozenset(
    "a an the and or of in on at to for with without is are was were be been being there this that these "
    "those it its as by from has have had which who whom also again any all both each into than then over "
    "under within seen noted present identified demonstrated visualized appear appears appearing".split())
_TOKEN = re.compile(r"[a-z0-9]+")


def content_words(text: str) -> Counter:
    return Counter(t for t in _TOKEN.findall((text or "").lower()) if t not in STOP_WORDS)


def content_f1(pred: str, gold: str) -> float:
    p, g = content_words(pred), content_words(gold)
    if not p and not g:
        return 1.0
    if not p or not g:
        return 0.0
    overlap = sum((p & g).values())
    if not overlap:
        return 0.0
    prec, rec = overlap / sum(p.values()), overlap / sum(g.values())
    return 2 * prec * rec / (prec + rec)


def score_regions(preds: list[dict], golds: list[dict]) -> dict:
    """Mean content-word F1 per (study, region), overall and per region, and per-region
    precision / recall of "mentions something" (non-empty text)."""
    if len(preds) != len(golds):
        raise ValueError("predictions and references differ in length")
    per_region = {}
    all_f1 = []
    for region in REGIONS:
        f1s = [content_f1(p.get(region, ""), g.get(region, "")) for p, g in zip(preds, golds)]
        pm = [bool(content_words(p.get(region, ""))) for p in preds]
        gm = [bool(content_words(g.get(region, ""))) for g in golds]
        tp = sum(a and b for a, b in zip(pm, gm))
        per_region[region] = {
            "f1": sum(f1s) / len(f1s) if f1s else 0.0,
            "mention_precision": tp / sum(pm) if sum(pm) else 0.0,
            "mention_recall": tp / sum(gm) if sum(gm) else 0.0,
            "gold_mentions": sum(gm),
        }
        all_f1.extend(f1s)
    return {"n": len(preds), "f1": sum(all_f1) / len(all_f1) if all_f1 else 0.0, "regions": per_region}


def keyword_baseline(text: str) -> dict[str, str]:
    """The 10-line sentence sorter the task compares against (for the validation report)."""
    out = {r: [] for r in REGIONS}
    for s in _sentences(text):
        out[region_of(s) or "others"].append(s + ".")
    return {r: " ".join(v) for r, v in out.items()}
