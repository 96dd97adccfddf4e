"""`cxreport serve`: the report service and its web page on http://HOST:PORT/ (docs at /docs)."""

from __future__ import annotations

import logging

log = logging.getLogger("cxreport.serve")

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="serve reports over HTTP, with a web page (needs cxreport[serve])")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", default=None, metavar="NAME|PATH|hf://OWNER/NAME[@REV]",
                   help="bundled model name, checkpoint folder, run folder or Hugging Face Hub model (downloaded "
                        "once into the HF cache; HF_HUB_OFFLINE=1 reads only the cache) (default: the bundled model)")
    p.add_argument("--api-key-env", default=None, metavar="VAR",
                   help="require the key held in environment variable VAR (header X-API-Key or "
                        "Authorization: Bearer KEY) on /v1/ endpoints")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest request body, in MB")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="largest image, in pixels (default: cxreport.data.images.MAX_PIXELS)")
    p.add_argument("--workers", type=int, default=0,
                   help="threads decoding uploaded images (0 = cores // 4, at least 1)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads of the model (0 = cores - workers, at least 1; docs/serving.md)")
    p.add_argument("--runtime", default=None, choices=["auto", "lean", "torch", "onnxruntime"],
                   help="lean: without PyTorch; torch; onnxruntime: PyTorch with the encoder in ONNX Runtime; auto "
                        "(default, or CXREPORT_RUNTIME): lean when the model has its encoder graph "
                        "(docs/lean_inference.md)")
    p.add_argument("--max-queue", type=int, default=64,
                   help="requests in flight before new ones get 503 (answered before the upload is read)")
    p.add_argument("--max-batch", type=int, default=16,
                   help="studies from concurrent requests run as one batch, up to N (1 = no batching)")
    p.add_argument("--batch-window-ms", type=float, default=10.0,
                   help="how long a study waits for others to join its batch when the model is idle")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=run)


def run(args) -> int:
    from cxreport.errors import InputError, require

    require("fastapi", "serve", "the HTTP service")
    uvicorn = require("uvicorn", "serve", "the HTTP service")
    require("multipart", "serve", "file uploads (python-multipart)")
    from cxreport.serve.app import ServeConfig, create_app, read_api_key

    if not 0 < args.port < 65536:
        raise InputError(f"--port {args.port}: choose 1..65535")
    if args.max_upload_mb <= 0 or args.max_queue < 1 or (args.max_pixels or 1) < 1 or args.max_batch < 1:
        raise InputError("--max-upload-mb, --max-pixels, --max-queue and --max-batch must be positive")
    if not 0 <= args.batch_window_ms <= 1000:
        raise InputError(f"--batch-window-ms {args.batch_window_ms:g}: choose 0..1000 (milliseconds)")
    logging.getLogger("cxreport").setLevel(args.log_level.upper())  # per-request lines are INFO
    from cxreport.inference.threads import apply_threads, plan_threads

    plan = apply_threads(plan_threads(args.threads, args.workers, serving=True))
    cfg = ServeConfig(api_key=read_api_key(args.api_key_env), max_upload_mb=args.max_upload_mb,
                      workers=plan.workers, max_queue=args.max_queue, max_batch=args.max_batch,
                      batch_window_ms=args.batch_window_ms,
                      **({"max_pixels": args.max_pixels} if args.max_pixels else {}))
    from cxreport.inference.pipeline import load_model

    from cxreport.inference.predict import warm_up

    pipeline = load_model(args.model, runtime=args.runtime)
    warm_up(pipeline.model)
    if args.host not in LOOPBACK and cfg.api_key is None:
        log.warning("listening on %s without an API key: anyone who can reach this port can use the model "
                    "(see --api-key-env)", args.host)
    app = create_app(pipeline, cfg)
    log.info("model %s ready (runtime %s, %s; batches of up to %d); open http://%s:%d/ (API docs at /docs)",
             pipeline.name, pipeline.runtime, plan.describe(), cfg.max_batch, args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
