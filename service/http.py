"""The route class of the JSON-body endpoints: who is calling is settled before a byte of the body is read.

FastAPI reads and parses a pydantic body before it resolves dependencies, so without this a client with no key
could make the server read and parse any amount of JSON before its 401. ``GuardedRoute`` instead, for a route
whose body FastAPI parses: (1) authenticates (``service.auth.authenticate``), (2) reads the body up to
``MLP_MAX_JSON_BODY_BYTES`` (413 beyond, refused from ``Content-Length`` before reading when it says so),
(3) parses it with orjson, which refuses NaN/Infinity literals and lone surrogates (422), in a worker thread
when the body is large, so the event loop never parses a big body. FastAPI then validates the parsed value.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from service.bodies import parse_json, read_bounded
from service.errors import TooLarge

INLINE_PARSE_BYTES = 64 * 1024  # JSON bodies up to this size are parsed on the event loop (well under 1 ms)


async def read_limited(request: Request, limit: int, setting: str) -> bytes:
    """The whole body, refused (413, naming ``setting``) as soon as it passes ``limit`` bytes."""
    def too_large() -> TooLarge:
        return TooLarge(f"the body exceeds the limit of {limit:,} bytes for {request.method} {request.url.path} "
                        f"({setting})")

    return bytes(await read_bounded(request, limit, too_large))


class GuardedRoute(APIRoute):
    """An APIRoute that authenticates, bounds and parses a JSON body before FastAPI's own body handling."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:  # no body for FastAPI to parse (or the endpoint reads it itself)
            return handler

        async def guarded(request: Request) -> Response:
            from service.auth import authenticate

            await authenticate(request)
            settings = request.app.state.settings
            body = await read_limited(request, settings.max_json_body_bytes, "MLP_MAX_JSON_BODY_BYTES")
            request._body = body
            if body:
                ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
                if ctype == "application/json" or ctype.endswith("+json"):
                    request._json = (parse_json(body) if len(body) <= INLINE_PARSE_BYTES
                                     else await run_in_threadpool(parse_json, body))
            return await handler(request)

        return guarded
