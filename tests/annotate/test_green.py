"""GREEN answer parsing and scoring on scripted judge outputs (no GREEN model here)."""

from __future__ import annotations

import re

import pytest

from cxreport.metrics.green import (ERROR_CATEGORIES, GreenConfig, GreenScorer, green_score, make_prompt,
                                    parse_green, summarize)
from tests.fixtures.green_replies import TYPICAL
from tests.fixtures.openai_server import Reply, ScriptedOpenAIServer


def test_typical_answer():
    r = parse_green(TYPICAL)
    assert r.matched == 3 and r.significant == [0, 1, 0, 1, 0, 0] and r.insignificant == [2, 0, 0, 0, 0, 0]
    assert r.green == pytest.approx(3 / (3 + 2))  # insignificant errors do not count


def test_categories_in_any_order_and_numbered_variant():
    shuffled = TYPICAL.replace("(b) Missing a finding present in the reference: 1. Small left pleural effusion\n", "")
    shuffled = shuffled.replace("(f) Omitting a comparison detailing a change from a prior study: 0.\n\n[Clinically In",
                                "(f) Omitting a comparison detailing a change from a prior study: 0.\n"
                                "(b) Missing a finding present in the reference: 4. a; b; c; d\n\n[Clinically In")
    assert parse_green(shuffled).significant == [0, 4, 0, 1, 0, 0]
    # every category numbered (1)-(6): the GPT-4 template
    numbered = TYPICAL
    for i, c in enumerate("abcdef", 1):
        numbered = numbered.replace(f"({c}) ", f"({i}) ")
    r = parse_green(numbered)
    assert r.significant == [0, 1, 0, 1, 0, 0] and r.green == pytest.approx(0.6)


def test_no_errors_and_perfect_match():
    text = ("[Explanation]:\nSame findings.\n\n[Clinically Significant Errors]:\nNo clinically significant errors.\n\n"
            "[Clinically Insignificant Errors]:\nNo clinically insignificant errors.\n\n[Matched Findings]:\n"
            "2. Normal heart size; Clear lungs")
    r = parse_green(text)
    assert r.green == 1.0 and r.significant == [0] * 6


def test_nothing_matched_is_zero():
    assert parse_green(TYPICAL.replace("3. Cardiomegaly; No pneumothorax; Clear lungs", "0.")).green == 0.0
    assert parse_green(TYPICAL.replace("3. Cardiomegaly; No pneumothorax; Clear lungs", "No matched findings.")).green == 0.0
    assert green_score(0, [0] * 6) == 0.0


@pytest.mark.parametrize("text", [
    "", "The candidate report is mostly correct.",
    TYPICAL.split("[Matched Findings]")[0],  # truncated before the matched findings
    "[Matched Findings]:\n2. Clear lungs; Normal heart",  # matches but no error section
])
def test_unparseable_is_none(text):
    r = parse_green(text)
    assert r.green is None and r.note.startswith("unparseable")


def test_echoed_chat_tags_are_stripped():
    echoed = "<|user|> " + make_prompt("ref", "cand") + "<|assistant|>" + TYPICAL + "</s>"
    assert parse_green(echoed).green == pytest.approx(0.6)


def test_prompt_is_greens():
    p = make_prompt("Heart is enlarged.", "Heart size normal.")
    assert p.startswith("Objective: Evaluate the accuracy of a candidate radiology report")
    assert "2. Reference Report:\n    Heart is enlarged.\n\n    3. Candidate Report:\n    Heart size normal." in p
    assert p.rstrip().endswith("```") and "[Matched Findings]:" in p


def test_scorer_through_endpoint_and_summary():
    answers = {"A": TYPICAL, "B": "garbled", "C": Reply(status=500)}

    def respond(req):
        prompt = req["messages"][0]["content"]
        return answers[prompt.split("3. Candidate Report:\n    ")[1][0]]

    with ScriptedOpenAIServer(respond) as srv:
        scorer = GreenScorer(GreenConfig(base_url=srv.base_url, model="green", timeout_s=2, backoff_s=0.01))
        res = scorer.score(["r1", "r2", "", "r4"], ["A1", "B2", "", "C4"])
    assert [r.green for r in res] == [pytest.approx(0.6), None, 1.0, None]
    assert res[2].note.startswith("both empty") and res[3].note == "no answer from the model"
    assert len(srv.requests) == 2 + 4  # the empty pair is not sent; the 500 is retried 3 times
    s = summarize(res)
    assert s["scored"] == 2 and s["unparseable"] == 2 and s["green"] == pytest.approx(0.8)
    assert s["mean_significant_errors"][ERROR_CATEGORIES[1]] == pytest.approx(0.5)


def test_scorer_custom_generator():
    scorer = GreenScorer(GreenConfig(), generate=lambda prompts: [TYPICAL for _ in prompts])
    assert [r.green for r in scorer.score(["a"], ["b"])] == [pytest.approx(0.6)]


def test_green_cli(tmp_path, capsys):
    import csv
    import json

    from cxreport.cli import main

    path = tmp_path / "pairs.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["uid", "reference", "candidate"])
        w.writerows([("1", "Small left effusion. Cardiomegaly.", "A1"), ("2", "Clear lungs.", "B2"), ("3", "", "")])
    with ScriptedOpenAIServer(lambda req: TYPICAL if "A1" in req["messages"][0]["content"] else "n/a") as srv:
        assert main(["green", "--input", str(path), "--base-url", srv.base_url, "--model", "green",
                     "--out", str(tmp_path / "g.jsonl")]) == 0
    rows = [json.loads(x) for x in (tmp_path / "g.jsonl").read_text().splitlines()]
    assert [r["green"] for r in rows] == [pytest.approx(0.6), None, 1.0]
    assert rows[0]["significant_errors"] == [0, 1, 0, 1, 0, 0] and rows[0]["response"] == TYPICAL
    assert "GREEN 0.8000 over 2 of 3 pairs (1 unparseable)" in capsys.readouterr().out


def test_local_model_path_runs(tmp_path):
    """The transformers path end to end on a tiny random causal LM (its answers are noise: None)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = sorted(set(make_prompt("a", "b").split())) + ["<unk>", "<eos>"]
    wl = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    wl.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=wl, unk_token="<unk>", eos_token="<eos>")
    tok.chat_template = "{% for m in messages %}USER: {{ m['content'] }}\n{% endfor %}ASSISTANT:"
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(words), n_embd=16, n_layer=1, n_head=2, n_positions=1024)).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    scorer = GreenScorer(GreenConfig(model=str(tmp_path), local=True, max_new_tokens=5, batch_size=2))
    res = scorer.score(["Clear lungs.", "Cardiomegaly.", "Effusion."], ["Clear lungs.", "Normal heart.", "None."])
    assert len(res) == 3 and all(r.green is None and r.note.startswith("unparseable") for r in res)


# --- answers of judges that are not GREEN models (issue 17, problem 8) ---------------------------
NUMBERED_MATCHES = TYPICAL.replace("3. Cardiomegaly; No pneumothorax; Clear lungs",
                                   "1. Cardiomegaly\n2. No pneumothorax\n3. Clear lungs\n4. Normal mediastinum")


def test_numbered_matched_list_counts_items():
    r = parse_green(NUMBERED_MATCHES)
    assert r.matched == 4 and r.green == pytest.approx(4 / (4 + 2)) and "numbered list" in r.note


def test_enumerated_error_counts_are_implausible():
    text = TYPICAL
    for i, c in enumerate("abcdef", 1):  # the significant counts become 1, 2, ..., 6
        text = re.sub(rf"(\[Clinically Significant Errors\]:.*?\({c}\) [^:]*: )\d+", rf"\g<1>{i}", text, flags=re.S)
    r = parse_green(text)
    assert r.significant == [1, 2, 3, 4, 5, 6] and r.green is None and r.note.startswith("implausible")


def test_count_disagreeing_with_listed_findings_is_implausible():
    r = parse_green(TYPICAL.replace("3. Cardiomegaly;", "1. Cardiomegaly;"))
    assert r.green is None and r.note == "implausible: matched count 1 but 3 findings listed"
    s = summarize([r, parse_green(TYPICAL)])
    assert s["scored"] == 1 and s["implausible"] == 1


def test_non_green_judge_is_warned_and_settings_recorded(caplog):
    with caplog.at_level("WARNING"):
        GreenScorer(GreenConfig(base_url="http://127.0.0.1:1/v1", model="qwen2.5-1.5b-instruct"))
    assert "is not a GREEN model" in caplog.text
    caplog.clear()
    cfg = GreenConfig(base_url="http://127.0.0.1:1/v1", model="StanfordAIMI/GREEN-RadLlama2-7b", concurrency=4)
    GreenScorer(cfg)
    assert "not a GREEN model" not in caplog.text
    judge = summarize([parse_green(TYPICAL)], cfg)["judge"]
    assert judge["temperature"] == 0.0 and judge["concurrency"] == 4 and judge["green_model"]
    assert "not guaranteed" in judge["reproducible"]


def test_temperature_is_sent():
    with ScriptedOpenAIServer(lambda req: TYPICAL) as srv:
        GreenScorer(GreenConfig(base_url=srv.base_url, model="green", temperature=0.0)).score(["a"], ["b"])
    assert srv.requests[0]["temperature"] == 0.0 and "response_format" not in srv.requests[0]
