"""The executor interface: how the API hands job ids to whatever trains them."""

from __future__ import annotations

import os
import socket
import sys
from abc import ABC, abstractmethod

# The thread pools numpy's BLAS may use; each training process gets its share of the cores.
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class LostJob(Exception):
    """This worker no longer holds the job (its attempt was fenced out)."""


def worker_name(pid: int) -> str:
    """How a worker process is recorded in jobs.worker."""
    return f"{socket.gethostname()}:{pid}"


def threads_per_worker(workers: int) -> int:
    """Each of ``workers`` training processes gets an equal share of this machine's cores (at least one)."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def prepare_worker_process(*, threads: int, nice: int) -> None:
    """Set up a training process before numpy loads: its BLAS thread limit (unless set) and its niceness.

    Training is batch work: below the API process's priority, so polling and predictions stay fast while every
    core trains (with nothing else to run, a niced worker still gets the whole core).
    """
    for var in THREAD_VARS:
        os.environ.setdefault(var, str(threads))  # a write for this process and its children, before numpy loads
    if "numpy" in sys.modules:
        # Loaded already (a spawned worker re-imports the parent's main module: a script or notebook that imported
        # numpy and embeds the app): the variables came too late, and OpenBLAS would run one thread per core in
        # every worker, which on a machine the workers fill made the sweep benchmark's epochs 2-4x slower. Its
        # pool is lowered to the worker's share at run time instead, never raised: a pool already at or below the
        # share is what the user's OPENBLAS_NUM_THREADS asked for when numpy loaded, and stays (the BLAS thread
        # count changes the last bits of a multithreaded GEMM, so executors pinned alike must give equal metrics).
        from core import _blas

        current = _blas.get_threads()
        if current is None or current > threads:
            _blas.set_threads(threads)
    try:
        os.nice(nice)
    except OSError:
        pass


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

    @abstractmethod
    def worker_pids(self) -> list[int] | None:
        """Pids of the live worker processes this executor runs, or None when its workers run elsewhere."""

    def subscribe(self, listener) -> None:
        """Call ``listener(kind, job_id)`` when a worker commits an epoch ('epoch') or ends a job ('ended').

        A hint that saves a poll (the sweep driver's), never the truth, which is in the database. Celery workers
        report only 'ended' (broadcast over the broker; an epoch's hint would wake the driver too often for what
        it saves there), and a hint can be lost: the listener's owner still polls.
        """
