"""`cxreport generate`: a report for one study, or for a folder / manifest of studies.

    cxreport generate pa.png lat.png                 # one study, report + findings
    cxreport generate --example                      # the two sample NIH films shipped with cxreport
    cxreport generate pa.dcm --json --heatmaps maps/
    cxreport generate pa.dcm --format fhir           # FHIR R4 DiagnosticReport (dicom-sr + --output-dir: a DICOM SR)
    cxreport generate pa.png --findings "Pleural Effusion=positive,Pneumonia=negative"   # edit the plan
    cxreport generate odd.png --skip-gate            # read an image the input check refuses (with a warning)
    cxreport generate --input-dir xrays/ --output-dir reports/        # a study per sub-folder or file
    cxreport generate --manifest studies.csv --output-dir reports/    # study_id,path[,view][,findings]
    torchrun --nproc-per-node 2 -m cxreport generate --input-dir ... # shards the studies

Batch outputs, resume and torchrun sharding: see ``cxreport.inference.batch``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("generate", help="write a report (and finding probabilities) for chest X-rays",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("images", nargs="*", metavar="IMAGE", help="the views of ONE study (PNG, JPEG or DICOM)")
    p.add_argument("--example", action="store_true",
                   help="run on the two sample NIH ChestX-ray14 films shipped with cxreport (one study each)")
    p.add_argument("--view", action="append", default=None, choices=["frontal", "lateral", "unknown"],
                   help="view of each IMAGE, in order (default: first frontal, second lateral)")
    p.add_argument("--model", default=None, metavar="NAME|PATH|hf://OWNER/NAME[@REV]",
                   help="bundled model name, checkpoint folder, run folder or Hugging Face Hub model (downloaded "
                        "once into the HF cache; HF_HUB_OFFLINE=1 reads only the cache) (default: the bundled model)")
    p.add_argument("--json", action="store_true", help="print the result as JSON (same as --format json)")
    p.add_argument("--format", default=None, choices=["text", "json", "dicom-sr", "fhir"],
                   help="text or json (printed); fhir: a FHIR R4 DiagnosticReport (printed for one study, "
                        "<study>.fhir.json per study in batch mode); dicom-sr: a DICOM SR per study into "
                        "--output-dir (needs DICOM films) (docs/dicom.md)")
    p.add_argument("--beam", type=int, default=None, metavar="N",
                   help="beam search with N beams (1 = greedy; default: the model's own setting)")
    p.add_argument("--max-len", type=int, default=None, metavar="TOKENS",
                   help="longest report, in tokens (default: the model's own setting)")
    p.add_argument("--findings", default=None, metavar="SPEC",
                   help="set finding states and write the report from that plan: "
                        "'Pleural Effusion=positive,Pneumonia=negative' or a JSON file/object "
                        "(states: positive, negative, uncertain, not_assessed); in batch mode for every study, "
                        "under a manifest's findings column")
    p.add_argument("--no-coverage-line", dest="coverage_line", action="store_false",
                   help="leave out the report's last line naming what the model did not assess "
                        "(the JSON lists them in not_assessed either way)")
    p.add_argument("--no-faithful", dest="faithful", action="store_false", default=None,
                   help="keep the decoder's text as it is, unchecked against the plan (for comparison)")
    p.add_argument("--threshold", type=float, default=None,
                   help="probability at which a finding counts as positive (default: the model's)")
    p.add_argument("--skip-gate", action="store_true",
                   help="read images the input check refuses (not a chest radiograph, blank, noise, colour) "
                        "anyway; the result carries a warning that the check was skipped")
    p.add_argument("--regions", action="store_true",
                   help="also split the report into lung / heart / mediastinal / bone / others (rules annotator)")
    p.add_argument("--heatmaps", default=None, metavar="DIR",
                   help="write a Grad-CAM overlay PNG per positive finding and view into DIR")
    p.add_argument("--input-dir", default=None, metavar="DIR", help="batch: a study per sub-folder or per image file")
    p.add_argument("--manifest", default=None, metavar="CSV",
                   help="batch: CSV with study_id,path[,view][,findings]")
    p.add_argument("--output-dir", default=None, metavar="OUT", help="batch: where the per-study JSON files go")
    p.add_argument("--force", action="store_true",
                   help="overwrite existing output files; in batch mode, redo every study (default: skip the "
                        "studies an earlier run finished)")
    p.add_argument("--batch-size", type=int, default=4, help="studies per forward pass in batch mode")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads of the model (0 = the cores this process may use; on a busy machine try 1; "
                        "docs/serving.md)")
    p.add_argument("--runtime", default=None, choices=["auto", "lean", "torch", "onnxruntime"],
                   help="lean: without PyTorch (ONNX Runtime + NumPy); torch; onnxruntime: PyTorch with the image "
                        "encoder in ONNX Runtime; auto (default, or CXREPORT_RUNTIME): lean when the model has its "
                        "encoder graph (docs/lean_inference.md). Single-study --heatmaps runs in PyTorch")
    p.add_argument("--workers", type=int, default=0,
                   help="batch: threads decoding the next batch's images while the model runs (0 = cores // 4, "
                        "at least 1)")
    p.set_defaults(func=run)


def run(args) -> int:
    from cxreport.errors import InputError

    batch = args.input_dir or args.manifest
    if args.example and (batch or args.images or args.view):
        raise InputError("--example runs on the bundled sample films: give no IMAGE, --view, --input-dir or --manifest")
    if batch and args.images:
        raise InputError("give either IMAGE files (one study) or --input-dir/--manifest (a batch), not both")
    if not batch and not args.images and not args.example:
        raise InputError("nothing to do: give the IMAGE files of a study, --input-dir DIR / --manifest CSV, "
                         "or --example for the sample films")
    if batch and not args.output_dir:
        raise InputError("batch mode needs --output-dir OUT for the per-study results")
    if args.format == "dicom-sr" and not args.output_dir:
        raise InputError("--format dicom-sr writes files: give --output-dir OUT")
    args.json = args.json or args.format == "json"
    if args.input_dir and args.manifest:
        raise InputError("give --input-dir or --manifest, not both")
    if args.batch_size < 1:
        raise InputError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.heatmaps and not batch:  # batch mode: a folder per study, resumable (inference.batch)
        from cxreport.inference.heatmaps import check_heatmap_folder

        check_heatmap_folder(Path(args.heatmaps), args.force)
    from cxreport.inference.threads import apply_threads, plan_threads

    args.plan = apply_threads(plan_threads(args.threads, args.workers, decode=bool(batch)))
    from cxreport.inference.pipeline import load_model

    from cxreport.labels import parse_findings

    findings = parse_findings(args.findings, where="--findings")
    runtime = args.runtime or os.environ.get("CXREPORT_RUNTIME") or "auto"
    if args.heatmaps:
        from cxreport.inference.backend import INSTALL_TORCH, torch_available

        if not torch_available():  # before any work: Grad-CAM needs PyTorch's gradients
            raise InputError(f"--heatmaps needs PyTorch (Grad-CAM): {INSTALL_TORCH}; reports alone run without it")
    if not batch and runtime == "auto" and args.heatmaps:
        # Grad-CAM needs PyTorch's gradients: one study runs wholly in PyTorch rather than load the
        # model twice (a batch writes its reports without PyTorch and loads it for the overlays).
        runtime = "torch"
    pipeline = load_model(args.model, runtime=runtime)
    opts = dict(beam=args.beam, max_len=args.max_len, threshold=args.threshold, heatmaps=bool(args.heatmaps),
                regions=args.regions, faithful=args.faithful, skip_gate=args.skip_gate,
                coverage_line=args.coverage_line)
    args.findings = findings
    if batch:
        return run_batch(pipeline, args, opts)
    if args.example:
        return run_examples(pipeline, args, opts)
    return run_single(pipeline, args, opts)


# ---- one study ------------------------------------------------------------------------------
def run_single(pipeline, args, opts) -> int:
    from cxreport.errors import InputError

    if args.view and len(args.view) != len(args.images):
        raise InputError(f"{len(args.view)} --view given for {len(args.images)} images: give one per image")
    result = pipeline.generate(args.images, args.view, findings=args.findings, **opts)
    if args.heatmaps:
        from cxreport.inference.heatmaps import write_heatmaps

        result.heatmaps = write_heatmaps(result.heatmaps or [], Path(args.heatmaps), args.force)
    if args.format in ("dicom-sr", "fhir"):
        return write_single_format(result.to_dict(), args)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(format_text(result.to_dict()))
    return 0


def run_examples(pipeline, args, opts) -> int:
    """Each sample film as its own study; the NIH labels are printed beside the model's reading."""
    from cxreport.examples import example_studies

    if args.format == "dicom-sr":
        from cxreport.errors import InputError

        raise InputError("the sample films are JPEG: a DICOM SR needs DICOM films (try --format fhir)")
    results = []
    for study in example_studies():
        result = pipeline.generate(study["images"], study["views"], findings=args.findings, **opts)
        if args.heatmaps:
            from cxreport.inference.heatmaps import write_heatmaps

            result.heatmaps = write_heatmaps(result.heatmaps or [], Path(args.heatmaps) / study["study_id"],
                                             args.force)
        results.append({"study_id": study["study_id"], "nih_labels": study["labels"], **result.to_dict()})
        if args.format == "fhir":
            from cxreport.interop.outputs import fhir_json

            results[-1] = fhir_json(result.to_dict(), study["images"])
    if args.json or args.format == "fhir":
        print(json.dumps(results, indent=2))
        return 0
    for r in results:
        films = ", ".join(v["source"] for v in r["views"])
        print(f"== sample study {r['study_id']} ({films}; NIH labels: {r['nih_labels']})")
        print(format_text(r) + "\n")
    return 0


def write_single_format(result: dict, args) -> int:
    """--format fhir (to stdout, or OUT/<first film>.fhir.json) / dicom-sr (OUT/<first film>.sr.dcm)."""
    from cxreport.interop.outputs import fhir_json, write_output

    if args.format == "fhir" and not args.output_dir:
        print(json.dumps(fhir_json(result, args.images), indent=2))
        return 0
    name = Path(args.images[0]).stem or "study"
    path = write_output(result, args.images, args.format, Path(args.output_dir), name, force=args.force)
    print(f"wrote {path}", file=sys.stderr)
    return 0


def format_text(result: dict) -> str:
    views = ", ".join(f"{v['view']}{'' if v.get('used', True) else ' (not used)'}" for v in result["views"])
    uniform = result["threshold"]
    at = (f"threshold {uniform:.2f}" if uniform is not None else
          "its own threshold, in brackets; never: the model does not state it at its precision floor")
    lines = [f"Report (model {result['model']}; views: {views}):", result["report"] or "(empty report)", ""]
    lines += [f"Warning: {w}" for w in result.get("warnings", [])]
    if "regions" in result:
        lines += ["Regions:", *(f"  {r:<12} {t or '-'}" for r, t in result["regions"].items()), ""]
    lines.append(f"Findings (probability; * = positive at {at}; state the report was written from):")
    prob = lambda f: -1.0 if f.get("probability") is None else f["probability"]  # noqa: E731
    shown = [(n, f) for n, f in result["findings"].items() if f["state"] != "not_assessed" or f.get("set_by") == "user"]
    for name, f in sorted(shown, key=lambda kv: -prob(kv[1])):
        p = prob(f)
        bar = "#" * round(20 * max(p, 0))
        t = f.get("threshold")
        own = "" if uniform is not None or t is None else " [never]" if t > 1 else f" [{t:.2f}]"
        state = f["state"].replace("_", " ")
        model = f.get("model_state", f["state"]).replace("_", " ")
        who = f" (set by user; model: {model})" if f.get("set_by") == "user" else ""
        value = f"{p:.2f}" if p >= 0 else "  - "
        lines.append(f" {'*' if f['state'] == 'positive' else ' '} {name:<27} {value}{own:<8}  {bar:<20}  {state}{who}")
    skipped = [n for n, f in result["findings"].items() if f.get("model_state", f["state"]) == "not_assessed"]
    if skipped:
        lines.append("Not assessed by the model (too few training examples, or no film it reads): " + ", ".join(skipped))
    for h in result.get("heatmaps", []):
        lines.append(f"heatmap: {h['file']}")
    if result.get("disclaimer"):
        lines += ["", result["disclaimer"]]
    return "\n".join(lines)


# ---- many studies ---------------------------------------------------------------------------
def run_batch(pipeline, args, opts) -> int:
    from cxreport.inference.batch import SUMMARY, discover_studies, run_batch

    studies = discover_studies(args.input_dir, args.manifest)
    for s in studies:
        s["findings"] = {**args.findings, **(s.get("findings") or {})}
    opts = {k: v for k, v in opts.items() if k != "heatmaps"}
    res = run_batch(pipeline, studies, Path(args.output_dir), batch_size=args.batch_size,
                    heatmaps=Path(args.heatmaps) if args.heatmaps else None, force=args.force,
                    workers=args.plan.workers, **opts)
    if args.format in ("dicom-sr", "fhir"):
        from cxreport.interop.outputs import write_batch_outputs

        written, problems = write_batch_outputs(res.rows, studies, args.format, Path(args.output_dir))
        for msg in problems:
            print(f"warning: {msg}", file=sys.stderr)
        print(f"{written} {args.format} file(s) written to {Path(args.output_dir)}", file=sys.stderr)
    n, failed, where = len(res.rows), res.failed, res.summary
    again = f", {res.redone} incomplete output(s) redone" if res.redone else ""
    print(f"{n - failed} of {n} studies written to {Path(args.output_dir)}"
          + (f" ({res.skipped} already done by an earlier run, skipped{again})" if res.skipped or res.redone else "")
          + (f"; {failed} failed (see {where})" if failed else "") + (f"; summary: {where}" if res.merged else
                                                                      f"; waiting for other ranks to merge {SUMMARY}"),
          file=sys.stderr)
    return 1 if failed and failed == n else 0
