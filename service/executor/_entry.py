"""Entry point of an embedded worker process. Deliberately light: it sets the process up before numpy loads."""

from __future__ import annotations

import os
import signal
import sys

WORKER_NICE = 10


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (the server was killed with -9)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except Exception:  # noqa: BLE001 - the getppid() check in the worker still catches it
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def worker_main(settings_data: dict, conn, parent_pid: int, threads: int) -> None:
    """Run one worker: claim queued jobs from the database and train them until told to stop."""
    _die_with_parent(parent_pid)
    # Ctrl-C in a terminal reaches the whole process group; the server coordinates the shutdown.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Training is batch work: below the API process's priority, so polling and predictions stay fast while
    # every core trains (with nothing else to run, a niced worker still gets the whole core).
    try:
        os.nice(WORKER_NICE)
    except OSError:
        pass
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))

    from service.executor.worker import Worker
    from service.settings import Settings

    Worker(Settings(**settings_data), conn, parent_pid).run()
