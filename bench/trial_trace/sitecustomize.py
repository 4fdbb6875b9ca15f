"""Where a trial's time goes in a Celery worker and in the API's sweep driver (``bench/sweep_celery.py --trace``).

Loaded by ``site`` in every process of a traced run (this folder is put first on PYTHONPATH) and active only when
``MLP_TRACE_DIR`` is set. It wraps service functions as their modules load (nothing in service/ knows about it):
per step, wall seconds and the calling thread's CPU seconds; in a worker's pool process one JSON line per task is
appended to ``$MLP_TRACE_DIR/<pid>.jsonl`` (pool processes are SIGKILLed at the end of a round, so nothing waits
for an exit), in the API process one line per second of driver rounds.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import os
import sys
import threading
import time
from collections import defaultdict

_DIR = os.environ.get("MLP_TRACE_DIR")
_STATS: dict = defaultdict(lambda: [0, 0.0, 0.0])  # name -> [calls, wall s, thread CPU s]
_LOCK = threading.Lock()


def _add(name: str, wall: float, cpu: float) -> None:
    with _LOCK:
        s = _STATS[name]
        s[0] += 1
        s[1] += wall
        s[2] += cpu


def _timed(name, fn, *, per_thread: bool = False):
    def wrapper(*a, **kw):
        t, c = time.perf_counter(), time.thread_time()
        try:
            return fn(*a, **kw)
        finally:
            label = f"{name}@{threading.current_thread().name.split('-')[0]}" if per_thread else name
            _add(label, time.perf_counter() - t, time.thread_time() - c)
    wrapper.__wrapped__ = fn
    return wrapper


def _dump(extra: dict) -> None:
    with _LOCK:
        stats = {k: [v[0], round(v[1], 6), round(v[2], 6)] for k, v in _STATS.items()}
        _STATS.clear()
    with open(os.path.join(_DIR, f"{os.getpid()}.jsonl"), "a") as fh:
        fh.write(json.dumps(dict(extra, pid=os.getpid(), stats=stats)) + "\n")


def _patch_worker(mod) -> None:
    W, T = mod.Worker, mod.Training
    for cls, names in ((T, ("load", "resume", "fit", "save", "_save_checkpoint", "_record", "_report")),
                       (W, ("_finish",))):
        for n in names:
            setattr(cls, n, _timed(f"{cls.__name__}.{n}", getattr(cls, n)))
    mod.models_service.new_from_job = _timed("model file", mod.models_service.new_from_job)
    mod.core.fit = _timed("core.fit", mod.core.fit)
    js = mod.jobs_service
    for n in ("claim_fairest", "kind_of", "load_for_training", "should_stop", "record_epochs", "record_progress",
              "complete", "renew", "finish"):
        setattr(js, n, _timed(f"jobs.{n}", getattr(js, n)))
    from service.storage import local
    local.LocalStorage.delete_prefix = _timed("delete_prefix", local.LocalStorage.delete_prefix)
    from sqlalchemy.orm import Session
    Session.commit = _timed("Session.commit", Session.commit, per_thread=True)
    Session.execute = _timed("Session.execute", Session.execute, per_thread=True)


def _patch_celery(mod) -> None:
    R = mod._TaskRuntime
    run = R.run
    state = {"end": None}

    def traced_run(self, job_id):
        t0, c0, p0 = time.time(), time.thread_time(), os.times()
        gap = None if state["end"] is None else t0 - state["end"]
        try:
            return run(self, job_id)
        finally:
            t1, p1 = time.time(), os.times()
            state["end"] = t1
            _dump({"kind": "task", "start": t0, "end": t1, "gap_before": gap, "thread_cpu": time.thread_time() - c0,
                   "process_cpu": (p1.user + p1.system) - (p0.user + p0.system)})

    R.run = traced_run


def _patch_sweeps(mod) -> None:
    D = mod.SweepDriver
    once = _timed("driver.run_once", D.run_once)
    last = {"t": time.monotonic()}
    profile = None
    flag = os.path.join(_DIR, "timed")  # the benchmark creates it as it posts the timed sweep
    if os.environ.get("TRACE_PROFILE"):  # cProfile (thread CPU) of the timed sweep's rounds: driver.prof
        import cProfile
        profile = cProfile.Profile(time.thread_time)

    def run_once(self):
        on = profile is not None and os.path.exists(flag)
        if on:
            profile.enable()
        try:
            once(self)
        finally:
            if on:
                profile.disable()
        if time.monotonic() - last["t"] >= 1.0:
            last["t"] = time.monotonic()
            _dump({"kind": "api", "at": time.time()})
            if profile is not None:
                profile.dump_stats(os.path.join(_DIR, "driver.prof"))

    D.run_once = run_once
    from service.sweeps import service as sweeps
    for n in ("step", "_refresh", "_advance", "_start", "_update_best", "_propose", "_finish"):
        setattr(sweeps, n, _timed(f"sweeps.{n}", getattr(sweeps, n)))


_PATCHES = {"service.executor.worker": _patch_worker, "service.executor.celery": _patch_celery,
            "service.sweeps.driver": _patch_sweeps}


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in _PATCHES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def patched(module):
            exec_module(module)
            _PATCHES[name](module)

        spec.loader.exec_module = patched
        return spec


if _DIR:
    sys.meta_path.insert(0, _Finder())
