"""Command line: ``mlp-service serve [--host] [--port]``, ``mlp-service worker [--concurrency N]``."""

from __future__ import annotations

import argparse
import logging
import sys

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app
    from service.settings import Settings

    settings = Settings()
    log = logging.getLogger("service")
    if args.host not in LOOPBACK and not settings.api_keys_file:
        log.warning("listening on %s without API keys (MLP_API_KEYS_FILE): anyone who can reach this "
                    "port can use the service", args.host)
    app = create_app(settings)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.access_log)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from service.settings import Settings

    settings = Settings()
    if not settings.broker_url:
        logging.getLogger("service").error("mlp-service worker needs MLP_BROKER_URL (e.g. redis://host:6379/0)")
        return 2
    from service.executor.celery import run_worker

    return run_worker(settings, concurrency=args.concurrency, loglevel=args.log_level)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mlp-service`` script."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="mlp-service", description="REST service that trains MLPs")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP API with embedded worker processes")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--no-access-log", dest="access_log", action="store_false")
    serve.set_defaults(func=_serve)
    worker = sub.add_parser("worker", help="run a Celery worker that trains jobs (needs MLP_BROKER_URL)")
    worker.add_argument("--concurrency", type=int, default=None,
                        help="training processes (default MLP_WORKERS)")
    worker.add_argument("--log-level", default="info")
    worker.set_defaults(func=_worker)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
