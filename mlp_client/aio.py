"""The asynchronous twin: ``AsyncClient(base_url, api_key=None)`` with the same methods, awaited."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, AsyncIterator

import httpx
import numpy as np

from mlp_client import _common as common
from mlp_client._common import STREAM_TIMEOUT, Event, Retry, SSEParser, StreamResume, UploadBody
from mlp_client._resources import DatasetBase, JobBase, ModelBase, NetworkBase, SweepBase
from mlp_client.client import DEFAULT_URL
from mlp_client.errors import ConnectionFailed
from mlp_client.progress import ProgressDisplay, SweepBar


async def _async_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


class AsyncClient:
    """An asyncio client of the mlp-service HTTP API (``async with AsyncClient(url) as c: ...``).

    ``retry.sleep`` may be a coroutine function (the default is ``asyncio.sleep``).
    """

    def __init__(self, base_url: str = DEFAULT_URL, api_key: str | None = None, *, timeout: float = 60.0,
                 retry: Retry | None = None, transport: httpx.AsyncBaseTransport | None = None):
        self.base_url = base_url.rstrip("/")
        self.retry = retry or Retry(sleep=_async_sleep)
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=common.headers_for(api_key),
                                       timeout=timeout, transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncClient({self.base_url!r})"

    async def _sleep(self, seconds: float) -> None:
        out = self.retry.sleep(seconds)
        if asyncio.iscoroutine(out):
            await out

    # -- HTTP ----------------------------------------------------------------------------------------------
    async def request(self, method: str, path: str, *, upload: UploadBody | None = None, stream: bool = False,
                      **kwargs: Any) -> httpx.Response:
        """Send a request with retries; an error answer raises its typed exception (``mlp_client.errors``)."""
        attempt = 0
        while True:
            close = None
            if upload is not None:
                kwargs["files"], close = upload.open()
                kwargs["data"] = upload.data
            try:
                req = self._http.build_request(method, path, **kwargs)
                resp = await self._http.send(req, stream=stream)
            except httpx.TransportError as exc:
                delay = self.retry.after_error(attempt, method, exc)
                if delay is None:
                    raise common.connection_failed(method, path, exc) from exc
            else:
                delay = self.retry.after_response(attempt, resp)
                if delay is None:
                    if resp.is_error:
                        if stream:
                            await resp.aread()
                            await resp.aclose()
                        raise common.error_from(resp)
                    return resp
                await resp.aclose()
            finally:
                if close is not None:
                    close()
            await self._sleep(delay)
            attempt += 1

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = await self.request(method, path, **kwargs)
        return resp.json() if resp.content else None

    # -- networks ------------------------------------------------------------------------------------------
    async def create_network(self, spec: dict[str, Any] | str | os.PathLike) -> "AsyncNetwork":
        if not isinstance(spec, dict):
            spec = json.loads(Path(spec).read_text())
        return AsyncNetwork(self, await self._json("POST", "/v1/networks", json=spec))

    async def get_network(self, network_id: str) -> "AsyncNetwork":
        return AsyncNetwork(self, await self._json("GET", f"/v1/networks/{network_id}"))

    async def list_networks(self, *, limit: int = 50, offset: int = 0) -> list["AsyncNetwork"]:
        page = await self._json("GET", "/v1/networks", params={"limit": limit, "offset": offset})
        return [AsyncNetwork(self, d) for d in page["items"]]

    async def delete_network(self, network: Any) -> None:
        await self.request("DELETE", f"/v1/networks/{common.ident(network)}")

    # -- data sets -----------------------------------------------------------------------------------------
    async def upload_dataset(self, source: Any, target: str | None = None, *, name: str | None = None,
                             task: str | None = None, **options: Any) -> "AsyncDataset":
        body = common.upload_body(source, target=target, name=name, task=task, options=options)
        return AsyncDataset(self, await self._json("POST", "/v1/datasets", upload=body))

    async def get_dataset(self, dataset_id: str) -> "AsyncDataset":
        return AsyncDataset(self, await self._json("GET", f"/v1/datasets/{dataset_id}"))

    async def list_datasets(self, *, limit: int = 50, offset: int = 0) -> list["AsyncDataset"]:
        page = await self._json("GET", "/v1/datasets", params={"limit": limit, "offset": offset})
        return [AsyncDataset(self, d) for d in page["items"]]

    async def delete_dataset(self, dataset: Any) -> None:
        await self.request("DELETE", f"/v1/datasets/{common.ident(dataset)}")

    # -- jobs ----------------------------------------------------------------------------------------------
    async def train(self, network: Any, dataset: Any, **job: Any) -> "AsyncJob":
        if isinstance(network, dict) and "layers" in network:
            network = await self.create_network(network)
        if "validation_dataset" in job:
            val = job.pop("validation_dataset")
            job["validation_dataset_id"] = common.ident(val) if val is not None else None
        body = {"network_id": common.ident(network), "dataset_id": common.ident(dataset), **job}
        return AsyncJob(self, await self._json("POST", "/v1/jobs", json=body))

    async def get_job(self, job_id: str) -> "AsyncJob":
        return AsyncJob(self, await self._json("GET", f"/v1/jobs/{job_id}"))

    async def list_jobs(self, *, status: str | None = None, limit: int = 50, offset: int = 0) -> list["AsyncJob"]:
        page = await self._json("GET", "/v1/jobs", params=common.page_params(limit, offset, status=status))
        return [AsyncJob(self, d) for d in page["items"]]

    # -- sweeps --------------------------------------------------------------------------------------------
    async def sweep(self, dataset: Any, *, wait: bool = False, progress: bool = True, timeout: float | None = None,
                    **body: Any) -> "AsyncSweep":
        """As ``Client.sweep``: start a sweep (POST /v1/sweeps's fields as keywords); returns the AsyncSweep at
        once, or with ``wait`` as ``AsyncSweep.wait`` returns it (SweepFailed, TimeoutError)."""
        sweep = AsyncSweep(self, await self._json("POST", "/v1/sweeps", json=common.sweep_body(dataset, body)))
        return await sweep.wait(progress=progress, timeout=timeout) if wait else sweep

    async def get_sweep(self, sweep_id: str) -> "AsyncSweep":
        return AsyncSweep(self, await self._json("GET", f"/v1/sweeps/{sweep_id}"))

    async def list_sweeps(self, *, status: str | None = None, limit: int = 50,
                          offset: int = 0) -> list["AsyncSweep"]:
        """As ``Client.list_sweeps``."""
        page = await self._json("GET", "/v1/sweeps", params=common.page_params(limit, offset, status=status))
        return [AsyncSweep(self, d) for d in page["items"]]

    # -- models --------------------------------------------------------------------------------------------
    async def get_model(self, model_id: str) -> "AsyncModel":
        return AsyncModel(self, await self._json("GET", f"/v1/models/{model_id}"))

    async def list_models(self, *, job_id: str | None = None, limit: int = 50,
                          offset: int = 0) -> list["AsyncModel"]:
        page = await self._json("GET", "/v1/models", params=common.page_params(limit, offset, job_id=job_id))
        return [AsyncModel(self, d) for d in page["items"]]

    async def delete_model(self, model: Any) -> None:
        await self.request("DELETE", f"/v1/models/{common.ident(model)}")


class AsyncNetwork(NetworkBase):
    async def delete(self) -> None:
        await self._client.delete_network(self.id)


class AsyncDataset(DatasetBase):
    async def delete(self) -> None:
        await self._client.delete_dataset(self.id)


class AsyncJob(JobBase):
    """A training job of the async client."""

    async def refresh(self) -> "AsyncJob":
        self.data = await self._client._json("GET", f"/v1/jobs/{self.id}")
        return self

    @property
    def status(self) -> str:
        return self.data["status"]

    async def events(self, *, since_epoch: int = 0) -> AsyncIterator[Event]:
        """Server-sent events of the job, resumed with ``Last-Event-ID`` after a dropped connection."""
        resume = StreamResume(self.id, since_epoch, self._client.retry)
        while True:
            error: Exception | None = None
            try:
                resp = await self._client.request("GET", f"/v1/jobs/{self.id}/events", headers=resume.headers(),
                                                  stream=True, timeout=STREAM_TIMEOUT)
                try:
                    parser = SSEParser()
                    async for line in resp.aiter_lines():
                        ev = parser.feed(line)
                        if ev is None:
                            continue
                        resume.seen(ev)
                        yield ev
                        if self._ended(ev):
                            return
                finally:
                    await resp.aclose()
            except (httpx.TransportError, ConnectionFailed) as exc:
                error = exc
            await self._client._sleep(resume.dropped(error))

    async def wait(self, progress: bool = True, *, timeout: float | None = None, file: Any = None) -> "AsyncJob":
        """Follow the job until it ends (live bar when ``progress``); JobFailed if it failed."""
        if not self.data.get("params"):
            await self.refresh()
        display = ProgressDisplay(self.id, self._epochs(), self._monitor(), file=file) if progress else None
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            async for ev in self.events():
                if display is not None:
                    display.on_event(ev.event, ev.data)
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"job {self.id} still {self.data.get('status')} after {timeout} s")
        finally:
            if display is not None:
                display.close()
        self._raise_if_failed()
        return self

    async def history(self, *, as_frame: bool | None = None):
        page = await self._client._json("GET", f"/v1/jobs/{self.id}/metrics")
        return common.as_frame(page["items"], as_frame)

    async def cancel(self) -> "AsyncJob":
        self.data = await self._client._json("POST", f"/v1/jobs/{self.id}/cancel")
        return self

    async def delete(self, *, delete_model: bool = False) -> None:
        params = {"delete_model": "true"} if delete_model else None
        await self._client.request("DELETE", f"/v1/jobs/{self.id}", params=params)

    async def model(self) -> "AsyncModel":
        """The trained model of a succeeded job (a coroutine here, a property on the sync Job)."""
        return await self._client.get_model(self._check_model())


class AsyncModel(ModelBase):
    """A trained model of the async client."""

    async def _predict(self, X: Any) -> tuple[list, list]:
        preds: list = []
        probs: list = []
        for body in common.predict_bodies(X):
            out = await self._client._json("POST", f"/v1/models/{self.id}/predict", content=body,
                                           headers={"Content-Type": "application/json"})
            preds.extend(out["predictions"])
            probs.extend(out.get("probabilities") or [])
        return preds, probs

    async def predict(self, X: Any) -> np.ndarray:
        return np.asarray((await self._predict(X))[0])

    async def predict_proba(self, X: Any) -> np.ndarray:
        return np.asarray((await self._predict(X))[1], dtype=np.float64)

    async def evaluate(self, dataset: Any = None, *, importance: bool = False, **rows: Any) -> dict[str, Any]:
        """As ``Model.evaluate``: metrics on a stored data set or on inline rows with ``targets``."""
        return await self._client._json("POST", f"/v1/models/{self.id}/evaluate",
                                        json=common.evaluate_body(dataset, importance, rows))

    async def download(self, path: str | os.PathLike | None = None) -> Path:
        return await self._save(f"/v1/models/{self.id}/download", path or f"{self.id}.npz", None)

    async def export(self, path: str | os.PathLike | None = None, *, format: str = "onnx") -> Path:
        return await self._save(f"/v1/models/{self.id}/export", path or f"{self.id}.{format}", {"format": format})

    async def _save(self, url: str, path: str | os.PathLike, params: dict | None) -> Path:
        path = Path(path)
        resp = await self._client.request("GET", url, params=params, stream=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as fh:
                async for chunk in resp.aiter_bytes():
                    fh.write(chunk)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        finally:
            await resp.aclose()
        return path

    async def delete(self) -> None:
        await self._client.delete_model(self.id)


class AsyncSweep(SweepBase):
    """A hyper-parameter sweep of the async client (``data``: the JSON of GET /v1/sweeps/{id})."""

    async def refresh(self) -> "AsyncSweep":
        self.data = await self._client._json("GET", f"/v1/sweeps/{self.id}")
        return self

    async def best_model(self) -> "AsyncModel":
        """The trained model of the best trial; ValueError when there is none (yet, or at all once it ended)."""
        return await self._client.get_model(self._best_model_id())

    async def wait(self, progress: bool = True, *, timeout: float | None = None, poll: float = 0.5,
                   file: Any = None) -> "AsyncSweep":
        """As ``Sweep.wait``: poll until the sweep ends (progress bar when ``progress``). Returns the sweep (also
        ``cancelled``); raises SweepFailed if it failed and TimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = SweepBar(self.data, disabled=not progress, file=file)
        try:
            while True:
                await self.refresh()
                bar.update(self.data)
                if self._ended(deadline, timeout):
                    return self
                await asyncio.sleep(poll)
        finally:
            bar.close()

    async def cancel(self) -> "AsyncSweep":
        """Cancel a running sweep and its queued and running trials (Conflict if it already ended); returns it."""
        self.data = await self._client._json("POST", f"/v1/sweeps/{self.id}/cancel")
        return self

    async def delete(self) -> None:
        """Delete an ended sweep with its trials' jobs and networks (trained models stay; Conflict while it runs)."""
        await self._client.request("DELETE", f"/v1/sweeps/{self.id}")
