"""Who is calling: every request resolves to an owner (tenant) id.

Without API keys (no MLP_API_KEYS_FILE and no key ever created with ``mlp-service keys create``) everything
belongs to the implicit tenant ``default`` and no header is needed. Once keys exist, every route that takes
``OwnerDep`` (service/deps.py) needs ``Authorization: Bearer <key>``; a missing, unknown or revoked key is a 401 with
``WWW-Authenticate: Bearer``. Keys are never kept in clear: the database holds salted scrypt hashes, and this
process keeps only HMACs of keys (with a random per-process pepper) for keys from the file and for database
keys it has already verified, re-checking the latter against the database every ``api_key_recheck_seconds``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from fastapi import Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from service.errors import Unauthorized
from service.keys import service as keys_service
from service.keys import tables as _keys_tables  # noqa: F401  (registers the api_keys table with Base)
from service.settings import Settings

DEFAULT_OWNER = "default"
MAX_TOKEN_CHARS = 512
BAD_SECRET_SECONDS = 2.0  # after a wrong secret, a key id's secrets are not scrypt-checked for this long

bearer = HTTPBearer(auto_error=False, description="An API key from `mlp-service keys create` or "
                                                   "MLP_API_KEYS_FILE; needed only when keys are configured.")


class KeysFileError(ValueError):
    """MLP_API_KEYS_FILE cannot be read or holds an invalid entry (the message never shows a key)."""


@dataclass
class _Verified:
    key_id: str
    tenant: str
    checked_at: float


class KeyRing:
    """This process's view of the keys: HMACs of file keys, and recently verified database keys."""

    def __init__(self, settings: Settings, sessionmaker):
        self._pepper = secrets.token_bytes(32)
        self._sessionmaker = sessionmaker
        self.recheck_seconds = float(settings.api_key_recheck_seconds)
        self.file_keys: dict[bytes, str] = {}
        self._verified: dict[bytes, _Verified] = {}
        self._failed: dict[str, float] = {}  # key id -> when a wrong secret for it was last refused
        self._db_has_keys = False
        self._db_checked_at = float("-inf")
        self._lock = threading.Lock()
        if settings.api_keys_file:
            try:
                entries = keys_service.read_keys_file(settings.api_keys_file)
            except (OSError, ValueError) as exc:
                raise KeysFileError(str(exc)) from None
            for tenant, key in entries:
                self.file_keys[self.digest(key)] = tenant

    def digest(self, token: str) -> bytes:
        """HMAC-SHA256 of a presented key under this process's pepper (what is kept in memory)."""
        return hmac.new(self._pepper, token.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()

    # -- are keys required? -------------------------------------------------------------------------------
    def known_enabled(self) -> bool:
        """Whether keys are known to exist (a keys file, or keys seen in the database), without asking it."""
        return bool(self.file_keys or self._db_has_keys)

    def enabled_now(self, now: float) -> bool | None:
        """True/False if known without the database, None when the database must be asked."""
        if self.file_keys or self._db_has_keys:
            return True
        return False if now - self._db_checked_at < self.recheck_seconds else None

    def refresh_enabled(self) -> bool:
        """Ask the database whether any key was created (once true, it stays true)."""
        with self._sessionmaker() as session:
            has = keys_service.any_keys(session)
        self._db_has_keys = self._db_has_keys or has
        self._db_checked_at = time.monotonic()
        return bool(self.file_keys) or self._db_has_keys

    # -- who is it? ---------------------------------------------------------------------------------------
    def cached(self, token: str, now: float) -> tuple[bytes, str | None]:
        """(digest, tenant) when the key is a file key or was verified recently; tenant None otherwise."""
        d = self.digest(token)
        tenant = self.file_keys.get(d)
        if tenant is not None:
            return d, tenant
        hit = self._verified.get(d)
        if hit is not None and now - hit.checked_at < self.recheck_seconds:
            return d, hit.tenant
        return d, None

    def verify_db(self, token: str, d: bytes) -> str | None:
        """Check the key against the database (scrypt only the first time); its tenant, or None."""
        parts = keys_service.split_key(token)
        if parts is None:
            return None
        key_id, secret = parts
        with self._sessionmaker() as session:
            row = keys_service.find_active(session, key_id)
            if row is None:
                self.forget(key_id)
                return None
            hit = self._verified.get(d)
            if hit is None or hit.key_id != key_id:
                # After a wrong secret for this id, further unverified secrets for it are refused without scrypt
                # for BAD_SECRET_SECONDS: guessing costs what an unknown id costs, and does not tell ids apart.
                failed_at = self._failed.get(key_id)
                if failed_at is not None and time.monotonic() - failed_at < BAD_SECRET_SECONDS:
                    return None
                if not keys_service.verify(row, secret):
                    with self._lock:
                        if len(self._failed) > 10_000:
                            self._failed.clear()
                        self._failed[key_id] = time.monotonic()
                    return None
            tenant = row.owner
        with self._lock:
            self._verified[d] = _Verified(key_id, tenant, time.monotonic())
        self._db_has_keys = True
        return tenant

    def forget(self, key_id: str) -> None:
        """Drop a key from the verified cache (it was revoked)."""
        with self._lock:
            for d in [d for d, v in self._verified.items() if v.key_id == key_id]:
                self._verified.pop(d, None)


def keys_configured(settings: Settings, sessionmaker) -> bool:
    """Whether the server will require keys (a keys file, or keys in the database)."""
    if settings.api_keys_file:
        return True
    with sessionmaker() as session:
        return keys_service.any_keys(session)


class _OwnerScheme(HTTPBearer):
    """``OwnerDep``'s dependency: the caller's tenant, and in OpenAPI the same ``HTTPBearer`` scheme as ``bearer``.

    Being the security scheme itself rather than a function that depends on ``bearer`` makes it one dependency
    for FastAPI to solve per request instead of two (about 20 us of a one-row predict)."""

    async def __call__(self, request: Request) -> str:
        """Return the caller's tenant: ``default`` without keys; with keys, the tenant of the Bearer key or 401."""
        # already settled before the body was read (GuardedRoute); read from request.state's dict, scope["state"],
        # as getattr(request.state, ...) costs an AttributeError on every request that has none
        owner = request.scope.get("state", {}).get("owner")
        if owner is not None:
            return owner
        return await _resolve_owner(request, await bearer(request))


get_owner = _OwnerScheme(auto_error=False, scheme_name="HTTPBearer", description=bearer.model.description)


async def authenticate(request: Request) -> str:
    """Settle the caller's tenant from the headers alone (401 otherwise) and remember it on ``request.state``."""
    owner = await _resolve_owner(request, await bearer(request))
    request.state.owner = owner
    return owner


async def still_authorised(request: Request, owner: str) -> bool:
    """Whether the request's key still maps to ``owner`` (for long streams: a revoked key ends them)."""
    try:
        return await _resolve_owner(request, await bearer(request)) == owner
    except Unauthorized:
        return False


async def _resolve_owner(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
    ring: KeyRing = request.app.state.keyring
    now = time.monotonic()
    enabled = ring.enabled_now(now)
    if enabled is None:
        enabled = await run_in_threadpool(ring.refresh_enabled)
    if not enabled:
        return DEFAULT_OWNER
    if credentials is None:
        raise Unauthorized("missing API key: send the header 'Authorization: Bearer <key>'")
    token = credentials.credentials
    if len(token) > MAX_TOKEN_CHARS:
        raise Unauthorized("invalid API key")
    d, tenant = ring.cached(token, now)
    if tenant is None:
        tenant = await run_in_threadpool(ring.verify_db, token, d)
    if tenant is None:
        raise Unauthorized("invalid API key")
    return tenant

