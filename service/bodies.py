"""Reading request bodies: the whole body within a byte limit, and JSON rows of numbers as float32 arrays.

Shared by every route that takes a body (uploads, predict, the JSON routes' GuardedRoute); errors name the limit,
row and column.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator, Callable
from itertools import chain
from typing import Any

import numpy as np
import orjson
import simdjson
from starlette.requests import ClientDisconnect, Request

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
    receive = request.receive       # the ASGI messages themselves: a body sent whole is one message, one timer
    more = True
    while more:
        timeout, stalled = idle, True
        if idle is not None and rate:
            left = start + idle + received / rate - loop.time()
            if left < idle:
                timeout, stalled = max(left, 0.0), False
        try:
            async with asyncio.timeout(timeout):    # a timer, not a task per chunk as 3.11's wait_for
                message = await receive()
        except TimeoutError:
            if stalled:
                raise RequestTimeout(f"the request body stalled: no bytes for {idle:g} s after {received:,} bytes "
                                     "(MLP_BODY_READ_TIMEOUT_SECONDS)") from None
            raise RequestTimeout(f"the request body arrived too slowly: {received:,} bytes in "
                                 f"{loop.time() - start:.1f} s; a body gets {idle:g} s plus one second per "
                                 f"{rate:g} bytes (MLP_BODY_READ_TIMEOUT_SECONDS, "
                                 "MLP_BODY_MIN_RATE_BYTES_PER_SECOND)") from None
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        more = message.get("more_body", False)
        chunk = message.get("body", b"")
        if chunk:
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


def rows_to_float32(rows: Any, *, name: str, width: int | None = None, strict: bool = False) -> np.ndarray:
    """A JSON list of equal-length number lists -> float32 (n, d); errors name the row and column. ``strict``:
    only JSON numbers (numpy would also take the text "0.5" and the booleans true/false as numbers), as
    predict by name takes them; ``inputs[0][1] is not a number: '0.5'``."""
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
            if X is not None and strict and not _NUMBER_TYPES.issuperset(map(type, chain.from_iterable(rows))):
                X = None                             # a string or boolean: named below
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


def float32_text(v: float) -> float:
    """A float32 value as the shortest decimal that reads back as it: 32.1, not 32.099998474121094 (what the
    float32 nearest 32.1 is in float64). For answers that show stored float32 values."""
    return float(str(np.float32(v)))


_NUMBER_TYPES = frozenset((int, float, type(None)))   # null: named as "not a finite number" below


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


# ----------------------------------------------------------------------------- big arrays of numbers in JSON

FAST_MIN_BYTES = 16 * 1024   # smaller bodies are parsed by orjson alone (one-row predicts are unchanged)
NUMBERS = "#numbers#"        # stands for the array in the rest of the body that orjson parses
_NUMBERS_TOKEN = b'"#numbers#"'   # starts with '"#': never valid JSON if it lands inside a string
_KEEP_PARSER_BYTES = 32 * 2**20   # a parser that read a bigger body is not kept (its buffers grow to fit)
_idle_parsers: list[simdjson.Parser] = []
_idle_lock = threading.Lock()
_WS = b" \t\r\n"


def numbers_at(body: bytes | bytearray, path: tuple[str | int, ...]) -> tuple[Any, np.ndarray] | None:
    """The array of numbers at ``path`` in the JSON body (e.g. ``("inputs",)``; its last step a key) read
    straight into float64, and the rest of the body parsed by orjson with that array replaced by the string
    NUMBERS; None when the body is small or is not like that (the caller then parses the whole body with orjson
    as usual).

    The array is a flat list of numbers (-> shape (n,)) or a list of n equal-length lists of numbers
    (-> (n, d)); strings, booleans, nulls, objects, deeper or ragged nesting, integers beyond 64 bits and
    numbers beyond float64 all give None. simdjson reads each number as orjson does (the nearest float64, or
    an integer rounded to float64), so the values are those of orjson's Python numbers; the rest of the body
    (every other field) is orjson's own parse. Python floats are never built for the array: 8 MB of numbers
    take a quarter of the time orjson plus numpy take."""
    if len(body) < FAST_MIN_BYTES:
        return None
    m = re.search(rb'"' + path[-1].encode() + rb'"[ \t\r\n]*:[ \t\r\n]*\[', body)   # its first "key": [
    if m is None:
        return None
    s = m.end() - 1                                   # the array's '['; the text before it ends in ':' or space
    u8 = np.frombuffer(body, dtype=np.uint8)
    inner = s + 1
    while inner < len(body) and body[inner] in _WS:
        inner += 1
    nested = inner < len(body) and body[inner] == 0x5B
    if nested:
        e = _nested_end(body, u8, s)
        if e is None:
            return None
        opens = int(np.count_nonzero(u8[s:e] == 0x5B))
    else:
        e = body.find(b"]", s) + 1
        if e == 0 or body.find(b"[", s + 1, e) != -1:
            return None
        opens = 1
    values = _read_numbers(memoryview(body)[s:e], opens, nested)
    if values is None:
        return None
    rest = bytes(body[:s]) + _NUMBERS_TOKEN + bytes(body[e:])
    # Without \u escapes, a string NUMBERS at ``path`` can only be the token put there: the array was that value.
    if rest.count(NUMBERS.encode()) != 1 or b"\\u" in rest:
        return None
    try:
        doc = orjson.loads(rest)
    except orjson.JSONDecodeError:
        return None
    at = doc
    for step in path:
        if isinstance(step, int) and type(at) is list and 0 <= step < len(at) or type(at) is dict and step in at:
            at = at[step]
        else:
            return None
    return (doc, values) if at == NUMBERS else None


def _nested_end(body: bytes | bytearray, u8: np.ndarray, s: int) -> int | None:
    """End (exclusive) of the bracket that matches the '[' at ``s``, counting brackets only (strings in the
    array are refused later by the number check)."""
    last = body.rfind(b"]") + 1
    if bytes(body[last:]).strip(_WS) == b"}" and body.find(b'"', s, last) == -1:
        return last                                     # the array is the body's last value: {"inputs": [[...]]}
    seg = u8[s:]
    closes = np.flatnonzero(seg == 0x5D)
    opens = np.flatnonzero(seg == 0x5B)
    depth = np.searchsorted(opens, closes, side="right") - np.arange(1, len(closes) + 1)
    k = np.flatnonzero(depth == 0)
    return s + int(closes[k[0]]) + 1 if k.size else None


def _read_numbers(span: memoryview, opens: int, nested: bool) -> np.ndarray | None:
    """float64 values of a JSON array of numbers (or of equal-length rows of numbers), or None."""
    with _idle_lock:
        parser = _idle_parsers.pop() if _idle_parsers else simdjson.Parser()
    arr = None
    try:
        arr = parser.parse(span)
        n = len(arr)
        if n == 0:
            return None
        if nested:
            d = len(arr[0]) if type(arr[0]) is simdjson.Array else 0
            # n + 1 brackets and n rows of d: no row holds an array, so the flattened buffer is (n, d)
            if d == 0 or opens != n + 1 or not all(type(row) is simdjson.Array and len(row) == d for row in arr):
                return None
            shape: tuple[int, ...] = (n, d)
        else:
            shape = (n,)
        values = np.frombuffer(arr.as_buffer(of_type="d"), dtype=np.float64)   # TypeError on a non-number
        return values.reshape(shape) if values.size == int(np.prod(shape)) else None
    except (ValueError, RuntimeError, TypeError, KeyError, IndexError):   # not JSON, or not all numbers
        return None
    finally:
        del arr                                           # the parser is reusable once no proxy refers to it
        if len(span) <= _KEEP_PARSER_BYTES:
            with _idle_lock:
                if len(_idle_parsers) < 2:
                    _idle_parsers.append(parser)
