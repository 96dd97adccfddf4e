"""An OpenAI-compatible chat client (OpenAI, vLLM, llama.cpp server, Ollama): retries on timeouts,
429 and 5xx with backoff, token and cost accounting, and a schema mode (constrained decoding: the
answer's JSON Schema travels with the request, in the form the server understands, probed once when
asked). Standard library HTTP only.

Shared by region annotation (annotate/) and GREEN scoring (metrics/green.py), so it sits on the
ground floor rather than inside either.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from cxreport.errors import InputError

log = logging.getLogger(__name__)


DEFAULT_MODEL = "gpt-4o-mini"
OPENAI_BASE_URL = "https://api.openai.com/v1"
# How a JSON Schema travels with a request (constrained decoding):
#   openai   - response_format {"type": "json_schema", "json_schema": {...}} (OpenAI, vLLM, llama-server)
#   llamacpp - response_format {"type": "json_object", "schema": {...}} (llama-cpp-python's server)
#   auto     - probed once per client: the first of the two that the server really enforces
#   off      - no schema; plain {"type": "json_object"} unless json_mode is False
SCHEMA_MODES = ("off", "openai", "llamacpp", "auto")


@dataclass
class LLMConfig:
    base_url: str  # e.g. https://api.openai.com/v1, http://localhost:8000/v1 (vLLM), :11434/v1 (Ollama)
    model: str
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this variable, never from a flag
    temperature: float = 0.0
    max_tokens: int = 1024
    timeout_s: float = 60.0
    max_retries: int = 2  # extra attempts after a malformed answer
    http_retries: int = 3  # extra attempts after a timeout, 429 or 5xx
    backoff_s: float = 1.0
    concurrency: int = 4
    json_mode: bool = True  # ask for response_format=json_object (all four servers accept it)
    schema_mode: str = "off"  # one of SCHEMA_MODES
    price_in_per_1m: float = 0.0  # USD per million prompt tokens
    price_out_per_1m: float = 0.0

    def __post_init__(self):
        if self.schema_mode not in SCHEMA_MODES:
            raise InputError(f"unknown schema mode {self.schema_mode!r}; choose one of {', '.join(SCHEMA_MODES)}")

    def decoding(self) -> dict:
        """Every setting that can change an answer: what a cached answer is keyed on."""
        return {"base_url": self.base_url.rstrip("/"), "model": self.model, "temperature": self.temperature,
                "max_tokens": self.max_tokens, "json_mode": self.json_mode, "schema_mode": self.schema_mode}


def model_warning(cfg: LLMConfig) -> str | None:
    """A hint when OpenAI's default model name is sent to another server (a forgotten --model)."""
    if cfg.model == DEFAULT_MODEL and cfg.base_url.rstrip("/") != OPENAI_BASE_URL:
        return (f"--model is the default {DEFAULT_MODEL!r} but --base-url is {cfg.base_url}: pass the name the "
                "server serves (its /models lists it), or answers are recorded under the wrong model")
    return None


class EndpointError(RuntimeError):
    """The endpoint failed after all retries (network, HTTP error, unusable body). ``status`` is the
    last HTTP status the server answered with (None when it never answered)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass
class Usage:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0
    malformed: int = 0  # malformed answers, retries included
    malformed_first: int = 0  # reports whose first answer was malformed
    retries: int = 0  # re-asks after a malformed answer
    failures: int = 0
    done: int = 0  # reports finished (annotated, cached or failed)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts) -> None:
        with self._lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)

    def cost(self, cfg: LLMConfig) -> float:
        return (self.prompt_tokens * cfg.price_in_per_1m + self.completion_tokens * cfg.price_out_per_1m) / 1e6

    def as_dict(self, cfg: LLMConfig) -> dict:
        return {"requests": self.requests, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "cache_hits": self.cache_hits,
                "malformed_answers": self.malformed, "malformed_first_answers": self.malformed_first,
                "retries": self.retries, "failed_reports": self.failures,
                "cost_usd": round(self.cost(cfg), 6)}


_PROBE_VALUE = "cxreport-schema-probe"
# An answer no unconstrained model gives to the probe question: only a server that enforces the
# schema returns it, so a server that silently ignores an unknown response_format is not mistaken
# for one that honours it.
_PROBE_SCHEMA = {"type": "object", "properties": {"probe": {"type": "string", "enum": [_PROBE_VALUE]}},
                 "required": ["probe"], "additionalProperties": False}


def response_format(mode: str, schema: dict | None, json_mode: bool = True) -> dict | None:
    """The ``response_format`` request field for a resolved schema mode (not ``auto``)."""
    if schema is not None and mode == "openai":
        return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    if schema is not None and mode == "llamacpp":
        return {"type": "json_object", "schema": schema}
    return {"type": "json_object"} if json_mode else None


class ChatClient:
    """POST /chat/completions with retries on timeouts, 429 and 5xx (exponential backoff), and the
    schema mode of :class:`LLMConfig` (``auto`` is probed once, on the first request with a schema)."""

    def __init__(self, cfg: LLMConfig):
        self.cfg = cfg
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"
        self.api_key = os.environ.get(cfg.api_key_env, "") if cfg.api_key_env else ""
        self.schema_mode = None if cfg.schema_mode == "auto" else cfg.schema_mode  # None: not probed yet
        self.probe_requests = 0
        self.served_model = ""  # the model name the server reports in its answers
        self._probe_lock = threading.Lock()

    def complete(self, messages: list[dict], schema: dict | None = None) -> tuple[str, dict]:
        """(answer text, usage dict) for one chat request; ``schema`` constrains the answer where the
        schema mode allows."""
        mode = self.resolve_schema_mode() if schema is not None else "off"
        return self._post(messages, response_format(mode, schema, self.cfg.json_mode), self.cfg.max_tokens)

    def resolve_schema_mode(self) -> str:
        with self._probe_lock:
            if self.schema_mode is None:
                self.schema_mode = self._probe()
            return self.schema_mode

    def _probe(self) -> str:
        messages = [{"role": "user", "content": "Reply with a JSON object."}]
        for mode in ("openai", "llamacpp"):
            self.probe_requests += 1
            try:
                answer, _ = self._post(messages, response_format(mode, _PROBE_SCHEMA), 32, retry=False)
            except EndpointError as exc:
                # The server answered with an error: it rejects this form of response_format
                # (llama-cpp-python answers json_schema with HTTP 500, others with 400/422).
                # No answer at all (down, time-out) says nothing about schema support.
                if exc.status is None:
                    raise
                continue
            try:
                if json.loads(answer).get("probe") == _PROBE_VALUE:
                    log.info("schema mode: %s (probed %s)", mode, self.cfg.base_url)
                    return mode
            except (json.JSONDecodeError, AttributeError):
                pass
        log.warning("%s enforces neither json_schema nor llama.cpp's json_object schema: answers are not "
                    "constrained (schema mode off)", self.cfg.base_url)
        return "off"

    def _post(self, messages: list[dict], fmt: dict | None, max_tokens: int, retry: bool = True) -> tuple[str, dict]:
        body = {"model": self.cfg.model, "messages": messages, "temperature": self.cfg.temperature,
                "max_tokens": max_tokens}
        if fmt is not None:
            body["response_format"] = fmt
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode("utf-8")
        attempts = self.cfg.http_retries + 1 if retry else 1
        last, status = None, None
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.cfg.backoff_s * 2 ** (attempt - 1))
            req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.cfg.timeout_s) as resp:
                    payload = json.loads(resp.read().decode("utf-8"))
                self.served_model = str(payload.get("model") or self.served_model)
                return _answer(payload, self.url)
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode("utf-8", "replace")
                last, status = f"HTTP {exc.code} from {self.url}: {detail}", exc.code
                if exc.code in (401, 403):
                    raise EndpointError(f"{last} (set the API key in ${self.cfg.api_key_env})", status) from exc
                if exc.code != 429 and exc.code < 500:
                    if fmt is not None and "response_format" in detail:
                        last += " (this server rejects response_format: use --no-json-mode / --schema-mode off)"
                    raise EndpointError(last, status) from exc
            except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as exc:
                reason, status = getattr(exc, "reason", exc), None
                if isinstance(reason, (socket.timeout, TimeoutError)):
                    last = _timeout_message(self.url, self.cfg)
                else:
                    last = f"{self.url}: {reason}"
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                last, status = f"{self.url}: response body is not JSON ({exc})", None
            log.warning("attempt %d/%d failed: %s", attempt + 1, attempts, last)
        raise EndpointError(f"giving up after {attempts} attempt(s): {last}", status)


def _timeout_message(url: str, cfg: LLMConfig) -> str:
    # The clock starts when the request is sent, so time spent queued behind other requests counts.
    return (f"{url}: no answer within --timeout {cfg.timeout_s:g}s, which includes time waiting in the "
            f"server's queue ({cfg.concurrency} request(s) in flight); a server that answers one request at "
            "a time (llama.cpp) needs --concurrency 1 or a longer --timeout")


def _answer(payload: dict, url: str) -> tuple[str, dict]:
    try:
        content = payload["choices"][0]["message"]["content"] or ""
    except (KeyError, IndexError, TypeError) as exc:
        raise EndpointError(f"{url}: response has no choices[0].message.content") from exc
    return content, payload.get("usage") or {}
