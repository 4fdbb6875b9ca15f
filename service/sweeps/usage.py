"""Whether a data set, a job or a model may be deleted: not while a sweep that is not finished needs it.

Kept apart from ``sweeps/service.py`` (which reads data sets and jobs) so that ``datasets/`` and ``jobs/`` can call
it without an import cycle, as ``jobs/usage.py`` is for networks and data sets.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.errors import Conflict
from service.jobs.tables import Job
from service.sweeps.tables import RUNNING, Sweep


def sweep_using(session: Session, *, owner: str, dataset_id: str) -> str | None:
    """Id of a running sweep of ``owner`` that trains on this data set or validates on it (its later trials
    read it)."""
    for sweep_id, request in session.execute(select(Sweep.id, Sweep.request).where(
            Sweep.owner == owner, Sweep.status == RUNNING).order_by(Sweep.created_at)).all():
        if dataset_id in (request.get("dataset_id"), request.get("validation_dataset_id")):
            return sweep_id
    return None


def ensure_dataset_unused(session: Session, *, owner: str, dataset_id: str) -> None:
    """Conflict (409) naming the sweep while a running sweep still needs the data set."""
    sweep_id = sweep_using(session, owner=owner, dataset_id=dataset_id)
    if sweep_id is not None:
        raise Conflict(f"dataset {dataset_id} is used by sweep {sweep_id}, which is running; cancel the sweep or "
                       "wait for it to finish first")


def ensure_trial_deletable(session: Session, *, owner: str, job_id: str, sweep_id: str | None) -> None:
    """Conflict (409) naming the sweep when the job is a trial of a sweep that is running (the sweep reads it)."""
    if sweep_id is None:
        return
    status = session.scalar(select(Sweep.status).where(Sweep.id == sweep_id, Sweep.owner == owner))
    if status == RUNNING:
        raise Conflict(f"job {job_id} is a trial of sweep {sweep_id}, which is running; cancel the sweep or wait "
                       "for it to finish first (deleting the sweep deletes its trials' jobs)")


def ensure_model_deletable(session: Session, *, owner: str, model_id: str, job_id: str | None) -> None:
    """Conflict (409) naming the sweep when the model is a trial's of a sweep that is running (the sweep may name it
    its best model), as for the trial's job."""
    if job_id is None:
        return
    sweep_id = session.scalar(select(Job.sweep_id).where(Job.id == job_id, Job.owner == owner))
    if sweep_id is not None and session.scalar(
            select(Sweep.status).where(Sweep.id == sweep_id, Sweep.owner == owner)) == RUNNING:
        raise Conflict(f"model {model_id} is a trial's model of sweep {sweep_id}, which is running; cancel the sweep "
                       "or wait for it to finish first")
