"""Run as a separate process by the adversarial tests' ``Watch``: polls a server's /healthz and RSS until its
standard input closes, then prints {"latencies": [...], "peak_rss": n, "errors": [...]} as JSON. A process of
its own, so the attacking test's own CPU and GIL do not enter the measured latencies."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import httpx


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (not its children)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def main(url: str, pid: int, interval: float) -> None:
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    latencies, errors, peak = [], [], rss_bytes(pid)
    with httpx.Client(base_url=url, timeout=10.0) as http:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                r = http.get("/healthz")
                if r.status_code != 200:
                    errors.append(f"/healthz answered {r.status_code}")
            except httpx.HTTPError as exc:
                errors.append(f"/healthz: {type(exc).__name__}")
            latencies.append(time.perf_counter() - t0)
            peak = max(peak, rss_bytes(pid))
            if len(latencies) == 1:
                print("ready", flush=True)
            stop.wait(interval)
    print(json.dumps({"latencies": latencies, "peak_rss": peak, "errors": errors}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
