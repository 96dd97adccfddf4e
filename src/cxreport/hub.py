"""Files from the Hugging Face Hub, through ``huggingface_hub`` and its cache, with errors that say what to do.

Models are named ``hf://OWNER/NAME[@REVISION]``. Downloads land in the Hub cache
(``$HF_HOME/hub``, ``$HF_HUB_CACHE``), so the second use works offline; with ``HF_HUB_OFFLINE=1``
only the cache is read and a miss says what to download and where. Scorer weights (CheXbert,
BERTScore's model) never change, so the cache is tried first and the network only on a miss; a
model without a pinned revision follows the Hub's usual rule (check for a newer ``main`` online,
fall back to the cache when the network is down).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cxreport.errors import InputError

SCHEME = "hf://"
_REPO_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")


class HubUnavailable(InputError):
    """What was asked for is neither in the Hub cache nor downloadable now (offline, no network)."""


def is_hub_ref(name) -> bool:
    return isinstance(name, str) and name.startswith(SCHEME)


def parse_hub_ref(ref: str) -> tuple[str, str | None]:
    """``hf://OWNER/NAME[@REVISION]`` -> (repo id, revision or None)."""
    body = ref[len(SCHEME):] if ref.startswith(SCHEME) else ref
    repo, _, revision = body.partition("@")
    if not _REPO_RE.fullmatch(repo) or (body.count("@") and not revision):
        raise InputError(f"{ref!r}: a Hub model is named hf://OWNER/NAME or hf://OWNER/NAME@REVISION")
    return repo, revision or None


def offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it (also when set after it was imported)."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return env or bool(constants.HF_HUB_OFFLINE)


def cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE)


def _name(repo: str, revision: str | None, filename: str | None = None) -> str:
    return f"{SCHEME}{repo}" + (f"@{revision}" if revision else "") + (f" (file {filename})" if filename else "")


def _missing(what: str, name: str, cmd: str, exc: Exception | None) -> HubUnavailable:
    why = ("HF_HUB_OFFLINE=1 and it is not in the Hugging Face cache" if exc is None or offline() else
           f"it is not in the Hugging Face cache and the Hub could not be reached ({type(exc).__name__})")
    return HubUnavailable(
        f"{what} {name}: {why} ({cache_dir()}). Download it once on a machine with network "
        f"(`{cmd}`, into the same HF_HOME / HF_HUB_CACHE), then it works offline; or give a local path")


def _fetch(fn, what: str, repo: str, revision: str | None, filename: str | None, cache_first: bool,
           whole_repo: bool = False, **kw) -> Path:
    from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    name = _name(repo, revision, None if whole_repo else filename)
    cmd = (f"hf download {repo}" + (f" {filename}" if filename and not whole_repo else "")
           + (f" --revision {revision}" if revision else ""))
    args = dict(revision=revision, cache_dir=cache_dir(), **({"filename": filename} if filename else {}), **kw)
    if cache_first or offline():
        try:
            return Path(fn(repo, local_files_only=True, **args))
        except (LocalEntryNotFoundError, FileNotFoundError, EntryNotFoundError):
            if offline():
                raise _missing(what, name, cmd, None) from None
    try:
        return Path(fn(repo, **args))
    except LocalEntryNotFoundError as exc:  # network failure with nothing cached (before EntryNotFoundError:
        raise _missing(what, name, cmd, exc) from exc  # it is a subclass of it)
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise InputError(f"{what} {name}: no such repository or revision on the Hub, or it is private "
                         f"(log in with `hf auth login`): {exc}") from exc
    except EntryNotFoundError as exc:
        raise InputError(f"{what} {name}: the repository has no file {filename}") from exc
    except OSError as exc:
        raise _missing(what, name, cmd, exc) from exc


def snapshot(repo: str, revision: str | None = None, *, what: str = "model", cache_first: bool = False,
             allow_patterns=None) -> Path:
    """A local folder holding the repository at ``revision`` (downloaded into the Hub cache if needed)."""
    from huggingface_hub import snapshot_download

    return _fetch(snapshot_download, what, repo, revision, None, cache_first, allow_patterns=allow_patterns)


def hub_file(repo: str, filename: str, revision: str | None = None, *, what: str = "file",
             cache_first: bool = True, whole_repo: bool = False) -> Path:
    """One file of a Hub repository, from the cache or downloaded into it once. ``whole_repo``:
    errors name (and tell to download) the repository, the file being a first look into it."""
    from huggingface_hub import hf_hub_download

    return _fetch(hf_hub_download, what, repo, revision, filename, cache_first, whole_repo)
