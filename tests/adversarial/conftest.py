"""Fixtures for the adversarial tests: the service tests' app/client/live server, and measurements of a live
server (RSS, /healthz latency) while an attack runs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import app, client, live_server, settings  # noqa: F401  (fixtures)


def rss_bytes(pid: int) -> int:
    """Resident set size of a process and all its descendants' is not wanted here: just this process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Watch:
    """Polls /healthz (latency) and the server's RSS every few ms in a thread while an attack runs."""

    def __init__(self, url: str, pid: int, interval: float = 0.02):
        self.url, self.pid, self.interval = url, pid, interval
        self.latencies: list[float] = []
        self.peak_rss = rss_bytes(pid)
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10.0) as http:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    r = http.get("/healthz")
                    if r.status_code != 200:
                        self.errors.append(f"/healthz answered {r.status_code}")
                except httpx.HTTPError as exc:
                    self.errors.append(f"/healthz: {type(exc).__name__}")
                self.latencies.append(time.perf_counter() - t0)
                self.peak_rss = max(self.peak_rss, rss_bytes(self.pid))
                self._stop.wait(self.interval)

    def __enter__(self) -> "Watch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def p99(self) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(0.99 * len(xs)))] if xs else float("nan")

    def max(self) -> float:
        return max(self.latencies, default=float("nan"))


@pytest.fixture
def watch():
    """watch(server) -> a Watch context manager over that LiveServer's /healthz and RSS."""
    return lambda srv: Watch(srv.url, srv.proc.pid)
