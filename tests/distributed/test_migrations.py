"""Alembic migrations: upgrade head gives exactly the tables the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from service.database import Base, create_all, make_engine
from tests.distributed.conftest import ROOT

TABLES = {"networks", "datasets", "models", "jobs", "job_metrics"}


def _config(url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def _diff(url: str) -> list:
    engine = make_engine(SimpleNamespace(database_url=url))
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = make_engine(SimpleNamespace(database_url=url))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mlp.db'}"
    return request.getfixturevalue("postgres_url")


def test_upgrade_head_matches_the_models_and_downgrade_removes_them(db_url):
    command.upgrade(_config(db_url), "head")
    assert TABLES <= _tables(db_url)
    diff = _diff(db_url)
    assert diff == [], (f"the tables declared in service/*/tables.py differ from migrations/: {diff}\n"
                        "add a revision: alembic revision --autogenerate -m '...'")
    command.downgrade(_config(db_url), "base")
    assert _tables(db_url) - {"alembic_version"} == set()


def test_database_made_by_create_all_is_adopted(db_url):
    engine = make_engine(SimpleNamespace(database_url=db_url))
    create_all(engine)  # what create_app does on start-up
    engine.dispose()
    command.upgrade(_config(db_url), "head")  # stamps the initial revision instead of re-creating tables
    assert "alembic_version" in _tables(db_url)
    assert _diff(db_url) == []


def test_database_of_an_older_release_without_alembic_version_is_upgraded(db_url):
    command.upgrade(_config(db_url), "0001")  # the tables the first release's create_all made
    engine = make_engine(SimpleNamespace(database_url=db_url))
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE alembic_version")
    engine.dispose()
    command.upgrade(_config(db_url), "head")
    assert _diff(db_url) == []
