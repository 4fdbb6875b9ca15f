"""The executor interface: how the API hands job ids to whatever trains them."""

from __future__ import annotations

from abc import ABC, abstractmethod


class Executor(ABC):
    """Runs training jobs outside the API process; the database holds the queue and the job state."""

    @abstractmethod
    def start(self) -> None:
        """Start (or connect to) the workers; called once from the app lifespan."""

    @abstractmethod
    def stop(self) -> None:
        """Stop the workers; running jobs go back to the queue and resume from their checkpoint."""

    @abstractmethod
    def submit(self, job_id: str) -> None:
        """Hand over a job that is committed as ``queued``."""

    @abstractmethod
    def cancel(self, job_id: str) -> None:
        """Hint that ``job_id`` was marked for cancellation (its flag is already committed)."""

    @abstractmethod
    def healthy(self) -> bool:
        """Whether jobs can make progress."""
