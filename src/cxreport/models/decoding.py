"""A model's own decoding settings (``decoder`` section of its config) and the options of one call.

The settings travel with the checkpoint, so every trained run decodes like the bundled model:
n-gram blocking, the words it never writes, default beam width and length. ``generate`` and
``evaluate`` may override any of them per call.
"""

from __future__ import annotations

from dataclasses import dataclass

from cxreport.errors import InputError
from cxreport.models.config import MAX_BEAM
from cxreport.text.wording import COMPARISON_WORDS


def word_ids(tokenizer, words) -> list[int]:
    """The ids of the words the tokenizer keeps as one token (a word split in pieces is skipped:
    suppressing a piece would also forbid other words; the text checks catch those)."""
    out = []
    unk = getattr(tokenizer, "unk_id", None)
    vocab = getattr(tokenizer, "token_to_id", None)
    for w in words:
        if vocab is not None and w in vocab:
            out.append(int(vocab[w]))
            continue
        try:
            ids = tokenizer.encode(w)
        except Exception:  # a tokenizer that cannot encode a special-looking word: nothing to suppress
            continue
        if len(ids) == 1 and ids[0] != unk:
            out.append(int(ids[0]))
    return sorted(set(out))


def banned_ngram_tokens(seq: list[int], n: int) -> list[int]:
    """Tokens that would repeat an n-gram already in ``seq`` (n-gram blocking, for both runtimes)."""
    if n <= 0 or len(seq) < n:
        return []
    prefix = seq[len(seq) - n + 1:] if n > 1 else []
    banned = []
    for i in range(len(seq) - n + 1):
        if seq[i:i + n - 1] == prefix:
            banned.append(seq[i + n - 1])
    return banned


def resolve_decoding(model, tokenizer) -> None:
    """Fill ``decoder.suppress_ids`` / ``comparison_ids`` from the configured words and this
    tokenizer (on a model built for training, and on every loaded checkpoint)."""
    if tokenizer is None:
        return
    dc = model.cfg.decoder
    words = list(getattr(dc, "suppress_words", []) or [])
    unk = getattr(tokenizer, "unk_id", None)
    ids = set(dc.suppress_ids or []) | set(word_ids(tokenizer, [w for w in words if w != "<unk>"]))
    if "<unk>" in words and unk is not None:
        ids.add(int(unk))
    dc.suppress_ids = sorted(ids)
    dc.comparison_ids = word_ids(tokenizer, COMPARISON_WORDS)


@dataclass
class DecodeOptions:
    """One call's decoding: None = the model's own setting."""

    beam: int | None = None
    max_len: int | None = None
    no_repeat_ngram: int | None = None
    faithful: bool | None = None
    prior: bool = False  # the input includes a prior study or comparison text

    def resolve(self, cfg) -> "DecodeOptions":
        dc = cfg.decoder
        beam = int(dc.default_beam if self.beam is None else self.beam)
        max_len = int(dc.default_max_len if self.max_len is None else self.max_len)
        limit = dc.max_len - 1
        if not 1 <= beam <= MAX_BEAM:  # one limit for the CLI, Python and HTTP
            raise InputError(f"beam={beam}: choose 1 (greedy) .. {MAX_BEAM}")
        if not 1 <= max_len <= limit:
            raise InputError(f"max_len={max_len}: this model writes 1..{limit} tokens")
        return DecodeOptions(beam=beam, max_len=max_len,
                             no_repeat_ngram=int(dc.no_repeat_ngram if self.no_repeat_ngram is None
                                                 else self.no_repeat_ngram),
                             faithful=bool(dc.faithful if self.faithful is None else self.faithful), prior=self.prior)


def pack_candidates(order: list[list[int]], seqs: list[list[int]], scores: list[float], num_return: int) -> list[dict]:
    """Beam search's result per study from its beams ranked best first (``order``: indices into
    ``seqs``/``scores``): the best as the output, the ``num_return`` best as its candidates;
    beams that never lived (score -inf) are left out. Shared by both backends' searches."""
    out = []
    for row in order:
        cands = [{"token_ids": seqs[j], "score": scores[j]} for j in row if scores[j] > float("-inf")]
        out.append(dict(cands[0]))
        if num_return > 1:
            out[-1]["candidates"] = cands[:num_return]
    return out
