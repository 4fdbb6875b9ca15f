"""Fixtures for the adversarial tests: the service tests' app/client/live server, and measurements of a live
server (RSS, /healthz latency) while an attack runs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import app, client, live_server, settings  # noqa: F401  (fixtures)


class Watch:
    """Polls /healthz (latency) and the server's RSS every few ms, from a separate process, while an attack runs."""

    def __init__(self, url: str, pid: int, interval: float = 0.02):
        self.url, self.pid, self.interval = url, pid, interval
        self.latencies: list[float] = []
        self.peak_rss = 0
        self.errors: list[str] = []
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> "Watch":
        self._proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("_watch.py")), self.url,
                                       str(self.pid), str(self.interval)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout.readline().strip() == "ready"
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.3)  # a few samples after the attack's last request
        out, _ = self._proc.communicate(input="", timeout=30)
        result = json.loads(out.strip().splitlines()[-1])
        self.latencies, self.peak_rss, self.errors = result["latencies"], result["peak_rss"], result["errors"]

    def p99(self) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(0.99 * len(xs)))] if xs else float("nan")

    def max(self) -> float:
        return max(self.latencies, default=float("nan"))

    def assert_responsive(self, baseline: float) -> None:
        """/healthz p99 during the attack within 50 ms, or within 5x the idle p99 measured just before (the test
        machine may be a loaded 2-core VM whose idle p99 alone is tens of ms); no failed health check."""
        assert not self.errors, self.errors
        bound = max(0.05, 5 * baseline)
        assert self.p99() <= bound, (f"/healthz p99 {self.p99() * 1000:.1f} ms during the attack, bound "
                                     f"{bound * 1000:.0f} ms (idle p99 {baseline * 1000:.1f} ms)")


def idle_p99(url: str, seconds: float = 0.6) -> float:
    """/healthz p99 of an idle server over ``seconds``."""
    xs = []
    with httpx.Client(base_url=url, timeout=10.0) as http:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t0 = time.perf_counter()
            http.get("/healthz")
            xs.append(time.perf_counter() - t0)
            time.sleep(0.02)
    xs.sort()
    return xs[min(len(xs) - 1, int(0.99 * len(xs)))]


@pytest.fixture
def watch():
    """watch(server) -> a Watch context manager over that LiveServer's /healthz and RSS."""
    def start(srv) -> Watch:
        w = Watch(srv.url, srv.proc.pid)
        w.baseline = idle_p99(srv.url)
        return w

    return start
