"""Serving benchmark (issue 15): the same predictions through every protocol, in one run, on one live server.

A 784-256-128-10 ReLU/softmax model (the engine benchmark's network, trained one epoch on random data: the
weights do not matter for speed) answers 1-row and 1,000 x 784-row predictions through:

- ``/v1 JSON``: ``POST /v1/models/{id}/predict`` with ``{"inputs": ...}`` (orjson on both sides);
- ``/v1 .npy``: the same route with an ``application/x-npy`` body and ``Accept: application/x-npy``;
- ``/v1 Arrow``: an Arrow IPC stream body (one fixed-size-list column) and ``Accept`` Arrow;
- ``v2 JSON``: ``POST /v2/models/{id}/infer`` with a JSON tensor (httpx + orjson, as /v1 JSON);
- ``v2 JSON (tritonclient)`` (1 row only) and ``v2 binary (tritonclient)``: the Triton client, JSON or binary
  tensors.

Every figure is end to end from the client: encoding the rows, the request, and decoding the answer into
arrays. All paths run interleaved round by round, in a new order each round (so a slow spell of a shared
machine hits all of them and no path always follows another), on one keep-alive connection per client.
Also ``GET /healthz`` as the trivial-endpoint baseline, the engine alone (``core.Network.predict_proba``
on the downloaded model, in this process) as the floor, and, for 1,000 rows, the same ``.npy`` body posted
to an unknown model (the server reads it whole, then answers 404): the cost of moving 3 MB over HTTP with
no prediction. Each 1,000-row figure is also printed as its overhead above the engine in the same run. The
load average is printed before and after: on a shared machine the absolute figures are only as good as it.
Targets: 1,000 x 784 <= 30 ms through .npy and OIP binary, <= 120 ms through JSON; 1-row /v1 predict
<= 1.5x GET /healthz; 1-row OIP JSON <= 1.5x the 1-row /v1 predict.

Run::

    .venv/bin/python bench/serving.py [--rounds-1 300] [--rounds-1000 30] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import orjson
import pyarrow as pa
import tritonclient.http as triton

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.service.helpers import LiveServer  # noqa: E402 - the same server as the tests
SPEC = {"name": "bench-784", "loss": "cross_entropy",
        "layers": [{"type": "dense", "units": 256, "activation": "relu"},
                   {"type": "dense", "units": 128, "activation": "relu"},
                   {"type": "dense", "units": 10, "activation": "softmax"}]}
NPY, ARROW = "application/x-npy", "application/vnd.apache.arrow.stream"
BODY_ONLY = "/v1 .npy body, 404"
ENGINE = "engine only (in process)"


def ok(r: httpx.Response, status: int = 200) -> httpx.Response:
    if r.status_code != status:
        raise RuntimeError(f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text[:300]}")
    return r


def train_model(http: httpx.Client, tmp: Path) -> str:
    rng = np.random.default_rng(0)
    X = rng.random((2000, 784), dtype=np.float32)
    y = rng.integers(0, 10, size=2000)
    buf = io.BytesIO()
    np.savez(buf, X=X, y=y)
    ds = ok(http.post("/v1/datasets", files={"file": ("bench.npz", buf.getvalue(), "application/x-npz")},
                      data={"name": "bench", "task": "classification"}, timeout=300), 201).json()
    net = ok(http.post("/v1/networks", json=SPEC), 201).json()
    job = ok(http.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"], "epochs": 1,
                                         "batch_size": 128}), 202).json()
    while job["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.2)
        job = ok(http.get(f"/v1/jobs/{job['id']}")).json()
    if job["status"] != "succeeded":
        raise RuntimeError(f"bench job failed: {job}")
    return job["model_id"]


def make_paths(http: httpx.Client, tc: triton.InferenceServerClient, model_id: str):
    """{name: f(X) -> probabilities (n, 10)}: each call is one end-to-end prediction."""
    v1 = f"/v1/models/{model_id}/predict"
    v2 = f"/v2/models/{model_id}/infer"

    def v1_json(X):
        body = orjson.dumps({"inputs": X}, option=orjson.OPT_SERIALIZE_NUMPY)
        r = http.post(v1, content=body, headers={"Content-Type": "application/json"})
        return np.asarray(orjson.loads(ok(r).content)["probabilities"], dtype=np.float32)

    def v1_npy(X):
        buf = io.BytesIO()
        np.save(buf, X)
        r = http.post(v1, content=buf.getvalue(), headers={"Content-Type": NPY, "Accept": NPY})
        return np.load(io.BytesIO(ok(r).content), allow_pickle=False)

    def v1_arrow(X):
        col = pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), X.shape[1])
        sink = pa.BufferOutputStream()
        table = pa.table({"inputs": col})
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        r = http.post(v1, content=sink.getvalue().to_pybytes(), headers={"Content-Type": ARROW, "Accept": ARROW})
        probs = pa.ipc.open_stream(ok(r).content).read_all().column("probabilities").combine_chunks()
        return probs.flatten().to_numpy().reshape(len(probs), -1)

    def v2_json(X):
        body = orjson.dumps({"inputs": [{"name": "input", "shape": list(X.shape), "datatype": "FP32",
                                         "data": X.reshape(-1)}], "outputs": [{"name": "probabilities"}]},
                            option=orjson.OPT_SERIALIZE_NUMPY)
        out = orjson.loads(ok(http.post(v2, content=body, headers={"Content-Type": "application/json"})).content)
        t = out["outputs"][0]
        return np.asarray(t["data"], dtype=np.float32).reshape(t["shape"])

    def _triton(X, binary):
        inp = triton.InferInput("input", list(X.shape), "FP32")
        inp.set_data_from_numpy(X, binary_data=binary)
        res = tc.infer(model_id, [inp], outputs=[triton.InferRequestedOutput("probabilities", binary_data=binary)])
        return res.as_numpy("probabilities")

    def npy_body_only(X):           # the .npy body read whole by the server, then 404: HTTP with no prediction
        buf = io.BytesIO()
        np.save(buf, X)
        ok(http.post("/v1/models/no-such-model/predict", content=buf.getvalue(),
                     headers={"Content-Type": NPY, "Accept": NPY}), 404)

    return {"/v1 JSON": v1_json, "/v1 .npy": v1_npy, "/v1 Arrow": v1_arrow, "v2 JSON": v2_json,
            "v2 JSON (tritonclient)": lambda X: _triton(X, False),
            "v2 binary (tritonclient)": lambda X: _triton(X, True)}, npy_body_only


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def run(paths: dict, X: np.ndarray, rounds: int, http: httpx.Client | None = None) -> dict:
    """Interleaved rounds in a shuffled order; {path: (p50 ms, p99 ms)} (plus /healthz when ``http`` is given)."""
    ref = paths["/v1 JSON"](X)
    for name, f in paths.items():               # warm up, and check every path answers the same numbers
        for _ in range(3):
            got = f(X)
        if name != BODY_ONLY:
            np.testing.assert_allclose(got, ref, atol=1e-5, err_msg=name)
    times: dict[str, list[float]] = {name: [] for name in paths}
    if http is not None:
        times["GET /healthz"] = []
    calls = dict(paths)
    if http is not None:
        calls["GET /healthz"] = lambda _: ok(http.get("/healthz"))
    order = np.random.default_rng(0)
    for _ in range(rounds):
        for name in order.permutation(list(calls)):     # a new order each round: no path always follows another
            t0 = time.perf_counter()
            calls[name](X)
            times[name].append(time.perf_counter() - t0)
    return {name: (pct(t, 50) * 1e3, pct(t, 99) * 1e3) for name, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds-1", type=int, default=300, help="rounds of 1-row predictions")
    ap.add_argument("--rounds-1000", type=int, default=30, help="rounds of 1,000 x 784 predictions")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()

    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    srv = LiveServer(tmp / "data", workers=1).start(timeout=60)
    try:
        with httpx.Client(base_url=srv.url, timeout=120) as http:
            tc = triton.InferenceServerClient(url=srv.url.removeprefix("http://"), network_timeout=120)
            model_id = train_model(http, tmp)
            paths, body_only = make_paths(http, tc, model_id)
            X = np.random.default_rng(1).random((1000, 784), dtype=np.float32)
            one = run(paths, X[:1], args.rounds_1, http=http)
            # The Triton client builds JSON tensors with the standard library (seconds for 784,000 values):
            # it is measured for one row only.
            many_paths = {k: f for k, f in paths.items() if k != "v2 JSON (tritonclient)"}
            many_paths[BODY_ONLY] = body_only
            # The floor: the same model's core.predict_proba in this process (weights from /download).
            import core
            net = core.Network.load(io.BytesIO(ok(http.get(f"/v1/models/{model_id}/download")).content))
            many_paths[ENGINE] = net.predict_proba
            floor = run({"/v1 JSON": paths["/v1 JSON"], ENGINE: net.predict_proba}, X[:1], args.rounds_1)
            one[ENGINE] = floor[ENGINE]
            many = run(many_paths, X, args.rounds_1000)
            tc.close()
    finally:
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    load = {"before": [round(v, 2) for v in load_before], "after": [round(v, 2) for v in os.getloadavg()]}

    targets = {
        "1000x784 /v1 .npy p50 <= 30 ms": many["/v1 .npy"][0] <= 30,
        "1000x784 v2 binary p50 <= 30 ms": many["v2 binary (tritonclient)"][0] <= 30,
        "1000x784 /v1 JSON p50 <= 120 ms": many["/v1 JSON"][0] <= 120,
        "1000x784 v2 JSON p50 <= 120 ms": many["v2 JSON"][0] <= 120,
        "1-row /v1 JSON p50 <= 1.5x GET /healthz": one["/v1 JSON"][0] <= 1.5 * one["GET /healthz"][0],
        "1-row v2 JSON p50 <= 1.5x 1-row /v1 JSON": one["v2 JSON"][0] <= 1.5 * one["/v1 JSON"][0],
    }
    if args.json:
        print(json.dumps({"load_average": load, "one_row": one, "rows_1000x784": many, "targets": targets},
                         indent=2))
        return
    engine = many[ENGINE][0]
    print(f"load average (1, 5, 15 min) before {load['before']}, after {load['after']}")
    print(f"{'path':<26}{'1 row p50':>11}{'p99':>9}{'1000x784 p50':>15}{'p99':>9}{'- engine':>10}   (ms, end to end)")
    for name in [*one, BODY_ONLY]:
        m = many.get(name)
        head = f"{one[name][0]:>11.2f}{one[name][1]:>9.2f}" if name in one else f"{'':>11}{'':>9}"
        tail = "" if m is None else f"{m[0]:>15.2f}{m[1]:>9.2f}" + \
            (f"{m[0] - engine:>+10.2f}" if name not in (ENGINE, BODY_ONLY) else "")
        print(f"{name:<26}{head}{tail}")
    print(f"1-row v2 JSON / 1-row /v1 JSON: {one['v2 JSON'][0] / one['/v1 JSON'][0]:.2f}x; "
          f"1-row /v1 JSON / GET /healthz: {one['/v1 JSON'][0] / one['GET /healthz'][0]:.2f}x")
    for k, v in targets.items():
        print(f"  {'met ' if v else 'MISSED'}  {k}")


if __name__ == "__main__":
    main()
