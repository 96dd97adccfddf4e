"""LLM region annotation against a scripted OpenAI-compatible server on loopback."""

from __future__ import annotations

import json

import pytest

from cxreport.annotate.cache import ResponseCache
from cxreport.annotate.llm import LLMAnnotator, Prompt, load_prompt
from cxreport.annotate.schema import REGION_SCHEMA, SchemaError, parse_regions
from cxreport.llm import DEFAULT_MODEL, LLMConfig, model_warning, response_format
from cxreport.errors import InputError
from cxreport.text.regions import REGIONS
from tests.fixtures.openai_server import Reply, ScriptedOpenAIServer

REPORT = "The heart is normal in size. No effusion or adenopathy. Mild thoracic spondylosis."
GOOD = json.dumps({"lung": "No effusion.", "heart": "The heart is normal in size.", "mediastinal": "No adenopathy.",
                   "bone": "Mild thoracic spondylosis.", "others": ""})


def _cfg(url, **kw):
    base = dict(base_url=url, model="scripted", timeout_s=2.0, backoff_s=0.01, concurrency=2)
    base.update(kw)
    return LLMConfig(**base)


# --- schema --------------------------------------------------------------------------------------
def test_parse_accepts_fences_prose_and_null():
    fenced = "```json\n" + GOOD + "\n```"
    assert parse_regions(fenced)["bone"] == "Mild thoracic spondylosis."
    prose = "Here you go: " + GOOD.replace('"others": ""', '"others": null') + " Hope it helps {}"
    assert parse_regions(prose)["others"] == ""


@pytest.mark.parametrize("answer, why", [
    ("", "empty"), ("I cannot help with that.", "no JSON object"), ('{"lung": "ok", "heart": "', "not closed"),
    ('{"lung": "a", "heart": "b"}', "missing key"), (GOOD[:-1] + ', "spleen": "x"}', "unexpected key"),
    (GOOD.replace('"No adenopathy."', '[1, 2]'), "must be strings"), ("[1, 2]", "no JSON object"),
    ('{"lung": \'single\'}', "invalid JSON"),
])
def test_parse_rejects_with_reason(answer, why):
    with pytest.raises(SchemaError, match=why):
        parse_regions(answer)


def test_parse_joins_a_list_of_sentences():
    listed = GOOD.replace('"No adenopathy."', '["No adenopathy.", "Normal hila."]')
    assert parse_regions(listed)["mediastinal"] == "No adenopathy. Normal hila."


def test_prompts_are_versioned_files():
    v1, v2 = load_prompt("v1"), load_prompt("v2")
    assert v1.id == "v1" and v2.id == "v2" and v1.sha != v2.sha
    assert REPORT in v1.messages(REPORT)[1]["content"]
    with pytest.raises(InputError, match="packaged prompts: .*v1"):
        load_prompt("v99")


def test_prompt_file_path(tmp_path):
    p = tmp_path / "mine.json"
    p.write_text(json.dumps({"system": "s", "user": "no placeholder"}))
    with pytest.raises(InputError, match=r"\{report\}"):
        load_prompt(str(p))
    p.write_text(json.dumps({"system": "s", "user": "R: {report}"}))
    assert load_prompt(str(p)).id == "mine"


# --- endpoint behaviour --------------------------------------------------------------------------
def test_valid_answer_usage_cost_and_api_key(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-test-123")
    with ScriptedOpenAIServer(lambda req: GOOD) as srv:
        cfg = _cfg(srv.base_url, api_key_env="MY_KEY", price_in_per_1m=1000.0, price_out_per_1m=2000.0)
        ann = LLMAnnotator(cfg, load_prompt("v1"))
        res = ann.annotate(REPORT)
    assert res.regions["mediastinal"] == "No adenopathy." and res.attempts == 1
    req = srv.requests[0]
    assert req["model"] == "scripted" and req["response_format"] == {"type": "json_object"}
    assert srv.headers[0]["Authorization"] == "Bearer sk-test-123"
    u = ann.usage
    assert u.requests == 1 and u.prompt_tokens > 50 and u.completion_tokens == len(GOOD.split())
    assert u.cost(cfg) == pytest.approx((u.prompt_tokens * 1000 + u.completion_tokens * 2000) / 1e6)


def test_malformed_then_valid_feeds_back_the_error():
    with ScriptedOpenAIServer(lambda req: GOOD, script=["Sure! The lungs are clear.", '{"lung": "x"}']) as srv:
        ann = LLMAnnotator(_cfg(srv.base_url, max_retries=2), load_prompt("v1"))
        res = ann.annotate(REPORT)
    assert res.regions is not None and res.attempts == 3
    assert ann.usage.malformed == 2 and ann.usage.requests == 3
    retry = srv.requests[2]["messages"]
    assert retry[2] == {"role": "assistant", "content": '{"lung": "x"}'}
    assert "missing key(s) heart" in retry[3]["content"] and len(retry) == 4  # only the latest attempt is kept


def test_always_malformed_gives_up_with_error():
    with ScriptedOpenAIServer(lambda req: "not json at all") as srv:
        ann = LLMAnnotator(_cfg(srv.base_url, max_retries=1), load_prompt("v1"))
        res = ann.annotate(REPORT)
    assert res.regions is None and "no JSON object" in res.error and len(srv.requests) == 2
    assert ann.usage.failures == 1


def test_slow_answer_times_out_and_is_retried():
    script = [Reply(GOOD, delay=1.0), Reply(status=503), Reply(raw_body=b'{"choices": [')]
    with ScriptedOpenAIServer(lambda req: GOOD, script=script) as srv:
        ann = LLMAnnotator(_cfg(srv.base_url, timeout_s=0.3, http_retries=3), load_prompt("v1"))
        res = ann.annotate(REPORT)
    assert res.regions is not None and len(srv.requests) == 4


def test_endpoint_failure_is_reported_not_raised():
    with ScriptedOpenAIServer(lambda req: Reply(status=500)) as srv:
        ann = LLMAnnotator(_cfg(srv.base_url, http_retries=1), load_prompt("v1"))
        res = ann.annotate(REPORT)
        unauthorized = LLMAnnotator(_cfg(srv.base_url), load_prompt("v1"))
        srv.responder = lambda req: Reply(status=401)
        res401 = unauthorized.annotate(REPORT + " ")
    assert res.regions is None and "HTTP 500" in res.error and "giving up after 2" in res.error
    assert "OPENAI_API_KEY" in res401.error


def test_concurrency_limit_and_order():
    texts = [f"Report number {i}. The lungs are clear." for i in range(8)]

    def respond(req):
        n = req["messages"][1]["content"].split("Report number ")[1].split(".")[0]
        return Reply(json.dumps({**{r: "" for r in REGIONS}, "others": n}), delay=0.1)

    with ScriptedOpenAIServer(respond) as srv:
        ann = LLMAnnotator(_cfg(srv.base_url, concurrency=3), load_prompt("v1"))
        out = ann.annotate_many(texts)
    assert [a.regions["others"] for a in out] == [str(i) for i in range(8)]
    assert 2 <= srv.max_in_flight <= 3


# The JSON Schema itself, as small models echo it when the retry message shows it.
SCHEMA_ECHO = json.dumps({"type": "object", "properties": {r: {"type": "string"} for r in REGIONS},
                          "required": list(REGIONS), "additionalProperties": False})


def test_retry_message_shows_an_example_not_the_schema():
    """Problem 1: the re-ask embedded the JSON Schema and small models copied its keys back."""
    with ScriptedOpenAIServer(lambda req: GOOD, script=[SCHEMA_ECHO]) as srv:
        ann = LLMAnnotator(_cfg(srv.base_url), load_prompt("v1"))
        res = ann.annotate(REPORT)
    assert res.regions is not None and ann.usage.retries == 1 and ann.usage.malformed == 1
    retry = srv.requests[1]["messages"][3]["content"]
    assert "unexpected key(s) type, properties, required, additionalProperties" in retry
    after_reason = retry.split("Reply with", 1)[1]
    assert "properties" not in after_reason and "additionalProperties" not in after_reason
    example = json.loads(retry[retry.index("{"):])
    assert list(example) == list(REGIONS) and parse_regions(json.dumps(example))


@pytest.mark.parametrize("mode, expected", [
    ("openai", {"type": "json_schema", "json_schema": {"name": "answer", "schema": REGION_SCHEMA, "strict": True}}),
    ("llamacpp", {"type": "json_object", "schema": REGION_SCHEMA}),
    ("off", {"type": "json_object"}),
])
def test_schema_mode_sends_the_schema(mode, expected):
    """Problem 2: REGION_SCHEMA was documented as sent but never was."""
    with ScriptedOpenAIServer(lambda req: GOOD) as srv:
        LLMAnnotator(_cfg(srv.base_url, schema_mode=mode), load_prompt("v1")).annotate(REPORT)
    assert srv.requests[0]["response_format"] == expected


def test_schema_mode_constrains_a_model_that_otherwise_rambles():
    def respond(req):  # answers in prose unless the schema constrains it
        fmt = req.get("response_format") or {}
        return GOOD if fmt.get("schema") else "Sure! The lungs are clear and the heart is normal."

    with ScriptedOpenAIServer(respond) as srv:
        loose = LLMAnnotator(_cfg(srv.base_url, max_retries=1), load_prompt("v1"))
        assert loose.annotate(REPORT).regions is None and loose.usage.malformed == 2
        strict = LLMAnnotator(_cfg(srv.base_url, schema_mode="llamacpp"), load_prompt("v1"))
        res = strict.annotate(REPORT)
    assert res.regions is not None and res.attempts == 1 and strict.usage.malformed == 0


@pytest.mark.parametrize("style, resolved, probes", [("openai", "openai", 1), ("llamacpp", "llamacpp", 2), (None, "off", 2)])
def test_schema_mode_auto_probes_once(style, resolved, probes):
    with ScriptedOpenAIServer(lambda req: GOOD, schema_style=style) as srv:
        ann = LLMAnnotator(_cfg(srv.base_url, schema_mode="auto"), load_prompt("v1"))
        out = ann.annotate_many([REPORT, REPORT + " Again.", REPORT + " Once more."])
    assert all(a.regions for a in out) and ann.client.schema_mode == resolved
    assert ann.client.probe_requests == probes and len(srv.requests) == probes + 3
    fmt = srv.requests[-1]["response_format"]
    assert fmt == response_format(resolved, REGION_SCHEMA) and ("schema" in json.dumps(fmt)) == (resolved != "off")


def test_schema_probe_of_a_dead_server_is_a_failure_not_a_verdict():
    with ScriptedOpenAIServer() as srv:
        dead = srv.base_url
    ann = LLMAnnotator(_cfg(dead, schema_mode="auto", http_retries=0), load_prompt("v1"))
    res = ann.annotate(REPORT)
    assert res.regions is None and ann.client.schema_mode is None  # probed again next time, not "off"
    assert ann.client.probe_requests == 1 and ann.usage.failures == 1


def test_cache_key_covers_endpoint_and_decoding(tmp_path):
    """Problem 3: the key was (prompt, model, text) only; other settings reused stale answers."""
    cache = ResponseCache(tmp_path / "cache")
    with ScriptedOpenAIServer(lambda req: GOOD) as srv, ScriptedOpenAIServer(lambda req: GOOD) as other:
        def run(**kw):
            ann = LLMAnnotator(_cfg(srv.base_url, **kw), load_prompt("v1"), cache)
            ann.annotate(REPORT)
            return ann.usage.cache_hits

        assert run() == 0 and run() == 1
        for changed in ({"temperature": 0.7}, {"max_tokens": 16}, {"json_mode": False}, {"schema_mode": "llamacpp"},
                        {"base_url": other.base_url}, {"model": "other"}):
            assert run(**changed) == 0, changed
        assert run(temperature=0.7) == 1
        entries = [json.loads(e.read_text()) for e in (tmp_path / "cache").rglob("*.json")]
        assert len(entries) == 7 and all(e["served_model"] == e["model"] for e in entries)  # as the server said


def test_dead_endpoint_is_not_hidden_by_the_cache(tmp_path):
    cache = ResponseCache(tmp_path / "cache")
    with ScriptedOpenAIServer(lambda req: GOOD) as srv:
        LLMAnnotator(_cfg(srv.base_url), load_prompt("v1"), cache).annotate_many([REPORT, REPORT + " B"])
        dead = srv.base_url
    ann = LLMAnnotator(_cfg(dead.replace("/v1", "/v1/"), http_retries=0), load_prompt("v1"), cache)
    ann.annotate_many([REPORT, REPORT + " B"])
    assert ann.usage.cache_hits == 2  # same endpoint (trailing slash aside): a genuine hit
    gone = LLMAnnotator(_cfg(dead.replace("/v1", "/v2"), http_retries=0), load_prompt("v1"), cache)
    out = gone.annotate_many([REPORT, REPORT + " B"])
    assert gone.usage.cache_hits == 0 and gone.usage.failures == 2 and all(a.regions is None for a in out)


def test_default_model_name_to_another_server_is_warned():
    assert model_warning(LLMConfig(base_url="http://127.0.0.1:8080/v1", model=DEFAULT_MODEL))
    assert model_warning(LLMConfig(base_url="https://api.openai.com/v1/", model=DEFAULT_MODEL)) is None
    assert model_warning(LLMConfig(base_url="http://127.0.0.1:8080/v1", model="qwen")) is None


def test_timeout_message_names_the_queue_and_concurrency():
    """Problem 4: a one-at-a-time server makes queued requests time out; the error says why."""
    with ScriptedOpenAIServer(lambda req: Reply(GOOD, delay=1.0)) as srv:
        res = LLMAnnotator(_cfg(srv.base_url, timeout_s=0.2, http_retries=0), load_prompt("v1")).annotate(REPORT)
    assert res.regions is None and "--timeout 0.2s" in res.error
    assert "queue" in res.error and "--concurrency 1" in res.error


def test_progress_reports_requests_retries_and_cache_hits(tmp_path):
    """Problem 5: a callback per finished report, with the running counts."""
    cache = ResponseCache(tmp_path / "cache")
    seen = []
    with ScriptedOpenAIServer(lambda req: GOOD, script=["prose first"]) as srv:
        LLMAnnotator(_cfg(srv.base_url, concurrency=1), load_prompt("v1"), cache).annotate(REPORT)
        ann = LLMAnnotator(_cfg(srv.base_url, concurrency=1), load_prompt("v1"), cache)
        srv.script = ["prose first"]
        ann.annotate_many([REPORT, REPORT + " B", REPORT + " C"],
                          progress=lambda u: seen.append((u.done, u.requests, u.retries, u.cache_hits)))
    assert [s[0] for s in seen] == [1, 2, 3] and seen[-1][1:] == (3, 1, 1)


def test_cache_by_prompt_model_text(tmp_path):
    with ScriptedOpenAIServer(lambda req: GOOD) as srv:
        cache = ResponseCache(tmp_path / "cache")
        first = LLMAnnotator(_cfg(srv.base_url), load_prompt("v1"), cache).annotate_many([REPORT, REPORT + " "])
        again = LLMAnnotator(_cfg(srv.base_url), load_prompt("v1"), cache)
        second = again.annotate_many([REPORT, REPORT + " "])
        assert len(srv.requests) == 2 and again.usage.cache_hits == 2 and all(a.cached for a in second)
        assert [a.regions for a in first] == [a.regions for a in second]
        LLMAnnotator(_cfg(srv.base_url, model="other"), load_prompt("v1"), cache).annotate(REPORT)
        LLMAnnotator(_cfg(srv.base_url), load_prompt("v2"), cache).annotate(REPORT)
        edited = Prompt("v1", load_prompt("v1").system + " Be brief.", load_prompt("v1").user)
        LLMAnnotator(_cfg(srv.base_url), edited, cache).annotate(REPORT)
        assert len(srv.requests) == 5  # model, prompt version and prompt content are all in the key


def test_empty_report_makes_no_request():
    with ScriptedOpenAIServer(lambda req: GOOD) as srv:
        res = LLMAnnotator(_cfg(srv.base_url), load_prompt("v1")).annotate("   ")
    assert res.regions == {r: "" for r in REGIONS} and not srv.requests


def test_json_mode_rejection_hint():
    body = b'{"error": {"message": "Unrecognized request argument supplied: response_format"}}'
    with ScriptedOpenAIServer(lambda req: Reply(status=400, raw_body=body)) as srv:
        res = LLMAnnotator(_cfg(srv.base_url), load_prompt("v1")).annotate(REPORT)
    assert "HTTP 400" in res.error and "--no-json-mode" in res.error and len(srv.requests) == 1
