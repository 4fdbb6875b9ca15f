"""Serving benchmark without the network: each predict path called on the ASGI app in this process.

``bench/serving.py`` measures end to end through a live server; this one calls ``create_app``'s app directly
(an ASGI scope, the body in 256 KB messages as uvicorn hands it over, no sockets, no client encoding), so what
is left is the server's own work per request: routing, dependencies, reading the body, parsing, the engine,
encoding the answer. A 784-256-128-10 model (one epoch on random rows, with the default preprocessing of the
service's jobs) is put in the app's model cache. Paths run interleaved in a new order each round; ``GET /healthz`` is
the trivial endpoint and ``core.Network.predict_proba`` the engine alone. Medians and minimums in ms.

Run::

    .venv/bin/python bench/serving_inprocess.py [--rounds-1 1000] [--rounds-1000 20]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import core  # noqa: E402
from service.app import create_app  # noqa: E402
from service.models import service as models  # noqa: E402
from service.settings import Settings  # noqa: E402

SPEC = {"name": "bench-784", "loss": "cross_entropy", "input_dim": 784,
        "layers": [{"type": "dense", "units": 256, "activation": "relu"},
                   {"type": "dense", "units": 128, "activation": "relu"},
                   {"type": "dense", "units": 10, "activation": "softmax"}]}
NPY, JSON = "application/x-npy", "application/json"


def make_app(tmp: str):
    """The app with the bench model in its cache under the implicit tenant, as model ``m``."""
    models.REVALIDATE_SECONDS = float("inf")     # the model has no table row: never re-checked
    app = create_app(Settings(data_dir=Path(tmp) / "data", workers=1, prestart_workers=False))
    rng = np.random.default_rng(0)
    net = core.Network.from_spec(SPEC, seed=0)
    core.fit(net, rng.random((2000, 784), dtype=np.float32), rng.integers(0, 10, 2000), epochs=1,
             batch_size=128, preprocessing=core.Preprocessor())   # defaults: mean imputation, clipped standard scaling
    app.state.model_cache.put("default", models.LoadedModel(
        model_id="m", net=net, task=net.task, classes=list(range(10)), input_dim=784,
        columns=models._columns(net), chunk_rows=5000, n_params=int(net.n_params)))
    return app, net


async def call(app, method: str, path: str, body: bytes = b"", headers: tuple = ()) -> None:
    """One request through the ASGI app; raises unless it answers 200."""
    chunks = [body[i:i + 262144] for i in range(0, len(body), 262144)] or [b""]
    pending = iter(enumerate(chunks))
    sent = []

    async def receive():
        i, chunk = next(pending, (None, b""))
        return {"type": "http.request", "body": chunk, "more_body": i is not None and i < len(chunks) - 1}

    async def send(message):
        sent.append(message)

    hdrs = [(b"host", b"bench"), (b"content-length", str(len(body)).encode())]
    hdrs += [(k.encode(), v.encode()) for k, v in headers]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": hdrs, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {}}
    await app(scope, receive, send)
    if sent[0]["status"] != 200:
        raise RuntimeError(f"{method} {path} -> {sent[0]['status']}: {sent[1:]}")


def requests(X: np.ndarray) -> dict:
    """{name: (method, path, body, headers)} for the rows ``X``."""
    npy = io.BytesIO()
    np.save(npy, X)
    v2 = {"inputs": [{"name": "input", "shape": list(X.shape), "datatype": "FP32", "data": X.reshape(-1)}],
          "outputs": [{"name": "probabilities"}]}
    head = orjson.dumps({"inputs": [{"name": "input", "shape": list(X.shape), "datatype": "FP32",
                                     "parameters": {"binary_data_size": X.nbytes}}],
                         "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]})
    return {"/v1 JSON": ("POST", "/v1/models/m/predict", orjson.dumps({"inputs": X}, option=orjson.OPT_SERIALIZE_NUMPY),
                         (("content-type", JSON),)),
            "/v1 .npy": ("POST", "/v1/models/m/predict", npy.getvalue(), (("content-type", NPY), ("accept", NPY))),
            "v2 JSON": ("POST", "/v2/models/m/infer", orjson.dumps(v2, option=orjson.OPT_SERIALIZE_NUMPY),
                        (("content-type", JSON),)),
            "v2 binary": ("POST", "/v2/models/m/infer", head + X.tobytes(),
                          (("content-type", "application/octet-stream"),
                           ("inference-header-content-length", str(len(head)))))}


async def run(app, net, X: np.ndarray, rounds: int) -> dict:
    """Interleaved rounds in a shuffled order; {name: (median ms, min ms)}."""
    calls = {name: (lambda r=r: call(app, *r)) for name, r in requests(X).items()}
    calls["GET /healthz"] = lambda: call(app, "GET", "/healthz")

    async def engine():
        net.predict_proba(X)
    calls["engine alone"] = engine
    for f in calls.values():
        await f()
    times = {name: [] for name in calls}
    order = np.random.default_rng(0)
    for _ in range(rounds):
        for name in order.permutation(list(calls)):
            t0 = time.perf_counter()
            await calls[name]()
            times[name].append(time.perf_counter() - t0)
    return {k: (float(np.median(v)) * 1e3, min(v) * 1e3) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds-1", type=int, default=1000, help="rounds of 1-row requests")
    ap.add_argument("--rounds-1000", type=int, default=20, help="rounds of 1,000 x 784 requests")
    args = ap.parse_args()
    before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-inprocess-") as tmp:
        app, net = make_app(tmp)
        X = np.random.default_rng(1).random((1000, 784), dtype=np.float32)
        one = asyncio.run(run(app, net, X[:1], args.rounds_1))
        many = asyncio.run(run(app, net, X, args.rounds_1000))
    print(f"load average before {[round(v, 2) for v in before]}, after {[round(v, 2) for v in os.getloadavg()]}")
    print(f"{'path':<16}{'1 row median':>14}{'min':>9}{'1000x784 median':>18}{'min':>9}   (ms, in process)")
    for name in one:
        print(f"{name:<16}{one[name][0]:>14.3f}{one[name][1]:>9.3f}{many[name][0]:>18.2f}{many[name][1]:>9.2f}")
    print(f"1-row /v1 JSON / GET /healthz: {one['/v1 JSON'][0] / one['GET /healthz'][0]:.2f}x (medians)")


if __name__ == "__main__":
    main()
