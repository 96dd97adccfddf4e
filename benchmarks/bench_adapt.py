"""Site adaptation, measured: a base model adapted to a new site's films with N = 50..1000 films
(whole patients, several seeds), each adapted model scored once on the site's test split and on the
base population's test split; and the wall time of one `cxreport adapt` run.

    # Kermany as a new site for an NIH-only base (configs/nih-only-head.json + configs/nih-only-gate.json)
    python benchmarks/bench_adapt.py --base runs/nih-only-head/best --source kermany \
        --root ../shared/data/kermany_pediatric_cxr --site-cache cache/kermany_pediatric_cxr \
        --base-cache cache/nih_cxr14 --out runs/adapt-study --plot docs/adapt_kermany.png
    python benchmarks/bench_adapt.py --timing 1000 --base runs/nih-only-head/best --source kermany \
        --root ../shared/data/kermany_pediatric_cxr --out runs/adapt-timing   # wall time, CLI, fresh folder

Test splits are read only here, once per adapted model, after adapt (which reads train+val only).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


KEYS = ["pneumonia_auroc", "no_finding_auroc", "pneumonia_ece", "pneumonia_positive_on_pneumonia",
        "pneumonia_positive_on_normal", "normal_report_on_normal", "base_macro_auroc"]


def scores(model_dir: str, caches: dict, features: str) -> dict:
    from cxreport.checkpoint import load_checkpoint
    from cxreport.inference.gate import Gate, GateParams
    from cxreport.training.head_scores import score_split

    model, _, _ = load_checkpoint(model_dir)
    params = GateParams.load(model_dir)
    gate = Gate(params) if params is not None else None
    return {name: score_split(model.eval(), gate, cache, "test", features, progress=False) for name, cache in caches.items()}


def summary(site: dict, base_pop: dict, assessed: list[str]) -> dict:
    pf = site["per_finding"]
    pick = lambda n, k: pf.get(n, {}).get(k)  # noqa: E731
    aucs = [base_pop["per_finding"][n]["auroc"] for n in assessed if n in base_pop["per_finding"]
            and base_pop["per_finding"][n]["auroc"] is not None]
    return {"pneumonia_auroc": pick("Pneumonia", "auroc"), "no_finding_auroc": pick("No Finding", "auroc"),
            "pneumonia_ece": pick("Pneumonia", "ece"), "no_finding_ece": pick("No Finding", "ece"),
            "pneumonia_positive_on_pneumonia": pick("Pneumonia", "positive_rate_with"),
            "pneumonia_positive_on_normal": pick("Pneumonia", "positive_rate_without"),
            "pneumonia_uncertain_on_normal": pick("Pneumonia", "uncertain_rate_without"),
            "normal_report_on_normal": pick("No Finding", "positive_rate_with"),
            "normal_report_on_pneumonia": pick("No Finding", "positive_rate_without"),
            "base_macro_auroc": round(float(np.mean(aucs)), 4) if aucs else None,
            "placed": site["populations"], "base_placed": base_pop["populations"]}


def timing(args) -> None:
    out = Path(args.out) / f"n{args.timing}"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(Path(f"{out}.work"), ignore_errors=True)
    cmd = [sys.executable, "-m", "cxreport", "adapt", args.base, "--source", args.source, "--root", args.root,
           "--out", str(out), "--max-films", str(args.timing), "--population", args.population, "--quiet"]
    cmd += [a for p in args.prevalence for a in ("--prevalence", p)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    load = open("/proc/loadavg").read().split()[:3] if Path("/proc/loadavg").exists() else []
    print(json.dumps({"films": args.timing, "wall_s": round(wall, 1), "command": " ".join(cmd[2:]),
                      "loadavg_after": load}, indent=1))


def plot(studies: list[tuple[str, list[dict]]], base: dict, path: str) -> None:
    """One panel per figure; each study (label, rows) a colour: seeds as dots, their mean as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    panels = [("pneumonia_auroc", "Kermany test: Pneumonia AUROC"), ("pneumonia_positive_on_normal",
              "Kermany test: 'pneumonia' on normal films"), ("base_macro_auroc", "NIH test: macro AUROC (adult)")]
    allns = sorted({r["n"] for _, rows in studies for r in rows})
    for ax, (key, title) in zip(axes, panels):
        for (label, rows), colour in zip(studies, ("tab:blue", "tab:orange", "tab:green")):
            ns = [n for n in sorted({r["n"] for r in rows}) if any(r["n"] == n and r.get(key) is not None for r in rows)]
            for n in ns:
                vals = [r[key] for r in rows if r["n"] == n and r.get(key) is not None]
                ax.scatter([n] * len(vals), vals, color=colour, s=14)
            means = [np.mean([r[key] for r in rows if r["n"] == n and r.get(key) is not None]) for n in ns]
            ax.plot(ns, means, color=colour, label=label)
        if base.get(key) is not None:
            ax.axhline(base[key], color="grey", ls="--", label="base (NIH only)")
        ax.set_xscale("log")
        ax.set_xticks(allns, [str(n) for n in allns])
        ax.set_xlabel("site films used (N)")
        ax.set_title(title, fontsize=9)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--population", default="pediatric")
    ap.add_argument("--out", required=True)
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 300, 1000])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--site-cache", help="the site's prepared cache (its test split is scored)")
    ap.add_argument("--base-cache", help="the base population's prepared cache (its test split is scored)")
    ap.add_argument("--features", default="cache/features")
    ap.add_argument("--plot", default=None)
    ap.add_argument("--min-positives", type=int, default=None, help="as cxreport adapt --min-positives")
    ap.add_argument("--prevalence", action="append", default=[], metavar="FINDING=P",
                    help="as cxreport adapt --prevalence (the site's films are a selection)")
    ap.add_argument("--timing", type=int, default=0, metavar="N", help="only time one `cxreport adapt` of N films")
    ap.add_argument("--plot-from", nargs="+", metavar="JSON=LABEL", help="only plot earlier studies into --plot")
    if "--plot-from" in sys.argv:
        ns = argparse.ArgumentParser()
        ns.add_argument("--plot-from", nargs="+", required=True)
        ns.add_argument("--plot", required=True)
        a = ns.parse_args()
        return plot_studies(a.plot_from, a.plot)
    args = ap.parse_args()
    if args.timing:
        return timing(args)
    from cxreport.checkpoint import read_config
    from cxreport.errors import InputError
    from cxreport.training.adapt import AdaptConfig, run_adapt

    from cxreport.cli.fit import _prevalence

    prevalence = _prevalence(args.prevalence)
    caches = {"site": args.site_cache, "base": args.base_cache}
    base_cfg = read_config(args.base)["model"]["findings"]
    assessed = [n for n, c in base_cfg["train_positives"].items() if c >= base_cfg["min_positives"]]
    base = summary(*[scores(args.base, caches, args.features)[k] for k in ("site", "base")], assessed)
    rows = []
    for n in args.sizes:
        for seed in args.seeds:
            out = Path(args.out) / f"n{n}-s{seed}"
            t0 = time.perf_counter()
            cfg = AdaptConfig(base=args.base, out=str(out), source=args.source, root=args.root,
                              population=args.population, max_films=n, seed=seed, prevalence=prevalence)
            if args.min_positives is not None:
                cfg.min_positives = args.min_positives
            try:
                report = run_adapt(cfg, progress=False)
            except InputError as exc:  # too few labelled films to assess anything: a result, not a crash
                rows.append({"n": n, "seed": seed, "refused": str(exc), **{k: None for k in KEYS}})
                print(json.dumps(rows[-1]), flush=True)
                continue
            s = scores(str(out), caches, args.features)
            rows.append({"n": n, "seed": seed, "films": report["films"], "epochs": report["epochs"],
                         "adapt_s": round(time.perf_counter() - t0, 1),
                         "cv_auroc": report["out_of_fold_auroc"], **summary(s["site"], s["base"], assessed)})
            print(json.dumps(rows[-1]), flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "adapt_study.json").write_text(json.dumps({"base": base, "rows": rows}, indent=1))
    keys = KEYS
    print("| N | " + " | ".join(keys) + " |\n|---|" + "---:|" * len(keys))
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    print("| base | " + " | ".join(fmt(base[k]) for k in keys) + " |")
    for n in args.sizes:
        sub = [r for r in rows if r["n"] == n]
        cells = []
        for k in keys:
            v = [r[k] for r in sub if r[k] is not None]
            cells.append(f"{np.mean(v):.3f} ± {np.std(v):.3f}" if v else "n/a")
        print(f"| {n} | " + " | ".join(cells) + " |")
    if args.plot:
        plot([("adapted (mean of seeds)", rows)], base, args.plot)


def plot_studies(items: list[str], path: str) -> None:
    """--plot-from A.json=LABEL ...: one figure from several studies' adapt_study.json."""
    studies, base = [], {}
    for item in items:
        f, _, label = item.partition("=")
        data = json.loads(Path(f).read_text())
        studies.append((label or f, data["rows"]))
        base = data["base"]
    plot(studies, base, path)


if __name__ == "__main__":
    main()
