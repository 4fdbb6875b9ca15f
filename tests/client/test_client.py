"""The Python client (mlp_client) against a real server process: sync and async, errors, retries, resume."""

from __future__ import annotations

import asyncio
import decimal
import io
import re
import subprocess
import sys

import httpx
import numpy as np
import pandas as pd
import pytest

import mlp_client
from core import Network
from mlp_client import AsyncClient, Client, Retry, _common
from mlp_client.progress import EtaEstimator
from tests.service.helpers import ROOT, blobs, mlp_spec

LABELS = np.array(["red", "green", "blue"])


def test_client_imports_neither_fastapi_nor_sqlalchemy_nor_the_service():
    code = ("import sys, mlp_client, mlp_client.aio, mlp_client.progress; "
            "bad = sorted({m.split('.')[0] for m in sys.modules} & "
            "{'fastapi', 'starlette', 'sqlalchemy', 'pydantic', 'service', 'core', 'uvicorn'}); "
            "print(','.join(bad)); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"mlp_client imported {out.stdout.strip()} {out.stderr}"


def test_predict_bodies_of_arrays_read_as_the_same_float32_rows_as_tolist_and_json():
    """The client's orjson bodies give the server the very float32 rows that the standard library's JSON of
    ``tolist()`` gave, also for float32 arrays (as float64 text); NaN rows still go as before."""
    from service.models.service import parse_inputs
    rng = np.random.default_rng(5)
    bits = rng.integers(0, 2**32, size=(2000, 16), dtype=np.uint64).astype(np.uint32)
    f32 = bits.view(np.float32)
    f32 = np.where(np.isfinite(f32), f32, np.float32(1.5))          # every finite float32 pattern is fair game
    edge = np.array([[0.0, -0.0, 1e-45, -1e-45, 1.1754942e-38, 3.4028235e38, -3.4028235e38, 0.1,
                      1 / 3, 16777217, 2**-149, 1e-7, 65504, 1e10, -2.5, 7]], dtype=np.float32)
    edge[0, -1] = np.array([363742205], dtype=np.uint32).view(np.float32)[0]   # its float32 text: 1 ulp off
    for X in (np.vstack([edge, f32]), rng.normal(size=(500, 16)) * 10.0 ** rng.integers(-30, 30, (500, 16)),
              rng.integers(-10**6, 10**6, size=(300, 16))):
        old = _common._dumps({"inputs": np.asarray(X, dtype=np.float64).tolist()})
        new = b"".join(_common.predict_bodies(X))
        a, b = parse_inputs(old, input_dim=16), parse_inputs(new, input_dim=16)
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32))
    nan_rows = np.array([[1.0, np.nan]])
    assert list(_common.predict_bodies(nan_rows)) == [b'{"inputs":[[1.0,NaN]]}']


def test_train_wait_history_predict(server):
    X, y = blobs(n=300)
    with Client(server.url) as c:
        net = c.create_network(mlp_spec(3))
        assert net.task == "classification" and net.n_params is None     # no input_dim in the spec
        data = c.upload_dataset((X, LABELS[y]), name="blobs")
        assert (data.task, data.n_samples, data.n_features) == ("classification", 300, 4)
        assert data.classes == ["blue", "green", "red"]
        job = c.train(net, data, epochs=8, batch_size=16, validation_split=0.2,
                      optimizer={"type": "adam", "learning_rate": 0.01},
                      early_stopping={"monitor": "val_accuracy", "patience": 50})
        assert job.status in ("queued", "running")
        out = io.StringIO()
        assert job.wait(progress=True, file=out) is job
        assert job.status == "succeeded" and job.model_id
        lines = out.getvalue().splitlines()
        # not a terminal: one line per epoch with the loss and the monitored metric, then the outcome
        assert len(lines) == 9, lines
        assert lines[0].startswith(f"job {job.id} epoch 1/8  loss ") and "val_accuracy " in lines[0]
        assert lines[-1].startswith(f"job {job.id} succeeded after epoch 8/8") and job.model_id in lines[-1]

        hist = job.history()
        assert isinstance(hist, pd.DataFrame)
        assert list(hist["epoch"]) == list(range(1, 9))
        assert {"train_loss", "val_loss", "val_accuracy"} <= set(hist.columns)
        records = job.history(as_frame=False)
        assert isinstance(records, list) and records[-1]["epoch"] == 8

        model = job.model
        assert model.id == job.model_id and model.classes == ["blue", "green", "red"]
        pred = model.predict(X)
        assert pred.shape == (300,) and (pred == LABELS[y]).mean() > 0.9
        proba = model.predict_proba(X[:5])
        assert proba.shape == (5, 3) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
        assert model.predict(X[0]).tolist() == [pred[0]]           # one row as a 1-d array


def test_dataframe_upload_and_predict_by_column_name(server):
    X, y = blobs(n=240)
    df = pd.DataFrame(X, columns=["a", "b", "c", "d"]).assign(label=LABELS[y])
    with Client(server.url) as c:
        data = c.upload_dataset(df, target="label", name="frame")
        assert data.feature_names == ["a", "b", "c", "d"] and data.target == "label"
        job = c.train(mlp_spec(3), data, epochs=10, batch_size=16,
                      optimizer={"type": "adam", "learning_rate": 0.01}).wait(progress=False)
        model = job.model
        expected = model.predict(X)
        assert (expected == LABELS[y]).mean() > 0.9
        shuffled = df[["label", "d", "b", "a", "c"]]              # other order, target column included
        assert model.predict(shuffled).tolist() == expected.tolist()
        records = shuffled.head(7).to_dict(orient="records")
        assert model.predict(records).tolist() == expected[:7].tolist()
        # a column left out, None and NaN are all a missing value (imputed as the model was trained)
        left_out = model.predict_proba([{"a": 1.0, "c": 2.0, "d": 3.0}])
        assert np.array_equal(left_out, model.predict_proba([{"a": 1.0, "b": None, "c": 2.0, "d": 3.0}]))
        frame = pd.DataFrame({"d": [3.0], "c": [2.0], "b": [np.nan], "a": [1.0]})
        assert np.array_equal(left_out, model.predict_proba(frame))


def test_mixed_type_dataframe_round_trip(server):
    """A string feature column goes up in the CSV and comes back by name in predict."""
    rng = np.random.default_rng(1)
    n = 300
    color = rng.choice(["red", "green", "blue"], n)
    x = rng.normal(size=n)
    label = np.where((color == "red") ^ (x > 0), "yes", "no")
    df = pd.DataFrame({"x": x.round(3), "color": color, "label": label})
    with Client(server.url) as c:
        data = c.upload_dataset(df, target="label")
        job = c.train({"layers": [{"type": "dense", "units": 16, "activation": "tanh"},
                                  {"type": "dense", "units": 2, "activation": "softmax"}],
                       "loss": "cross_entropy"}, data, epochs=40, batch_size=16,
                      optimizer={"type": "adam", "learning_rate": 0.02}).wait(progress=False)
        model = job.model
        schema = {col["name"]: col["type"] for col in c.get_model(model.id).input_schema}
        assert schema["x"] == "numeric" and schema["color"] != "numeric"
        pred = model.predict(df)                                 # label column included: left out
        assert (pred == label).mean() > 0.9
        assert model.predict(df.to_dict(orient="records")[:5]).tolist() == pred[:5].tolist()
        with pytest.raises(mlp_client.InvalidInput) as err:
            model.predict(df[["x"]].assign(color=1.5).to_numpy())  # rows of numbers: not for this model
        assert err.value.status == 422 and "non-numeric columns" in err.value.detail


def date_like_frame(n=240, seed=3):
    """Columns JSON has no form for: naive and tz-aware datetimes, dates, durations, Decimals (with NaT/None), an
    id-like timestamp column to ignore, and a label that depends on the dates."""
    rng = np.random.default_rng(seed)
    days = pd.to_datetime(["2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30"])
    d = rng.integers(0, 4, n)
    x = rng.normal(size=n)
    df = pd.DataFrame({
        "x": x.round(3),
        "when": (days[d] + pd.to_timedelta(rng.integers(0, 3, n) * 90, unit="min")).astype("datetime64[ns]"),
        "at": (days[rng.integers(0, 4, n)] + pd.Timedelta("10h")).tz_localize("UTC").tz_convert("Europe/Paris"),
        "day": [dt.date() for dt in days[d]],
        "wait": pd.to_timedelta(rng.integers(0, 3, n), unit="h"),
        "price": [decimal.Decimal(f"{v:.2f}") for v in rng.uniform(1, 9, n)],
        "ts": pd.Timestamp("2024-05-01 08:00:00.25") + pd.to_timedelta(np.arange(n), unit="s"),
    })
    df.loc[::7, "when"] = pd.NaT
    df.loc[::11, "at"] = pd.NaT
    df.loc[::13, "wait"] = pd.NaT
    df.loc[::17, "day"] = None
    df.loc[::19, "price"] = None
    df["label"] = np.where((d % 2 == 0) ^ (x > 0.5), "p", "q")
    return df


def test_predict_bodies_write_date_cells_as_to_csv_does_also_across_its_chunks():
    """Cell for cell the text ``df.to_csv()`` (what upload_dataset sends) writes, also where to_csv's per-chunk
    formatting changes a column's spelling (midnights as dates in one chunk, with their time in the next)."""
    import csv as csv_module
    import json
    n = 60_000                                   # two columns: to_csv formats 50,000 rows at a time
    when = pd.Series(pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n) // 1000, unit="D"))
    when[50_000:] += pd.Timedelta("10h")
    df = pd.DataFrame({"when": when, "price": [decimal.Decimal("1.25")] * n})
    df.loc[3, "when"] = pd.NaT
    expected = list(csv_module.reader(io.StringIO(df.to_csv(index=False))))[1:]
    sent = [row for body in _common.predict_bodies(df) for row in json.loads(body)["data"]]
    assert [r[0] for r in sent] == [r[0] or None for r in expected]
    assert sent[0][0] == "2024-01-01" and sent[-1][0] == "2024-02-29 10:00:00" and sent[3] == [None, 1.25]


def test_dataframe_with_dates_durations_and_decimals_predicts_as_the_csv_it_uploaded(server):
    """``upload_dataset(df)`` sends ``df.to_csv()``; ``predict(df)`` sends the same text for datetime (naive and
    tz-aware), date, timedelta and period cells, Decimals as numbers and NaT/None as null, so it answers what the
    server's CSV path answers for the same rows (no 'Circular reference detected'), also for records and
    for a datetime column the data set ignored."""
    df = date_like_frame()
    with Client(server.url) as c:
        data = c.upload_dataset(df, target="label", ignore="ts")
        kinds = {col["name"]: col["type"] for col in data.columns}
        assert kinds == {"x": "numeric", "when": "categorical", "at": "categorical", "day": "categorical",
                         "wait": "categorical", "price": "numeric", "ts": "ignored"}
        cats = {col["name"]: col.get("categories") for col in data.columns}
        assert "2024-01-31 11:00:00+01:00" in cats["at"] and "2024-01-31 01:30:00" in cats["when"]
        assert "2024-02-29" in cats["day"] and "0 days 01:00:00" in cats["wait"]
        model = c.train({"layers": [{"type": "dense", "units": 16, "activation": "tanh"},
                                    {"type": "dense", "units": 2, "activation": "softmax"}],
                         "loss": "cross_entropy"}, data, epochs=30, batch_size=16,
                        optimizer={"type": "adam", "learning_rate": 0.02}).wait(progress=False).model
        csv_body = df.to_csv(index=False).encode()
        via_csv = httpx.post(f"{server.url}/v1/models/{model.id}/predict", content=csv_body,
                             headers={"Content-Type": "text/csv"}, timeout=60).json()
        proba = model.predict_proba(df)                   # label and the ignored ts included: left out
        assert np.allclose(proba, via_csv["probabilities"], atol=1e-6)
        assert model.predict(df).tolist() == via_csv["predictions"]
        records = df.drop(columns="label").to_dict(orient="records")   # Timestamps, Decimals, NaT, None
        assert np.allclose(model.predict_proba(records), proba, atol=1e-6)
        # the dates were seen categories: with them missing, the answers change
        blank = df.assign(when=pd.NaT, at=pd.NaT, day=None, wait=pd.NaT)
        assert not np.allclose(model.predict_proba(blank), proba, atol=1e-3)
        # a naive datetime column the data set ignored, alone with the features, and evaluate by records
        assert np.allclose(model.predict_proba(df.drop(columns=["label"])), proba, atol=1e-6)
        report = model.evaluate(records=records, targets=df["label"].tolist())
        assert report["metrics"]["accuracy"] == pytest.approx((model.predict(df) == df["label"]).mean())
        with pytest.raises(TypeError, match="column 'blob': a value of type bytes"):
            model.predict(df.assign(blob=b"x"))


def test_csv_path_upload(server, tmp_path):
    X, y = blobs(n=90)
    path = tmp_path / "blobs.csv"
    pd.DataFrame(X, columns=["a", "b", "c", "d"]).assign(kind=LABELS[y]).to_csv(path, index=False)
    with Client(server.url) as c:
        data = c.upload_dataset(path, target="kind")
        assert (data.name, data.n_samples, data.target) == ("blobs", 90, "kind")
        with pytest.raises(mlp_client.InvalidInput) as err:
            c.upload_dataset(path, target="nope")
        assert err.value.status == 422
        assert err.value.detail == "target column 'nope' not found; the header has: a, b, c, d, kind"


def test_typed_errors_carry_status_and_detail(server):
    missing = "0" * 32
    with Client(server.url) as c:
        with pytest.raises(mlp_client.InvalidInput) as err:
            c.create_network({"layers": [{"type": "dense", "units": 3, "activation": "softmax"},
                                         {"type": "dense", "units": 3, "activation": "softmax"}],
                              "loss": "cross_entropy"})
        assert err.value.status == 422
        assert "layers[0].activation: softmax is only allowed in the last layer" in str(err.value.detail)
        with pytest.raises(mlp_client.NotFound) as err:
            c.get_model(missing)
        assert (err.value.status, err.value.detail) == (404, f"model {missing} not found")
        assert str(err.value) == f"404: model {missing} not found"

        X, y = blobs(n=60)
        job = c.train(mlp_spec(3), c.upload_dataset((X, y)), epochs=2).wait(progress=False)
        with pytest.raises(mlp_client.Conflict) as err:
            job.cancel()
        assert err.value.status == 409
        assert err.value.detail == (f"job {job.id} is already succeeded; only queued or running jobs can be "
                                    "cancelled")


def test_unauthorized_and_too_large(make_server, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("alice:alice-key-0123456789abcdef\n")
    srv = make_server(env={"MLP_API_KEYS_FILE": str(keys), "MLP_MAX_UPLOAD_BYTES": "2000"})
    with Client(srv.url) as anonymous:
        with pytest.raises(mlp_client.Unauthorized) as err:
            anonymous.list_jobs()
        assert err.value.status == 401
        assert err.value.detail == "missing API key: send the header 'Authorization: Bearer <key>'"
    with Client(srv.url, api_key="alice-key-0123456789abcdef") as c:
        assert c.list_jobs() == []
        X, y = blobs(n=200)
        with pytest.raises(mlp_client.TooLarge) as err:
            c.upload_dataset((X, y))
        assert err.value.status == 413
        assert err.value.detail == "upload exceeds the limit of 2,000 bytes (MLP_MAX_UPLOAD_BYTES)"


class Scripted(httpx.BaseTransport):
    """A transport that answers the first requests from a script, then hands over to the real network."""

    def __init__(self, script: list[httpx.Response]):
        self.script = list(script)
        self.real = httpx.HTTPTransport()
        self.seen: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if self.script:
            return self.script.pop(0)
        return self.real.handle_request(request)


def test_503_and_429_are_retried_honouring_retry_after(server):
    date = "Wed, 21 Oct 2015 07:28:00 GMT"      # in the past: retry at once
    transport = Scripted([httpx.Response(503, headers={"Retry-After": "2"}, json={"detail": "busy"}),
                          httpx.Response(429, headers={"Retry-After": date}, json={"detail": "slow down"}),
                          httpx.Response(503, json={"detail": "still busy"})])
    sleeps: list[float] = []
    with Client(server.url, retry=Retry(max_retries=5, backoff=0.5, sleep=sleeps.append),
                transport=transport) as c:
        assert isinstance(c.list_jobs(), list)
    assert sleeps[:2] == [2.0, 0.0]
    assert 1.5 <= sleeps[2] <= 2.5                  # no Retry-After: backoff 0.5 s * 2**2 (3rd try), +-25 %
    assert len(transport.seen) == 4

    transport = Scripted([httpx.Response(503, json={"detail": "down"})] * 3)
    with Client(server.url, retry=Retry(max_retries=2, sleep=lambda s: None), transport=transport) as c:
        with pytest.raises(mlp_client.ServiceUnavailable) as err:
            c.list_jobs()
    assert err.value.status == 503 and err.value.detail == "down"


def test_real_429_from_the_job_quota_is_retried(make_server):
    srv = make_server(env={"MLP_QUOTA_MAX_JOBS": "1"})
    X, y = blobs(n=2000, d=8)
    with Client(srv.url) as c:
        data = c.upload_dataset((X, y))
        net = c.create_network(mlp_spec(3, hidden=64))
        first = c.train(net, data, epochs=1000, batch_size=4)
        sleeps: list[float] = []

        def sleep(seconds: float) -> None:  # the quota frees up while the client waits: cancel the first job
            sleeps.append(seconds)
            first.cancel()
            c.get_job(first.id).wait(progress=False)

        c.retry = Retry(sleep=sleep)
        second = c.train(net, data, epochs=1)
        assert sleeps == [5.0]                  # the server's Retry-After
        assert second.wait(progress=False).status == "succeeded"


class DropAfter(httpx.BaseTransport):
    """Cuts the first event stream after ``n`` events (ReadError mid-stream) and records every request."""

    def __init__(self, n: int):
        self.n = n
        self.real = httpx.HTTPTransport()
        self.events_requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        resp = self.real.handle_request(request)
        if not request.url.path.endswith("/events"):
            return resp
        self.events_requests.append(request)
        if len(self.events_requests) > 1:
            return resp
        n, inner = self.n, resp.stream

        class Cut(httpx.SyncByteStream):
            def __iter__(self):
                buf = b""
                for chunk in inner:
                    buf += chunk
                    if buf.count(b"\n\n") >= n:
                        end = 0
                        for _ in range(n):
                            end = buf.index(b"\n\n", end) + 2
                        yield buf[:end]
                        raise httpx.ReadError("connection dropped")
                yield buf

            def close(self):
                inner.close()

        return httpx.Response(resp.status_code, headers=resp.headers, stream=Cut())


def test_event_stream_resumes_with_last_event_id_after_a_drop(server):
    X, y = blobs(n=60)
    with Client(server.url) as c:
        job = c.train(mlp_spec(3), c.upload_dataset((X, y)), epochs=5).wait(progress=False)
    transport = DropAfter(2)
    with Client(server.url, transport=transport, retry=Retry(sleep=lambda s: None)) as c:
        events = list(c.get_job(job.id).events())
    assert [e.event for e in events] == ["epoch"] * 5 + ["end"]
    assert [e.data["epoch"] for e in events[:-1]] == [1, 2, 3, 4, 5]      # each once, in order
    assert [r.headers.get("last-event-id") for r in transport.events_requests] == [None, "2"]
    assert events[-1].data["status"] == "succeeded"


def test_stream_resume_sends_the_last_id_backs_off_and_gives_up():
    """The reconnect policy both clients share: Last-Event-ID of the last event, backoff * drops, then a clear error."""
    resume = _common.StreamResume("j1", 3, Retry(backoff=0.5, max_backoff=2.0))
    assert resume.headers() == {"Accept": "text/event-stream", "Last-Event-ID": "3"}
    assert [resume.dropped(None) for _ in range(5)] == [0.5, 1.0, 1.5, 2.0, 2.0]
    resume.seen(_common.Event("epoch", {"epoch": 4}, id="4"))  # an event resets the count of drops in a row
    assert resume.headers()["Last-Event-ID"] == "4" and resume.dropped(None) == 0.5
    for _ in range(_common.MAX_RECONNECTS - 1):
        resume.dropped(None)
    with pytest.raises(mlp_client.ConnectionFailed, match="the event stream of job j1 kept dropping: cut"):
        resume.dropped(httpx.ReadError("cut"))
    assert _common.StreamResume("j2", 0, Retry()).headers() == {"Accept": "text/event-stream"}


def test_async_client(server):
    X, y = blobs(n=200)

    async def main():
        async with AsyncClient(server.url) as c:
            net = await c.create_network(mlp_spec(3))
            data = await c.upload_dataset((X, LABELS[y]))
            job = await c.train(net, data, epochs=6, batch_size=16, validation_split=0.25,
                                optimizer={"type": "adam", "learning_rate": 0.01})
            out = io.StringIO()
            await job.wait(file=out)
            assert job.status == "succeeded"
            assert out.getvalue().count(f"job {job.id} epoch ") == 6
            hist = await job.history(as_frame=False)
            assert [h["epoch"] for h in hist] == [1, 2, 3, 4, 5, 6]
            model = await job.model()
            pred = await model.predict(pd.DataFrame(X, columns=["x0", "x1", "x2", "x3"]))
            assert (pred == LABELS[y]).mean() > 0.9
            with pytest.raises(mlp_client.NotFound) as err:
                await c.get_job("f" * 32)
            assert err.value.detail == f"job {'f' * 32} not found"
            await job.delete(delete_model=True)
            with pytest.raises(mlp_client.NotFound):
                await c.get_model(model.id)

    asyncio.run(main())


def test_job_delete_keeps_the_model_and_it_downloads(server, tmp_path):
    X, y = blobs(n=60)
    with Client(server.url) as c:
        data = c.upload_dataset((X, y))
        job = c.train(mlp_spec(3), data, epochs=2).wait(progress=False)
        model_id = job.model_id
        job.delete()
        with pytest.raises(mlp_client.NotFound):
            c.get_job(job.id)
        model = c.get_model(model_id)
        assert model.job_id == job.id                           # the model stays and still predicts
        served = model.predict(X)
        path = model.download(tmp_path / "model.npz")           # the engine's file, read by core
        assert path == tmp_path / "model.npz"
        assert (Network.load(path).predict(X.astype(np.float32)) == served).all()
        report = model.evaluate(data)                            # POST /v1/models/{id}/evaluate
        assert report["rows"] == len(y)
        assert report["metrics"]["accuracy"] == pytest.approx(float(np.mean(served == y)), abs=1e-12)
        assert model.evaluate(inputs=X[:10], targets=y[:10])["rows"] == 10
        with pytest.raises(ValueError, match="not both or neither"):
            model.evaluate()
        exported = model.export(tmp_path / "exported.npz", format="npz")
        assert exported.read_bytes() == path.read_bytes()
        with pytest.raises(mlp_client.InvalidInput) as err:
            model.export(tmp_path / "x.bin", format="pickle")
        assert err.value.status == 422 and "format" in str(err.value.detail)
        assert not (tmp_path / "x.bin").exists()


def test_eta_is_steady_on_a_steady_job():
    """Epochs of 1 s +-15 % (random): from 20 % to 90 % done the estimate stays within 25 % of the truth."""
    now = [0.0]
    eta = EtaEstimator(epochs=50, clock=lambda: now[0])
    durations = np.random.default_rng(0).uniform(0.85, 1.15, 50).tolist()
    worst = 0.0
    for i, took in enumerate(durations):
        for step in range(4):                     # look at the estimate four times during each epoch
            if 10 <= i < 45:
                true_left = sum(durations[i:]) - step * took / 4
                worst = max(worst, abs(eta.remaining() - true_left) / true_left)
            now[0] += took / 4
        eta.epoch(i + 1, seconds=took)
    assert worst < 0.25, worst
    assert eta.remaining() == 0.0


def test_readme_client_quick_start_runs(server, capsys, monkeypatch):
    text = (ROOT / "README.md").read_text()
    start = text.index("<!-- section: client -->")
    code = re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)
    monkeypatch.setenv("MLP_URL", server.url)
    exec(compile(code, "README-client", "exec"), {})
    out = capsys.readouterr().out
    assert "val_accuracy" in out
    assert float(re.search(r"held-out accuracy ([0-9.]+)", out).group(1)) >= 0.85, out
