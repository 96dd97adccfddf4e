"""Micro-batching (serve/batcher.py) and the queue limit that answers before the body is read."""

import asyncio

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")

from cxreport.errors import InputError  # noqa: E402
from cxreport.serve.app import ServeConfig, create_app  # noqa: E402
from cxreport.serve.batcher import MicroBatcher  # noqa: E402


class RecordingPipeline:
    """Stands in for Pipeline.run: records each batch; a study named 'bad' fails its batch."""

    def __init__(self):
        self.batches = []

    def run(self, prepared, **opts):
        self.batches.append((list(prepared), dict(opts)))
        if "bad" in prepared:
            raise InputError("bad study")
        return [{"report": f"report of {p}", "views": []} for p in prepared]


async def _submit_all(batcher, items):
    return await asyncio.gather(*(batcher.submit(p, **o) for p, o in items), return_exceptions=True)


def test_concurrent_studies_share_a_batch_and_errors_stay_per_request():
    pipe = RecordingPipeline()
    batcher = MicroBatcher(pipe, max_batch=4, window_ms=50)
    greedy = dict(beam=1, max_len=None, threshold=None, heatmaps=False)
    items = [("a", greedy), ("bad", greedy), ("c", greedy), ("d", greedy), ("e", greedy),
             ("h1", greedy | {"heatmaps": True}), ("h2", greedy | {"heatmaps": True}), ("b2", greedy | {"beam": 2})]
    out = asyncio.run(_submit_all(batcher, items))
    assert [o["report"] if isinstance(o, dict) else str(o) for o in out] == [
        "report of a", "bad study", "report of c", "report of d", "report of e",
        "report of h1", "report of h2", "report of b2"]
    sizes = [len(b[0]) for b in pipe.batches]
    # a, bad, c, d fail together (4), then one by one (4); e, h1, h2 and b2 never share with others.
    assert sizes[0] == 4 and sizes[1:5] == [1, 1, 1, 1]
    assert all(len(p) == 1 for p, o in pipe.batches if o["heatmaps"] or o["beam"] == 2)
    assert max(sizes) <= 4


def test_max_batch_one_runs_every_study_alone():
    pipe = RecordingPipeline()
    out = asyncio.run(_submit_all(MicroBatcher(pipe, max_batch=1, window_ms=50),
                                  [(str(i), dict(beam=1)) for i in range(6)]))
    assert [o["report"] for o in out] == [f"report of {i}" for i in range(6)]
    assert [len(b[0]) for b in pipe.batches] == [1] * 6


def test_batched_reports_match_single_studies(pipeline, xrays):
    films = [xrays[k] for k in ("cardio", "effusion", "both", "cardio")]
    prepared = [pipeline.prepare([f]) for f in films]
    batcher = MicroBatcher(pipeline, max_batch=8, window_ms=200)
    out = asyncio.run(_submit_all(batcher, [(p, dict(beam=1, max_len=20)) for p in prepared]))
    assert batcher.batches == 1 and batcher.studies == 4
    for f, o in zip(films, out):
        alone = pipeline.generate([f], max_len=20)
        assert o["report"] == alone["report"]
        assert o["findings"].keys() == alone["findings"].keys()
        for k, v in o["findings"].items():
            if v["assessed"]:  # the others have no probability
                assert abs(v["probability"] - alone["findings"][k]["probability"]) < 1e-3


def test_full_queue_answers_503_without_reading_the_body(pipeline):
    app = create_app(pipeline, ServeConfig(max_queue=0))
    sent = []

    async def receive():
        raise AssertionError("the body was read")

    async def send(msg):
        sent.append(msg)

    scope = {"type": "http", "method": "POST", "path": "/v1/reports", "raw_path": b"/v1/reports",
             "query_string": b"", "root_path": "", "scheme": "http", "server": ("t", 80), "client": ("c", 1),
             "http_version": "1.1", "headers": [(b"content-type", b"multipart/form-data; boundary=x"),
                                                (b"content-length", b"1000")]}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 503 and (b"retry-after", b"1") in sent[0]["headers"]
    assert b"busy" in sent[1]["body"]
