"""Embedded executor: MLP_WORKERS worker processes on this machine (skeleton, being filled in)."""

from __future__ import annotations

from service.executor.base import Executor


class EmbeddedExecutor(Executor):
    def __init__(self, settings, engine, storage):
        self.settings, self.engine, self.storage = settings, engine, storage
        self._started = False

    def start(self) -> None:
        self._started = True

    def stop(self) -> None:
        self._started = False

    def submit(self, job_id: str) -> None:
        pass

    def cancel(self, job_id: str) -> None:
        pass

    def healthy(self) -> bool:
        return self._started
