"""The sweep driver: a thread in every API process that steps the running sweeps whose lease it holds.

The lease (sweeps.lease_owner / lease_expires) makes it safe for any number of API processes to run a driver:
one steps a sweep at a time, and when that process dies (kill -9) another, or the restarted one, takes over
after ``sweep_lease_seconds``. A graceful stop releases the leases at once.

Each sweep is stepped on its own: a sweep whose step raises is marked ``failed`` with the error as its reason
(a database error instead leaves it to the next round), and the other sweeps go on in the same round.

With embedded workers the driver does not wait for its poll: the executor relays the workers' hints, so a trial
that ends is followed by the next one at once, and a committed epoch is judged by the pruner within
``EPOCH_ROUND_GAP`` (rounds for epochs are spaced so that fast epochs do not keep the API process busy).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid

from sqlalchemy.exc import DBAPIError

from service.executor.base import worker_name
from service.sweeps import service

log = logging.getLogger("service.sweeps")


EPOCH_ROUND_GAP = 0.05  # seconds between the starts of two rounds woken by epoch hints (a job's end: at once)


class SweepDriver:
    """Steps every running sweep it can lease, every ``sweep_poll_seconds`` or when a worker's hint wakes it."""

    def __init__(self, sessionmaker, executor, settings):
        self.sessionmaker, self.executor, self.settings = sessionmaker, executor, settings
        self.name = f"{worker_name(os.getpid())}:{uuid.uuid4().hex[:8]}"
        self._wake = threading.Event()
        self._urgent = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._leases: dict[str, float] = {}  # sweep id -> monotonic time our lease was last taken or renewed
        self._warm: threading.Thread | None = None

    def start(self) -> None:
        self.executor.subscribe(self.notice)
        self._thread = threading.Thread(target=self._run, name="mlp-sweeps", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Step now (a sweep was created)."""
        self._urgent.set()
        self._wake.set()

    def notice(self, kind: str, job_id: str) -> None:
        """A worker's hint (from the executor): a job ended (step now) or committed an epoch (step soon)."""
        if kind == "ended":
            self._urgent.set()
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self.wake()
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
            self._urgent.clear()
            began = time.monotonic()
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - one bad round must not end the driver
                log.exception("sweep driver: a round failed")
            self._wake.wait(self.settings.sweep_poll_seconds)
            rest = began + EPOCH_ROUND_GAP - time.monotonic()
            if rest > 0 and not self._urgent.is_set():
                self._urgent.wait(rest)

    def run_once(self) -> None:
        """One round over the running sweeps."""
        with self.sessionmaker() as session:
            ids = service.runnable(session)
        self._leases = {k: v for k, v in self._leases.items() if k in ids}
        if ids and self._warm is None:  # the importances' imports load beside the first trials, not in a round
            self._warm = threading.Thread(target=service.warm_up, name="mlp-sweeps-warm-up", daemon=True)
            self._warm.start()
        for sweep_id in ids:
            if self._stop.is_set():
                return
            try:
                with self.sessionmaker() as session:
                    if self._lease(session, sweep_id):
                        service.step(session, self.executor, self.settings, sweep_id=sweep_id)
            except DBAPIError:  # the database (busy, unreachable): this sweep is stepped again next round
                log.exception("sweep driver: stepping sweep %s failed; retried at the next round", sweep_id)
            except Exception as exc:  # noqa: BLE001 - one sweep's fault must not stall the others
                log.exception("sweep driver: stepping sweep %s failed; the sweep is marked failed", sweep_id)
                self._fail(sweep_id, exc)

    def _fail(self, sweep_id: str, exc: Exception) -> None:
        """End a sweep whose step raised (``failed``, the error in its reason; its trials' jobs cancelled)."""
        try:
            with self.sessionmaker() as session:
                service.fail(session, self.executor, sweep_id=sweep_id,
                             reason=f"the sweep driver could not step it: {type(exc).__name__}: {exc}")
        except Exception:  # noqa: BLE001 - then it is tried again at the next round
            log.exception("sweep driver: marking sweep %s failed did not work", sweep_id)

    def _lease(self, session, sweep_id: str) -> bool:
        """Hold the sweep's lease: renewed in the database when half of it has passed (a commit per round would
        cost a disk flush each time); only a lease we hold unexpired is trusted without asking."""
        seconds = self.settings.sweep_lease_seconds
        now = time.monotonic()
        if now - self._leases.get(sweep_id, float("-inf")) < seconds / 2:
            return True
        if service.take_lease(session, sweep_id=sweep_id, driver=self.name, seconds=seconds):
            self._leases[sweep_id] = now
            return True
        self._leases.pop(sweep_id, None)
        return False
