"""Captioning metrics through ``pycocoevalcap`` (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D), unchanged.

Every point value is pycocoevalcap's own number on the texts it is given. Besides the value, each
metric keeps per-study statistics (an ``ItemStats`` block) from which `cxreport.metrics.stats`
recomputes it on bootstrap resamples and on paired permutations without calling the scorers again:

* BLEU: pycocoevalcap's own per-study counts (hypothesis and closest reference length, n-gram
  guesses and matches, from ``BleuScorer.ctest``), summed and combined by the same formula as
  ``BleuScorer.compute_score``: exact corpus BLEU on every resample.
* ROUGE-L: pycocoevalcap's corpus value is the mean of its per-study scores: exact on resamples.
* CIDEr-D: per-study scores with the document frequencies of the full reference set (pycocoevalcap
  recomputes them from whichever references it gets), so resamples average per-study scores.
* METEOR: the jar's per-study alignment statistics, pooled by the jar's own formula (checked
  against the jar's corpus and per-study values on every call): exact on resamples.

pycocoevalcap's ``Cider`` is the CIDEr-D variant of coco-caption (Gaussian length penalty with
sigma 6, clipped n-gram counts), hence the name here.
"""

from __future__ import annotations

import numpy as np

from cxreport.errors import InputError, require
from cxreport.metrics.meteor import METEOR_TIMEOUT_S
from cxreport.metrics.stats import ItemStats

BLEU_NAMES = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4")
NLG_METRICS = BLEU_NAMES + ("METEOR", "ROUGE-L", "CIDEr-D")

def _coco(hyps: list[str], refs: list[str]) -> tuple[dict, dict]:
    """pycocoevalcap's input format: {id: [text]} for hypotheses and references."""
    return ({i: [r] for i, r in enumerate(refs)}, {i: [h] for i, h in enumerate(hyps)})


# ---- BLEU -------------------------------------------------------------------------------------
_SMALL, _TINY = 1e-9, 1e-15  # pycocoevalcap's constants in BleuScorer.compute_score


def bleu_from_sums(sums: np.ndarray, n: int | None = None) -> np.ndarray:
    """Corpus BLEU-1..4 from summed stats (B x 10: testlen, reflen, guess1-4, correct1-4).

    The formula of ``BleuScorer.compute_score`` (option 'closest'), vectorised over rows."""
    sums = np.atleast_2d(np.asarray(sums, dtype=np.float64))
    testlen, reflen = sums[:, 0], sums[:, 1]
    guess, correct = sums[:, 2:6], sums[:, 6:10]
    prod = np.cumprod((correct + _TINY) / (guess + _SMALL), axis=1)
    bleus = prod ** (1.0 / np.arange(1, 5))
    ratio = (testlen + _TINY) / (reflen + _SMALL)
    with np.errstate(divide="ignore", over="ignore"):
        bp = np.where(ratio < 1, np.exp(1 - 1 / np.maximum(ratio, 1e-300)), 1.0)
    return bleus * bp[:, None]


def bleu(hyps: list[str], refs: list[str]) -> tuple[dict, ItemStats, dict]:
    """(values, per-study stats block, per-study scores) for BLEU-1..4."""
    mod = require("pycocoevalcap.bleu.bleu_scorer", "metrics", "BLEU")
    scorer = mod.BleuScorer(n=4)
    for h, r in zip(hyps, refs):  # what pycocoevalcap's Bleu.compute_score does, keeping the scorer
        scorer += (h, [r])
    values, per_sentence = scorer.compute_score(option="closest", verbose=0)
    table = np.array([[c["testlen"], min((abs(l - c["testlen"]), l) for l in c["reflen"])[1],
                       *c["guess"], *c["correct"]] for c in scorer.ctest], dtype=np.float64)
    block = ItemStats(list(BLEU_NAMES), table, lambda s, n: bleu_from_sums(s), method="corpus BLEU recomputed "
                      "from pycocoevalcap's per-study n-gram counts")
    return (dict(zip(BLEU_NAMES, map(float, values))), block,
            {name: np.asarray(per_sentence[k], dtype=np.float64) for k, name in enumerate(BLEU_NAMES)})


def _mean_block(name: str, scores: np.ndarray, method: str) -> ItemStats:
    return ItemStats([name], np.asarray(scores, dtype=np.float64)[:, None], lambda s, n: s / n, method=method)


# ---- ROUGE-L, CIDEr-D -------------------------------------------------------------------------
def rouge_l(hyps: list[str], refs: list[str]):
    mod = require("pycocoevalcap.rouge.rouge", "metrics", "ROUGE-L")
    value, scores = mod.Rouge().compute_score(*_coco(hyps, refs))
    return float(value), _mean_block("ROUGE-L", scores, "mean of pycocoevalcap per-study ROUGE-L (exact)"), scores


def cider_d(hyps: list[str], refs: list[str]):
    mod = require("pycocoevalcap.cider.cider", "metrics", "CIDEr-D")
    value, scores = mod.Cider().compute_score(*_coco(hyps, refs))
    return float(value), _mean_block("CIDEr-D", np.asarray(scores), "mean of per-study CIDEr-D, document "
                                     "frequencies fixed to the full reference set"), np.asarray(scores)


# ---- METEOR -----------------------------------------------------------------------------------
def meteor(hyps: list[str], refs: list[str], session=None, timeout_s: float = METEOR_TIMEOUT_S):
    """METEOR 1.5 (pycocoevalcap's jar and protocol, see `cxreport.metrics.meteor`), one Java process."""
    from cxreport.metrics.meteor import MeteorSession, meteor_from_stats, summable_stats

    own = session is None
    session = MeteorSession(timeout_s) if own else session
    try:
        value, scores, stats = session.score(hyps, refs)
    finally:
        if own:
            session.close()
    table = summable_stats(stats)
    if (stats.shape[1] == 23 and np.allclose(meteor_from_stats(stats), scores, atol=1e-9)
            and abs(meteor_from_stats(table.sum(0))[0] - value) < 1e-9):
        block = ItemStats(["METEOR"], table, lambda s, n: meteor_from_stats(s)[:, None],
                          method="exact corpus METEOR from the jar's per-study statistics (formula checked "
                          "against the jar on these pairs)")
    else:  # a jar whose statistics we cannot reproduce: fall back to per-study scores, and say so
        block = _mean_block("METEOR", scores, "mean of per-study METEOR (the jar's corpus value pools "
                            "statistics, so this interval may not contain it)")
    return value, block, scores


def prepare_pairs(hyps: list[str], refs: list[str]) -> tuple[list[str], list[str]]:
    """One line per text (newlines or '|||' would break METEOR's line protocol); refs must not be empty."""
    def one(t: str) -> str:
        return " ".join(str(t or "").replace("|||", " ").split())

    h, r = [one(t) for t in hyps], [one(t) for t in refs]
    empty = [i for i, t in enumerate(r) if not t]
    if empty:
        raise InputError(f"{len(empty)} empty reference text(s) (first at position {empty[0]}): drop those pairs")
    if len(h) != len(r) or not h:
        raise InputError(f"need as many hypotheses as references, and at least one ({len(h)} vs {len(r)})")
    return h, r


def nlg_scores(hyps: list[str], refs: list[str], metrics=NLG_METRICS, meteor_session=None,
               meteor_timeout_s: float = METEOR_TIMEOUT_S):
    """(values, stats blocks, per-study scores) for the requested captioning metrics."""
    metrics = list(metrics)
    unknown = sorted(set(metrics) - set(NLG_METRICS))
    if unknown:
        raise InputError(f"unknown NLG metric(s) {unknown}; choose from {list(NLG_METRICS)}")
    hyps, refs = prepare_pairs(hyps, refs)
    values, blocks, per_study = {}, [], {}
    if any(m in BLEU_NAMES for m in metrics):
        v, b, p = bleu(hyps, refs)
        values.update(v)
        blocks.append(b)
        per_study.update(p)
    run = {"ROUGE-L": lambda: rouge_l(hyps, refs), "CIDEr-D": lambda: cider_d(hyps, refs),
           "METEOR": lambda: meteor(hyps, refs, meteor_session, meteor_timeout_s)}
    for name, fn in run.items():  # METEOR last: its JVM (started by the caller) loads meanwhile
        if name in metrics:
            v, b, p = fn()
            values[name], per_study[name] = v, p
            blocks.append(b)
    keep = [m for m in NLG_METRICS if m in metrics]
    return {m: values[m] for m in keep}, blocks, {m: per_study[m] for m in keep}
