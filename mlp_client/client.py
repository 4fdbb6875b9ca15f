"""The synchronous client: ``Client(base_url, api_key=None)`` and its Network, Dataset, Job, Model and Sweep
objects."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import numpy as np

from mlp_client import _common as common
from mlp_client._common import STREAM_TIMEOUT, Event, Retry, SSEParser, StreamResume, UploadBody
from mlp_client._resources import DatasetBase, JobBase, ModelBase, NetworkBase, SweepBase
from mlp_client.errors import ConnectionFailed
from mlp_client.progress import ProgressDisplay, SweepBar

DEFAULT_URL = "http://127.0.0.1:8000"


class Client:
    """A synchronous client of the mlp-service HTTP API.

    ``Client("http://127.0.0.1:8000", api_key=None)``; ``retry`` sets how 429/503 answers and failed
    connections are retried (see ``Retry``); ``transport`` is passed to httpx (tests use it). Use it as a
    context manager or call ``close()``.
    """

    def __init__(self, base_url: str = DEFAULT_URL, api_key: str | None = None, *, timeout: float = 60.0,
                 retry: Retry | None = None, transport: httpx.BaseTransport | None = None):
        self.base_url = base_url.rstrip("/")
        self.retry = retry or Retry()
        self._http = httpx.Client(base_url=self.base_url, headers=common.headers_for(api_key), timeout=timeout,
                                  transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"

    # -- HTTP ----------------------------------------------------------------------------------------------
    def request(self, method: str, path: str, *, upload: UploadBody | None = None, stream: bool = False,
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
                resp = self._http.send(req, stream=stream)
            except httpx.TransportError as exc:
                delay = self.retry.after_error(attempt, method, exc)
                if delay is None:
                    raise common.connection_failed(method, path, exc) from exc
            else:
                delay = self.retry.after_response(attempt, resp)
                if delay is None:
                    if resp.is_error:
                        if stream:
                            resp.read()
                            resp.close()
                        raise common.error_from(resp)
                    return resp
                resp.close()
            finally:
                if close is not None:
                    close()
            self.retry.sleep(delay)
            attempt += 1

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self.request(method, path, **kwargs)
        return resp.json() if resp.content else None

    # -- networks ------------------------------------------------------------------------------------------
    def create_network(self, spec: dict[str, Any] | str | os.PathLike) -> "Network":
        """Create a network from its spec (a dict, or the path of a JSON file holding it)."""
        if not isinstance(spec, dict):
            spec = json.loads(Path(spec).read_text())
        return Network(self, self._json("POST", "/v1/networks", json=spec))

    def get_network(self, network_id: str) -> "Network":
        return Network(self, self._json("GET", f"/v1/networks/{network_id}"))

    def list_networks(self, *, limit: int = 50, offset: int = 0) -> list["Network"]:
        page = self._json("GET", "/v1/networks", params={"limit": limit, "offset": offset})
        return [Network(self, d) for d in page["items"]]

    def delete_network(self, network: Any) -> None:
        self.request("DELETE", f"/v1/networks/{common.ident(network)}")

    # -- data sets -----------------------------------------------------------------------------------------
    def upload_dataset(self, source: Any, target: str | None = None, *, name: str | None = None,
                       task: str | None = None, **options: Any) -> "Dataset":
        """Upload a data set: a file path (.csv, .npz, ...), a tuple ``(X, y)`` of arrays, or a pandas
        DataFrame (``target`` names its label column). Further ``options`` are sent as form fields."""
        body = common.upload_body(source, target=target, name=name, task=task, options=options)
        return Dataset(self, self._json("POST", "/v1/datasets", upload=body))

    def get_dataset(self, dataset_id: str) -> "Dataset":
        return Dataset(self, self._json("GET", f"/v1/datasets/{dataset_id}"))

    def list_datasets(self, *, limit: int = 50, offset: int = 0) -> list["Dataset"]:
        page = self._json("GET", "/v1/datasets", params={"limit": limit, "offset": offset})
        return [Dataset(self, d) for d in page["items"]]

    def delete_dataset(self, dataset: Any) -> None:
        self.request("DELETE", f"/v1/datasets/{common.ident(dataset)}")

    # -- jobs ----------------------------------------------------------------------------------------------
    def train(self, network: Any, dataset: Any, **job: Any) -> "Job":
        """Start a training job (the fields of POST /v1/jobs as keywords); returns at once with the Job.

        ``network`` is a Network, its id, or a spec dict (created first); ``dataset`` a Dataset or its id;
        ``validation_dataset`` may be given as an object instead of ``validation_dataset_id``.
        """
        if isinstance(network, dict) and "layers" in network:
            network = self.create_network(network)
        if "validation_dataset" in job:
            val = job.pop("validation_dataset")
            job["validation_dataset_id"] = common.ident(val) if val is not None else None
        body = {"network_id": common.ident(network), "dataset_id": common.ident(dataset), **job}
        return Job(self, self._json("POST", "/v1/jobs", json=body))

    def get_job(self, job_id: str) -> "Job":
        return Job(self, self._json("GET", f"/v1/jobs/{job_id}"))

    def list_jobs(self, *, status: str | None = None, limit: int = 50, offset: int = 0) -> list["Job"]:
        page = self._json("GET", "/v1/jobs", params=common.page_params(limit, offset, status=status))
        return [Job(self, d) for d in page["items"]]

    # -- sweeps --------------------------------------------------------------------------------------------
    def sweep(self, dataset: Any, *, wait: bool = False, progress: bool = True, timeout: float | None = None,
              **body: Any) -> "Sweep":
        """Start a hyper-parameter sweep (the fields of POST /v1/sweeps as keywords: space, strategy, max_trials,
        max_seconds, metric, direction, parallelism, pruner, seed, ...; ``validation_dataset`` may be an object);
        returns the Sweep at once, or with ``wait`` as ``Sweep.wait`` returns it (SweepFailed, TimeoutError)."""
        sweep = Sweep(self, self._json("POST", "/v1/sweeps", json=common.sweep_body(dataset, body)))
        return sweep.wait(progress=progress, timeout=timeout) if wait else sweep

    def get_sweep(self, sweep_id: str) -> "Sweep":
        return Sweep(self, self._json("GET", f"/v1/sweeps/{sweep_id}"))

    def list_sweeps(self, *, status: str | None = None, limit: int = 50, offset: int = 0) -> list["Sweep"]:
        """The sweeps, newest first (without their trials); ``status`` keeps those in it (running, ...)."""
        page = self._json("GET", "/v1/sweeps", params=common.page_params(limit, offset, status=status))
        return [Sweep(self, d) for d in page["items"]]

    # -- models --------------------------------------------------------------------------------------------
    def get_model(self, model_id: str) -> "Model":
        return Model(self, self._json("GET", f"/v1/models/{model_id}"))

    def list_models(self, *, job_id: str | None = None, limit: int = 50, offset: int = 0) -> list["Model"]:
        page = self._json("GET", "/v1/models", params=common.page_params(limit, offset, job_id=job_id))
        return [Model(self, d) for d in page["items"]]

    def delete_model(self, model: Any) -> None:
        self.request("DELETE", f"/v1/models/{common.ident(model)}")


class Network(NetworkBase):
    """A network architecture (``id``, ``n_params``, ``task``, the spec's fields)."""

    def delete(self) -> None:
        self._client.delete_network(self.id)


class Dataset(DatasetBase):
    """An uploaded data set (``id``, ``task``, ``n_samples``, ``n_features``, ``classes``, ...)."""

    def delete(self) -> None:
        self._client.delete_dataset(self.id)


class Job(JobBase):
    """A training job; ``data`` is the job as last read (``refresh()`` reads it again)."""

    def refresh(self) -> "Job":
        self.data = self._client._json("GET", f"/v1/jobs/{self.id}")
        return self

    @property
    def status(self) -> str:
        return self.data["status"]

    def events(self, *, since_epoch: int = 0) -> Iterator[Event]:
        """The job's server-sent events (``epoch`` ..., then ``end``), resuming with ``Last-Event-ID`` when
        the connection drops; ends after the ``end`` event."""
        resume = StreamResume(self.id, since_epoch, self._client.retry)
        while True:
            error: Exception | None = None
            try:
                resp = self._client.request("GET", f"/v1/jobs/{self.id}/events", headers=resume.headers(),
                                            stream=True, timeout=STREAM_TIMEOUT)
                try:
                    parser = SSEParser()
                    for line in resp.iter_lines():
                        ev = parser.feed(line)
                        if ev is None:
                            continue
                        resume.seen(ev)
                        yield ev
                        if self._ended(ev):
                            return
                finally:
                    resp.close()
            except (httpx.TransportError, ConnectionFailed) as exc:
                error = exc
            # dropped, or closed before `end`: reconnect from the last event seen
            self._client.retry.sleep(resume.dropped(error))

    def wait(self, progress: bool = True, *, timeout: float | None = None, file: Any = None) -> "Job":
        """Follow the job until it ends, drawing a live progress bar when ``progress`` (epoch, batch, loss,
        the monitored validation metric, ETA). Returns the job; raises JobFailed if it failed and
        TimeoutError after ``timeout`` seconds."""
        if not self.data.get("params"):
            self.refresh()
        display = None
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            display = ProgressDisplay(self.id, self._epochs(), self._monitor(), file=file) if progress else None
            if display is not None and self.data.get("metrics"):
                display.on_status(self.data["status"])
            for ev in self.events():
                if display is not None:
                    display.on_event(ev.event, ev.data)
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"job {self.id} still {self.data.get('status')} after {timeout} s")
        finally:
            if display is not None:
                display.close()
        self._raise_if_failed()
        return self

    def history(self, *, as_frame: bool | None = None):
        """Per-epoch metrics: a pandas DataFrame when pandas is installed (or ``as_frame=True``), else a
        list of dicts."""
        page = self._client._json("GET", f"/v1/jobs/{self.id}/metrics")
        return common.as_frame(page["items"], as_frame)

    def cancel(self) -> "Job":
        """Cancel a queued or running job (Conflict if it already ended)."""
        self.data = self._client._json("POST", f"/v1/jobs/{self.id}/cancel")
        return self

    def delete(self, *, delete_model: bool = False) -> None:
        """Delete a finished job with its checkpoints and metrics; its model too when ``delete_model``."""
        params = {"delete_model": "true"} if delete_model else None
        self._client.request("DELETE", f"/v1/jobs/{self.id}", params=params)

    @property
    def model(self) -> "Model":
        """The trained model of a succeeded job."""
        return self._client.get_model(self._check_model())


class Model(ModelBase):
    """A trained model (``task``, ``classes``, ``input_dim``, ``metrics``)."""

    def _predict(self, X: Any) -> tuple[list, list]:
        preds: list = []
        probs: list = []
        for body in common.predict_bodies(X):
            out = self._client._json("POST", f"/v1/models/{self.id}/predict", content=body,
                                     headers={"Content-Type": "application/json"})
            preds.extend(out["predictions"])
            probs.extend(out.get("probabilities") or [])
        return preds, probs

    def predict(self, X: Any) -> np.ndarray:
        """Predictions for rows of raw features: an array (n, d) in the trained column order, a pandas
        DataFrame or a list of records (dicts), matched by column name (NaN/None = missing); labels as
        uploaded, or regression values."""
        return np.asarray(self._predict(X)[0])

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (n, len(classes)) of a classification model."""
        return np.asarray(self._predict(X)[1], dtype=np.float64)

    def evaluate(self, dataset: Any = None, *, importance: bool = False, **rows: Any) -> dict[str, Any]:
        """Metrics of the model on a stored data set (a ``Dataset`` or its id), or on inline rows given as
        predict's body fields plus ``targets`` (``inputs=..., targets=...``): the JSON of
        ``POST /v1/models/{id}/evaluate`` (``metrics``, ``confusion_matrix``, ``per_class``, ``importance``)."""
        return self._client._json("POST", f"/v1/models/{self.id}/evaluate",
                                  json=common.evaluate_body(dataset, importance, rows))

    def download(self, path: str | os.PathLike | None = None) -> Path:
        """Save the engine's ``.npz`` (``core.Network.load`` reads it) to ``path`` (default ``{id}.npz``)."""
        return self._save(f"/v1/models/{self.id}/download", path or f"{self.id}.npz", None)

    def export(self, path: str | os.PathLike | None = None, *, format: str = "onnx") -> Path:
        """Save the model as ``format`` (``onnx``: a graph with the preprocessing, probabilities and labels;
        ``npz``: the engine's file) to ``path`` (default ``{id}.{format}``)."""
        return self._save(f"/v1/models/{self.id}/export", path or f"{self.id}.{format}", {"format": format})

    def _save(self, url: str, path: str | os.PathLike, params: dict | None) -> Path:
        path = Path(path)
        resp = self._client.request("GET", url, params=params, stream=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as fh:
                for chunk in resp.iter_bytes():
                    fh.write(chunk)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        finally:
            resp.close()
        return path

    def delete(self) -> None:
        self._client.delete_model(self.id)


class Sweep(SweepBase):
    """A hyper-parameter sweep: ``data`` is the JSON of GET /v1/sweeps/{id} (trials ranked, best model)."""

    def refresh(self) -> "Sweep":
        self.data = self._client._json("GET", f"/v1/sweeps/{self.id}")
        return self

    def best_model(self) -> "Model":
        """The trained model of the best trial; ValueError when there is none (yet, or at all once it ended)."""
        return self._client.get_model(self._best_model_id())

    def wait(self, progress: bool = True, *, timeout: float | None = None, poll: float = 0.5,
             file: Any = None) -> "Sweep":
        """Poll until the sweep ends, with a rich progress bar of finished trials and the best value. Returns the
        sweep (also ``cancelled``, as ``Job.wait``); raises SweepFailed if it failed and TimeoutError after
        ``timeout`` seconds. The bar is closed (cursor restored) on any exit, Ctrl-C included."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = SweepBar(self.data, disabled=not progress, file=file)
        try:
            while True:
                self.refresh()
                bar.update(self.data)
                if self._ended(deadline, timeout):
                    return self
                time.sleep(poll)
        finally:
            bar.close()

    def cancel(self) -> "Sweep":
        """Cancel a running sweep and its queued and running trials (Conflict if it already ended); returns it."""
        self.data = self._client._json("POST", f"/v1/sweeps/{self.id}/cancel")
        return self

    def delete(self) -> None:
        """Delete an ended sweep with its trials' jobs and networks (trained models stay; Conflict while it runs)."""
        self._client.request("DELETE", f"/v1/sweeps/{self.id}")
