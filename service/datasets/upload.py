"""Receive a dataset upload from the raw request stream: bounded, streamed to a temp file, nothing left behind."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from service.errors import InvalidInput, TooLarge, UnsupportedMediaType

FORM_FIELDS = ("name", "target", "task")
MAX_FIELD_BYTES = 4096
CSV_TYPES = {"text/csv", "application/csv", "text/comma-separated-values", "application/vnd.ms-excel"}
NPZ_TYPES = {"application/x-npz", "application/zip", "application/x-zip-compressed"}


@dataclass
class Upload:
    """What the client sent: a file on disk (csv/npz) with form fields, or a JSON body in memory."""

    kind: str                                # "csv" | "npz" | "json"
    fields: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    filename: str | None = None
    body: bytes | bytearray | None = None
    size_bytes: int = 0

    def cleanup(self) -> None:
        """Remove the temporary file (idempotent)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


def _too_large(limit: int, what: str = "upload") -> TooLarge:
    return TooLarge(f"{what} exceeds the limit of {limit:,} bytes (MLP_MAX_UPLOAD_BYTES)")


def file_kind(filename: str | None, content_type: str | None) -> str:
    """'csv' or 'npz' from the file name's extension, else from the part's content type; 415 otherwise."""
    ext = os.path.splitext(filename or "")[1].lower()
    if ext == ".csv":
        return "csv"
    if ext == ".npz":
        return "npz"
    ctype = (content_type or "").split(";")[0].strip().lower()
    if not ext and ctype in CSV_TYPES:
        return "csv"
    if not ext and ctype in NPZ_TYPES:
        return "npz"
    raise UnsupportedMediaType(f"unsupported file type {filename or ctype or 'unknown'!r}: upload a .csv file "
                               f"(header row, comma-separated) or an .npz file with arrays X and y")


def _check_length(request: Request, limit: int, what: str = "upload") -> None:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise _too_large(limit, what)


async def read_body(request: Request, *, max_bytes: int, what: str = "upload") -> bytearray:
    """The whole request body in memory, refused (413) as soon as it passes ``max_bytes``."""
    _check_length(request, max_bytes, what)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise _too_large(max_bytes, what)
    return body


async def receive(request: Request, *, max_bytes: int, tmp_dir: Path) -> Upload:
    """Read the request body: multipart/form-data (file + fields) or application/json; 413/415/422 on problems."""
    ctype_raw = request.headers.get("content-type", "")
    ctype, params = parse_options_header(ctype_raw)
    ctype = ctype.decode("latin-1").lower()
    if ctype == "application/json" or ctype.endswith("+json"):
        body = await read_body(request, max_bytes=max_bytes)
        return Upload(kind="json", body=body, size_bytes=len(body))
    if ctype != "multipart/form-data":
        raise UnsupportedMediaType(f"unsupported Content-Type {ctype or 'none'!r}: send multipart/form-data with a "
                                   f"'file' part (.csv or .npz), or application/json {{name, X, y, task}}")
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidInput("multipart/form-data request without a boundary")
    _check_length(request, max_bytes)
    return await _receive_multipart(request, boundary, max_bytes, tmp_dir)


async def _receive_multipart(request: Request, boundary: bytes, max_bytes: int, tmp_dir: Path) -> Upload:
    state: dict = {"headers": {}, "field": None, "value": None, "name": None, "filename": None, "error": None}
    upload = Upload(kind="")
    fh = None
    header_field = bytearray()
    header_value = bytearray()

    def on_part_begin() -> None:
        state["headers"] = {}
        header_field.clear()
        header_value.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        # latin-1 keeps every byte: parse_options_header encodes it back, and names are decoded as UTF-8 below
        state["headers"][bytes(header_field).lower().decode("latin-1")] = bytes(header_value).decode("latin-1")
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        nonlocal fh
        disp, opts = parse_options_header(state["headers"].get("content-disposition", ""))
        name = opts.get(b"name", b"").decode("utf-8", "replace")
        filename = opts.get(b"filename")
        state["name"] = name
        if name == "file":
            if upload.kind:
                raise InvalidInput("send exactly one 'file' part")
            upload.filename = filename.decode("utf-8", "replace") if filename is not None else None
            upload.kind = file_kind(upload.filename, state["headers"].get("content-type", "").strip())
            fd, tmp = tempfile.mkstemp(prefix="upload-", suffix="." + upload.kind, dir=tmp_dir)
            upload.path = Path(tmp)
            fh = os.fdopen(fd, "wb")
            state["value"] = None
        elif name in FORM_FIELDS:
            if filename is not None:
                raise InvalidInput(f"form field {name!r} must be a plain value, not a file")
            state["value"] = bytearray()
        else:
            raise InvalidInput(f"unknown form field {name!r}; expected file, {', '.join(FORM_FIELDS)}")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["value"] is None:
            fh.write(data[start:end])
            upload.size_bytes += end - start
        else:
            state["value"].extend(data[start:end])
            if len(state["value"]) > MAX_FIELD_BYTES:
                raise InvalidInput(f"form field {state['name']!r} is longer than {MAX_FIELD_BYTES} bytes")

    def on_part_end() -> None:
        nonlocal fh
        if state["value"] is None:
            if fh is not None:
                fh.close()
                fh = None
        else:
            try:
                upload.fields[state["name"]] = state["value"].decode("utf-8").strip()
            except UnicodeDecodeError:
                raise InvalidInput(f"form field {state['name']!r} is not UTF-8 text") from None

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
        "on_part_end": on_part_end, "on_end": lambda: state.__setitem__("complete", True)})
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise _too_large(max_bytes)
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        upload.cleanup()
        raise InvalidInput(f"malformed multipart body: {exc}") from None
    except BaseException:
        upload.cleanup()
        raise
    finally:
        if fh is not None:
            fh.close()
    if not upload.kind:
        raise InvalidInput("multipart upload needs a 'file' part (.csv or .npz)")
    if not state.get("complete"):  # a body cut short (a dropped chunked upload) is not a whole file
        upload.cleanup()
        raise InvalidInput("malformed multipart body: it ended before its closing boundary (the upload was cut "
                           "short); send the whole body")
    return upload
