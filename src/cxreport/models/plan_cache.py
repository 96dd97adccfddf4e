"""A decoder that reads only the finding plan writes each distinct plan's report once.

With ``findings.image_memory=false`` (the bundled model) the decoder's memory is the plan alone,
so its tokens are a function of the plan states, the decoding settings and the weights: NIH test's
824 films make 68 distinct plans. ``ReportModel.generate`` asks this cache first and decodes only
the plans it has not seen (each once per batch), in greedy or beam search; sampling is never
cached. The key holds every setting that changes the tokens, and a weight change (an optimiser
step, a load, ``.to``) empties the cache, so a cached report is exactly the one decoding would
write. The runtime without PyTorch (``models.runtime``) keeps one too; its weights never change
after loading, so its version is fixed.
"""

from __future__ import annotations

import copy
from collections import OrderedDict


class PlanCache:
    """``modules``: the PyTorch modules whose weights the reports depend on; or ``version``: a
    function giving the weights' current version (anything comparable)."""

    def __init__(self, modules: list | None = None, size: int = 4096, version=None):
        self.modules, self.size = modules or [], size
        self._version_of = version or self._tensor_versions
        self._store: OrderedDict = OrderedDict()
        self._version = None
        self.hits = self.misses = 0  # for tests and benchmarks

    def lookup(self, keys: list) -> list:
        """The cached output (a fresh copy) for each key, or None."""
        version = self._version_of()
        if version != self._version:
            self._store.clear()
            self._version = version
        out = []
        for k in keys:
            hit = self._store.get(k)
            if hit is not None:
                self._store.move_to_end(k)
            out.append(copy.deepcopy(hit))
        self.hits += sum(h is not None for h in out)
        self.misses += sum(h is None for h in out)
        return out

    def _tensor_versions(self):
        from cxreport.models.versions import tensor_versions

        return tensor_versions(p for m in self.modules for p in m.parameters())

    def decode(self, plans: list, decode: dict, decode_rows) -> list[dict]:
        """One output per plan (a row of state codes), decoding each distinct plan not cached once:
        ``decode_rows(indices)`` decodes those rows of the batch (an output each). ``decode``: the
        settings that change the tokens (a ``generator`` is not a setting)."""
        settings = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in decode.items()
                                if k != "generator"))
        keys = [(tuple(row), settings) for row in plans]
        outs = self.lookup(keys)
        todo: dict = {}
        for i, (k, o) in enumerate(zip(keys, outs)):
            if o is None:
                todo.setdefault(k, []).append(i)
        if todo:
            for (k, ix), o in zip(todo.items(), decode_rows([ix[0] for ix in todo.values()])):
                self.store(k, o)
                for i in ix:
                    outs[i] = copy.deepcopy(o)
        return outs

    def store(self, key, value: dict) -> None:
        self._store[key] = copy.deepcopy(value)
        self._store.move_to_end(key)
        while len(self._store) > self.size:
            self._store.popitem(last=False)
