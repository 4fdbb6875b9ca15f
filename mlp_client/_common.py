"""What the sync and the async client share: retries, error mapping, request bodies, the SSE parser and where a
dropped event stream resumes."""

from __future__ import annotations

import email.utils
import io
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import httpx
import numpy as np

from mlp_client.errors import ConnectionFailed, error_for

try:                    # installed with mlp-service; the client also works with the standard library's json alone
    import orjson
except ImportError:     # pragma: no cover - depends on the environment
    orjson = None

RETRY_STATUSES = frozenset({429, 503})
IDEMPOTENT = frozenset({"GET", "HEAD", "DELETE", "PUT", "OPTIONS"})
PREDICT_CHUNK_ROWS = 10_000       # rows per predict request (keeps bodies well under the upload limit)
STREAM_TIMEOUT = httpx.Timeout(30.0, read=90.0)   # the server sends a keep-alive every 15 s
MAX_RECONNECTS = 20               # event-stream drops in a row before giving up


@dataclass
class Retry:
    """How the client retries: 429 and 503 (honouring ``Retry-After``) and connections that failed.

    Waits ``backoff * 2**attempt`` seconds (with +-25 % jitter, at most ``max_backoff``) unless the server's
    ``Retry-After`` says otherwise; gives up after ``max_retries`` retries (``connect_retries`` when no
    connection could be made at all). A request that may have reached the server is retried only for
    idempotent methods; one that never connected is always retried.
    """

    max_retries: int = 5
    connect_retries: int = 2
    backoff: float = 0.5
    max_backoff: float = 30.0
    sleep: Callable[[float], Any] = field(default=time.sleep, repr=False)

    def _backoff(self, attempt: int) -> float:
        base = min(self.max_backoff, self.backoff * (2 ** attempt))
        return base * random.uniform(0.75, 1.25)

    def after_response(self, attempt: int, response: httpx.Response) -> float | None:
        """Seconds to wait before retrying this answer, or None to hand it back."""
        if response.status_code not in RETRY_STATUSES or attempt >= self.max_retries:
            return None
        after = retry_after_seconds(response.headers.get("retry-after"))
        if after is not None:
            return min(after, self.max_backoff)
        return self._backoff(attempt)

    def after_error(self, attempt: int, method: str, exc: Exception) -> float | None:
        """Seconds to wait before retrying after a transport error, or None to give up."""
        never_sent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
        if attempt >= (min(self.connect_retries, self.max_retries) if never_sent else self.max_retries):
            return None
        if never_sent or method.upper() in IDEMPOTENT:
            return self._backoff(attempt)
        return None


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number of seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_from(response: httpx.Response):
    """The typed exception for an error answer, with the body's ``detail`` (or its text)."""
    try:
        body = response.json()
        detail = body.get("detail", body) if isinstance(body, dict) else body
    except (ValueError, UnicodeDecodeError):
        detail = response.text or response.reason_phrase
    return error_for(response.status_code, detail, response)


def connection_failed(method: str, url: str, exc: Exception) -> ConnectionFailed:
    return ConnectionFailed(f"{method} {url}: {type(exc).__name__}: {exc}")


def headers_for(api_key: str | None) -> dict[str, str]:
    head = {"User-Agent": "mlp-client/0.1", "Accept": "application/json"}
    if api_key:
        head["Authorization"] = f"Bearer {api_key}"
    return head


def ident(obj: Any) -> str:
    """An id from a resource object, a dict with ``id`` or an id string."""
    if isinstance(obj, str):
        return obj
    if isinstance(obj, dict):
        return obj["id"]
    return obj.id


# -- data sets ---------------------------------------------------------------------------------------------
def _is_dataframe(obj: Any) -> bool:
    return type(obj).__module__.startswith("pandas") and hasattr(obj, "to_csv") and hasattr(obj, "columns")


@dataclass
class UploadBody:
    """A multipart upload that can be rebuilt for every retry (a file is reopened each time)."""

    filename: str
    content_type: str
    data: dict[str, Any]
    path: Path | None = None
    payload: bytes | None = None

    def open(self) -> tuple[dict[str, Any], Callable[[], None]]:
        """httpx ``files`` for one attempt and a function that closes what it opened."""
        if self.path is not None:
            fh = open(self.path, "rb")
            return {"file": (self.filename, fh, self.content_type)}, fh.close
        return {"file": (self.filename, self.payload, self.content_type)}, lambda: None


def upload_body(source: Any, *, target: str | None, name: str | None, task: str | None,
                options: dict[str, Any]) -> UploadBody:
    """Multipart parts for POST /v1/datasets from a path, ``(X, y)`` arrays or a pandas DataFrame."""
    data: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (list, tuple)):   # column lists: a JSON array when a name holds a comma
            items = [str(v) for v in value]
            value = json.dumps(items) if any("," in v for v in items) else ",".join(items)
        data[key] = str(value)
    if task is not None:
        data["task"] = task
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
        if target is not None:
            data["target"] = target
        data["name"] = name or path.name.split(".")[0]
        ctype = "application/x-npz" if path.suffix.lower() == ".npz" else "text/csv"
        return UploadBody(path.name, ctype, data, path=path)
    if _is_dataframe(source):
        if target is not None and target not in source.columns:
            raise ValueError(f"target column {target!r} not in the DataFrame's columns {list(source.columns)}")
        if target is not None:
            data["target"] = target
        data["name"] = name or "dataframe"
        csv = source.to_csv(index=False).encode("utf-8")
        return UploadBody(f"{data['name']}.csv", "text/csv", data, payload=csv)
    if isinstance(source, tuple) and len(source) == 2:
        X, y = np.asarray(source[0]), np.asarray(source[1])
        if y.dtype == object:
            y = y.astype(str)
        buf = io.BytesIO()
        arrays = {"X": X, "y": y}
        if options.get("feature_names") is not None:
            arrays["feature_names"] = np.asarray(options["feature_names"], dtype=str)
            data.pop("feature_names", None)
        np.savez(buf, **arrays)
        data["name"] = name or "arrays"
        return UploadBody(f"{data['name']}.npz", "application/x-npz", data, payload=buf.getvalue())
    raise TypeError("upload_dataset takes a file path (.csv, .npz, ...), a tuple (X, y) of arrays or a pandas "
                    f"DataFrame, not {type(source).__name__}")


# -- prediction inputs -------------------------------------------------------------------------------------
def _cell(value: Any) -> Any:
    """A JSON-able cell: numpy scalars as Python ones, NaN/None/NA as null (a missing value)."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    return value


def _dumps(doc: dict) -> bytes:
    return json.dumps(doc, separators=(",", ":"), default=_cell).encode()


def predict_bodies(X: Any) -> Iterator[bytes]:
    """JSON bodies of POST /v1/models/{id}/predict, PREDICT_CHUNK_ROWS rows each.

    Arrays go as ``{"inputs": rows}``; a DataFrame as ``{"columns", "data"}`` and records as
    ``{"records"}``, every column as it is: the server matches them by name, leaves out the training target and
    the columns the data set ignored, and refuses any other name it does not know (a typo is never dropped
    silently here).
    """
    if _is_dataframe(X):
        cols = list(X.columns)
        data = [[_cell(v) for v in row] for row in X.itertuples(index=False, name=None)]
        for start in range(0, len(data), PREDICT_CHUNK_ROWS):
            yield _dumps({"columns": [str(c) for c in cols], "data": data[start:start + PREDICT_CHUNK_ROWS]})
        return
    if isinstance(X, dict) or (isinstance(X, list) and X and isinstance(X[0], dict)):
        records = [X] if isinstance(X, dict) else X
        clean = [{k: _cell(v) for k, v in rec.items()} for rec in records]
        for start in range(0, len(clean), PREDICT_CHUNK_ROWS):
            yield _dumps({"records": clean[start:start + PREDICT_CHUNK_ROWS]})
        return
    rows = np.asarray(X, dtype=np.float64)
    if rows.ndim == 1:
        rows = rows.reshape(1, -1)
    for start in range(0, max(len(rows), 1), PREDICT_CHUNK_ROWS):
        yield _dumps_rows(rows[start:start + PREDICT_CHUNK_ROWS])


def _dumps_rows(rows: np.ndarray) -> bytes:
    """``{"inputs": rows}`` of a float64 array: orjson straight from the array when it is installed (the same
    float64 values as the standard library's text of ``tolist()``, in a twentieth of the time), else the standard
    library; rows with NaN or infinities always the latter, so the server's 422 is the same either way.

    float32 rows go as float64 text too: the server reads a number as float64, then float32, and float32's own
    shortest text can land on the neighbouring float32 that way (7.038531e-26: two roundings)."""
    if orjson is not None and rows.ndim == 2 and np.isfinite(rows).all():
        return orjson.dumps({"inputs": np.ascontiguousarray(rows)}, option=orjson.OPT_SERIALIZE_NUMPY)
    return _dumps({"inputs": rows.tolist()})


# -- server-sent events ------------------------------------------------------------------------------------
@dataclass
class Event:
    """One server-sent event: its name, parsed JSON data and id (None when it had none)."""

    event: str
    data: Any
    id: str | None = None


class StreamResume:
    """Where a job's event stream resumes after a drop, and when to give up (both clients drive it).

    Sends ``Last-Event-ID`` of the last event seen; waits ``backoff * drops`` seconds (at most ``max_backoff``)
    before reconnecting, and raises ConnectionFailed after ``MAX_RECONNECTS`` drops without an event between.
    """

    def __init__(self, job_id: str, since_epoch: int, retry: Retry):
        self.job_id, self.retry = job_id, retry
        self.last_id = str(since_epoch) if since_epoch else None
        self.failures = 0

    def headers(self) -> dict[str, str]:
        """The headers of the next (re)connection."""
        headers = {"Accept": "text/event-stream"}
        if self.last_id is not None:
            headers["Last-Event-ID"] = self.last_id
        return headers

    def seen(self, event: "Event") -> None:
        """An event arrived: resume after it; the stream works again."""
        if event.id is not None:
            self.last_id = event.id
        self.failures = 0

    def dropped(self, error: Exception | None) -> float:
        """The stream ended before ``end`` (``error``: why, if known): seconds to wait before reconnecting."""
        self.failures += 1
        if self.failures > MAX_RECONNECTS:
            raise ConnectionFailed(f"the event stream of job {self.job_id} kept dropping: {error}")
        return min(self.retry.max_backoff, self.retry.backoff * self.failures)


class SSEParser:
    """Incremental text/event-stream parser (the WHATWG rules this server uses): feed lines, get events."""

    def __init__(self) -> None:
        self._event, self._data, self._id = "message", [], None
        self.last_id: str | None = None

    def feed(self, line: str) -> Event | None:
        line = line.rstrip("\r\n")
        if not line:
            if not self._data:
                self._event, self._id = "message", None
                return None
            raw = "\n".join(self._data)
            try:
                data = json.loads(raw)
            except ValueError:
                data = raw
            ev = Event(self._event, data, self._id)
            if self._id is not None:
                self.last_id = self._id
            self._event, self._data, self._id = "message", [], None
            return ev
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        return None

    def feed_all(self, lines: Iterable[str]) -> Iterator[Event]:
        for line in lines:
            ev = self.feed(line)
            if ev is not None:
                yield ev


def evaluate_body(dataset: Any, importance: bool, rows: dict[str, Any]) -> dict[str, Any]:
    """The JSON of ``POST /v1/models/{id}/evaluate``: a stored data set, or inline rows (``inputs``, ``records``
    or ``columns`` + ``data``) with ``targets``; numpy arrays and scalars become JSON lists and numbers."""
    if (dataset is None) == (not rows):
        raise ValueError("evaluate takes a data set or inline rows with targets, not both or neither")
    body: dict[str, Any] = {"dataset_id": ident(dataset)} if dataset is not None else {
        k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in rows.items()}
    if importance:
        body["importance"] = True
    return body


def as_frame(items: list[dict[str, Any]], as_frame: bool | None):
    """A pandas DataFrame of per-epoch dicts when asked (or, by default, when pandas is installed)."""
    if as_frame is False:
        return items
    try:
        import pandas as pd
    except ImportError:
        if as_frame:
            raise
        return items
    return pd.DataFrame(items)
