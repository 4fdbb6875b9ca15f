"""What the sync and the async client share: retries, error mapping, request bodies, the SSE parser and where a
dropped event stream resumes."""

from __future__ import annotations

import csv
import datetime
import decimal
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
def page_params(limit: int, offset: int, **filters: str | None) -> dict[str, Any]:
    """The query of a list endpoint: ``limit``, ``offset`` and the filters given (``status``, ``job_id``)."""
    return {"limit": limit, "offset": offset, **{k: v for k, v in filters.items() if v}}


def sweep_body(dataset: Any, body: dict[str, Any]) -> dict[str, Any]:
    """The JSON of ``POST /v1/sweeps``: ``dataset`` (an object or its id) as ``dataset_id``, then the fields of
    ``body``, a ``validation_dataset`` object or id given as ``validation_dataset_id``."""
    body = dict(body)
    if "validation_dataset" in body:
        val = body.pop("validation_dataset")
        body["validation_dataset_id"] = ident(val) if val is not None else None
    return {"dataset_id": ident(dataset), **body}


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
# Values JSON has no form for, written as text the way DataFrame.to_csv writes them in an object column (str()):
# datetime.datetime and pd.Timestamp are dates, pd.Timedelta a timedelta.
_TEXT_TYPES = (datetime.date, datetime.time, datetime.timedelta)
_TEXT_TYPE_NAMES = frozenset({"Period", "Interval"})


def _is_missing(value: Any) -> bool:
    return type(value).__name__ in ("NAType", "NaTType")


def _cell(value: Any) -> Any:
    """One predict cell as JSON carries it, as the server reads what ``upload_dataset`` sent.

    numpy scalars become Python ones; ``None``, NaN, ``pd.NA`` and ``NaT`` are null (a missing value); a
    ``decimal.Decimal`` is a number (float64; its NaN null); dates, times, datetimes (``pd.Timestamp`` too, naive
    or with a time zone), durations (``datetime.timedelta``, ``pd.Timedelta``), ``pd.Period`` and ``pd.Interval`` are
    their ``str()``: the text ``DataFrame.to_csv`` writes for them in an object column, which an upload of the
    frame stored as a category (``2024-01-31``, ``2024-01-31 10:00:00+01:00``, ``0 days 01:00:00``). Lists and
    dicts are left to JSON (the server refuses them in a cell).

    Raises
    ------
    TypeError
        Any other object (bytes, sets, user classes): JSON has no form for it; convert it first.
    """
    if value is None or isinstance(value, (str, int)):          # bool is an int
        return value
    if isinstance(value, float):
        return None if value != value else value
    if _is_missing(value):                                      # before the dates: pd.NaT is a datetime
        return None
    if isinstance(value, (np.datetime64, np.timedelta64)):
        return None if np.isnat(value) else _numpy_time_text(value)
    if isinstance(value, np.generic):
        return _cell(value.item())
    if isinstance(value, decimal.Decimal):
        return None if value.is_nan() else float(value)
    if isinstance(value, _TEXT_TYPES) or type(value).__name__ in _TEXT_TYPE_NAMES:
        return str(value)
    if isinstance(value, (list, tuple, dict)):
        return value
    raise TypeError(f"a value of type {type(value).__name__} ({str(value)[:40]!r}) has no JSON form; convert it "
                    "to a number or text first")


def _numpy_time_text(value: Any) -> str:
    """A numpy datetime64/timedelta64 scalar as pandas writes it (``2024-01-31 10:00:00``), ISO text without
    pandas."""
    try:
        import pandas as pd
    except ImportError:     # pragma: no cover - pandas is installed with the server's extras
        return str(value)
    return str(pd.Timestamp(value) if isinstance(value, np.datetime64) else pd.Timedelta(value))


def _json_default(value: Any) -> Any:
    out = _cell(value)
    if out is value:        # a value _cell keeps as is (never reached for JSON's own types): no loop
        raise TypeError(f"a value of type {type(value).__name__} has no JSON form")
    return out


def _dumps(doc: dict) -> bytes:
    return json.dumps(doc, separators=(",", ":"), default=_json_default).encode()


def _written_as_text(dtype: Any) -> bool:
    """Whether ``DataFrame.to_csv`` writes a column of this pandas dtype as formatted text that depends on the
    whole column (datetime64 with or without a time zone: ``2024-01-31`` when every value is a midnight, else
    ``2024-01-31 10:00:00`` with as many decimals as the column needs; timedelta64; period; interval; Arrow
    timestamps, dates and durations; a categorical of those)."""
    if getattr(dtype, "kind", "O") in "Mm":
        return True
    name = type(dtype).__name__
    if name == "CategoricalDtype":
        return _written_as_text(dtype.categories.dtype)
    return name in ("PeriodDtype", "IntervalDtype")


def _csv_texts(frame: Any, n_columns: int) -> list[list[str | None]]:
    """The columns of ``frame`` as ``to_csv`` writes them (empty = missing -> None), column by column.

    ``to_csv`` formats a datetime column per chunk of rows (``100,000 // columns`` rows), so the chunk is that of
    the whole frame of ``n_columns`` columns: the text equals what ``upload_dataset(df)`` sent, cell for cell."""
    text = frame.to_csv(index=False, header=False, chunksize=max(100_000 // max(n_columns, 1), 1))
    rows = list(csv.reader(io.StringIO(text)))
    return [[cell if cell != "" else None for cell in col] for col in zip(*rows)] if rows else \
        [[] for _ in range(frame.shape[1])]


def _cells(values: Iterable[Any], column: Any) -> list:
    try:
        return [_cell(v) for v in values]
    except TypeError as exc:
        raise TypeError(f"column {str(column)!r}: {exc}") from None


def frame_columns(df: Any) -> list[list]:
    """A DataFrame's columns as lists of JSON cells (``_cell``), each written as ``upload_dataset(df)`` wrote it.

    Columns whose text ``to_csv`` formats over the whole column (``_written_as_text``: datetime64, timedelta64, ...)
    are that text (NaT -> null), so a frame that was uploaded is predicted with the categories it stored; other
    columns cell by cell. Returns one list of ``len(df)`` cells per column, in the frame's order.

    Raises
    ------
    TypeError
        A cell JSON cannot carry (``_cell``), naming its column.
    """
    n = df.shape[1]
    out: list[list | None] = [None] * n
    text = [j for j in range(n) if _written_as_text(df.dtypes.iloc[j])]
    if text:
        for j, col in zip(text, _csv_texts(df.iloc[:, text], n)):
            out[j] = col
    for j in range(n):
        if out[j] is None:
            out[j] = _cells(df.iloc[:, j].tolist(), df.columns[j])
    return out


def value_columns(names: list, columns: list[list]) -> list[list]:
    """Columns of plain Python values (records, ``columns`` + ``data``) as lists of JSON cells (``_cell``).

    A column holding a date, datetime or duration is formatted as pandas (when installed) types it from the
    values, i.e. as ``upload_dataset(pd.DataFrame(records))`` would have written it (``pd.Timestamp`` midnights as
    ``2024-01-31``, as ``df.to_dict("records")`` gives them back); without pandas each such value is its ``str()``.
    """
    out = []
    for name, values in zip(names, columns):
        cells = None
        if any(isinstance(v, (_TEXT_TYPES, np.datetime64, np.timedelta64)) for v in values):
            try:
                import pandas as pd
            except ImportError:     # pragma: no cover - pandas is installed with the server's extras
                pd = None
            if pd is not None:
                series = pd.Series(values, dtype=None if any(v is not None for v in values) else object)
                if _written_as_text(series.dtype):
                    cells = _csv_texts(series.to_frame(), len(names))[0]
        out.append(cells if cells is not None else _cells(values, name))
    return out


def records_cells(records: list[dict]) -> list[dict]:
    """``records`` with every value a JSON cell (``value_columns``); a key absent from a record stays absent."""
    names = list(dict.fromkeys(k for rec in records for k in rec))
    columns = [[rec.get(k) for rec in records] for k in names]
    cols = value_columns(names, columns)
    return [{k: cols[j][i] for j, k in enumerate(names) if k in rec} for i, rec in enumerate(records)]


def predict_bodies(X: Any) -> Iterator[bytes]:
    """JSON bodies of POST /v1/models/{id}/predict, PREDICT_CHUNK_ROWS rows each.

    Arrays go as ``{"inputs": rows}``; a DataFrame as ``{"columns", "data"}`` and records as
    ``{"records"}``, every column as it is: the server matches them by name, leaves out the training target and
    the columns the data set ignored, and refuses any other name it does not know (a typo is never dropped
    silently here). Cells are encoded by ``_cell`` / ``frame_columns``: dates, datetimes and durations as the text
    ``upload_dataset`` wrote for them (what the server stored as categories), Decimals as numbers, NaT as null.

    Raises
    ------
    TypeError
        A cell JSON cannot carry, naming its column.
    """
    if _is_dataframe(X):
        cols = [str(c) for c in X.columns]
        data = [list(row) for row in zip(*frame_columns(X))] if cols else [[] for _ in range(len(X))]
        for start in range(0, len(data), PREDICT_CHUNK_ROWS):
            yield _dumps({"columns": cols, "data": data[start:start + PREDICT_CHUNK_ROWS]})
        return
    if isinstance(X, dict) or (isinstance(X, list) and X and isinstance(X[0], dict)):
        clean = records_cells([X] if isinstance(X, dict) else X)
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
    or ``columns`` + ``data``) with ``targets``; numpy arrays and scalars become JSON lists and numbers, and the
    cells of ``records`` and ``data`` are encoded as predict's are (``value_columns``: dates as the text an upload
    stored, Decimals as numbers, NaT as null). Malformed rows are left for the server's 422."""
    if (dataset is None) == (not rows):
        raise ValueError("evaluate takes a data set or inline rows with targets, not both or neither")
    body: dict[str, Any] = {"dataset_id": ident(dataset)} if dataset is not None else {
        k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in rows.items()}
    records, names, data = body.get("records"), body.get("columns"), body.get("data")
    if isinstance(records, dict) or (isinstance(records, list) and records and
                                     all(isinstance(r, dict) for r in records)):
        body["records"] = records_cells([records] if isinstance(records, dict) else records)
    if isinstance(names, list) and isinstance(data, list) and data and \
            all(isinstance(r, (list, tuple)) and len(r) == len(names) for r in data):
        body["data"] = [list(r) for r in zip(*value_columns(names, [list(c) for c in zip(*data)]))]
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
