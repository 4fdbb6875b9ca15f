"""The HTTP protocol of ``mlp-service serve``: uvicorn's httptools protocol with the guards uvicorn lacks.

- Header read timeout: a request whose head (request line and headers) is not complete within
  ``MLP_HEADER_READ_TIMEOUT_SECONDS`` of the connection (first request) or of its first byte (later requests)
  is answered 408 and the connection closed; a connection that sent nothing is closed. A client trickling
  headers (slowloris) holds a connection for that long, not forever.
- Connection limit: past ``MLP_MAX_CONNECTIONS`` open connections (or that many requests in flight) a request
  is answered 503 naming the setting, with ``Retry-After`` and ``Connection: close``; ``GET /healthz`` is still
  answered (then the connection closes), so a liveness probe does not restart a server that is only busy.
- A request that is not valid HTTP/1.1 (an absurd ``Content-Length``, a bad header) gets a JSON 400 naming what
  the parser found, as every other error, instead of uvicorn's plain-text one.
- Request body bytes are handed to the application as received: uvicorn appends each piece to a bytearray
  and copies it into ``bytes`` for every ASGI message (two copies of every byte of an upload, ~0.03 CPU-s per
  100 MB); here the pieces are kept as they came and one that is alone in its message is passed on as it is.
- A body nobody reads: when the response is sent before the request body has all arrived (a 401 before the
  body, a route without one), the rest may take ``MLP_BODY_READ_TIMEOUT_SECONDS`` to arrive, then the
  connection closes (uvicorn discards it byte by byte, each byte restarting its keep-alive timer, forever).

Bodies that the application reads are bounded in ``service.bodies`` (stall timeout and minimum rate, 408).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

LIVENESS_PATHS = frozenset({"/healthz"})


def _json_head(status: bytes, body: bytes, extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\n" + extra + b"connection: close\r\n\r\n" + body)


class _Pieces:
    """What uvicorn's request cycle uses as its body buffer (``body += piece``, ``len(body)``, ``bytes(body)``),
    keeping the pieces: ``bytes()`` of a single piece is that piece, not a copy."""

    __slots__ = ("pieces", "size")

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.size = 0

    def __iadd__(self, piece: bytes) -> "_Pieces":
        self.pieces.append(piece)
        self.size += len(piece)
        return self

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        return self.pieces[0] if len(self.pieces) == 1 and type(self.pieces[0]) is bytes else b"".join(self.pieces)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's HttpToolsProtocol with a header read timeout, a connection limit and a bound on unread bodies."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int | None = None

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.limit_concurrency = None  # the limit is checked here (uvicorn's 503 is plain text and keeps the conn)
        self._served_app = self.app
        self._timer: asyncio.TimerHandle | None = None
        self._head_started = False

    @classmethod
    def configured(cls, settings) -> type["GuardedHttpProtocol"]:
        """A subclass carrying ``settings``' timeouts and connection limit (uvicorn instantiates it per connection)."""
        return type(cls.__name__, (cls,), {"header_timeout": settings.header_read_timeout_seconds,
                                           "body_timeout": settings.body_read_timeout_seconds,
                                           "max_connections": settings.max_connections})

    # -- one timer per connection: the head of a request, or the rest of a body nobody reads ------------------
    def _arm(self, seconds: float, callback) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_started = True
        if self._timer is None:
            self._arm(self.header_timeout, self._head_timed_out)

    def on_headers_complete(self) -> None:
        self._disarm()
        self._head_started = False
        busy = self._over_limit()
        self.app = self._busy_app if busy else self._served_app
        super().on_headers_complete()
        if busy and self.cycle is not None:
            self.cycle.keep_alive = False  # /healthz answered past the limit: then the connection closes

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if cycle is not None and type(cycle.body) is bytearray and not cycle.body:
            cycle.body = _Pieces()          # uvicorn's receive() puts a fresh bytearray back after each message
        super().on_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self._timer is not None and self.cycle is not None and self.cycle.response_complete:
            # the unread body finished arriving: the connection is idle again, under uvicorn's keep-alive timer
            self._disarm()
            if not self.transport.is_closing():
                self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                                    self.timeout_keep_alive_handler)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        cycle = self.cycle  # the newest request: the one answered, unless a pipelined one is already parsed
        if cycle is not None and cycle.response_complete and cycle.more_body and not self.transport.is_closing():
            self._arm(self.body_timeout, self._close)

    def _close(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def _head_timed_out(self) -> None:
        """408 for a request whose head is still incomplete; a connection that sent nothing just closes."""
        self._timer = None
        if self.transport.is_closing():
            return
        if self._head_started and (self.cycle is None or self.cycle.response_complete):
            body = orjson.dumps({"detail": f"the request head (request line and headers) was not complete "
                                           f"within {self.header_timeout:g} s (MLP_HEADER_READ_TIMEOUT_SECONDS)"})
            self.transport.write(_json_head(b"408 Request Timeout", body))
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """A request that is not valid HTTP/1.1 (uvicorn calls this inside its ``except HttpParserError``): a JSON
        400 naming what the parser found (``Content-Length overflow``, ``Invalid header token``), then close."""
        exc = sys.exc_info()[1]
        found = str(exc) if exc is not None and str(exc) else msg.rstrip(".")
        body = orjson.dumps({"detail": f"the request is not valid HTTP/1.1: {found}"})
        self.transport.write(_json_head(b"400 Bad Request", body))
        self.transport.close()

    # -- connection limit -------------------------------------------------------------------------------------
    def _over_limit(self) -> bool:
        limit = self.max_connections
        return limit is not None and (len(self.connections) > limit or len(self.tasks) >= limit)

    async def _busy_app(self, scope, receive, send) -> None:
        """503 past MLP_MAX_CONNECTIONS; /healthz is still answered by the application."""
        if scope["path"] in LIVENESS_PATHS:
            await self._served_app(scope, receive, send)
            return
        body = orjson.dumps({"detail": f"the server is at its limit of {self.max_connections:,} connections "
                                       "(MLP_MAX_CONNECTIONS); retry later"})
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"retry-after", b"1"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
