"""Reading request bodies: the whole body within a byte limit, and JSON rows of numbers as float32 arrays.

Shared by every route that takes a body (uploads, predict, the JSON routes' GuardedRoute); errors name the limit,
row and column.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import orjson
from starlette.requests import Request

from service.errors import InvalidInput, RequestTimeout, TooLarge


class ParseError(ValueError):
    """The uploaded data is invalid; the message says where and why."""


def too_large(limit: int, what: str = "upload") -> TooLarge:
    """The 413 for a body over ``limit`` bytes, naming the setting."""
    return TooLarge(f"{what} exceeds the limit of {limit:,} bytes (MLP_MAX_UPLOAD_BYTES)")


def declared_over(request: Request, limit: int) -> bool:
    """Whether the request's Content-Length already says its body is over ``limit`` bytes."""
    length = request.headers.get("content-length")
    return length is not None and length.isdigit() and int(length) > limit


def check_length(request: Request, limit: int, what: str = "upload") -> None:
    """Refuse (413) a request whose Content-Length already says it is over ``limit``."""
    if declared_over(request, limit):
        raise too_large(limit, what)


async def body_chunks(request: Request) -> AsyncIterator[bytes]:
    """The request body's chunks as they arrive, cut off with a 408 that names the limit when it stalls for
    MLP_BODY_READ_TIMEOUT_SECONDS, or arrives slower than MLP_BODY_MIN_RATE_BYTES_PER_SECOND: the whole body
    must be in within the stall timeout plus one second per that many bytes (Apache's RequestReadTimeout
    ``body=...,MinRate=...``), so a client trickling a byte at a time cannot hold a request open."""
    settings = getattr(request.app.state, "settings", None)
    idle = getattr(settings, "body_read_timeout_seconds", None)
    rate = getattr(settings, "body_min_rate_bytes_per_second", None)
    loop = asyncio.get_running_loop()
    start = loop.time()
    received = 0
    chunks = request.stream().__aiter__()
    while True:
        timeout, stalled = idle, True
        if idle is not None and rate:
            left = start + idle + received / rate - loop.time()
            if left < idle:
                timeout, stalled = max(left, 0.0), False
        try:
            async with asyncio.timeout(timeout):    # a timer, not a task per chunk as 3.11's wait_for
                chunk = await chunks.__anext__()
        except StopAsyncIteration:
            return
        except TimeoutError:
            if stalled:
                raise RequestTimeout(f"the request body stalled: no bytes for {idle:g} s after {received:,} bytes "
                                     "(MLP_BODY_READ_TIMEOUT_SECONDS)") from None
            raise RequestTimeout(f"the request body arrived too slowly: {received:,} bytes in "
                                 f"{loop.time() - start:.1f} s; a body gets {idle:g} s plus one second per "
                                 f"{rate:g} bytes (MLP_BODY_READ_TIMEOUT_SECONDS, "
                                 "MLP_BODY_MIN_RATE_BYTES_PER_SECOND)") from None
        received += len(chunk)
        yield chunk


async def read_bounded(request: Request, limit: int, error: Callable[[], TooLarge]) -> bytearray:
    """The whole request body in memory; ``error()`` is raised from Content-Length or as soon as it passes ``limit``."""
    if declared_over(request, limit):
        raise error()
    body = bytearray()
    async for chunk in body_chunks(request):
        body += chunk
        if len(body) > limit:
            raise error()
    return body


async def read_body(request: Request, *, max_bytes: int, what: str = "upload") -> bytearray:
    """The whole request body in memory, refused (413) as soon as it passes ``max_bytes``."""
    return await read_bounded(request, max_bytes, lambda: too_large(max_bytes, what))


def parse_json(body: bytes | bytearray) -> Any:
    """orjson's parse, or 422 naming the position (NaN, Infinity and lone surrogates are not JSON)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        at = bytes(body[exc.pos:exc.pos + 9]).lstrip(b"-")
        if at.startswith((b"NaN", b"Infinity")):
            raise InvalidInput(f"the body is not valid JSON: NaN and Infinity are not JSON numbers "
                               f"(line {exc.lineno} column {exc.colno})") from None
        raise InvalidInput(f"the body is not valid JSON: {exc}") from None


def rows_to_float32(rows: Any, *, name: str, width: int | None = None) -> np.ndarray:
    """A JSON list of equal-length number lists -> float32 (n, d); errors name the row and column."""
    if not isinstance(rows, list):
        raise ParseError(f"{name} must be a list of rows (lists of numbers), got {type(rows).__name__}")
    if not rows:
        raise ParseError(f"{name} is empty: send at least one row")
    X = None
    first = rows[0]
    if type(first) is list and first:
        d = len(first)
        if all(type(row) is list and len(row) == d for row in rows):
            # fast path: equal-length rows, so numpy converts the nested lists in one call
            try:
                with np.errstate(over="ignore", invalid="ignore"):
                    X = np.array(rows, dtype=np.float32)
            except (ValueError, TypeError, OverflowError):
                X = None
            if X is not None and X.ndim != 2:      # rows of equal-length lists (one level too deep)
                X = None
    if X is None:
        if not isinstance(first, list):
            raise ParseError(f"{name}[0] must be a list of numbers, got {json_type(first)}")
        d = len(first)
        if d == 0:
            raise ParseError(f"{name}[0] is empty: send at least one value per row")
        for i, row in enumerate(rows):
            if not isinstance(row, list):
                raise ParseError(f"{name}[{i}] must be a list of numbers, got {json_type(row)}")
            if len(row) != d:
                raise ParseError(f"{name}[{i}] has {len(row)} values but {name}[0] has {d} (ragged rows)")
            for j, v in enumerate(row):
                if not isinstance(v, (int, float)) or isinstance(v, bool):
                    raise ParseError(f"{name}[{i}][{j}] is not a number: {json_type(v)}")
        raise ParseError(f"{name} could not be read as a 2-D array of numbers")
    if width is not None and X.shape[1] != width:
        raise ParseError(f"{name} rows must have {width} values (the model's input width), got {X.shape[1]}")
    finite = np.isfinite(X)
    if not finite.all():
        i, j = (int(v) for v in np.argwhere(~finite)[0])
        v = rows[i][j]
        raise ParseError(f"{name}[{i}][{j}] is not a finite number: "
                         f"{'null' if v is None else json_type(v) if not isinstance(v, (int, float)) else v}")
    return X


def json_type(v: Any) -> str:
    """How a decoded JSON value is named in error messages (null, a list, an object, or its repr)."""
    if v is None:
        return "null"
    if isinstance(v, (bool, str)):
        return repr(v).lower() if isinstance(v, bool) else repr(v)
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return repr(v)
