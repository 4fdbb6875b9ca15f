"""A worker process gets its share of the BLAS threads even when numpy was loaded before it could set them."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _openblas_threads_after(code: str, env_threads: str | None = None) -> int | None:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = str(ROOT)
    if env_threads is not None:
        env["OPENBLAS_NUM_THREADS"] = env_threads
    code += ("\nfrom threadpoolctl import threadpool_info"
             "\nprint([i['num_threads'] for i in threadpool_info() if i['internal_api'] == 'openblas'] or [None])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    return eval(out)[0]  # noqa: S307 - our own print of a list of ints


def test_worker_with_numpy_already_loaded_gets_its_share_of_blas_threads():
    # A spawned worker re-imports its parent's main module; when that imported numpy (a script or notebook that
    # embeds the app), the thread variables prepare_worker_process sets come too late: it sets the pool at run time.
    code = "import numpy\nfrom service.executor.base import prepare_worker_process\nprepare_worker_process(threads=1, nice=0)"
    if "openblas" not in np.show_config(mode="dicts")["Build Dependencies"]["blas"].get("name", ""):
        assert _openblas_threads_after(code) is None
        return
    assert _openblas_threads_after(code) == 1
    assert _openblas_threads_after(code, env_threads="3") == 1           # a pool above the share is lowered to it
    if (os.cpu_count() or 1) >= 2:
        code2 = code.replace("threads=1", "threads=2")
        # never raised: a pool below the share is the user's OPENBLAS_NUM_THREADS, which stays (the thread count
        # moves the last bits of a multithreaded GEMM: executors pinned alike give equal metrics)
        assert _openblas_threads_after(code2, env_threads="1") == 1
        # numpy loading after it reads the variables: a user's own setting wins over the share
        assert _openblas_threads_after(code2.replace("import numpy\n", "") + "\nimport numpy", env_threads="1") == 1
