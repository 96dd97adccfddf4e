"""Region annotation through any OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp server,
Ollama): versioned prompts, schema-checked JSON answers with retries, a disk cache, token and cost
accounting and a concurrency limit. Standard library HTTP only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from cxreport.annotate.cache import ResponseCache, cache_key
from cxreport.annotate.schema import REGION_SCHEMA, SchemaError, parse_regions
from cxreport.errors import InputError
from cxreport.text.regions import REGIONS

log = logging.getLogger(__name__)


# --- prompts -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prompt:
    id: str
    system: str
    user: str  # holds the placeholder {report}
    description: str = ""

    @property
    def sha(self) -> str:
        return hashlib.sha256(json.dumps([self.system, self.user]).encode()).hexdigest()[:16]

    def messages(self, report: str) -> list[dict]:
        # str.replace, not str.format: prompts contain JSON braces
        return [{"role": "system", "content": self.system},
                {"role": "user", "content": self.user.replace("{report}", report)}]


def available_prompts() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("cxreport.annotate.prompts").iterdir()
                  if p.name.endswith(".json"))


def load_prompt(prompt_id: str) -> Prompt:
    """A packaged prompt by id (``v1``) or a prompt file path (``my_prompt.json``)."""
    if prompt_id.endswith(".json") or os.sep in prompt_id:
        path = Path(prompt_id)
        if not path.is_file():
            raise InputError(f"{path}: prompt file not found")
        raw = path.read_text(encoding="utf-8")
    else:
        res = resources.files("cxreport.annotate.prompts") / f"{prompt_id}.json"
        if not res.is_file():
            raise InputError(f"unknown prompt {prompt_id!r}; packaged prompts: {', '.join(available_prompts())} "
                             "(or pass the path of a .json prompt file)")
        raw, path = res.read_text(encoding="utf-8"), Path(f"prompts/{prompt_id}.json")
    try:
        obj = json.loads(raw)
        prompt = Prompt(id=str(obj.get("id") or path.stem), system=obj["system"], user=obj["user"],
                        description=obj.get("description", ""))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{path}: not a prompt file (expected JSON with 'system' and 'user' strings): {exc}") from exc
    if "{report}" not in prompt.user:
        raise InputError(f"{path}: the 'user' text must contain the placeholder {{report}}")
    return prompt


# --- endpoint ------------------------------------------------------------------------------------
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


# --- annotator -----------------------------------------------------------------------------------
@dataclass
class Annotation:
    regions: dict[str, str] | None  # None when every attempt failed
    attempts: int = 0
    cached: bool = False
    error: str = ""


class LLMAnnotator:
    def __init__(self, cfg: LLMConfig, prompt: Prompt, cache: ResponseCache | None = None,
                 client: ChatClient | None = None):
        self.cfg, self.prompt = cfg, prompt
        self.cache = cache or ResponseCache(None)
        self.client = client or ChatClient(cfg)
        self.usage = Usage()

    def annotate(self, text: str) -> Annotation:
        if not text.strip():  # nothing to sort; no request
            return Annotation({r: "" for r in REGIONS})
        key = cache_key(self.prompt.sha, self.cfg.model, text)
        hit = self.cache.get(key)
        if hit is not None:
            self.usage.add(cache_hits=1)
            return Annotation(hit["regions"], attempts=0, cached=True)
        messages = self.prompt.messages(text)
        error = ""
        for attempt in range(1, self.cfg.max_retries + 2):
            try:
                answer, usage = self.client.complete(messages)
            except EndpointError as exc:
                self.usage.add(failures=1)
                return Annotation(None, attempt, error=str(exc))
            self.usage.add(requests=1, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                           completion_tokens=int(usage.get("completion_tokens") or 0))
            try:
                regions = parse_regions(answer)
            except SchemaError as exc:
                self.usage.add(malformed=1)
                error = f"malformed answer: {exc}"
                # Show the model its answer and what is wrong with it; models fix this reliably.
                messages = messages[:2] + [
                    {"role": "assistant", "content": answer},
                    {"role": "user", "content": f"That answer is invalid ({exc}). Reply with only a JSON object "
                                                f"matching this schema: {json.dumps(REGION_SCHEMA)}"}]
                continue
            self.cache.put(key, {"regions": regions, "prompt": self.prompt.id, "model": self.cfg.model})
            return Annotation(regions, attempt)
        self.usage.add(failures=1)
        return Annotation(None, self.cfg.max_retries + 1, error=error)

    def annotate_many(self, texts: list[str], progress=None) -> list[Annotation]:
        """In input order; at most ``cfg.concurrency`` requests in flight."""
        with ThreadPoolExecutor(max_workers=max(1, self.cfg.concurrency)) as pool:
            out = []
            for ann in pool.map(self.annotate, texts):
                out.append(ann)
                if progress:
                    progress(len(out))
        return out
