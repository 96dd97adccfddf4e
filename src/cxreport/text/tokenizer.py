"""Report tokenizers behind one interface, saved next to every model.

Kinds: ``word`` (R2Gen-style min-frequency vocabulary), ``bpe`` and ``wordpiece`` (trained with HF
``tokenizers`` on the training texts), and ``hf`` (any local Hugging Face tokenizer folder: GPT-2,
DistilBERT, BioGPT...; never downloaded). Every kind cleans raw text with its stored protocol
before encoding, so callers pass report text as it comes.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Iterable

from cxreport import fsio
from cxreport.errors import InputError, require
from cxreport.registry import Registry
from cxreport.text.clean import clean_report, split_words

META_FILE = "cxreport_tokenizer.json"
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
# R2Gen's thresholds: a word enters the vocabulary when seen at least this often in training.
R2GEN_MIN_FREQ = {"iu": 3, "mimic": 10}

TOKENIZERS = Registry("tokenizer kind")


def register_tokenizer(kind: str):
    def deco(cls):
        TOKENIZERS.add(kind, cls)
        cls.kind = kind
        return cls

    return deco


class Tokenizer:
    """Interface: ``encode``/``decode``, special ids, ``vocab_size``, ``save``."""

    kind = "base"

    def __init__(self, protocol: str = "default", dataset: str = "iu"):
        self.protocol = protocol
        self.dataset = dataset

    def clean(self, text: str) -> str:
        return clean_report(text, self.protocol, self.dataset)

    def _meta(self) -> dict:
        return {"kind": self.kind, "protocol": self.protocol, "dataset": self.dataset}

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._save_files(directory)
        fsio.atomic_write_json(directory / META_FILE, self._meta())
        return directory

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        raise NotImplementedError

    def _save_files(self, directory: Path) -> None:
        raise NotImplementedError

    def _stop(self, ids: Iterable[int]) -> list[int]:
        """Ids up to the first EOS, without PAD/BOS: what a generated sequence means."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i in (self.pad_id, self.bos_id):
                continue
            out.append(i)
        return out


@register_tokenizer("word")
class WordTokenizer(Tokenizer):
    def __init__(self, vocab: list[str], protocol: str = "default", dataset: str = "iu", min_freq: int = 3):
        super().__init__(protocol, dataset)
        if list(vocab[: len(SPECIALS)]) != list(SPECIALS):
            raise InputError(f"word vocabulary must start with {SPECIALS}")
        self.vocab = list(vocab)
        self.min_freq = min_freq
        self.token_to_id = {t: i for i, t in enumerate(self.vocab)}
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = range(4)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def tokens(self, text: str) -> list[str]:
        cleaned = self.clean(text)
        # r2gen output is already space-separated tokens (R2Gen splits on spaces).
        return cleaned.split() if self.protocol == "r2gen" else split_words(cleaned)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        ids = [self.token_to_id.get(t, self.unk_id) for t in self.tokens(text)]
        return [self.bos_id, *ids, self.eos_id] if add_special_tokens else ids

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.vocab[i] for i in self._stop(ids) if 0 <= i < len(self.vocab))

    @classmethod
    def build(cls, texts: Iterable[str], protocol: str = "default", dataset: str = "iu",
              min_freq: int | None = None) -> "WordTokenizer":
        min_freq = R2GEN_MIN_FREQ[dataset] if min_freq is None else min_freq
        probe = cls(list(SPECIALS), protocol, dataset, min_freq)
        counts = Counter(t for text in texts for t in probe.tokens(text))
        words = sorted(w for w, c in counts.items() if c >= min_freq and w not in SPECIALS)
        return cls(list(SPECIALS) + words, protocol, dataset, min_freq)

    def _save_files(self, directory: Path) -> None:
        fsio.atomic_write_json(directory / "vocab.json", {"vocab": self.vocab, "min_freq": self.min_freq})

    @classmethod
    def load_dir(cls, directory: Path, meta: dict) -> "WordTokenizer":
        data = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
        return cls(data["vocab"], meta.get("protocol", "default"), meta.get("dataset", "iu"), data["min_freq"])


class _TrainedSubword(Tokenizer):
    """A ``tokenizers.Tokenizer`` trained on our reports, with our four special tokens."""

    def __init__(self, backend, protocol: str = "default", dataset: str = "iu"):
        super().__init__(protocol, dataset)
        self.backend = backend
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = (backend.token_to_id(t) for t in SPECIALS)

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size()

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        ids = self.backend.encode(self.clean(text)).ids
        return [self.bos_id, *ids, self.eos_id] if add_special_tokens else ids

    def decode(self, ids: Iterable[int]) -> str:
        return self.backend.decode(self._stop(ids))

    def _save_files(self, directory: Path) -> None:
        with fsio.atomic_path(directory / "tokenizer.json") as tmp:
            self.backend.save(str(tmp))

    @classmethod
    def load_dir(cls, directory: Path, meta: dict):
        tk = require("tokenizers", "dev", "subword tokenizers")
        backend = tk.Tokenizer.from_file(str(directory / "tokenizer.json"))
        return cls(backend, meta.get("protocol", "default"), meta.get("dataset", "iu"))

    @classmethod
    def _train(cls, model, trainer, decoder, texts, protocol, dataset):
        tk = require("tokenizers", "dev", "subword tokenizers")
        backend = tk.Tokenizer(model)
        backend.normalizer = tk.normalizers.NFKC()
        backend.pre_tokenizer = cls._pre_tokenizer(tk)
        backend.decoder = decoder
        probe = cls.__new__(cls)
        Tokenizer.__init__(probe, protocol, dataset)
        backend.train_from_iterator([probe.clean(t) for t in texts], trainer=trainer)
        return cls(backend, protocol, dataset)


@register_tokenizer("bpe")
class BPETokenizer(_TrainedSubword):
    @staticmethod
    def _pre_tokenizer(tk):
        return tk.pre_tokenizers.ByteLevel(add_prefix_space=False)

    @classmethod
    def build(cls, texts, protocol: str = "default", dataset: str = "iu", vocab_size: int = 2000,
              min_freq: int = 2) -> "BPETokenizer":
        tk = require("tokenizers", "dev", "subword tokenizers")
        trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_freq,
                                         special_tokens=list(SPECIALS),
                                         initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet())
        return cls._train(tk.models.BPE(unk_token="<unk>"), trainer, tk.decoders.ByteLevel(), texts,
                          protocol, dataset)


@register_tokenizer("wordpiece")
class WordPieceTokenizer(_TrainedSubword):
    @staticmethod
    def _pre_tokenizer(tk):
        return tk.pre_tokenizers.BertPreTokenizer()

    @classmethod
    def build(cls, texts, protocol: str = "default", dataset: str = "iu", vocab_size: int = 2000,
              min_freq: int = 2) -> "WordPieceTokenizer":
        tk = require("tokenizers", "dev", "subword tokenizers")
        trainer = tk.trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_freq,
                                               special_tokens=list(SPECIALS))
        return cls._train(tk.models.WordPiece(unk_token="<unk>"), trainer, tk.decoders.WordPiece(), texts,
                          protocol, dataset)


@register_tokenizer("hf")
class HFTokenizer(Tokenizer):
    """A local Hugging Face tokenizer folder (loaded with ``local_files_only``; never from the hub)."""

    def __init__(self, hf, source: str, protocol: str = "default", dataset: str = "iu"):
        super().__init__(protocol, dataset)
        self.hf = hf
        self.source = source
        # GPT-2 style tokenizers have only one special token; reuse it where a role is missing.
        fallback = hf.eos_token_id if hf.eos_token_id is not None else hf.sep_token_id
        self.eos_id = fallback if fallback is not None else hf.unk_token_id
        self.bos_id = next((i for i in (hf.bos_token_id, hf.cls_token_id) if i is not None), self.eos_id)
        self.pad_id = hf.pad_token_id if hf.pad_token_id is not None else self.eos_id
        self.unk_id = hf.unk_token_id

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        ids = self.hf.encode(self.clean(text), add_special_tokens=False)
        return [self.bos_id, *ids, self.eos_id] if add_special_tokens else ids

    def decode(self, ids: Iterable[int]) -> str:
        out = []
        for i in ids:  # special ids may coincide (GPT-2), so stop only at EOS after the first token
            i = int(i)
            if i == self.eos_id and (out or self.bos_id != self.eos_id):
                break
            if i == self.pad_id or i == self.bos_id:
                continue
            out.append(i)
        return self.hf.decode(out, skip_special_tokens=True, clean_up_tokenization_spaces=True).strip()

    def _save_files(self, directory: Path) -> None:
        self.hf.save_pretrained(str(directory))

    def _meta(self) -> dict:
        return {**super()._meta(), "source": self.source}

    @staticmethod
    def build(texts=None, path: str | Path = "", protocol: str = "default", dataset: str = "iu") -> "HFTokenizer":
        meta = {"protocol": protocol, "dataset": dataset}
        return HFTokenizer.load_dir(Path(path), meta)

    @classmethod
    def load_dir(cls, directory: Path, meta: dict) -> "HFTokenizer":
        transformers = require("transformers", "dev", "Hugging Face tokenizers")
        try:
            hf = transformers.AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise InputError(f"{directory}: not a loadable Hugging Face tokenizer folder ({exc})") from exc
        return cls(hf, str(meta.get("source", directory)), meta.get("protocol", "default"),
                   meta.get("dataset", "iu"))


def tokenizer_kinds() -> list[str]:
    return TOKENIZERS.names()


def build_tokenizer(kind: str, texts: Iterable[str] | None = None, **opts) -> Tokenizer:
    """Train (``word``/``bpe``/``wordpiece``) on ``texts`` or wrap a local folder (``hf``, ``path=``)."""
    cls = TOKENIZERS.get(kind)
    texts = list(texts or [])
    if kind != "hf" and not any(t and t.strip() for t in texts):
        raise InputError(f"cannot train a {kind!r} tokenizer on no text: pass the training reports")
    return cls.build(texts, **opts)


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """Load what ``save`` wrote, or any local Hugging Face tokenizer folder."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"{directory}: tokenizer folder not found")
    meta_path = directory / META_FILE
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        kind = meta.get("kind")
        if kind not in TOKENIZERS:
            raise InputError(f"{meta_path}: unknown tokenizer kind {kind!r}")
        return TOKENIZERS.get(kind).load_dir(directory, meta)
    return HFTokenizer.load_dir(directory, {"protocol": "default", "dataset": "iu"})
