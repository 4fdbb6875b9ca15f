"""SQLAlchemy 2 plumbing: declarative Base, engine and session factories, ids and timestamps, and the owner-scoped
queries every domain's ``get`` / ``get_or_raise`` / ``list_`` verbs are made of."""

from __future__ import annotations

import importlib
import uuid
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import DateTime, Engine, create_engine, event, func, select
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from service.errors import NotFound, json_safe

# Every domain's tables module; create_all imports them so their tables exist.
TABLE_MODULES = (
    "service.networks.tables",
    "service.datasets.tables",
    "service.models.tables",
    "service.jobs.tables",
    "service.keys.tables",
    "service.sweeps.tables",
)


class Base(DeclarativeBase):
    """Declarative base shared by every domain's tables."""


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


def new_id() -> str:
    """A fresh resource id (uuid4 hex)."""
    return uuid.uuid4().hex


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    # FULL: a committed transaction is on disk before the 2xx answer (survives power loss, not only kill -9).
    cur.execute("PRAGMA synchronous=FULL")
    cur.close()


def make_engine(settings) -> Engine:
    """Build the engine for ``settings.database_url``; SQLite gets WAL, busy_timeout and foreign keys."""
    url = settings.database_url
    if url.startswith("sqlite"):
        db_path = url.split(":///", 1)[1] if ":///" in url else ""
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=20, max_overflow=20)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def create_all(engine: Engine) -> None:
    """Create every domain's tables (idempotent); on SQLite also add columns a newer release declares."""
    for name in TABLE_MODULES:
        importlib.import_module(name)
    Base.metadata.create_all(engine)
    if engine.dialect.name == "sqlite":
        _add_missing_columns(engine)


def _add_missing_columns(engine: Engine) -> None:
    """A SQLite file made by an older release gains the nullable or defaulted columns added since (e.g.
    ``jobs.kind``); PostgreSQL is upgraded by the Alembic migrations instead."""
    from sqlalchemy import inspect, text

    insp = inspect(engine)
    with engine.begin() as conn:
        for table in Base.metadata.sorted_tables:
            have = {c["name"] for c in insp.get_columns(table.name)}
            for col in table.columns:
                if col.name in have or not (col.nullable or col.server_default is not None):
                    continue
                ddl = f'ALTER TABLE {table.name} ADD COLUMN "{col.name}" {col.type.compile(engine.dialect)}'
                if col.server_default is not None:
                    ddl += f" NOT NULL DEFAULT '{col.server_default.arg}'"
                conn.execute(text(ddl))


# What a lost or unusable database connection raises (server down, network cut, SQLite locked or unreadable).
CONNECTION_ERRORS = (OperationalError, InterfaceError, DisconnectionError)


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` means the database could not be reached, as opposed to a fault of the job or the code."""
    return isinstance(exc, CONNECTION_ERRORS) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (responses read them)."""
    return sessionmaker(engine, expire_on_commit=False)



def get_owned(session: Session, table: type, *, owner: str, row_id: str):
    """The owner's row of ``table`` with this id, or None (another tenant's id reads as missing)."""
    return session.scalar(select(table).where(table.id == row_id, table.owner == owner))


def get_owned_or_raise(session: Session, table: type, *, owner: str, row_id: str, noun: str):
    """The owner's row, or NotFound ``"<noun> <id> not found"`` (also for another tenant's id)."""
    row = get_owned(session, table, owner=owner, row_id=row_id)
    if row is None:
        raise NotFound(f"{noun} {json_safe(row_id)} not found")  # an id from a body may be long: echo 200 chars
    return row


def page(session: Session, table: type, *where, limit: int, offset: int) -> tuple[list, int]:
    """One page of ``table``'s rows matching ``where``, newest first (then by id), and the total count."""
    total = session.scalar(select(func.count()).select_from(table).where(*where))
    rows = session.scalars(select(table).where(*where).order_by(table.created_at.desc(), table.id)
                           .limit(limit).offset(offset)).all()
    return list(rows), int(total or 0)


_WRITE_LOCKED = "mlp_write_locked"  # session.info: the transaction that holds SQLite's write lock


def lock_for_write(session, *, rows: list[tuple[type, str]] = (), tenant: str | None = None) -> None:
    """Serialise a check-then-write with every other one on the same rows (or the same tenant): call it first in
    the transaction. SQLite: take the database's write lock now (a write statement that changes nothing), so the
    reads that follow see every commit and no other writer can interleave until this transaction ends.
    PostgreSQL: ``SELECT ... FOR UPDATE`` on the rows, and a transaction-scoped advisory lock for a tenant."""
    from sqlalchemy import text, update

    if session.get_bind().dialect.name == "sqlite":
        locked = session.info.get(_WRITE_LOCKED)
        if locked is not None and locked is session.get_transaction():
            return  # this transaction took the lock already (a caller writing several rows in one commit)
        if session.in_transaction():
            session.commit()  # a snapshot older than the lock could not write (SQLITE_BUSY_SNAPSHOT)
        model = rows[0][0] if rows else None
        if model is None:
            session.execute(text("UPDATE jobs SET id = id WHERE 0"))
        else:
            session.execute(update(model).where(text("0")).values(id=model.id))
        session.info[_WRITE_LOCKED] = session.get_transaction()
        return
    for model, row_id in rows:
        session.execute(select(model.id).where(model.id == row_id).with_for_update())
    if tenant is not None:
        session.execute(select(func.pg_advisory_xact_lock(func.hashtext(tenant))))
