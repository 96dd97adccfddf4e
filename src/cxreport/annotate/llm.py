"""Region annotation through any OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp server,
Ollama): versioned prompts, schema-checked JSON answers with retries, a disk cache, token and cost
accounting and a concurrency limit. The HTTP client is :mod:`cxreport.llm`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from cxreport.annotate.cache import ResponseCache, cache_key
from cxreport.annotate.schema import REGION_EXAMPLE, REGION_SCHEMA, SchemaError, parse_regions
from cxreport.errors import InputError
from cxreport.llm import ChatClient, EndpointError, LLMConfig, Usage  # noqa: F401  (annotate's public names)
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
        try:
            return self._annotate(text)
        finally:
            self.usage.add(done=1)

    def _annotate(self, text: str) -> Annotation:
        if not text.strip():  # nothing to sort; no request
            return Annotation({r: "" for r in REGIONS})
        key = cache_key(self.prompt.sha, self.cfg.decoding(), text)
        hit = self.cache.get(key)
        if hit is not None:
            self.usage.add(cache_hits=1)
            return Annotation(hit["regions"], attempts=0, cached=True)
        messages = self.prompt.messages(text)
        error = ""
        for attempt in range(1, self.cfg.max_retries + 2):
            if attempt > 1:
                self.usage.add(retries=1)
            try:
                answer, usage = self.client.complete(messages, schema=REGION_SCHEMA)
            except EndpointError as exc:
                self.usage.add(failures=1)
                return Annotation(None, attempt, error=str(exc))
            self.usage.add(requests=1, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                           completion_tokens=int(usage.get("completion_tokens") or 0))
            try:
                regions = parse_regions(answer)
            except SchemaError as exc:
                self.usage.add(malformed=1, malformed_first=int(attempt == 1))
                error = f"malformed answer: {exc}"
                messages = messages[:2] + [{"role": "assistant", "content": answer},
                                           {"role": "user", "content": retry_message(exc)}]
                continue
            self.cache.put(key, {"regions": regions, "prompt": self.prompt.id, "model": self.cfg.model,
                                 "served_model": self.client.served_model, "decoding": self.cfg.decoding()})
            return Annotation(regions, attempt)
        self.usage.add(failures=1)
        return Annotation(None, self.cfg.max_retries + 1, error=error)

    def annotate_many(self, texts: list[str], progress=None) -> list[Annotation]:
        """In input order; at most ``cfg.concurrency`` requests in flight. ``progress(usage)`` is
        called as each report finishes (in completion order)."""
        with ThreadPoolExecutor(max_workers=max(1, self.cfg.concurrency)) as pool:
            futures = [pool.submit(self.annotate, t) for t in texts]
            for fut in as_completed(futures):
                fut.result()
                if progress:
                    progress(self.usage)
        return [f.result() for f in futures]


def retry_message(exc: SchemaError) -> str:
    """The re-ask after a malformed answer: the reason and an example object. Not the JSON Schema:
    small models echo a schema's own keys (type, properties, ...) back as their answer."""
    return (f"That answer is invalid ({exc}). Reply with only one JSON object with exactly these five keys "
            f"and a string value for each (an empty string for a region the report does not mention), "
            f"for example: {json.dumps(REGION_EXAMPLE)}")
