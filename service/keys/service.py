"""Key verbs: create (returns the key once), list, revoke, verify; plus reading MLP_API_KEYS_FILE.

A key looks like ``mlp_<id>_<secret>``: ``id`` (12 hex digits) finds the row, ``secret`` (43 url-safe
characters, 256 bits) is checked against ``scrypt(secret, salt)`` with ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.database import utcnow
from service.errors import InvalidInput, NotFound
from service.keys.tables import ApiKey

PREFIX = "mlp"
TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
KEY_ID_RE = re.compile(r"^[0-9a-f]{12}$")
# scrypt cost: ~16 MB and a few tens of ms per verification; the API verifies a key once per process and
# then keeps only an HMAC of it in memory (service.auth), so this cost is not paid per request.
SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32, "maxmem": 64 * 1024 * 1024}


def check_tenant(name: str) -> str:
    """The tenant name, or InvalidInput saying what is allowed."""
    if not isinstance(name, str) or not TENANT_RE.match(name):
        raise InvalidInput(f"tenant: {name!r} is not a valid tenant name (1-64 characters: letters, digits, "
                           "'_', '.', '-'; starting with a letter or digit)")
    return name


def hash_secret(secret: str, salt: bytes) -> bytes:
    """The stored form of a key's secret part: scrypt with the key's own salt."""
    return hashlib.scrypt(secret.encode(), salt=salt, **SCRYPT)


def split_key(token: str) -> tuple[str, str] | None:
    """``mlp_<id>_<secret>`` -> (id, secret); None when the token does not have that shape."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not KEY_ID_RE.match(parts[1]) or not parts[2]:
        return None
    return parts[1], parts[2]


def create(session: Session, *, tenant: str) -> tuple[ApiKey, str]:
    """A new key for ``tenant``: (row, full key). The full key is not stored and cannot be shown again."""
    check_tenant(tenant)
    key_id = secrets.token_hex(6)
    while session.get(ApiKey, key_id) is not None:  # 48-bit ids: a collision is rare but cheap to rule out
        key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    row = ApiKey(id=key_id, owner=tenant, salt=salt.hex(), hash=hash_secret(secret, salt).hex())
    session.add(row)
    session.commit()
    return row, f"{PREFIX}_{key_id}_{secret}"


def list_(session: Session, *, tenant: str | None = None) -> list[ApiKey]:
    """Every key (or one tenant's), oldest first; revoked keys included."""
    stmt = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if tenant is not None:
        stmt = stmt.where(ApiKey.owner == tenant)
    return list(session.scalars(stmt).all())


def revoke(session: Session, *, key_id: str) -> ApiKey:
    """Mark the key revoked (idempotent); NotFound for an unknown id. The row stays, so keys stay enabled."""
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"API key {key_id} not found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.commit()
    return row


def any_keys(session: Session) -> bool:
    """Whether any key was ever created (a revoked key still means: keys are required)."""
    return session.scalar(select(ApiKey.id).limit(1)) is not None


def find_active(session: Session, key_id: str) -> ApiKey | None:
    """The key's row unless it is unknown or revoked."""
    row = session.get(ApiKey, key_id)
    return row if row is not None and row.revoked_at is None else None


def verify(row: ApiKey, secret: str) -> bool:
    """Whether ``secret`` is this key's secret (constant-time comparison of the hashes)."""
    expected = bytes.fromhex(row.hash)
    return hmac.compare_digest(hash_secret(secret, bytes.fromhex(row.salt)), expected)


def read_keys_file(path: str | Path) -> list[tuple[str, str]]:
    """(tenant, key) pairs from MLP_API_KEYS_FILE.

    Accepted forms: lines ``tenant:key`` (blank lines and ``#`` comments ignored); or JSON, either an object
    ``{"tenant": "key" | ["key", ...]}`` or a list of ``{"tenant": ..., "key": ...}``. Errors name the line
    (or JSON entry) and the field, never a field's value: with the fields swapped, the "tenant" is a key.
    """
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    pairs: list[tuple[str, object, object]] = []  # (where, tenant, key)
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        try:
            doc = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON (line {exc.lineno})") from None
        if isinstance(doc, dict):
            i = 0
            for tenant, keys in doc.items():
                for key in ([keys] if isinstance(keys, str) else keys if isinstance(keys, list) else [None]):
                    i += 1
                    pairs.append((f"entry {i}", tenant, key))
        elif isinstance(doc, list):
            for i, item in enumerate(doc, 1):
                if not isinstance(item, dict):
                    raise ValueError(f"{path}: entry {i} must be an object {{\"tenant\": ..., \"key\": ...}}")
                pairs.append((f"entry {i}", item.get("tenant"), item.get("key")))
        else:
            raise ValueError(f"{path}: JSON must be an object or a list")
    else:
        for lineno, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            tenant, sep, key = line.partition(":")
            if not sep:
                raise ValueError(f"{path}: line {lineno} is not 'tenant:key'")
            pairs.append((f"line {lineno}", tenant.strip(), key.strip()))
    out = []
    for where, tenant, key in pairs:
        if isinstance(tenant, str) and split_key(tenant) is not None:
            raise ValueError(f"{path}: {where}: the tenant field holds what looks like a key; the fields are "
                             "'tenant:key' (JSON: {\"tenant\": \"key\"})")
        if not isinstance(tenant, str) or not TENANT_RE.match(tenant):
            raise ValueError(f"{path}: {where}: the tenant is not a valid tenant name (1-64 characters: letters, "
                             "digits, '_', '.', '-'; starting with a letter or digit); is it 'tenant:key'?")
        if not isinstance(key, str) or len(key) < 16 or any(c.isspace() for c in key):
            raise ValueError(f"{path}: {where}: the key must be a string of at least 16 characters without "
                             "spaces; is it 'tenant:key'?")
        out.append((tenant, key))
    if not out:
        raise ValueError(f"{path}: no keys in the file (MLP_API_KEYS_FILE is set, so keys are required)")
    return out
