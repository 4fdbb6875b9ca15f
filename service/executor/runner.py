"""What every runner of one job attempt in a worker process shares: its identity, stop reason and stop poll."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod

from service.executor.base import LostJob
from service.jobs import service as jobs_service

CANCEL_POLL_SECONDS = 0.2  # the database is asked whether to stop at most this often
PROGRESS_SECONDS = 0.5  # progress is written at most this often (twice a second)


class Runner(ABC):
    """One attempt at one job (``run``); training and batch scoring are its kinds.

    ``stop_reason`` says why it stopped early when it raised ``core.TrainingCancelled``: 'cancel' or 'shutdown'.
    ``verb`` and ``noun`` name the work in the job's error message.
    """

    verb, noun = "run", "running"

    def __init__(self, worker, job_id: str, attempt: int):
        self.worker, self.job_id, self.attempt = worker, job_id, attempt
        self.stop_reason: str | None = None
        self._last_check = time.monotonic()

    @abstractmethod
    def run(self) -> None:
        """Do the job's work and commit its outcome; raise LostJob when the attempt was fenced out."""

    def should_stop(self) -> bool:
        """Polled between minibatches or chunks: cancel or shutdown hints at once, the database at most every 0.2 s."""
        w = self.worker
        self._check()
        w._drain()
        if w.shutdown:
            return self._stop("shutdown")
        if self.job_id in w.cancel_hints:
            return self._stop("cancel")
        now = time.monotonic()
        if now - self._last_check < CANCEL_POLL_SECONDS:
            return False
        self._last_check = now
        if not w._parent_alive():
            w.shutdown = True
            return self._stop("shutdown")
        with w.Session() as session:
            why = jobs_service.should_stop(session, job_id=self.job_id, attempt=self.attempt)
        if why == "lost":
            raise LostJob(self.job_id)
        return self._stop(why) if why else False

    def _check(self) -> None:
        """First thing each poll: raise an error the runner's own threads left (none here)."""

    def _stop(self, reason: str) -> bool:
        self.stop_reason = reason
        return True
