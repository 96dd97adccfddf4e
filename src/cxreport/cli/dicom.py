"""`cxreport dicom`: a DICOM node for PACS and routers (docs/dicom.md).

    cxreport dicom listen --port 11112 --ae-title CXREPORT --send-to ORTHANC@127.0.0.1:4242 \\
        --spool /var/spool/cxreport --allow ORTHANC          # C-STORE in, DICOM SR back out
    cxreport dicom wrap film.png film.dcm --patient-id P1  # a PNG/JPEG as DX DICOM, to try a set-up
    cxreport dicom check report.sr.dcm                     # print what a cxreport SR says
"""

from __future__ import annotations

import logging

log = logging.getLogger("cxreport.interop")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(subparsers) -> None:
    p = subparsers.add_parser("dicom", help="DICOM node: receive chest films, send DICOM SR reports back "
                                            "(needs cxreport[interop])", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="dicom_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: p.print_help() or 2)

    lp = sub.add_parser("listen", help="C-STORE SCP: read each chest study received, send an SR to --send-to")
    lp.add_argument("--port", type=int, default=11112, help="DICOM port to listen on (default 11112)")
    lp.add_argument("--host", default="127.0.0.1",
                    help="interface to listen on (default: this machine only; 0.0.0.0 for every interface)")
    lp.add_argument("--ae-title", default="CXREPORT", help="this node's AE title (called AE; also the calling AE "
                                                           "when sending SRs) (default CXREPORT)")
    lp.add_argument("--send-to", required=True, metavar="AE@HOST:PORT", help="where the SRs go, e.g. a PACS or Orthanc")
    lp.add_argument("--spool", required=True, metavar="DIR",
                    help="received instances and SRs not yet delivered: the only state; restart with the same DIR")
    lp.add_argument("--allow", default=None, metavar="AE[,AE...]",
                    help="calling AE titles accepted (default: any); others are rejected at association")
    lp.add_argument("--quiet", type=float, default=5.0, metavar="SECONDS",
                    help="a study is complete once no instance of it arrived for this long and its sender has "
                         "closed the association (default 5)")
    lp.add_argument("--retry-max", type=float, default=60.0, metavar="SECONDS",
                    help="longest wait between tries while the destination is down (default 60; starts at 1)")
    lp.add_argument("--model", default=None, metavar="NAME|PATH|hf://OWNER/NAME[@REV]",
                    help="the model, as for `cxreport generate` (default: the bundled model)")
    lp.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (0 = the cores this process may use; docs/serving.md)")
    lp.set_defaults(func=run_listen)

    wp = sub.add_parser("wrap", help="write a PNG/JPEG film as a DX DICOM file (to try a set-up)")
    wp.add_argument("image", help="PNG or JPEG film")
    wp.add_argument("output", help="DICOM file to write")
    wp.add_argument("--patient-id", default="ANON")
    wp.add_argument("--patient-name", default="Anonymous^")
    wp.add_argument("--study-uid", default=None, help="join an existing study (default: a new one)")
    wp.add_argument("--view", default="PA", help="ViewPosition: PA, AP, LL, LATERAL... (default PA)")
    wp.set_defaults(func=run_wrap)

    cp = sub.add_parser("check", help="print the report, finding states and sources of a cxreport SR")
    cp.add_argument("sr", help="SR file")
    cp.add_argument("--json", action="store_true")
    cp.set_defaults(func=run_check)


def run_listen(args) -> int:
    from cxreport.errors import InputError, require

    require("pynetdicom", "interop", "the DICOM listener")
    require("highdicom", "interop", "DICOM SR output")
    from cxreport.interop.sender import Destination

    dest = Destination.parse(args.send_to)
    if not 0 < args.port < 65536:
        raise InputError(f"--port {args.port}: choose 1..65535")
    if args.quiet < 0 or args.retry_max < 1:
        raise InputError("--quiet must be >= 0 and --retry-max >= 1 (seconds)")
    allow = [a.strip() for a in (args.allow or "").split(",") if a.strip()]
    if any(len(a) > 16 for a in allow):
        raise InputError(f"--allow {args.allow}: AE titles have at most 16 characters")
    from cxreport.inference.threads import apply_threads, plan_threads

    apply_threads(plan_threads(args.threads, 0))
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # its INFO is a line per PDU
    from cxreport.inference.pipeline import load_model
    from cxreport.inference.predict import warm_up
    from cxreport.interop.service import Service

    pipeline = load_model(args.model)
    warm_up(pipeline.model)
    if args.host not in LOOPBACK and not allow:
        log.warning("listening on %s with no --allow: any DICOM node that reaches this port can send studies",
                    args.host)
    service = Service(pipeline, args.spool, dest, ae_title=args.ae_title, host=args.host, port=args.port,
                      allow=allow, quiet=args.quiet, retry_max=args.retry_max).start()
    log.info("model %s ready; SRs go to %s", pipeline.name, dest)
    import signal

    signal.signal(signal.SIGTERM, lambda *_: service.stopping.set())
    service.serve_forever()
    return 0


def run_wrap(args) -> int:
    from pathlib import Path

    from cxreport.interop.convert import image_to_dx

    info = image_to_dx(Path(args.image), Path(args.output), patient_id=args.patient_id,
                       patient_name=args.patient_name, study_uid=args.study_uid, view_position=args.view)
    print(f"{info['path']}: DX, study {info['study_uid']}, instance {info['sop_uid']}")
    return 0


def run_check(args) -> int:
    import json

    from cxreport.errors import InputError, require

    pydicom = require("pydicom", "interop", "reading DICOM files")
    from cxreport.interop.sr import sr_summary

    try:
        ds = pydicom.dcmread(args.sr)
    except Exception as exc:
        raise InputError(f"{args.sr}: not a DICOM file ({exc})") from None
    if "ContentSequence" not in ds:
        raise InputError(f"{args.sr}: not a structured report (no ContentSequence)")
    s = sr_summary(ds)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    print(("Report" if s["read"] else "NOT READ") + f" (SR {ds.SOPInstanceUID}, study {ds.StudyInstanceUID}):")
    print(s["text"])
    for name, f in s["findings"].items():
        prob = "" if f["probability"] is None else f" {f['probability']:.2f}"
        print(f"  {name:<27} {f['state'].replace('_', ' ')}{prob}")
    print(f"sources: {', '.join(s['sources'])}")
    return 0
