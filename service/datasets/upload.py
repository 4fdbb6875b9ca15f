"""Receive a dataset upload from the raw request stream: bounded, streamed to a temp file, nothing left behind."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
import re
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from service.bodies import body_chunks, check_length, read_body, too_large
from service.datasets.spool import Spool, UploadAborted
from service.errors import InvalidInput, UnsupportedMediaType

FORM_FIELDS = ("name", "target", "task", "delimiter", "na_values", "encoding", "decimal", "thousands",
               "categorical", "ignore", "max_categories", "drop_missing_target")
UNSTRIPPED_FIELDS = ("delimiter", "na_values", "thousands")     # a tab delimiter or a " " NA token must survive
STREAMED_KINDS = ("csv", "csv.gz")                 # parsed while they arrive (the others need the whole file)
MAX_FIELD_BYTES = 1 << 20                          # ignore/categorical may list thousands of column names
CSV_TYPES = {"text/csv", "application/csv", "text/comma-separated-values", "application/vnd.ms-excel",
             "text/tab-separated-values"}
NPZ_TYPES = {"application/x-npz", "application/zip", "application/x-zip-compressed"}
# file name endings -> kind (the longest ending wins: "data.csv.gz" is "csv.gz")
EXTENSIONS = {".csv": "csv", ".tsv": "csv", ".csv.gz": "csv.gz", ".tsv.gz": "csv.gz",
              ".npz": "npz", ".parquet": "parquet", ".pq": "parquet", ".arrow": "arrow", ".feather": "arrow",
              ".ipc": "arrow"}
CONTENT_TYPES = {**{t: "csv" for t in CSV_TYPES}, **{t: "npz" for t in NPZ_TYPES},
                 "application/vnd.apache.parquet": "parquet", "application/x-parquet": "parquet",
                 "application/vnd.apache.arrow.file": "arrow", "application/vnd.apache.arrow.stream": "arrow"}


@dataclass
class Upload:
    """What the client sent: a file on disk (csv/npz) with form fields, or a JSON body in memory."""

    kind: str                                # "csv" | "csv.gz" | "parquet" | "arrow" | "npz" | "json"
    fields: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    filename: str | None = None
    body: bytes | bytearray | None = None
    size_bytes: int = 0
    spool: Spool | None = None               # the file part while it arrives (streamed kinds)
    parsed: Any = None                       # what ``parse`` returned while the file arrived
    parse_error: BaseException | None = None # what it raised instead

    def cleanup(self) -> None:
        """Remove the temporary files: the upload's, and X's of a parse that was not stored (idempotent)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None
        _discard(self.parsed)


def _discard(result: Any) -> None:
    """Remove the temporary X file of a parse result that will not be stored."""
    if isinstance(result, tuple) and len(result) == 2 and hasattr(result[1], "discard"):
        result[1].discard()


def file_kind(filename: str | None, content_type: str | None) -> str:
    """The kind of file from the name's ending, else from the part's content type; 415 otherwise."""
    lower = (filename or "").lower()
    for ext in sorted(EXTENSIONS, key=len, reverse=True):
        if lower.endswith(ext):
            return EXTENSIONS[ext]
    ext = os.path.splitext(lower)[1]
    ctype = (content_type or "").split(";")[0].strip().lower()
    if not ext and ctype in CONTENT_TYPES:
        return CONTENT_TYPES[ctype]
    raise UnsupportedMediaType(f"unsupported file type {filename or ctype or 'unknown'!r}: upload a .csv, .csv.gz, "
                               f".parquet, .arrow / .feather file (header row / named columns) or an .npz file "
                               f"with arrays X and y")


def _param(header: str, key: str) -> str | None:
    """A Content-Disposition parameter: ``key*=UTF-8''...`` (RFC 5987) first, else ``key="..."`` as raw UTF-8."""
    _, opts = parse_options_header(header)
    for seg in header.split(";")[1:]:
        k, _, v = seg.strip().partition("=")
        if k.strip().lower() == key + "*":
            charset, _, rest = v.strip().strip('"').partition("'")
            _, _, quoted = rest.partition("'")
            try:
                return urllib.parse.unquote(quoted, encoding=charset or "utf-8", errors="strict")
            except (LookupError, UnicodeDecodeError):
                raise InvalidInput(f"Content-Disposition {key}* is not valid {charset or 'UTF-8'}") from None
    raw = opts.get(key.encode())
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")          # clients send names in any script as raw UTF-8 (HTML5 forms, httpx)
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    # browsers escape '"', LF and CR in a multipart name as %22, %0A, %0D (WHATWG HTML, "multipart/form-data
    # encoding algorithm"); curl escapes with a backslash, which parse_options_header already undid
    return _WHATWG_ESCAPES.sub(lambda m: _WHATWG_CHARS[m.group(0).upper()], text) if "%" in text else text


_WHATWG_CHARS = {"%22": '"', "%0A": "\n", "%0D": "\r"}
_WHATWG_ESCAPES = re.compile("%22|%0[AaDd]")


async def receive(request: Request, *, max_bytes: int, tmp_dir: Path,
                  parse: Callable[[Upload], Any] | None = None) -> Upload:
    """Read the request body: multipart/form-data (file + fields) or application/json; 413/415/422 on problems.

    With ``parse``, a CSV file part is parsed by it in a thread while it arrives (the fields sent before the file
    apply); its result or error is kept on the Upload. A field sent after the file discards that parse.
    """
    ctype_raw = request.headers.get("content-type", "")
    ctype, params = parse_options_header(ctype_raw)
    ctype = ctype.decode("latin-1").lower()
    if ctype == "application/json" or ctype.endswith("+json"):
        body = await read_body(request, max_bytes=max_bytes)
        return Upload(kind="json", body=body, size_bytes=len(body))
    if ctype != "multipart/form-data":
        raise UnsupportedMediaType(f"unsupported Content-Type {ctype or 'none'!r}: send multipart/form-data with a "
                                   f"'file' part (.csv, .csv.gz, .parquet, .arrow, .npz), or application/json {{name, X, y, task}}")
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidInput("multipart/form-data request without a boundary")
    check_length(request, max_bytes)
    early: list[asyncio.Future] = []
    length = request.headers.get("content-length", "")
    reader = _MultipartReader(tmp_dir, None if parse is None else lambda u: early.append(_parse_in_thread(u, parse)),
                              expected=int(length) if length.isdigit() else None)
    try:
        upload = await _receive_multipart(request, boundary, max_bytes, reader)
    except BaseException:
        if reader.upload.spool is not None:
            reader.upload.spool.cancel()          # the parse thread stops at its next read
        for future in early:                      # its UploadAborted is expected: not logged as unretrieved
            future.add_done_callback(lambda f: f.cancelled() or f.exception() or _discard(f.result()))
        raise
    if early:
        if reader.stale:
            upload.spool.cancel()
        try:
            parsed = await early[0]
        except UploadAborted:
            pass
        except Exception as exc:                # noqa: BLE001 - handed to the service, which raises it
            if not reader.stale:
                upload.parse_error = exc
        else:
            if reader.stale:                    # it finished before the late field came: parsed again after
                _discard(parsed)
            else:
                upload.parsed = parsed
        upload.spool = None                     # the part is whole: a parse from now on reads the file
    return upload


def _parse_in_thread(upload: Upload, parse: Callable[[Upload], Any]) -> asyncio.Future:
    """Run ``parse`` on a snapshot of the upload (its fields so far) in its own thread; a future of the result."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    snapshot = dataclasses.replace(upload, fields=dict(upload.fields))

    def settle(result: Any, exc: BaseException | None) -> None:
        if not future.done():
            future.set_exception(exc) if exc is not None else future.set_result(result)

    def run() -> None:
        try:
            result, exc = parse(snapshot), None
        except BaseException as e:              # noqa: BLE001 - delivered to the awaiting request
            result, exc = None, e
        try:
            loop.call_soon_threadsafe(settle, result, exc)
        except RuntimeError:                    # the loop closed (shutdown): nobody waits for it
            pass

    threading.Thread(target=run, name="upload-parse", daemon=True).start()
    return future


class _MultipartReader:
    """python-multipart callbacks that stream the 'file' part to a temp file and collect the form fields."""

    def __init__(self, tmp_dir: Path, on_file: Callable[[Upload], None] | None = None,
                 expected: int | None = None) -> None:
        self.tmp_dir = tmp_dir
        self.expected = expected                     # the body's Content-Length: about the file part's size
        self.on_file = on_file
        self.stale = False                           # a form field came after the file part began
        self.upload = Upload(kind="")
        self.fh = None
        self.headers: dict[str, str] = {}
        self.name: str | None = None
        self.value: bytearray | None = None          # None while inside the file part
        self.complete = False
        self.header_field = bytearray()
        self.header_value = bytearray()

    def callbacks(self) -> dict:
        """The parser's callback table."""
        return {"on_part_begin": self.on_part_begin, "on_header_field": self.on_header_field,
                "on_header_value": self.on_header_value, "on_header_end": self.on_header_end,
                "on_headers_finished": self.on_headers_finished, "on_part_data": self.on_part_data,
                "on_part_end": self.on_part_end, "on_end": self.on_end}

    def on_part_begin(self) -> None:
        """Start a part with no headers."""
        self.headers = {}
        self.header_field.clear()
        self.header_value.clear()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        """Collect a header name."""
        self.header_field.extend(data[start:end])

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        """Collect a header value."""
        self.header_value.extend(data[start:end])

    def on_header_end(self) -> None:
        """Store one header of the part."""
        # latin-1 keeps every byte; _param decodes names as UTF-8 (a str with non-latin-1 characters would
        # make python-multipart's parse_options_header fail)
        self.headers[bytes(self.header_field).lower().decode("latin-1")] = bytes(self.header_value).decode("latin-1")
        self.header_field.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        """Open the temp file for the 'file' part, or a buffer for a known form field; 415/422 otherwise."""
        disposition = self.headers.get("content-disposition", "")
        name = _param(disposition, "name") or ""
        filename = _param(disposition, "filename")
        self.name = name
        if name == "file":
            upload = self.upload
            if upload.kind:
                raise InvalidInput("send exactly one 'file' part")
            upload.filename = filename
            upload.kind = file_kind(upload.filename, self.headers.get("content-type", "").strip())
            fd, tmp = tempfile.mkstemp(prefix="upload-", suffix="." + upload.kind, dir=self.tmp_dir)
            upload.path = Path(tmp)
            self.fh = os.fdopen(fd, "wb", buffering=0)    # each write visible to the spool's reader at once
            self.value = None
            if self.on_file is not None and upload.kind in STREAMED_KINDS:
                upload.spool = Spool(upload.path, expected=self.expected)
                self.on_file(upload)
        elif name in FORM_FIELDS:
            if filename is not None:
                raise InvalidInput(f"form field {name!r} must be a plain value, not a file")
            self.value = bytearray()
        else:
            raise InvalidInput(f"unknown form field {name!r}; expected file, {', '.join(FORM_FIELDS)}")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        """Write file bytes to disk, or append to the field's bounded buffer."""
        if self.value is None:
            view = memoryview(data)[start:end]
            while view:
                view = view[self.fh.write(view):]
            self.upload.size_bytes += end - start
            if self.upload.spool is not None:
                self.upload.spool.grew(self.upload.size_bytes)
        else:
            self.value.extend(data[start:end])
            if len(self.value) > MAX_FIELD_BYTES:
                raise InvalidInput(f"form field {self.name!r} is longer than {MAX_FIELD_BYTES} bytes")

    def on_part_end(self) -> None:
        """Close the file part, or decode the field as UTF-8 text."""
        if self.value is None:
            self.close()
            if self.upload.spool is not None:
                self.upload.spool.end("done")
        else:
            self.stale = self.stale or (self.upload.spool is not None and self.name != "name")
            try:
                value = self.value.decode("utf-8")
                self.upload.fields[self.name] = value if self.name in UNSTRIPPED_FIELDS else value.strip()
            except UnicodeDecodeError:
                raise InvalidInput(f"form field {self.name!r} is not UTF-8 text") from None

    def on_end(self) -> None:
        """The closing boundary arrived."""
        self.complete = True

    def close(self) -> None:
        """Close the temp file if open (idempotent)."""
        if self.fh is not None:
            self.fh.close()
            self.fh = None


async def _receive_multipart(request: Request, boundary: bytes, max_bytes: int,
                             reader: _MultipartReader) -> Upload:
    """Stream a multipart body through the parser, bounded by ``max_bytes``; the temp file is removed on failure."""
    upload = reader.upload
    parser = MultipartParser(boundary, reader.callbacks())
    received = 0
    try:
        async for chunk in body_chunks(request):
            received += len(chunk)
            if received > max_bytes:
                raise too_large(max_bytes)
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        upload.cleanup()
        raise InvalidInput(f"malformed multipart body: {exc}") from None
    except BaseException:
        upload.cleanup()
        raise
    finally:
        reader.close()
    if not upload.kind:
        raise InvalidInput("multipart upload needs a 'file' part (.csv, .csv.gz, .parquet, .arrow or .npz)")
    if not reader.complete:  # a body cut short (a dropped chunked upload) is not a whole file
        upload.cleanup()
        raise InvalidInput("malformed multipart body: it ended before its closing boundary (the upload was cut "
                           "short); send the whole body")
    return upload
