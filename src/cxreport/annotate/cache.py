"""On-disk response cache keyed by (prompt, endpoint and decoding settings, text): rerunning an
annotation or a prompt comparison only pays for texts, prompts or settings it has not seen.

One small JSON file per entry under ``root/<2 hex>/<sha256>.json``, written atomically, so parallel
workers and interrupted runs never leave half an entry behind.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cxreport import fsio


def cache_key(prompt_sha: str, decoding: dict, text: str) -> str:
    """``prompt_sha`` is the hash of the prompt's content, so editing a prompt file invalidates it;
    ``decoding`` holds the base URL, model and every setting that can change an answer (temperature,
    max tokens, JSON / schema mode), so an answer is reused only for the same request."""
    blob = json.dumps([prompt_sha, decoding, text], ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    def __init__(self, root: str | Path | None):
        self.root = Path(root) if root else None

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        if self.root is None:
            return None
        path = self._path(key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError):  # a damaged entry is a miss, not a crash
            return None

    def put(self, key: str, value: dict) -> None:
        if self.root is not None:
            fsio.atomic_write_json(self._path(key), value, indent=None)
