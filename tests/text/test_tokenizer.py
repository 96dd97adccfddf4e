import json

import pytest

from cxreport.errors import InputError
from cxreport.text.tokenizer import build_tokenizer, load_tokenizer

TRAIN = [
    "The heart is normal in size. No pleural effusion or pneumothorax.",
    "The lungs are clear. No focal consolidation. Heart size is normal.",
    "Mild cardiomegaly. Small left pleural effusion, 2.5 cm nodule. XXXX-year-old.",
    "No pneumothorax. The lungs are clear. The heart is normal.",
] * 3


def test_word_tokenizer_min_freq_and_round_trip(tmp_path):
    tok = build_tokenizer("word", TRAIN, min_freq=3)
    assert tok.vocab_size > 10 and tok.pad_id == 0
    text = "The lungs are clear. No pneumothorax."
    ids = tok.encode(text)
    assert tok.unk_id not in ids
    assert tok.decode(ids) == "the lungs are clear . no pneumothorax ."
    assert tok.decode([tok.bos_id, *ids, tok.eos_id, tok.pad_id, 7]) == tok.decode(ids)
    assert tok.encode("zebra")[0] == tok.unk_id  # below min_freq / unseen
    loaded = load_tokenizer(tok.save(tmp_path / "tok"))
    assert loaded.encode(text) == ids and loaded.vocab_size == tok.vocab_size
    assert loaded.decode(ids) == tok.decode(ids)


def test_word_tokenizer_r2gen_threshold_defaults():
    tok = build_tokenizer("word", TRAIN[:4], protocol="r2gen", dataset="iu")
    assert tok.min_freq == 3
    assert "heart" in tok.vocab and "cardiomegaly" not in tok.vocab  # seen 3 times vs once
    assert build_tokenizer("word", TRAIN, protocol="r2gen", dataset="mimic").min_freq == 10


@pytest.mark.parametrize("kind", ["bpe", "wordpiece"])
def test_subword_round_trip(kind, tmp_path):
    tok = build_tokenizer(kind, TRAIN, vocab_size=200, min_freq=1)
    text = "No pleural effusion. The heart is normal, 2.5 cm."
    ids = tok.encode(text, add_special_tokens=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    decoded = tok.decode(ids + [tok.pad_id])
    assert decoded.replace(" ", "") == tok.clean(text).replace(" ", "")
    loaded = load_tokenizer(tok.save(tmp_path / kind))
    assert loaded.encode(text) == tok.encode(text) and loaded.decode(ids) == decoded
    assert loaded.vocab_size == tok.vocab_size


def _gpt2_folder(path):
    path.mkdir()
    chars = sorted(set("abcdefghijklmnopqrstuvwxyz.,0123456789") | {"Ġ"})
    vocab = {c: i for i, c in enumerate(chars)}
    vocab["he"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\nh e\n")
    (path / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "GPT2Tokenizer", "eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>",
         "unk_token": "<|endoftext|>", "model_max_length": 64}))
    return path


def _bert_folder(path):
    path.mkdir()
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "heart", "is", "normal", ".", "no",
             "effusion", "lungs", "are", "clear", "##s"]
    (path / "vocab.txt").write_text("\n".join(words) + "\n")
    (path / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "DistilBertTokenizer", "do_lower_case": True, "model_max_length": 64}))
    return path


def test_local_hf_gpt2_style_folder(tmp_path):
    tok = load_tokenizer(_gpt2_folder(tmp_path / "gpt2"))
    assert tok.kind == "hf"
    ids = tok.encode("The heart is normal.", add_special_tokens=True)
    assert tok.decode(ids) == "the heart is normal."
    again = load_tokenizer(tok.save(tmp_path / "saved"))
    assert again.encode("The heart is normal.") == tok.encode("The heart is normal.")


def test_local_hf_bert_style_folder(tmp_path):
    tok = build_tokenizer("hf", path=_bert_folder(tmp_path / "bert"))
    ids = tok.encode("The lungs are clear.", add_special_tokens=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert tok.decode(ids) == "the lungs are clear."
    assert tok.vocab_size == 16
    again = load_tokenizer(tok.save(tmp_path / "saved"))
    assert again.decode(again.encode("no effusion")) == "no effusion."


def test_errors(tmp_path):
    with pytest.raises(InputError, match="unknown tokenizer kind"):
        build_tokenizer("sentencepiece", TRAIN)
    with pytest.raises(InputError, match="no text"):
        build_tokenizer("word", [])
    with pytest.raises(InputError, match="not found"):
        load_tokenizer(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="Hugging Face"):
        load_tokenizer(tmp_path / "empty")
