"""Upload benchmark (issue 12): upload-and-parse over HTTP against the raw parsers, on a real server process.

Two generated files of about ``--mb`` MB each:

- numeric: 50 float columns and a float target (regression);
- mixed: 20 feature columns of which 6 (30 %) are text with 3-200 distinct values, 5 % of all feature cells
  missing (empty), and a text target (classification).

For each file, ``--rounds`` times and interleaved: ``pyarrow.csv.read_csv`` and ``pandas.read_csv`` on the file
from disk (default options, in this process), and ``POST /v1/datasets`` of the same file to ``mlp-service serve``
(no workers), timed from the first byte sent to the 201. The rate of each is file MB / seconds (median round);
the ratio is also taken round by round (upload against the faster raw parser of the same round) and its median
printed, since the machine's load moves all three together.
The server's peak RSS during the upload is sampled every 10 ms with psutil, next to its RSS before the upload;
the server's CPU seconds (user + system, all threads) and the client's are taken around each upload, since on a
shared machine CPU per upload moves less with other load than wall-clock rates do.

Targets: upload-and-parse >= 0.8x the fastest raw parser; peak server memory <= 2x the file size.

    PYTHONPATH=. .venv/bin/python bench/upload.py --rounds 3  # ~100 MB files: a few minutes
    PYTHONPATH=. .venv/bin/python bench/upload.py --mb 10 --rounds 1
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.service.helpers import LiveServer  # noqa: E402 - the same server as the tests


def write_numeric(path: Path, mb: float, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    d = 50
    with open(path, "w") as f:
        f.write(",".join([f"f{i}" for i in range(d)] + ["y"]) + "\n")
        while f.tell() < mb * 1e6:
            np.savetxt(f, rng.standard_normal((20000, d + 1)), fmt="%.5f", delimiter=",")


def write_mixed(path: Path, mb: float, seed: int = 0) -> None:
    """20 features: 14 numeric, 6 text (30 %); 5 % of the feature cells empty; a text target."""
    rng = np.random.default_rng(seed)
    n_num, n_txt, rows = 14, 6, 20000
    vocab = [np.array([f"{w}_{i}" for i in range(k)]) for w, k in
             zip(["plan", "region", "city", "device", "channel", "segment"], [3, 12, 200, 8, 25, 50])]
    with open(path, "w") as f:
        f.write(",".join([f"n{i}" for i in range(n_num)] + [v[0].split("_")[0] for v in vocab] + ["label"]) + "\n")
        while f.tell() < mb * 1e6:
            cols = [np.char.mod("%.4f", rng.standard_normal(rows) * 10) for _ in range(n_num)]
            cols += [v[rng.integers(0, len(v), rows)] for v in vocab]
            cells = np.stack(cols, axis=1).astype(object)
            cells[rng.random(cells.shape) < 0.05] = ""
            labels = np.array(["churn", "stay", "upgrade"])[rng.integers(0, 3, rows)]
            lines = [",".join(r) + "," + lab for r, lab in zip(cells.tolist(), labels.tolist())]
            f.write("\n".join(lines) + "\n")


def raw_pyarrow(path: Path) -> float:
    import pyarrow.csv as pacsv

    t = time.perf_counter()
    pacsv.read_csv(path)
    return time.perf_counter() - t


def raw_pandas(path: Path) -> float:
    import pandas as pd

    t = time.perf_counter()
    pd.read_csv(path)
    return time.perf_counter() - t


def upload(server: LiveServer, path: Path, fields: dict) -> tuple[float, int, int, dict, float, float]:
    """(seconds, server RSS before, peak server RSS during, answer, server CPU seconds, client CPU seconds)."""
    ps = psutil.Process(server.proc.pid)
    before = ps.memory_info().rss
    cpu0, own0 = ps.cpu_times(), psutil.Process().cpu_times()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                peak[0] = max(peak[0], ps.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.01)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t = time.perf_counter()
    with open(path, "rb") as f:
        r = httpx.post(server.url + "/v1/datasets", files={"file": (path.name, f, "text/csv")}, data=fields,
                       timeout=1800)
    dt = time.perf_counter() - t
    cpu1, own1 = ps.cpu_times(), psutil.Process().cpu_times()
    done.set()
    th.join()
    if r.status_code != 201:
        raise RuntimeError(f"upload failed: {r.status_code} {r.text[:500]}")
    body = r.json()
    httpx.delete(f"{server.url}/v1/datasets/{body['id']}", timeout=60)
    cpu = cpu1.user + cpu1.system - cpu0.user - cpu0.system
    own = own1.user + own1.system - own0.user - own0.system      # the client (includes the 10 ms RSS sampler)
    return dt, before, peak[0], body, cpu, own


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=100.0, help="size of each generated CSV (default 100)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per file (default 3)")
    args = ap.parse_args()
    import pandas
    import pyarrow

    tmp = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} on "
          f"{os.cpu_count()} cores; pyarrow {pyarrow.__version__}, pandas {pandas.__version__}")
    server = None
    try:
        files = {"numeric": (tmp / "numeric.csv", write_numeric, {"task": "regression"}),
                 "mixed": (tmp / "mixed.csv", write_mixed, {"target": "label"})}
        for name, (path, writer, _) in files.items():
            writer(path, args.mb)
        server = LiveServer(tmp / "data", workers=0, env={"MLP_MAX_UPLOAD_BYTES": str(2**31)}).start(timeout=60)
        # warm-up: the first tabular upload imports pyarrow (and pandas, which pyarrow's to_numpy pulls in when it
        # is installed) into the server, a one-time cost that is not the parser's
        warm = tmp / "warm.csv"
        warm.write_text("a,plan,label\n1,x,p\n2,y,q\n")
        upload(server, warm, {})
        for name, (path, _, fields) in files.items():
            mb = path.stat().st_size / 1e6
            times = {"pyarrow.csv.read_csv": [], "pandas.read_csv": [], "upload over HTTP": []}
            rss, cpu, own = [], [], []
            for _ in range(args.rounds):
                times["pyarrow.csv.read_csv"].append(raw_pyarrow(path))
                times["pandas.read_csv"].append(raw_pandas(path))
                dt, before, peak, body, c, o = upload(server, path, fields)
                times["upload over HTTP"].append(dt)
                rss.append((before, peak))
                cpu.append(c)
                own.append(o)
            rates = {k: mb / statistics.median(v) for k, v in times.items()}
            fastest = max(rates["pyarrow.csv.read_csv"], rates["pandas.read_csv"])
            paired = [min(a, b) / u for a, b, u in zip(times["pyarrow.csv.read_csv"], times["pandas.read_csv"],
                                                       times["upload over HTTP"])]
            print(f"\n{name}: {mb:.1f} MB, {body['n_samples']} rows x {len(body['columns']) + 1} columns "
                  f"({sum(c['type'] == 'categorical' for c in body['columns'])} categorical), "
                  f"load average {os.getloadavg()[0]:.2f}")
            for k, v in times.items():
                print(f"  {k:22s} {rates[k]:7.1f} MB/s   (rounds: {', '.join(f'{mb / t:.1f}' for t in v)})")
            ratio = rates["upload over HTTP"] / fastest
            print(f"  upload vs fastest raw parser: {ratio:.2f}x of the medians; paired by round "
                  f"{', '.join(f'{r:.2f}' for r in paired)}: median {statistics.median(paired):.2f}x (target >= 0.8x)")
            print(f"  server CPU per upload: median {statistics.median(cpu):.2f} s (rounds: "
                  f"{', '.join(f'{c:.2f}' for c in cpu)}); client {statistics.median(own):.2f} s")
            before, peak = max(rss, key=lambda p: p[1])
            print(f"  server RSS: {before / 1e6:.0f} MB before, peak {peak / 1e6:.0f} MB during the upload "
                  f"(+{(peak - before) / 1e6:.0f} MB); peak = {peak / 1e6 / mb:.2f}x the file, growth "
                  f"{(peak - before) / 1e6 / mb:.2f}x (target <= 2x)")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
