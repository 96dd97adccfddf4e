"""CheXbert labeler (Smit et al. 2020) with the published weights, for F1-CheXbert.

Architecture and conventions as the reference scorers (``f1chexbert`` 0.0.2 on PyPI and RadEval's
copy): ``bert-base-uncased`` with 13 four-way heads (blank / positive / negative / uncertain) and a
two-way No Finding head on the [CLS] state; the report is whitespace-collapsed, WordPiece-tokenised
and cut to 512 tokens ([CLS] + 510 + [SEP]); an empty report is still run ([CLS][SEP]). Head
classes become our label states: positive 1, negative 0, uncertain -1, blank not mentioned.
F1-CheXbert then counts uncertain as positive (`cxreport.metrics.clinical`), over all 14 labels
(No Finding included) and over the 5 of the CheXpert competition.

Weights: the file ``chexbert.pth`` (``{"model_state_dict": ...}`` with ``module.`` prefixes) from a
local path, or fetched once from ``StanfordAIMI/RRG_scorers`` into the Hugging Face cache; the
tokenizer is ``bert-base-uncased``'s ``vocab.txt`` (local folder or the same cache). The BERT
size is read from the tensors, so smaller checkpoints in the same format load too.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from cxreport.errors import InputError
from cxreport.labels import CHEXPERT_LABELS

HUB_REPO, HUB_FILE = "StanfordAIMI/RRG_scorers", "chexbert.pth"
TOKENIZER_REPO = "bert-base-uncased"
# The reference packages' head order (CheXbert's label order, No Finding last).
HEAD_LABELS = ("Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
               "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
               "Fracture", "Support Devices", "No Finding")
CLASS_STATES = {0: None, 1: 1, 2: 0, 3: -1}  # blank, positive, negative, uncertain
MAX_TOKENS = 512
# f1chexbert 0.0.2 keeps its own copy here (appdirs user_cache_dir("chexbert")): reuse it when present.
_F1CHEXBERT_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "chexbert" / HUB_FILE
_IGNORED_KEYS = re.compile(r"^bert\.(embeddings\.(position_ids|token_type_ids)|pooler\..*)$")


def build_model(config):
    """The published labeler module: ``bert`` + ``dropout`` + ``linear_heads`` (13 x 4, 1 x 2)."""
    import torch.nn as nn
    from transformers import BertModel

    class CheXbert(nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = BertModel(config)
            self.dropout = nn.Dropout(0.1)
            self.linear_heads = nn.ModuleList([nn.Linear(config.hidden_size, 4) for _ in range(13)]
                                              + [nn.Linear(config.hidden_size, 2)])

        def forward(self, input_ids, attention_mask):
            cls = self.dropout(self.bert(input_ids, attention_mask=attention_mask)[0][:, 0])
            return [head(cls) for head in self.linear_heads]

    return CheXbert()


def config_from_state(state: dict):
    """BertConfig from the tensor shapes (heads: BERT's 64 dimensions each, true for every released size)."""
    from transformers import BertConfig

    try:
        vocab, hidden = state["bert.embeddings.word_embeddings.weight"].shape
        layers = 1 + max(int(k.split(".")[3]) for k in state if k.startswith("bert.encoder.layer."))
        return BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                          num_attention_heads=max(1, hidden // 64),
                          intermediate_size=state["bert.encoder.layer.0.intermediate.dense.weight"].shape[0],
                          max_position_embeddings=state["bert.embeddings.position_embeddings.weight"].shape[0],
                          type_vocab_size=state["bert.embeddings.token_type_embeddings.weight"].shape[0])
    except (KeyError, ValueError) as exc:
        raise InputError(f"not a CheXbert state dict (missing {exc}); expected the published chexbert.pth") from exc


def save_published_format(model, path) -> Path:
    """Write ``model`` as the published file: {"model_state_dict": {"module." + key: tensor}}."""
    import torch

    from cxreport.fsio import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"model_state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp)
    return path


def resolve_weights(weights=None) -> Path:
    """A local chexbert.pth (file or folder), f1chexbert's own copy, or the Hub file via its cache."""
    from cxreport import hub

    if weights:
        if hub.is_hub_ref(str(weights)):
            repo, rev = hub.parse_hub_ref(str(weights))
            return hub.hub_file(repo, HUB_FILE, rev, what="CheXbert weights")
        path = Path(weights).expanduser()
        path = path / HUB_FILE if path.is_dir() else path
        if not path.is_file():
            raise InputError(f"{weights}: no CheXbert weights there (give chexbert.pth or its folder)")
        return path
    if _F1CHEXBERT_CACHE.is_file():
        return _F1CHEXBERT_CACHE
    return hub.hub_file(HUB_REPO, HUB_FILE, what="CheXbert weights")


def resolve_tokenizer(tokenizer=None) -> Path:
    """A folder with bert-base-uncased's vocab.txt: given, or from the Hub cache."""
    from cxreport import hub

    if tokenizer and not hub.is_hub_ref(str(tokenizer)):
        path = Path(tokenizer).expanduser()
        if not (path / "vocab.txt").is_file():
            raise InputError(f"{tokenizer}: no vocab.txt there (give a bert-base-uncased tokenizer folder)")
        return path
    repo, rev = hub.parse_hub_ref(str(tokenizer)) if tokenizer else (TOKENIZER_REPO, None)
    return hub.hub_file(repo, "vocab.txt", rev, what="CheXbert tokenizer (bert-base-uncased)").parent


def _resolve_both(weights, tokenizer) -> tuple[Path, Path]:
    """Both files, or one error naming everything that is missing (not one download at a time)."""
    from cxreport.hub import HubUnavailable

    found, missing = [], []
    for fn, arg in ((resolve_weights, weights), (resolve_tokenizer, tokenizer)):
        try:
            found.append(fn(arg))
        except HubUnavailable as exc:
            missing.append(str(exc))
    if missing:
        raise HubUnavailable(" AND ".join(missing))
    return found[0], found[1]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def normalise(text: str) -> str:
    """The reference's whitespace handling before tokenisation."""
    return re.sub(r"\s+", " ", (text or "").strip().replace("\n", " ")).strip()


class CheXbertLabeler:
    """``label_many(texts)`` -> one {CheXpert label: 1 / 0 / -1 / None} per text, batched."""

    name = "chexbert"

    def __init__(self, weights=None, tokenizer=None, device: str | None = None, batch_size: int = 32):
        import torch
        from transformers import BertTokenizer

        self.weights, tok_dir = _resolve_both(weights, tokenizer)
        raw = torch.load(self.weights, map_location="cpu", weights_only=True)
        if not isinstance(raw, dict) or "model_state_dict" not in raw:
            raise InputError(f"{self.weights}: not the published CheXbert format (no 'model_state_dict')")
        state = {k.replace("module.", ""): v for k, v in raw["model_state_dict"].items()}
        self.config = config_from_state(state)
        self.model = build_model(self.config)
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        bad = [k for k in missing + unexpected if not _IGNORED_KEYS.match(k)]
        if bad:
            raise InputError(f"{self.weights}: weights do not fit the CheXbert architecture ({bad[:5]})")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device).eval()
        self.tokenizer = BertTokenizer.from_pretrained(str(tok_dir))
        self.tokenizer_dir, self.batch_size = tok_dir, batch_size
        self.max_tokens = min(MAX_TOKENS, self.config.max_position_embeddings)
        self.sha256 = _sha256(self.weights)

    def encode(self, text: str) -> list[int]:
        tok = self.tokenizer
        ids = tok.convert_tokens_to_ids(tok.tokenize(normalise(text)))[:self.max_tokens - 2]
        return [tok.cls_token_id, *ids, tok.sep_token_id]

    def head_classes(self, texts: list[str]) -> list[list[int]]:
        """Argmax class of each of the 14 heads, in HEAD_LABELS order."""
        import torch

        encoded = [self.encode(t) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))  # little padding per batch
        out: list[list[int]] = [[] for _ in texts]
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                width = max(len(encoded[i]) for i in idx)
                ids = torch.full((len(idx), width), self.tokenizer.pad_token_id, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.float)
                for row, i in enumerate(idx):
                    ids[row, :len(encoded[i])] = torch.tensor(encoded[i])
                    mask[row, :len(encoded[i])] = 1
                logits = self.model(ids.to(self.device), mask.to(self.device))
                classes = torch.stack([h.argmax(1) for h in logits], 1).tolist()
                for row, i in enumerate(idx):
                    out[i] = classes[row]
        return out

    def label_many(self, texts: list[str]) -> list[dict[str, int | None]]:
        """Label dicts in CHEXPERT_LABELS order, like the rule labeler's."""
        rows = [dict(zip(HEAD_LABELS, (CLASS_STATES[c] for c in row))) for row in self.head_classes(list(texts))]
        return [{k: row[k] for k in CHEXPERT_LABELS} for row in rows]

    def label(self, text: str) -> dict[str, int | None]:
        return self.label_many([text])[0]

    def describe(self) -> dict:
        c = self.config
        return {"name": "chexbert", "weights": str(self.weights), "weights_sha256": self.sha256,
                "tokenizer": str(self.tokenizer_dir), "device": str(self.device),
                "architecture": f"BERT ({c.num_hidden_layers} layers, hidden {c.hidden_size}) + 13 four-way heads "
                                "+ a two-way No Finding head on [CLS]",
                "conventions": "as f1chexbert 0.0.2 / RadEval: reports cut to 512 WordPiece tokens, empty reports "
                               "labelled too; uncertain counted positive by --uncertain positive; the 14 labels "
                               "include No Finding; 5 = Cardiomegaly, Edema, Consolidation, Atelectasis, "
                               "Pleural Effusion"}


_LOADED: dict = {}


def get_labeler(weights=None, tokenizer=None, device: str | None = None, batch_size: int = 32) -> CheXbertLabeler:
    """One loaded labeler per (weights, tokenizer, device), reused by references and every system."""
    key = (str(weights), str(tokenizer), device, batch_size)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = CheXbertLabeler(weights, tokenizer, device, batch_size)
    return _LOADED[key]
