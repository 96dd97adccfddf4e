"""Run templates shipped with the package (``training/templates/*.json``), usable by name:
``cxreport train --config smoke --cache PATH``, listed by ``--list-configs`` and printed, complete
and commented, by ``--show-config NAME``.

JSON has no comments, so a template's (and any run config's) keys that start with ``#`` are
comments: ``"#"`` on top is the one-line description, ``"#lr"`` explains ``lr``; the loader drops
them (cxreport.config.strip_comments), so a printed template loads back as it is, edited or not.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from cxreport.config import from_dict, strip_comments, to_dict
from cxreport.errors import InputError
from cxreport.training.config import HELP, RunConfig, SourceConfig

TEMPLATES = Path(__file__).with_name("templates")


def list_templates() -> dict[str, str]:
    """{name: one-line description} of the shipped run templates."""
    return {p.stem: json.loads(p.read_text(encoding="utf-8")).get("#", "")
            for p in sorted(TEMPLATES.glob("*.json"))}


def resolve_config(name_or_path: str) -> Path:
    """A run config file as given, else the shipped template of that name; an error lists both kinds."""
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    if (TEMPLATES / f"{name_or_path}.json").is_file() and "/" not in name_or_path:
        return TEMPLATES / f"{name_or_path}.json"
    hint = ""
    try:
        from cxreport.models import list_models

        if name_or_path in list_models():
            hint = (f" ({name_or_path!r} is a model config: start from a template and pass "
                    f"--set model.name={name_or_path})")
    except InputError:
        pass
    names = ", ".join(list_templates())
    raise InputError(f"{name_or_path}: no such run config file and no run template of that name{hint}; "
                     f"templates: {names} (see `cxreport train --list-configs`, print one with "
                     "`cxreport train --show-config NAME`), or give the path of a JSON run config")


def with_caches(cfg: RunConfig, caches: list[str]) -> RunConfig:
    """``cfg`` training on ``caches``: the template's source entries get them in order; extra caches
    copy the last entry's settings, and a template without entries uses the defaults."""
    if not caches:
        return cfg
    base = cfg.data.sources or [SourceConfig()]
    cfg.data.sources = [dataclasses.replace(base[min(i, len(base) - 1)], cache=str(c)) for i, c in enumerate(caches)]
    return cfg


def _commented(value, where: str):
    """``value`` (a resolved config section) with a ``#key`` comment before every key HELP explains."""
    if isinstance(value, list) and where == "data.sources":
        return [_commented(v, "data.sources[]") for v in value]
    if not isinstance(value, dict) or where == "model.overrides":
        return value
    out = {}
    for key, v in value.items():
        path = f"{where}.{key}" if where else key
        if path in HELP:
            out[f"#{key}"] = HELP[path]
        if path == "data.sources" and not v:  # no entry to comment: describe one
            out["#sources entry"] = {k: HELP[f"data.sources[].{k}"] for k in to_dict(SourceConfig())}
        out[key] = _commented(v, path)
    return out


def commented_config(name_or_path: str) -> dict:
    """The run config ``name_or_path`` with every key and its value (defaults included) and a
    ``#`` comment for each, ready to save, edit and pass back to ``--config``."""
    path = resolve_config(name_or_path)
    raw = json.loads(path.read_text(encoding="utf-8"))
    cfg = from_dict(RunConfig, strip_comments(raw))
    about = raw.get("#") or f"run config {path}"
    head = {"#": f"{about}. Keys starting with # are comments (ignored when loaded). Save this, edit it, then "
                 "run: cxreport train --config FILE.json (add --cache PATH for the data, --set key=value to "
                 "override one value)"}
    return head | _commented(to_dict(cfg), "")
