"""The service's exception hierarchy; create_app maps each class to its status code once."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """Base of every expected error; ``detail`` becomes the JSON body's ``detail``."""

    status_code = 400

    def __init__(self, detail: Any = "bad request", *, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    status_code = 409


class InvalidInput(ServiceError):
    status_code = 422


class TooLarge(ServiceError):
    status_code = 413


class UnsupportedMediaType(ServiceError):
    status_code = 415


class Unauthorized(ServiceError):
    status_code = 401

    def __init__(self, detail: Any = "missing or invalid API key", **kw: Any):
        kw.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kw)


class TooManyRequests(ServiceError):
    status_code = 429


class NotAvailable(ServiceError):
    """A feature whose optional dependency is not installed (the detail names the extra)."""

    status_code = 501
