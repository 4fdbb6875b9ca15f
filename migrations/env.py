"""Alembic environment: the service's own tables and engine factory, on SQLite or PostgreSQL.

The URL is, in order: ``-x url=...``, the config's ``sqlalchemy.url`` (tests set it), ``MLP_DATABASE_URL``
(through ``Settings``, so the default SQLite file under ``MLP_DATA_DIR`` too).

A database made by ``create_all`` (what ``create_app`` does on start-up) has tables but no ``alembic_version``:
it is stamped at ``head`` when its schema equals the code's, otherwise at the first revision (a database made by
an older release), and then upgraded like any other; revisions check for tables create_all may have made.
On PostgreSQL an advisory lock serialises concurrent ``upgrade`` runs (several containers starting at once).
"""

from __future__ import annotations

import importlib
from logging.config import fileConfig
from types import SimpleNamespace

from alembic import context
from alembic.autogenerate import compare_metadata
from sqlalchemy import inspect, text

from service.database import TABLE_MODULES, Base, make_engine

INITIAL_REVISION = "0001"
LOCK_KEY = 7_413_505  # pg_advisory_lock id of mlp-service migrations

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

for _name in TABLE_MODULES:
    importlib.import_module(_name)
target_metadata = Base.metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from service.settings import Settings

    return Settings().database_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True,
                      dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(SimpleNamespace(database_url=_url()))
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": LOCK_KEY})
                connection.commit()
            context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                              compare_type=True)
            insp = inspect(connection)
            if not insp.has_table("alembic_version") and insp.has_table("jobs"):
                # Made by create_all: at head if it matches the code exactly, else at the first revision
                # (later revisions then skip what create_all already made).
                current = not compare_metadata(context.get_context(), target_metadata)
                context.get_context().stamp(context.script, "head" if current else INITIAL_REVISION)
                connection.commit()
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
                connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
