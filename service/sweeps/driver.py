"""The sweep driver: a thread in every API process that steps the running sweeps whose lease it holds.

The lease (sweeps.lease_owner / lease_expires) makes it safe for any number of API processes to run a driver:
one steps a sweep at a time, and when that process dies (kill -9) another, or the restarted one, takes over
after ``sweep_lease_seconds``. A graceful stop releases the leases at once.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid

from service.executor.base import worker_name
from service.sweeps import service

log = logging.getLogger("service.sweeps")


class SweepDriver:
    """Steps every running sweep it can lease, every ``sweep_poll_seconds`` (or at once when woken)."""

    def __init__(self, sessionmaker, executor, settings):
        self.sessionmaker, self.executor, self.settings = sessionmaker, executor, settings
        self.name = f"{worker_name(os.getpid())}:{uuid.uuid4().hex[:8]}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mlp-sweeps", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Step now (a sweep was created)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            with self.sessionmaker() as session:
                service.release(session, driver=self.name)
        except Exception:  # noqa: BLE001 - the leases then expire on their own
            log.exception("sweep driver: releasing leases failed")

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - one bad round must not end the driver
                log.exception("sweep driver: a round failed")
            self._wake.wait(self.settings.sweep_poll_seconds)

    def run_once(self) -> None:
        """One round over the running sweeps."""
        with self.sessionmaker() as session:
            ids = service.runnable(session)
        for sweep_id in ids:
            if self._stop.is_set():
                return
            with self.sessionmaker() as session:
                if service.take_lease(session, sweep_id=sweep_id, driver=self.name,
                                      seconds=self.settings.sweep_lease_seconds):
                    service.step(session, self.executor, self.settings, sweep_id=sweep_id)
