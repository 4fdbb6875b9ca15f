"""Per-tenant quotas, configured by settings (``quota_*``, overridden per tenant by ``tenant_quotas``).

| setting (env)                                  | what                                   | status |
|------------------------------------------------|----------------------------------------|--------|
| ``quota_max_jobs`` (MLP_QUOTA_MAX_JOBS)         | queued + running jobs of one tenant    | 429    |
| ``quota_max_stored_bytes`` (MLP_QUOTA_MAX_STORED_BYTES) | bytes of a tenant's data sets (as uploaded) | 413 |
| ``quota_max_dataset_bytes`` (MLP_QUOTA_MAX_DATASET_BYTES) | bytes of one data set upload  | 413    |
| ``quota_max_params`` (MLP_QUOTA_MAX_PARAMS)     | parameters of one network              | 413    |

Unset means unlimited. Each check runs before anything is committed, so a refused request stores nothing;
every message names the limit and its setting.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

import core
from service.datasets.tables import Dataset
from service.errors import TooLarge, TooManyRequests
from service.jobs.tables import QUEUED, RUNNING, Job

NAMES = ("quota_max_jobs", "quota_max_stored_bytes", "quota_max_dataset_bytes", "quota_max_params")
RETRY_AFTER_SECONDS = "5"


def limit(settings, *, owner: str, name: str) -> int | None:
    """The tenant's value of quota ``name``: its ``tenant_quotas`` override, else the global setting."""
    override = settings.tenant_quotas.get(owner) or {}
    if name in override:
        return override[name]
    return getattr(settings, name)  # a lookup by name: one of NAMES, each a Settings field


def _label(name: str) -> str:
    return f"{name} (MLP_{name.upper()})"


def check_params(settings, *, owner: str, n_params: int | None) -> None:
    """413 when a network has more parameters than the tenant's ``quota_max_params``."""
    cap = limit(settings, owner=owner, name="quota_max_params")
    if cap is not None and n_params is not None and n_params > cap:
        raise TooLarge(f"quota exceeded: the network has {n_params:,} parameters, more than the limit "
                       f"{_label('quota_max_params')}={cap:,} for tenant {owner}")


def stored_bytes(session: Session, *, owner: str) -> int:
    """Bytes of the tenant's data sets, as uploaded."""
    return int(session.scalar(select(func.coalesce(func.sum(Dataset.size_bytes), 0))
                              .where(Dataset.owner == owner)) or 0)


def check_dataset(session: Session, settings, *, owner: str, size_bytes: int, locked: bool = False) -> None:
    """413 when one upload exceeds ``quota_max_dataset_bytes`` or would take the tenant past
    ``quota_max_stored_bytes``. Call it before the data set is stored, and again with ``locked=True`` inside the
    committing transaction after ``lock_for_write`` (the transaction, and its lock, are kept)."""
    cap = limit(settings, owner=owner, name="quota_max_dataset_bytes")
    if cap is not None and size_bytes > cap:
        raise TooLarge(f"quota exceeded: the data set has {size_bytes:,} bytes, more than the limit "
                       f"{_label('quota_max_dataset_bytes')}={cap:,} for tenant {owner}")
    cap = limit(settings, owner=owner, name="quota_max_stored_bytes")
    if cap is not None:
        used = stored_bytes(session, owner=owner)
        if not locked:
            session.rollback()  # end the read transaction; the caller goes on with a fresh one
        if used + size_bytes > cap:
            raise TooLarge(f"quota exceeded: tenant {owner} stores {used:,} bytes of data sets; {size_bytes:,} "
                           f"more would pass the limit {_label('quota_max_stored_bytes')}={cap:,}. "
                           "Delete data sets you no longer need")


def active_jobs(session: Session, *, owner: str) -> int:
    """Number of the tenant's queued or running jobs."""
    return int(session.scalar(select(func.count()).select_from(Job)
                              .where(Job.owner == owner, Job.status.in_((QUEUED, RUNNING)))) or 0)


def check_jobs(session: Session, settings, *, owner: str) -> None:
    """429 when the tenant would have more than ``quota_max_jobs`` queued+running jobs.

    Call it after ``session.add(new_job)`` and before the commit: it flushes (taking SQLite's write lock, so
    concurrent creates are counted one after the other), counts including the new job, and on excess rolls
    the transaction back (nothing stored) and raises.
    """
    cap = limit(settings, owner=owner, name="quota_max_jobs")
    if cap is None:
        return
    session.flush()
    n = active_jobs(session, owner=owner)
    if n > cap:
        session.rollback()
        raise TooManyRequests(f"quota exceeded: tenant {owner} already has {n - 1} queued or running jobs, the "
                              f"limit {_label('quota_max_jobs')}={cap}; wait for one to finish or cancel one",
                              headers={"Retry-After": RETRY_AFTER_SECONDS})


def check_new_job(session: Session, settings, *, owner: str, network, n_features: int) -> None:
    """The job-time checks: the network's parameters for this data set's width, then the job count."""
    check_params(settings, owner=owner, n_params=core.count_params(network.spec, n_features))
    check_jobs(session, settings, owner=owner)


def usage(session: Session, settings, *, owner: str) -> dict:
    """What the tenant uses against each quota (for operators and tests)."""
    return {"active_jobs": active_jobs(session, owner=owner), "stored_bytes": stored_bytes(session, owner=owner),
            "limits": {name: limit(settings, owner=owner, name=name) for name in NAMES}}
