"""`score(hyps, refs)` and `compare(hyps_a, hyps_b, refs)`: every metric, its 95% CI, and what was done.

Protocols say which texts the captioning metrics see:

* ``r2gen``: R2Gen's cleaning (`cxreport.text.clean`, protocol ``r2gen``) of hypotheses and
  references, and R2Gen's truncation of references: its ``max_seq_length`` (60 IU X-Ray, 100
  MIMIC-CXR) counts the BOS token, so a reference keeps its first 59 / 99 words. With a training
  vocabulary (``r2gen_vocab``, see `r2gen_vocabulary`) reference words outside it become
  ``<unk>`` as in R2Gen; the output says whether that was applied.
* ``full``: whole texts under our default cleaning, words and punctuation split by spaces.

Clinical efficacy always labels the original texts.
"""

from __future__ import annotations

import contextlib

import numpy as np

from cxreport.errors import InputError
from cxreport.metrics import clinical, nlg
from cxreport.metrics.stats import bootstrap as run_bootstrap
from cxreport.metrics.stats import paired_randomisation

PROTOCOLS = ("r2gen", "full")
R2GEN_MAX_SEQ_LENGTH = {"iu": 60, "mimic": 100}
DEFAULT_METRICS = list(nlg.NLG_METRICS) + ["CE"]
OPTIONAL_METRICS = ["BERTScore", "RadGraph"]
_ALIASES = {"bleu": list(nlg.BLEU_NAMES), "meteor": ["METEOR"], "rouge": ["ROUGE-L"], "rouge-l": ["ROUGE-L"],
            "cider": ["CIDEr-D"], "cider-d": ["CIDEr-D"], "ce": ["CE"], "clinical": ["CE"],
            "bertscore": ["BERTScore"], "radgraph": ["RadGraph"], "f1-radgraph": ["RadGraph"],
            **{n.lower(): [n] for n in nlg.BLEU_NAMES}}


def resolve_metrics(metrics) -> list[str]:
    if metrics is None:
        return list(DEFAULT_METRICS)
    if isinstance(metrics, str):
        metrics = metrics.split(",")
    out = []
    for m in metrics:
        key = m.strip().lower()
        if key in ("all", "default"):
            names = DEFAULT_METRICS + (OPTIONAL_METRICS if key == "all" else [])
        elif key in _ALIASES:
            names = _ALIASES[key]
        else:
            raise InputError(f"unknown metric {m!r}; choose from BLEU, BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, CE, "
                             "BERTScore, RadGraph, default, all")
        out += [n for n in names if n not in out]
    return out


def check_scoring(metrics=None, *, protocol: str = "full", dataset: str = "iu", uncertain: str = "positive",
                  labeler: str = "rules") -> list[str]:
    """The metric names, after checking everything scoring will need that can be checked without
    texts (names, protocol, packages, Java for METEOR): callers run this before generating."""
    import shutil

    from cxreport.errors import require

    metrics = resolve_metrics(metrics)
    if protocol not in PROTOCOLS:
        raise InputError(f"--protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    if protocol == "r2gen" and dataset not in R2GEN_MAX_SEQ_LENGTH:
        raise InputError(f"--dataset {dataset!r}: choose iu or mimic for the r2gen protocol")
    if uncertain not in clinical.UNCERTAIN_POLICIES:
        raise InputError(f"--uncertain {uncertain!r}: choose positive or negative")
    if "CE" in metrics:
        clinical.labeler_name(labeler)
    if set(metrics) & set(nlg.NLG_METRICS):
        require("pycocoevalcap", "metrics", "BLEU, METEOR, ROUGE-L and CIDEr-D")
    if "METEOR" in metrics and shutil.which("java") is None:
        raise InputError("METEOR needs Java (a JRE 8+ on PATH as `java`), which was not found: install one "
                         "(e.g. apt-get install default-jre-headless) or leave METEOR out with --metrics")
    if "BERTScore" in metrics:
        require("bert_score", "bertscore", "BERTScore")
    return metrics


def protocol_dataset(source: str | None) -> str:
    """Which R2Gen cleaning and truncation a dataset source gets: ``mimic`` for any MIMIC-CXR
    source name (any case), ``iu`` otherwise."""
    return "mimic" if "mimic" in str(source or "").lower() else "iu"


def r2gen_vocabulary(train_texts, dataset: str = "iu") -> set[str]:
    """R2Gen's reference vocabulary: cleaned training words seen at least 3 (IU) / 10 (MIMIC) times."""
    from cxreport.text.tokenizer import SPECIALS, WordTokenizer

    return set(WordTokenizer.build(list(train_texts), protocol="r2gen", dataset=dataset).vocab) - set(SPECIALS)


def protocol_texts(hyps: list[str], refs: list[str], protocol: str, dataset: str, vocab=None):
    """(hyps, refs, description) as the captioning metrics will see them. ``vocab`` (r2gen only):
    reference words outside it become ``<unk>``, as R2Gen's tokenizer makes them."""
    from cxreport.text.clean import clean_report, split_words

    if protocol == "r2gen":
        if dataset not in R2GEN_MAX_SEQ_LENGTH:
            raise InputError(f"--dataset {dataset!r}: choose iu or mimic for the r2gen protocol")
        keep = R2GEN_MAX_SEQ_LENGTH[dataset] - 1
        # Single spaces, as R2Gen's decoded texts have (ROUGE-L splits on " ", so runs would count).
        h = [" ".join(clean_report(t, "r2gen", dataset).split()) for t in hyps]
        r = [clean_report(t, "r2gen", dataset).split()[:keep] for t in refs]
        unk = "not applied (no training vocabulary given; R2Gen maps out-of-vocabulary reference words to <unk>)"
        if vocab is not None:
            vocab = set(vocab)
            n_unk = sum(w not in vocab for words in r for w in words)
            r = [[w if w in vocab else "<unk>" for w in words] for words in r]
            unk = (f"applied: reference words outside the {len(vocab)}-word training vocabulary -> <unk> "
                   f"({n_unk} words)")
        return h, [" ".join(words) for words in r], {
            "name": "r2gen", "dataset": dataset, "cleaning": f"R2Gen clean_report ({dataset})",
            "reference_truncation": f"first {keep} words (R2Gen max_seq_length {keep + 1} incl. BOS)",
            "hypothesis_truncation": None, "unk_mapping": unk}
    if protocol == "full":
        def one(t):
            return " ".join(split_words(clean_report(t, "default", dataset if dataset in ("iu", "mimic") else "iu")))

        return [one(t) for t in hyps], [one(t) for t in refs], {
            "name": "full", "cleaning": "cxreport default cleaning, words and punctuation split by spaces",
            "reference_truncation": None, "hypothesis_truncation": None}
    raise InputError(f"--protocol {protocol!r}: choose one of {list(PROTOCOLS)}")


def align(hyps, refs, ids=None) -> tuple[list[str], list[str], list[str], dict]:
    """Pair hypotheses with references. Accepts lists (same order), {id: text} dicts or
    [{"id", "text"}] rows; every reference needs a hypothesis, extra hypotheses are counted."""
    def as_map(x, what):
        if isinstance(x, dict):
            return {str(k): v for k, v in x.items()}
        x = list(x)
        if x and isinstance(x[0], dict):
            out = {}
            for row in x:
                if "id" not in row or "text" not in row:
                    raise InputError(f"{what}: every row needs 'id' and 'text' (got keys {sorted(row)})")
                out[str(row["id"])] = row["text"]
            return out
        return None

    hm, rm = as_map(hyps, "hypotheses"), as_map(refs, "references")
    if hm is None and rm is None:
        hyps, refs = list(hyps), list(refs)
        if len(hyps) != len(refs):
            raise InputError(f"{len(hyps)} hypotheses but {len(refs)} references: give one per reference")
        ids = [str(i) for i in (ids or range(len(refs)))]
        return ids, [str(h or "") for h in hyps], [str(r or "") for r in refs], {"unmatched_hypotheses": 0}
    if hm is None or rm is None:
        raise InputError("give hypotheses and references in the same form (both lists, or both with ids)")
    missing = [k for k in rm if k not in hm]
    if missing:
        raise InputError(f"{len(missing)} reference id(s) have no hypothesis, e.g. {missing[:5]}")
    ids = list(rm)
    return ids, [str(hm[k] or "") for k in ids], [str(rm[k] or "") for k in ids], {
        "unmatched_hypotheses": len(set(hm) - set(rm))}


class _Scored:
    """Values, CI blocks and per-study scores of one system."""

    def __init__(self):
        self.values, self.blocks, self.per_study, self.info = {}, [], {}, {}


def _score_system(hyps_raw, refs_raw, hyps, refs, metrics, ref_labels, opts) -> _Scored:
    out = _Scored()
    nlg_names = [m for m in metrics if m in nlg.NLG_METRICS]
    if nlg_names:
        v, b, p = nlg.nlg_scores(hyps, refs, nlg_names, meteor_session=opts.get("meteor_session"),
                                 meteor_timeout_s=opts["meteor_timeout_s"])
        out.values.update(v)
        out.blocks += b
        out.per_study.update(p)
    if "BERTScore" in metrics:
        from cxreport.metrics.bertscore import bertscore

        v, b, p, info = bertscore(hyps, refs, model=opts.get("bertscore_model"), idf=opts.get("bertscore_idf", False))
        out.values.update(v)
        out.blocks += b
        out.per_study.update(p)
        out.info["bertscore"] = info
    if "RadGraph" in metrics:
        from cxreport.metrics.radgraph import radgraph_scores

        v, b, p, info = radgraph_scores(hyps_raw, refs_raw, model_type=opts["radgraph_model"])
        out.values.update(v)
        out.blocks += b
        out.per_study.update(p)
        out.info["radgraph"] = info
    if "CE" in metrics:
        hyp_labels = clinical.label_texts(hyps_raw, opts["labeler"], **opts["labeler_opts"])
        v, b, info = clinical.clinical_scores(hyp_labels, ref_labels, opts["uncertain"],
                                              clinical.labeler_name(opts["labeler"]))
        info["labeler_details"] = clinical.describe_labeler(opts["labeler"], **opts["labeler_opts"])
        out.values.update(v)
        out.blocks += b
        out.info["clinical"] = info
        names = clinical.LABEL_SETS["chexpert14"]
        hb = clinical.binarise(hyp_labels, names, opts["uncertain"])
        out.per_study["hyp_positive"] = [[n for n, x in zip(names, row) if x] for row in hb]
    return out


def _assemble(ids, scored: _Scored, refs_labels_pos, n_boot, seed, protocol_info, metrics, extra) -> dict:
    cis = run_bootstrap(scored.blocks, n_resamples=n_boot, seed=seed)
    keep = [n for n in scored.values]
    table = {}
    for name in keep:
        ci = cis.get(name, {})
        table[name] = {"value": scored.values[name], "ci95": ci.get("ci95"), "ci_resamples": ci.get("resamples"),
                       "ci_method": ci.get("method")}
    per_study = []
    for i, sid in enumerate(ids):
        row = {"id": sid}
        for k, v in scored.per_study.items():
            row[k] = v[i] if isinstance(v, list) else float(np.asarray(v)[i])
        if refs_labels_pos is not None:
            row["ref_positive"] = refs_labels_pos[i]
        per_study.append(row)
    return {"n": len(ids), "metrics_requested": metrics, "protocol": protocol_info, "metrics": table,
            "bootstrap": {"resamples": n_boot, "seed": seed, "level": 0.95, "unit": "study pairs (hypothesis, reference)",
                          "interval": "percentile"},
            **scored.info, **extra, "per_study": per_study}


def _common(refs_raw, metrics, uncertain, labeler, labeler_opts):
    metrics = resolve_metrics(metrics)
    if uncertain not in clinical.UNCERTAIN_POLICIES:
        raise InputError(f"--uncertain {uncertain!r}: choose positive or negative")
    ref_labels = clinical.label_texts(refs_raw, labeler, **labeler_opts) if "CE" in metrics else None
    pos = None
    if ref_labels is not None:
        names = clinical.LABEL_SETS["chexpert14"]
        pos = [[n for n, x in zip(names, row) if x] for row in clinical.binarise(ref_labels, names, uncertain)]
    return metrics, ref_labels, pos


def _opts(kw: dict) -> dict:
    return dict(meteor_timeout_s=kw["meteor_timeout_s"], labeler=kw["labeler"], uncertain=kw["uncertain"],
                bertscore_model=kw["bertscore_model"], bertscore_idf=kw["bertscore_idf"], seed=kw["seed"],
                meteor_session=kw["session"], labeler_opts=dict(kw["labeler_opts"] or {}),
                radgraph_model=kw["radgraph_model"])


@contextlib.contextmanager
def _meteor_session(metrics, timeout_s):
    """Start METEOR's JVM first: it loads its paraphrase table while the other metrics run."""
    if "METEOR" not in metrics:
        yield None
        return
    from cxreport.metrics.meteor import MeteorSession

    with MeteorSession(timeout_s) as session:
        yield session


def score_systems(systems: dict, refs, *, metrics=None, protocol: str = "full", dataset: str = "iu",
                  uncertain: str = "positive", labeler: str = "rules", bootstrap: int = 1000,
                  permutations: int = 0, pairs: list[tuple[str, str]] | None = None, seed: int = 0,
                  meteor_timeout_s: float = nlg.METEOR_TIMEOUT_S, bertscore_model: str | None = None,
                  bertscore_idf: bool = False, r2gen_vocab=None, labeler_opts: dict | None = None,
                  radgraph_model: str = "radgraph-xl") -> dict:
    """Score several systems ({name: hypotheses}) on the same references with one METEOR process.

    With ``pairs`` [(a, b), ...] and ``permutations`` > 0, each pair is also compared by paired
    approximate randomisation (diff = a - b): ``{"systems": {...}, "comparisons": {...}}``."""
    if not systems:
        raise InputError("no systems to score")
    metrics = resolve_metrics(metrics)
    aligned = {name: align(h, refs) for name, h in systems.items()}
    first = next(iter(aligned.values()))
    ids, refs_raw = first[0], first[2]
    for name, (ids_n, _, _, _) in aligned.items():
        if ids_n != ids:
            raise InputError(f"system {name!r} does not cover the same references as the others")
    with _meteor_session(metrics, meteor_timeout_s) as session:
        metrics, ref_labels, pos = _common(refs_raw, metrics, uncertain, labeler, labeler_opts or {})
        opts = _opts(locals())
        scored, pinfo = {}, None
        for name, (_, hyps_raw, _, _) in aligned.items():
            h, r, pinfo = protocol_texts(hyps_raw, refs_raw, protocol, dataset, r2gen_vocab)
            scored[name] = _score_system(hyps_raw, refs_raw, h, r, metrics, ref_labels, opts)
    out = {"systems": {name: _assemble(ids, sc, pos, bootstrap, seed, pinfo, metrics, aligned[name][3])
                       for name, sc in scored.items()}}
    if pairs and permutations > 0:
        bad = [x for pair in pairs for x in pair if x not in scored]
        if bad:
            raise InputError(f"comparison of unknown system(s) {bad}; systems are {list(scored)}")
        out["comparisons"] = {
            "method": "paired approximate randomisation (swap the two systems' outputs per study with p=1/2), "
                      "two-sided; diff = first - second",
            "permutations": permutations, "seed": seed,
            "results": {f"{a} vs {b}": paired_randomisation(scored[a].blocks, scored[b].blocks, permutations, seed)
                        for a, b in pairs}}
    return out


def score(hyps, refs, *, ids=None, metrics=None, protocol: str = "full", dataset: str = "iu",
          uncertain: str = "positive", labeler: str = "rules", bootstrap: int = 1000, seed: int = 0,
          meteor_timeout_s: float = nlg.METEOR_TIMEOUT_S, bertscore_model: str | None = None,
          bertscore_idf: bool = False, r2gen_vocab=None, labeler_opts: dict | None = None,
          radgraph_model: str = "radgraph-xl") -> dict:
    """Score hypotheses against references (lists in the same order, {id: text} dicts or
    [{"id", "text"}] rows); see the module docstring for the protocols. ``bootstrap``: resamples
    for the 95% CIs (0: none), the same resamples for every metric; ``r2gen_vocab``: R2Gen's
    training vocabulary (`r2gen_vocabulary`) for its ``<unk>`` mapping of references; ``labeler``
    ``rules`` (offline) or ``chexbert`` (F1-CheXbert; ``labeler_opts``: weights, tokenizer, device);
    ``bertscore_model`` ``standard`` for distilbert-base-uncased layer 5 rescaled; ``radgraph_model``
    the RadGraph model type for metric ``RadGraph``."""
    if ids is not None:
        hyps, refs = dict(zip(map(str, ids), hyps)), dict(zip(map(str, ids), refs))
    kw = {k: v for k, v in locals().items() if k not in ("hyps", "refs", "ids")}
    return score_systems({"system": hyps}, refs, **kw)["systems"]["system"]


def compare(hyps_a, hyps_b, refs, *, permutations: int = 1000, **kw) -> dict:
    """Score systems A and B on the same references, plus a paired approximate randomisation test
    (diff = A - B). Keywords as `score`."""
    res = score_systems({"a": hyps_a, "b": hyps_b}, refs, permutations=permutations, pairs=[("a", "b")], **kw)
    comp = res["comparisons"]
    return {"a": res["systems"]["a"], "b": res["systems"]["b"],
            "comparison": {"method": comp["method"].replace("first - second", "A - B"), "permutations": permutations,
                           "seed": comp["seed"], "metrics": comp["results"]["a vs b"]}}
