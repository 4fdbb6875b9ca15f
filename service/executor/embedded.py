"""Embedded executor: MLP_WORKERS worker processes on this machine, the database as the queue.

Workers are spawned (multiprocessing "spawn") by one long-lived monitor thread at start-up, and /readyz answers
503 until each has imported numpy and core, so the first job does not wait for processes to start. The monitor
watches the process sentinels; when a worker dies unexpectedly its running job is marked failed and the worker is replaced. Submit/cancel only send hints
over a pipe; the truth is in the database (queued rows, cancel flags), so a lost hint costs at most a poll. Workers
send hints back over a second pipe (an epoch committed, a job ended), which the monitor hands to the subscribers
(the sweep driver steps at once instead of at its next poll).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait

from service.database import make_sessionmaker
from service.executor._entry import worker_main
from service.executor.base import Executor, threads_per_worker, worker_name
from service.jobs import service as jobs_service

log = logging.getLogger("service.executor")

STOP_TIMEOUT = 20.0
RESPAWN_DELAY = 1.0


def describe_exit(code: int | None) -> str:
    if code is None:
        return "vanished"
    if code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class _Slot:
    process: mp.process.BaseProcess | None = None
    conn: Connection | None = None
    events: Connection | None = None  # the worker's hints to the server: ("epoch" | "ended", job_id)
    last_spawn: float = 0.0
    warm: object | None = None  # an mp.Event the worker sets once numpy and core are imported
    lock: threading.Lock = field(default_factory=threading.Lock)


class EmbeddedExecutor(Executor):
    """Worker processes on this machine; the API process never trains."""

    def __init__(self, settings, engine, storage):
        self.settings = settings
        self.storage = storage
        self._sessionmaker = make_sessionmaker(engine)
        self._ctx = mp.get_context("spawn")
        self._slots = [_Slot() for _ in range(settings.workers)]
        self._threads = threads_per_worker(settings.workers)
        self._want_workers = threading.Event()
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = self._ctx.Pipe(duplex=False)
        self._wake_lock = threading.Lock()
        self._monitor: threading.Thread | None = None
        self._listeners: list = []

    # -- interface ----------------------------------------------------------------------------------------
    def start(self) -> None:
        with self._sessionmaker() as session:
            requeued = jobs_service.requeue_interrupted(session)
            pending = jobs_service.has_queued(session)
        if requeued:
            log.info("requeued %d job(s) interrupted by a previous shutdown: %s", len(requeued), requeued)
        self._monitor = threading.Thread(target=self._run_monitor, name="mlp-executor", daemon=True)
        self._monitor.start()
        if pending or self.settings.prestart_workers:
            self._ensure_workers()  # workers start (and warm up) with the server, not with the first job

    def stop(self) -> None:
        self._stopping.set()
        self._poke()
        if self._monitor is not None:
            self._monitor.join(timeout=5)
        self._broadcast(("stop", None))
        deadline = time.monotonic() + STOP_TIMEOUT
        for slot in self._slots:
            p = slot.process
            if p is None:
                continue
            p.join(timeout=max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                log.warning("worker %s did not stop in time; terminating it", p.pid)
                p.terminate()
                p.join(timeout=3)
                if p.is_alive():
                    p.kill()
                    p.join(timeout=3)
            for c in (slot.conn, slot.events):
                if c is not None:
                    c.close()
            slot.process = slot.conn = slot.events = None

    def submit(self, job_id: str) -> None:
        self._ensure_workers()
        self._broadcast(("wake", job_id))

    def cancel(self, job_id: str) -> None:
        self._broadcast(("cancel", job_id))

    def subscribe(self, listener) -> None:
        self._listeners.append(listener)

    def healthy(self) -> bool:
        if self._monitor is None or not self._monitor.is_alive() or self._stopping.is_set():
            return False
        # A slot the monitor has not spawned yet is starting, not down (warming() says so): /readyz asked just
        # after start-up, before the monitor thread's first spawn, answered "executor is not running".
        return not self._slots or not self._want_workers.is_set() or any(
            (s.process is None and s.last_spawn == 0.0) or (s.process is not None and s.process.is_alive())
            for s in self._slots)

    def warming(self) -> bool:
        """Whether a wanted worker process is not yet up and warm (/readyz answers 503 meanwhile)."""
        return self._want_workers.is_set() and any(s.process is None or s.warm is None or not s.warm.is_set() for s in self._slots)

    # -- workers ----------------------------------------------------------------------------------------
    def worker_pids(self) -> list[int]:
        """Pids of the live worker processes (the metrics' worker count, tests and diagnostics)."""
        return [s.process.pid for s in self._slots if s.process is not None and s.process.is_alive()]

    def _ensure_workers(self) -> None:
        if self._slots and not self._want_workers.is_set():
            self._want_workers.set()
            self._poke()

    def _poke(self) -> None:
        with self._wake_lock:
            try:
                self._wake_w.send(b"")
            except OSError:
                pass

    def _broadcast(self, message) -> None:
        for slot in self._slots:
            with slot.lock:
                if slot.conn is None:
                    continue
                try:
                    slot.conn.send(message)
                except OSError:
                    pass

    def _spawn(self, slot: _Slot) -> None:
        # Spawned from the monitor thread only: PR_SET_PDEATHSIG fires when the spawning *thread* exits.
        child_r, parent_w = self._ctx.Pipe(duplex=False)  # the worker reads what the server writes
        events_r, events_w = self._ctx.Pipe(duplex=False)  # and the server reads the worker's hints
        data = self.settings.model_dump(mode="json")
        warm = self._ctx.Event()
        p = self._ctx.Process(target=worker_main, args=(data, child_r, os.getpid(), self._threads, warm, events_w),
                              name="mlp-worker", daemon=True)
        p.start()
        child_r.close()
        events_w.close()
        with slot.lock:
            slot.process, slot.conn, slot.last_spawn, slot.warm = p, parent_w, time.monotonic(), warm
            slot.events = events_r
        log.info("started worker process %s", p.pid)

    def _reap(self, slot: _Slot) -> None:
        p = slot.process
        with slot.lock:
            for c in (slot.conn, slot.events):
                if c is not None:
                    c.close()
            slot.process = slot.conn = slot.events = None
        if self._stopping.is_set():
            return
        how = describe_exit(p.exitcode)
        error = f"the worker process (pid {p.pid}) {how} while training this job."
        try:
            with self._sessionmaker() as session:
                requeued, failed = jobs_service.hand_back_worker_jobs(
                    session, worker=worker_name(p.pid), error=error, max_attempts=self.settings.max_job_attempts)
        except Exception:  # noqa: BLE001 - keep the monitor alive
            log.exception("could not hand back the jobs of dead worker %s", p.pid)
            requeued, failed = [], []
        log.warning("worker process %s %s; job(s) handed to its replacement: %s; failed after too many "
                    "attempts: %s", p.pid, how, requeued or "none", failed or "none")

    def _relay(self, slot: _Slot) -> None:
        """Hand a worker's hints to the subscribers; a closed pipe (the worker exited) is dropped."""
        conn = slot.events
        try:
            while conn.poll():
                kind, job_id = conn.recv()
                for listener in self._listeners:
                    try:
                        listener(kind, job_id)
                    except Exception:  # noqa: BLE001 - keep the monitor alive
                        log.exception("a listener of worker hints failed")
        except (EOFError, OSError):
            with slot.lock:
                conn.close()
                if slot.events is conn:
                    slot.events = None

    def _run_monitor(self) -> None:
        while not self._stopping.is_set():
            if self._want_workers.is_set():
                for slot in self._slots:
                    if slot.process is None and time.monotonic() - slot.last_spawn >= RESPAWN_DELAY:
                        try:
                            self._spawn(slot)
                        except Exception:  # noqa: BLE001
                            log.exception("could not start a worker process")
            events = [s.events for s in self._slots if s.events is not None]
            handles = [self._wake_r] + events + [s.process.sentinel for s in self._slots if s.process is not None]
            try:
                ready = wait(handles, timeout=RESPAWN_DELAY)
            except OSError:
                ready = []
            for slot in self._slots:
                if slot.events is not None and slot.events in ready:
                    self._relay(slot)
            if self._wake_r in ready:
                while self._wake_r.poll():
                    try:
                        self._wake_r.recv_bytes()
                    except (EOFError, OSError):
                        break
            for slot in self._slots:
                if slot.process is not None and not slot.process.is_alive():
                    self._reap(slot)
