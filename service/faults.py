"""What the server does about faults of its machine: leftover temporary files, a full disk, readiness that
does not write per request."""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from service.errors import error_key
from service.settings import Settings
from service.storage import Storage

log = logging.getLogger("service")

DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
SQLITE_FULL = 13
DISK_FULL_DETAIL = ("the server is out of disk space: nothing was stored. Delete data sets, jobs or models you no "
                    "longer need (deletes still work) or ask the operator to free space")
READY_WRITE_SECONDS = 10.0  # /readyz proves the artifact store writable at most this often


def sweep_temporaries(storage: Storage, settings: Settings) -> int:
    """Remove temporary files a killed process left behind (partial uploads, ``*.tmp`` of atomic writes); the
    number removed. Embedded (one server owns the data directory): all of them. Scale-out (other machines may
    be writing now): those older than ``tmp_sweep_age_seconds``."""
    age = settings.tmp_sweep_age_seconds
    if age is None:
        age = 3600.0 if settings.broker_url else 0.0
    cutoff = time.time() - age
    places: list[tuple[Path, bool]] = [  # (folder, every file in it is temporary)
        (storage.temp_dir(), True), (Path(settings.data_dir) / "tmp", True),
        (storage.local_dir(), False)]  # only the ``<name>.<random>.tmp`` files of atomic writes
    removed = 0
    for top, all_temporary in places:
        if not top.is_dir():
            continue
        for dirpath, _dirs, files in os.walk(top):
            for name in files:
                if not (all_temporary or name.endswith(".tmp")):
                    continue
                path = Path(dirpath) / name
                try:
                    if path.stat().st_mtime <= cutoff:
                        path.unlink()
                        removed += 1
                except OSError:
                    pass
    if removed:
        log.info("removed %d temporary file(s) left by a process that stopped mid-write", removed)
    return removed


def is_disk_full(exc: BaseException) -> bool:
    """Whether an exception (or its cause chain) is the disk (or quota) being full."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return True
        if isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL:
            return True
        orig = getattr(exc, "orig", None)  # SQLAlchemy's DBAPIError wraps the driver's exception
        exc = orig if isinstance(orig, BaseException) else (exc.__cause__ or exc.__context__)
        seen += 1
    return False


def install_disk_full_handler(app: FastAPI) -> None:
    """507 with a JSON ``detail`` for a full disk, wherever in a request it is met; 500 ``internal error`` for any
    other unhandled exception (``{"error": ...}`` under /v2); both with ``Connection: close``."""

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises the exception after this answer, and uvicorn then closes the connection: the answer
        # says so (Connection: close), or a keep-alive client would send its next request into a dead connection.
        key = error_key(request.url.path)
        if is_disk_full(exc):
            log.error("disk full during %s %s: %s", request.method, request.url.path, exc)
            return JSONResponse({key: DISK_FULL_DETAIL}, status_code=507, headers={"Connection": "close"})
        return JSONResponse({key: "internal error"}, status_code=500, headers={"Connection": "close"})

    app.add_exception_handler(Exception, handler)


class StorageProbe:
    """Whether the artifact store takes a write, proven by a real write at most every READY_WRITE_SECONDS."""

    def __init__(self, storage):
        self.storage = storage
        self.checked_at = float("-inf")
        self.result = "ok"

    def check(self) -> str:
        now = time.monotonic()
        if now - self.checked_at >= READY_WRITE_SECONDS:
            self.checked_at = now
            try:
                self.storage.write_bytes(".readyz", b"ok")
                self.result = "ok"
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                self.result = f"error: {exc}"
        return self.result
