"""The service's exception hierarchy; create_app maps each class to its status code once."""

from __future__ import annotations

import reprlib
from typing import Any


class ServiceError(Exception):
    """Base of every expected error; ``detail`` becomes the JSON body's ``detail``."""

    status_code = 400

    def __init__(self, detail: Any = "bad request", *, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class NotFound(ServiceError):
    """An unknown id, or one of another tenant's: both get the same answer, so ids do not leak across tenants."""

    status_code = 404


class Conflict(ServiceError):
    """The resource is in the wrong state for the request: predicting with an unfinished job, cancelling a
    finished one, deleting a network or data set that a queued or running job uses."""

    status_code = 409


class InvalidInput(ServiceError):
    """Input that cannot be used; the detail names the field, row, column or limit."""

    status_code = 422


class TooLarge(ServiceError):
    """A body over its byte limit, or a network or data set over the tenant's quota (nothing is stored)."""

    status_code = 413


class UnsupportedMediaType(ServiceError):
    """A file type or Content-Type that no parser takes; the detail lists the ones that are."""

    status_code = 415


class Unauthorized(ServiceError):
    status_code = 401

    def __init__(self, detail: Any = "missing or invalid API key", **kw: Any):
        kw.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kw)


class RequestTimeout(ServiceError):
    """A request body that stalled (no bytes for too long), so a slow client cannot hold a connection. The answer
    says ``Connection: close`` and the server closes it (RFC 9110 section 15.5.9): the rest of the body is not read."""

    status_code = 408

    def __init__(self, detail: Any, **kw: Any):
        kw.setdefault("headers", {"Connection": "close"})
        super().__init__(detail, **kw)


class TooManyRequests(ServiceError):
    """Over a count cap: the tenant's queued or running jobs, or open event streams (per tenant or per server)."""

    status_code = 429


class NotAvailable(ServiceError):
    """A feature whose optional dependency is not installed (the detail names the extra)."""

    status_code = 501


def error_key(path: str) -> str:
    """The error body's key for a request path: ``error`` under /v2 (the Open Inference Protocol), else ``detail``."""
    return "error" if path == "/v2" or path.startswith("/v2/") else "detail"


MAX_ECHO_CHARS = 200  # a 422 echoes at most this much of the offending input
MAX_DETAIL_CHARS = 2000  # no error message is longer (the safety net behind echo(): a body may be megabytes)
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 2, 6, 4, 80, 80, 80


def echo(value: Any) -> str:
    """``repr(value)`` for an error message, cut to MAX_ECHO_CHARS (lists show their first items, then ...)."""
    s = _REPR.repr(value)
    return s if len(s) <= MAX_ECHO_CHARS else s[:MAX_ECHO_CHARS] + "..."


def capped(detail: Any) -> Any:
    """A string ``detail`` cut to MAX_DETAIL_CHARS, saying how long it was (other details are already bounded)."""
    if isinstance(detail, str) and len(detail) > MAX_DETAIL_CHARS:
        return detail[:MAX_DETAIL_CHARS] + f"... ({len(detail):,} characters, cut)"
    return detail


def json_safe(value: Any, _depth: int = 0) -> Any:
    """``value`` made encodable as strict UTF-8 JSON: NaN/Infinity become strings, lone surrogates are escaped,
    long strings and deep or long containers are cut."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else repr(value)
    if isinstance(value, (bool, int)) or value is None:
        return value
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        s = value.encode("utf-8", "backslashreplace").decode("utf-8")
        return s if len(s) <= MAX_ECHO_CHARS else s[:MAX_ECHO_CHARS] + "..."
    if _depth > 4:
        return "..."
    if isinstance(value, dict):
        return {str(json_safe(k, _depth + 1)): json_safe(v, _depth + 1) for k, v in list(value.items())[:20]}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, _depth + 1) for v in list(value[:20])]
    return json_safe(str(value), _depth + 1)


def json_body_not_sent(errors: Any, content_type: str | None) -> str | None:
    """The 415 detail when a JSON route's body was not read as JSON because of its Content-Type (FastAPI reads a
    body as JSON only under ``application/json`` or ``*+json``: ``curl -d`` alone sends form encoding, and the body
    then fails as "not a valid dictionary"); None for any other validation error."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return None
    if not any(tuple(e.get("loc", ())) == ("body",) and e.get("type") in ("model_attributes_type", "dict_type")
               for e in errors):
        return None
    sent = f"Content-Type {echo(media)}" if media else "no Content-Type"
    return (f"the body was sent with {sent}; this endpoint reads a JSON object: send it with Content-Type: "
            "application/json (curl: -H 'content-type: application/json')")


def validation_detail(errors: Any) -> list[dict]:
    """FastAPI's 422 ``detail`` list (type, loc, msg, input, ctx) with every value made JSON-safe."""
    out = []
    for err in errors:
        item = {k: json_safe(err[k]) for k in ("type", "loc", "msg", "input", "ctx") if k in err}
        if "input" in item and len(repr(item["input"])) > 5 * MAX_ECHO_CHARS:   # e.g. a whole body of rows
            item["input"] = echo(err["input"])
        out.append(item)
    return out


def validation_message(errors: Any) -> str:
    """pydantic's errors (``ValidationError.errors()``) as one readable line per error, ``field.path: message``
    (without pydantic's input dump and documentation links), for details that are text."""
    lines = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")  # pydantic's prefix says nothing here
        lines.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(lines)


class NotAcceptable(ServiceError):
    """The Accept header asks for no format the endpoint can answer in."""

    status_code = 406
