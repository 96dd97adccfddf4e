"""Wall time of `cxreport.metrics.score` on N report pairs (default 590, as the IU X-Ray test split).

    PYTHONPATH=src python benchmarks/bench_metrics.py --cache CACHE [--n 590] [--repeats 2]

Pairs: the cache's val reports first, then train reports, each scored against a random training
report (seeded), under the r2gen protocol. Reports, per repeat: all default metrics without CIs,
with 1000-resample CIs, the Java (METEOR) start-up alone, and the machine's load average, since
METEOR's JVM start-up (loading its paraphrase table) dominates and is CPU bound.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time

from cxreport.data.cache import Cache
from cxreport.metrics.meteor import MeteorSession
from cxreport.metrics.scoring import score


def pairs(cache: str, n: int, seed: int = 0):
    c = Cache(cache)
    rows = [r for split in ("val", "train") for r in c.image_rows(split) if (r.get("findings") or "").strip()]
    train = [r["findings"] for r in c.image_rows("train") if (r.get("findings") or "").strip()]
    rng = random.Random(seed)
    rows = rows[:n]
    return [rng.choice(train) for _ in rows], [r["findings"] for r in rows]


def jvm_startup() -> float:
    t0 = time.perf_counter()
    with MeteorSession() as m:
        m.score(["a b c"], ["a b d"])
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", required=True)
    ap.add_argument("--n", type=int, default=590)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    hyps, refs = pairs(args.cache, args.n)
    out = {"pairs": len(refs), "cpus": os.cpu_count(), "runs": []}
    for _ in range(args.repeats):
        run = {"load_avg_1m_before": os.getloadavg()[0]}
        t0 = time.perf_counter()
        score(hyps, refs, protocol="r2gen", bootstrap=0)
        run["default_metrics_no_ci_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = score(hyps, refs, protocol="r2gen", bootstrap=1000)
        run["default_metrics_1000_bootstrap_s"] = time.perf_counter() - t0
        run["jvm_startup_one_pair_s"] = jvm_startup()
        run["load_avg_1m_after"] = os.getloadavg()[0]
        out["runs"].append(run)
        print(json.dumps(run), flush=True)
    for key in ("default_metrics_no_ci_s", "default_metrics_1000_bootstrap_s", "jvm_startup_one_pair_s"):
        out["median_" + key] = statistics.median(r[key] for r in out["runs"])
    out["metrics"] = {k: (round(v["value"], 4), [round(x, 4) for x in v["ci95"]]) for k, v in res["metrics"].items()}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
