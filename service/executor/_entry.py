"""Entry point of an embedded worker process. Deliberately light: it sets the process up before numpy loads."""

from __future__ import annotations

import os
import signal
import sys

from service.executor.base import prepare_worker_process
from service.settings import Settings


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


def worker_main(settings_data: dict, conn, parent_pid: int, threads: int, warm=None, events=None) -> None:
    """Run one worker: claim queued jobs from the database and train them until told to stop."""
    _die_with_parent(parent_pid)
    # Ctrl-C in a terminal reaches the whole process group; the server coordinates the shutdown.
    # SIGTERM to the process group likewise: the server stops its workers itself (a "stop" message), so a
    # worker never dies before the server knows it is shutting down and would replace it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    settings = Settings(**settings_data)
    prepare_worker_process(threads=threads, nice=settings.worker_nice)

    from service.executor.worker import Worker  # only now: numpy reads the thread limits when it loads

    if warm is not None:
        warm.set()  # numpy and core are loaded: the first job does not wait for imports

    Worker(settings, conn, parent_pid, events=events).run()
