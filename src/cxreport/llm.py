"""An OpenAI-compatible chat client (OpenAI, vLLM, llama.cpp server, Ollama): retries on timeouts,
429 and 5xx with backoff, token and cost accounting. Standard library HTTP only.

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

log = logging.getLogger(__name__)


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
    price_in_per_1m: float = 0.0  # USD per million prompt tokens
    price_out_per_1m: float = 0.0


class EndpointError(RuntimeError):
    """The endpoint failed after all retries (network, HTTP error, unusable body)."""


@dataclass
class Usage:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0
    malformed: int = 0
    failures: int = 0
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
                "malformed_answers": self.malformed, "failed_reports": self.failures,
                "cost_usd": round(self.cost(cfg), 6)}


class ChatClient:
    """POST /chat/completions with retries on timeouts, 429 and 5xx (exponential backoff)."""

    def __init__(self, cfg: LLMConfig):
        self.cfg = cfg
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"
        self.api_key = os.environ.get(cfg.api_key_env, "") if cfg.api_key_env else ""

    def complete(self, messages: list[dict]) -> tuple[str, dict]:
        """(answer text, usage dict) for one chat request."""
        body = {"model": self.cfg.model, "messages": messages, "temperature": self.cfg.temperature,
                "max_tokens": self.cfg.max_tokens}
        if self.cfg.json_mode:
            body["response_format"] = {"type": "json_object"}
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode("utf-8")
        last = None
        for attempt in range(self.cfg.http_retries + 1):
            if attempt:
                time.sleep(self.cfg.backoff_s * 2 ** (attempt - 1))
            req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.cfg.timeout_s) as resp:
                    payload = json.loads(resp.read().decode("utf-8"))
                return _answer(payload, self.url)
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode("utf-8", "replace")
                last = f"HTTP {exc.code} from {self.url}: {detail}"
                if exc.code in (401, 403):
                    raise EndpointError(f"{last} (set the API key in ${self.cfg.api_key_env})") from exc
                if exc.code != 429 and exc.code < 500:
                    if self.cfg.json_mode and "response_format" in detail:
                        last += " (this server rejects response_format: use --no-json-mode)"
                    raise EndpointError(last) from exc
            except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as exc:
                last = f"{self.url}: {getattr(exc, 'reason', exc)}"
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                last = f"{self.url}: response body is not JSON ({exc})"
            log.warning("attempt %d/%d failed: %s", attempt + 1, self.cfg.http_retries + 1, last)
        raise EndpointError(f"giving up after {self.cfg.http_retries + 1} attempts: {last}")


def _answer(payload: dict, url: str) -> tuple[str, dict]:
    try:
        content = payload["choices"][0]["message"]["content"] or ""
    except (KeyError, IndexError, TypeError) as exc:
        raise EndpointError(f"{url}: response has no choices[0].message.content") from exc
    return content, payload.get("usage") or {}
