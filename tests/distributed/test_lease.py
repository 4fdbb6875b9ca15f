"""The claim fence and the lease, in-process on SQLite (no broker): who may train a job, and when."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from service.database import create_all, make_engine, make_sessionmaker, utcnow
from service.executor.celery import _database_unreachable, claim, renew, requeue_expired, stale_queued
from service.jobs import service as jobs_service
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
    assert _database_unreachable("internal error while training: OperationalError: (psycopg.OperationalError) x")
    assert not _database_unreachable("internal error while training: ValueError: bad")
    assert not _database_unreachable("training diverged at epoch 3")
    assert not _database_unreachable(None)
