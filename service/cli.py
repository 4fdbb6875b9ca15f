"""Command line: ``mlp-service serve [--host] [--port]``, ``mlp-service worker [--concurrency N]``,
``mlp-service keys create --tenant NAME | list | revoke ID``; and the client commands of ``mlp_client.cli``
(``train``, ``watch``, ``predict``, ``jobs``, ``cancel``, ``delete-job``, ``models``, ``export``), which talk to
a running server over HTTP."""

from __future__ import annotations

import argparse
import gc
import logging
import sys

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app
    from service.settings import Settings, warn_unknown_variables

    from service import auth

    settings = Settings()
    log = logging.getLogger("service")
    warn_unknown_variables(log)
    try:
        app = create_app(settings)  # reads MLP_API_KEYS_FILE now, so a bad file stops the start-up
    except auth.KeysFileError as exc:
        log.error("cannot read the API keys: %s", exc)
        return 2
    if args.host not in LOOPBACK and not auth.keys_configured(settings, app.state.sessionmaker):
        log.warning("listening on %s without API keys (MLP_API_KEYS_FILE or `mlp-service keys create`): "
                    "anyone who can reach this port can use the service", args.host)
    # Serving-process tuning for request latency tails. Everything loaded so far (libraries, the app, its
    # routes and schemas) lives as long as the process: freeze it out of the collector's reach, so a full
    # collection while serving does not walk it. And the event loop shares the GIL with the threadpool; a
    # 1 ms switch interval (default 5 ms) lets the loop answer a waiting request sooner.
    gc.collect()
    gc.freeze()
    sys.setswitchinterval(0.001)
    # Slow or idle clients: idle keep-alive connections close after 5 s; a request head not complete within
    # MLP_HEADER_READ_TIMEOUT_SECONDS gets 408; past MLP_MAX_CONNECTIONS open connections new requests get 503
    # instead of piling up (service/connections.py).
    from service.connections import GuardedHttpProtocol

    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.access_log,
                timeout_keep_alive=5, http=GuardedHttpProtocol.configured(settings))
    return 0


def _worker(args: argparse.Namespace) -> int:
    from service.settings import Settings, warn_unknown_variables

    settings = Settings()
    warn_unknown_variables(logging.getLogger("service"))
    if not settings.broker_url:
        logging.getLogger("service").error("mlp-service worker needs MLP_BROKER_URL (e.g. redis://host:6379/0)")
        return 2
    from service.executor.base import prepare_worker_process, threads_per_worker

    concurrency = max(1, args.concurrency or settings.workers or 1)
    # Before numpy loads (the executor imports it): the pool processes inherit the thread limits and niceness.
    prepare_worker_process(threads=threads_per_worker(concurrency), nice=settings.worker_nice)
    from service.executor.celery import run_worker

    return run_worker(settings, concurrency=concurrency, loglevel=args.log_level)


def _keys(args: argparse.Namespace) -> int:
    from service.database import create_all, make_engine, make_sessionmaker
    from service.errors import ServiceError
    from service.keys import service as keys_service
    from service.keys import tables as _tables  # noqa: F401  (the api_keys table)
    from service.settings import Settings

    engine = make_engine(Settings())
    create_all(engine)
    try:
        with make_sessionmaker(engine)() as session:
            if args.keys_command == "create":
                row, key = keys_service.create(session, tenant=args.tenant)
                print(f"created key {row.id} for tenant {row.owner}; it is shown only once:", file=sys.stderr)
                print(key)
            elif args.keys_command == "list":
                print(f"{'ID':<14}{'TENANT':<24}{'CREATED':<27}STATUS")
                for row in keys_service.list_(session, tenant=args.tenant):
                    status = f"revoked {row.revoked_at:%Y-%m-%dT%H:%M:%SZ}" if row.revoked_at else "active"
                    print(f"{row.id:<14}{row.owner:<24}{row.created_at:%Y-%m-%dT%H:%M:%SZ}{'':<7}{status}")
            else:
                row = keys_service.revoke(session, key_id=args.key_id)
                print(f"revoked key {row.id} of tenant {row.owner}", file=sys.stderr)
    except ServiceError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


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
    keys = sub.add_parser("keys", help="manage API keys (stored as salted hashes in the database)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key for a tenant and print it (only this once)")
    create.add_argument("--tenant", required=True)
    listing = keys_sub.add_parser("list", help="list keys (ids, tenants, status; never the keys)")
    listing.add_argument("--tenant", default=None)
    revoke = keys_sub.add_parser("revoke", help="revoke a key by its id (servers notice within seconds)")
    revoke.add_argument("key_id", metavar="ID")
    keys.set_defaults(func=_keys)
    from mlp_client import cli as client_cli

    client_cli.add_commands(sub)
    args = parser.parse_args(argv)
    if args.command in client_cli.COMMANDS:
        return client_cli.run(args)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
