"""Typed exceptions of the client: one class per HTTP outcome, each carrying ``status`` and ``detail``."""

from __future__ import annotations

from typing import Any


class MLPError(Exception):
    """Base of every error the client raises; ``status`` is the HTTP status (None without an answer)."""

    status: int | None = None

    def __init__(self, detail: Any, *, status: int | None = None, response: Any = None):
        self.detail = detail
        if status is not None:
            self.status = status
        self.response = response
        super().__init__(f"{self.status}: {detail}" if self.status is not None else str(detail))


class BadRequest(MLPError):
    status = 400


class Unauthorized(MLPError):
    status = 401


class Forbidden(MLPError):
    status = 403


class NotFound(MLPError):
    status = 404


class Conflict(MLPError):
    status = 409


class TooLarge(MLPError):
    status = 413


class UnsupportedMediaType(MLPError):
    status = 415


class InvalidInput(MLPError):
    status = 422


class TooManyRequests(MLPError):
    status = 429


class ServerError(MLPError):
    status = 500


class ServiceUnavailable(ServerError):
    status = 503


class ConnectionFailed(MLPError):
    """No answer from the server (refused, timed out, dropped) after the retries."""


class JobFailed(MLPError):
    """``Job.wait`` saw the job end as ``failed``; ``detail`` is the job's ``error`` and ``job`` the job."""

    def __init__(self, detail: Any, *, job: Any = None):
        self.job = job
        super().__init__(detail)


class SweepFailed(MLPError):
    """``Sweep.wait`` (``AsyncSweep.wait``) saw the sweep end as ``failed`` (no trial completed, or the driver
    could not step it); ``detail`` is the sweep's ``reason`` and ``sweep`` the sweep."""

    def __init__(self, detail: Any, *, sweep: Any = None):
        self.sweep = sweep
        super().__init__(detail)


BY_STATUS: dict[int, type[MLPError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict, 413: TooLarge,
    415: UnsupportedMediaType, 422: InvalidInput, 429: TooManyRequests, 503: ServiceUnavailable,
}


def error_for(status: int, detail: Any, response: Any = None) -> MLPError:
    """The exception for an HTTP error status (5xx without their own class become ServerError)."""
    cls = BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else MLPError
    return cls(detail, status=status, response=response)
