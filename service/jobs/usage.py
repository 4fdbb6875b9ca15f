"""Whether a network or data set may be deleted: not while a queued or running job needs it.

Kept apart from ``jobs/service.py`` (which reads networks and data sets) so that ``networks/`` and ``datasets/``
can call it without an import cycle.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from service.errors import Conflict
from service.jobs.tables import QUEUED, RUNNING, Job


def in_use_by(session: Session, *, owner: str, network_id: str | None = None,
              dataset_id: str | None = None) -> str | None:
    """Id of a queued or running job of ``owner`` that uses this network or data set (training or validation)."""
    cond = [Job.owner == owner, Job.status.in_((QUEUED, RUNNING))]
    if network_id is not None:
        cond.append(Job.network_id == network_id)
    if dataset_id is not None:
        cond.append(or_(Job.dataset_id == dataset_id, Job.validation_dataset_id == dataset_id))
    return session.scalar(select(Job.id).where(*cond).limit(1))


def ensure_unused(session: Session, *, owner: str, network_id: str | None = None,
                  dataset_id: str | None = None) -> None:
    """Conflict (409) naming the job while a queued or running job still needs the network or data set."""
    if (network_id is None) == (dataset_id is None):
        raise TypeError("ensure_unused: give exactly one of network_id and dataset_id")
    job_id = in_use_by(session, owner=owner, network_id=network_id, dataset_id=dataset_id)
    if job_id is not None:
        what = f"network {network_id}" if network_id is not None else f"dataset {dataset_id}"
        raise Conflict(f"{what} is used by job {job_id}, which is not finished; "
                       "cancel it or wait for it to finish first")
