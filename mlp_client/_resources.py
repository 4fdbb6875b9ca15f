"""Resource objects shared by the sync and async clients: what they hold and show, not how they fetch."""

from __future__ import annotations

import time
from typing import Any

from mlp_client.errors import JobFailed, MLPError, SweepFailed

TERMINAL = ("succeeded", "failed", "cancelled")


class Resource:
    """A server object as last read: ``data`` is its JSON, also readable as attributes (``net.n_params``)."""

    kind = "resource"

    def __init__(self, client: Any, data: dict[str, Any]):
        self._client = client
        self.data = dict(data)

    @property
    def id(self) -> str:
        return self.data["id"]

    def __getattr__(self, name: str) -> Any:
        data = self.__dict__.get("data")
        if data is not None and name in data:
            return data[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Resource) and type(other) is type(self) and other.id == self.id

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.id))

    def __repr__(self) -> str:
        extra = "".join(f", {k}={self.data[k]!r}" for k in self._repr_keys if self.data.get(k) is not None)
        return f"{type(self).__name__}(id={self.id!r}{extra})"

    _repr_keys: tuple[str, ...] = ()


class NetworkBase(Resource):
    kind = "network"
    _repr_keys = ("name", "n_params", "task")


class DatasetBase(Resource):
    kind = "dataset"
    _repr_keys = ("name", "task", "n_samples", "n_features")


class JobBase(Resource):
    kind = "job"
    _repr_keys = ("status", "model_id")

    @property
    def done(self) -> bool:
        """Whether the job has ended (succeeded, failed or cancelled) as last read."""
        return self.data.get("status") in TERMINAL

    def _monitor(self) -> str | None:
        early = (self.data.get("params") or {}).get("early_stopping") or {}
        return early.get("monitor")

    def _epochs(self) -> int:
        return int((self.data.get("progress") or {}).get("epochs") or (self.data.get("params") or {}).get("epochs")
                   or 1)

    def _check_model(self) -> str:
        if self.data.get("model_id"):
            return self.data["model_id"]
        status = self.data.get("status")
        if status == "failed":
            raise JobFailed(self.data.get("error") or "the job failed", job=self)
        raise MLPError(f"job {self.id} is {status}; it has no model (yet)")

    def _raise_if_failed(self) -> None:
        if self.data.get("status") == "failed":
            raise JobFailed(self.data.get("error") or "the job failed", job=self)

    def _ended(self, event) -> bool:
        """Whether ``event`` is the stream's last (``end``); its data, the job as it ended, is kept."""
        if event.event != "end":
            return False
        if isinstance(event.data, dict):
            self.data = event.data
        return True


class SweepBase(Resource):
    """A hyper-parameter sweep: ``data`` is the JSON of GET /v1/sweeps/{id} (status, counts, trials ranked, best
    model); the sync ``Sweep`` and the ``AsyncSweep`` add how they fetch."""

    kind = "sweep"
    _repr_keys = ("status", "best_value")

    @property
    def client(self) -> Any:
        """The client the sweep was read with."""
        return self._client

    @property
    def status(self) -> str:
        return self.data["status"]

    @property
    def trials(self) -> list[dict[str, Any]]:
        """The trials, best first."""
        return self.data.get("trials", [])

    def _best_model_id(self) -> str:
        """The best trial's model id; ValueError when there is none (yet, or at all once the sweep ended)."""
        if not self.data.get("best_model_id"):
            if self.data.get("best_trial") is not None:
                raise ValueError(f"sweep {self.id}: the model of its best trial (#{self.data['best_trial']}) was "
                                 "deleted")
            if self.status in TERMINAL:
                raise ValueError(f"sweep {self.id} ended {self.status} without a complete trial: "
                                 f"{self.data.get('reason')}")
            raise ValueError(f"sweep {self.id} has no complete trial yet")
        return self.data["best_model_id"]

    def _ended(self, deadline: float | None, timeout: float | None) -> bool:
        """One round of ``wait``: whether the sweep as last read has ended (succeeded or cancelled). Raises
        SweepFailed if it failed, TimeoutError once ``deadline`` (``time.monotonic()``) passed while it runs."""
        if self.status == "failed":
            raise SweepFailed(self.data.get("reason") or "the sweep failed", sweep=self)
        if self.status in TERMINAL:
            return True
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"sweep {self.id} still {self.status} after {timeout} s")
        return False


class ModelBase(Resource):
    kind = "model"
    _repr_keys = ("task", "input_dim", "classes")
