"""The claim fence and the lease, in-process on SQLite (no broker): who may train a job, and when."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from service.database import connection_lost, create_all, make_engine, make_sessionmaker, utcnow
from service.jobs import service as jobs_service
from service.jobs.service import claim, renew, requeue_expired, stale_queued
from service.jobs.tables import QUEUED, RUNNING, SUCCEEDED, Job
from service.settings import Settings


@pytest.fixture
def Session(tmp_path):
    engine = make_engine(Settings(data_dir=tmp_path))
    create_all(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


def _job(Session, status=QUEUED, age: float = 0.0) -> str:
    now = utcnow() - timedelta(seconds=age)
    with Session() as s:
        job = Job(owner="t", network_id="n", dataset_id="d", params={}, status=status, epoch=0, epochs=3,
                  attempt=0, cancel_requested=False, created_at=now, updated_at=now)
        s.add(job)
        s.commit()
        return job.id


def _age(Session, job_id: str, seconds: float) -> None:
    with Session() as s:
        s.execute(update(Job).where(Job.id == job_id).values(updated_at=utcnow() - timedelta(seconds=seconds)))
        s.commit()


def _row(Session, job_id: str) -> Job:
    with Session() as s:
        return s.get(Job, job_id)


def test_a_job_is_claimed_once(Session):
    job_id = _job(Session)
    with Session() as s:
        assert claim(s, job_id=job_id, worker="a:1") == 1
    with Session() as s:
        assert claim(s, job_id=job_id, worker="b:2") is None  # a duplicate message finds nothing to claim
    row = _row(Session, job_id)
    assert (row.status, row.attempt, row.worker) == (RUNNING, 1, "a:1")


def test_unknown_or_finished_jobs_are_not_claimed(Session):
    with Session() as s:
        assert claim(s, job_id="nope", worker="a:1") is None
    done = _job(Session, status=SUCCEEDED, age=3600)
    with Session() as s:
        assert claim(s, job_id=done, worker="a:1") is None


def test_expired_lease_is_taken_over_and_fences_out_the_old_holder(Session):
    job_id = _job(Session)
    with Session() as s:
        assert claim(s, job_id=job_id, worker="a:1") == 1
    with Session() as s:
        assert claim(s, job_id=job_id, worker="b:2", lease_seconds=15) is None  # lease still fresh
    _age(Session, job_id, 20)
    with Session() as s:
        assert claim(s, job_id=job_id, worker="b:2", lease_seconds=15) == 2
    with Session() as s:
        assert not renew(s, job_id=job_id, attempt=1)  # the old holder can no longer write
        assert renew(s, job_id=job_id, attempt=2)
        assert not jobs_service.record_epochs(s, job_id=job_id, attempt=1, owner="t",
                                              history=[{"epoch": 1, "train_loss": 1.0}], best_epoch=None)
        assert jobs_service.should_stop(s, job_id=job_id, attempt=1) == "lost"


def test_heartbeat_keeps_the_lease(Session):
    job_id = _job(Session)
    with Session() as s:
        claim(s, job_id=job_id, worker="a:1")
    _age(Session, job_id, 20)
    with Session() as s:
        assert renew(s, job_id=job_id, attempt=1)
        assert requeue_expired(s, lease_seconds=15) == []


def test_sweeper_requeues_expired_leases_once(Session):
    live, dead = _job(Session), _job(Session)
    with Session() as s:
        claim(s, job_id=live, worker="a:1")
        claim(s, job_id=dead, worker="b:2")
    _age(Session, dead, 20)
    with Session() as s:
        assert requeue_expired(s, lease_seconds=15) == [dead]
    with Session() as s:
        assert requeue_expired(s, lease_seconds=15) == []  # a second sweeper finds nothing
    row = _row(Session, dead)
    assert (row.status, row.worker, row.attempt) == (QUEUED, None, 1)
    with Session() as s:
        assert claim(s, job_id=dead, worker="c:3") == 2


def test_stale_queued_jobs_are_republished_by_one_sweeper(Session):
    fresh, old = _job(Session), _job(Session, age=60)
    with Session() as s:
        assert stale_queued(s, older_than=30) == [old]
    with Session() as s:
        assert stale_queued(s, older_than=30) == []  # updated_at was bumped: not again for 30 s
    assert _row(Session, fresh).status == QUEUED


def test_database_errors_are_told_from_job_errors():
    """By exception type, never by message: a lost connection hands the job over, anything else fails it."""
    assert connection_lost(OperationalError("SELECT 1", {}, Exception("server closed the connection")))
    assert connection_lost(DBAPIError("SELECT 1", {}, Exception("x"), connection_invalidated=True))
    assert not connection_lost(DBAPIError("SELECT 1", {}, Exception("x")))
    assert not connection_lost(IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not connection_lost(ValueError("OperationalError: not a database error"))
