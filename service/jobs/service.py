"""Job verbs. API side: create, get, list, metrics, cancel. Worker side: claim, renew, requeue,
record epochs, complete, finish. Executors call these and choose the policy (lease length, when to sweep).

This module is the only writer of job rows. Every worker-side write is fenced on ``attempt`` (bumped by each
claim) and on ``status = 'running'``, so a worker that lost its job (restart, crash handling) cannot write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, func, nulls_first, select, update
from sqlalchemy import delete as delete_
from sqlalchemy.engine import Connection, Row
from sqlalchemy.orm import Session, aliased

import numpy as np

import core
from service import quotas
from service.datasets import service as datasets_service
from service.database import get_owned_or_raise, lock_for_write, new_id, page, utcnow
from service.datasets.tables import Dataset
from service.errors import Conflict, InvalidInput, NotFound, echo
from service.executor.base import Executor
from service.jobs import preprocessing as job_preprocessing
from service.jobs.schemas import JobCreate
from service.jobs.tables import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, TERMINAL, Job, JobMetric
from service.models import service as models_service
from service.models.service import ModelCache
from service.networks import service as networks_service
from service.networks.tables import Network
from service.settings import Settings
from service.storage import Storage
from service.sweeps import usage as sweeps_usage

log = logging.getLogger("service.jobs")

_NO_SYNC = {"synchronize_session": False}


# -- API side ---------------------------------------------------------------------------------------------
def get_or_raise(session: Session, *, owner: str, job_id: str) -> Job:
    """The job, or NotFound (also for another tenant's job)."""
    return get_owned_or_raise(session, Job, owner=owner, row_id=job_id, noun="job")


# Built once: constructing the expression costs more than running it.
_READ_ROW = select(Job.__table__).where(Job.id == bindparam("job_id"), Job.owner == bindparam("owner"))


def read_row(conn: Connection, *, owner: str, job_id: str) -> Row:
    """The job as a plain row (same attribute names as ``Job``), or NotFound.

    For ``GET /v1/jobs/{id}``, the endpoint clients poll: a prebuilt Core query on a pooled connection costs
    a fraction of an ORM session load (no identity map, no instance state), and the answer is read-only.
    """
    row = conn.execute(_READ_ROW, {"job_id": job_id, "owner": owner}).first()
    if row is None:
        raise NotFound(f"job {job_id} not found")
    return row


def list_(session: Session, *, owner: str, status: str | None = None, sweep_id: str | None = None,
          limit: int = 50, offset: int = 0) -> tuple[list[Job], int]:
    """A page of the owner's jobs, newest first, and the total matching ``status`` and ``sweep_id``."""
    where = [Job.owner == owner] + ([Job.status == status] if status else [])
    if sweep_id is not None:
        where.append(Job.sweep_id == sweep_id)
    return page(session, Job, *where, limit=limit, offset=offset)


def list_metrics(session: Session, *, owner: str, job_id: str, since_epoch: int = 0) -> list[dict[str, Any]]:
    """Per-epoch metrics of the job after ``since_epoch``, in epoch order."""
    get_or_raise(session, owner=owner, job_id=job_id)
    return _metrics_after(session, owner=owner, job_id=job_id, since_epoch=since_epoch)


def _metrics_after(session: Session, *, owner: str, job_id: str, since_epoch: int) -> list[dict[str, Any]]:
    rows = session.scalars(select(JobMetric.metrics).where(
        JobMetric.job_id == job_id, JobMetric.owner == owner, JobMetric.epoch > since_epoch)
        .order_by(JobMetric.epoch)).all()
    return list(rows)


def poll(session: Session, *, owner: str, job_id: str, since_epoch: int) -> tuple[Job, list[dict[str, Any]]]:
    """The job and its metrics after ``since_epoch`` read together (for the event stream)."""
    job = get_or_raise(session, owner=owner, job_id=job_id)
    metrics = _metrics_after(session, owner=owner, job_id=job_id, since_epoch=since_epoch)
    session.rollback()  # end the read transaction so the next poll sees new commits
    return job, metrics


def create(session: Session, executor: Executor, settings: Settings, *, owner: str, body: JobCreate,
           sweep_id: str | None = None, storage: Storage | None = None,
           before_commit: Callable[[Job], None] | None = None, network: Network | None = None) -> Job:
    """Validate the job against its network, data set(s) and limits, commit it queued, hand it over.

    ``before_commit(job)`` adds the caller's rows that refer to the job (a sweep's trial) to the same commit.
    ``network``: the row of ``body.network_id`` when the caller created it in this same transaction (a sweep's
    trial), so it is not read again."""
    check_limits(settings, body)
    # One serialised step with DELETE of the network or data set: whichever commits first, the other one loses
    # (404 here, or 409 there); the job quota is checked under the same lock.
    lock_for_write(session, rows=[(Network, body.network_id), (Dataset, body.dataset_id)]
                   + ([(Dataset, body.validation_dataset_id)] if body.validation_dataset_id else []), tenant=owner)
    if network is None or network.id != body.network_id or network.owner != owner:
        network = networks_service.get_or_raise(session, owner=owner, network_id=body.network_id)
    dataset = datasets_service.get_or_raise(session, owner=owner, dataset_id=body.dataset_id)
    _check_fit(settings, network, dataset, width=job_preprocessing.input_width(
        dataset, body.training_params().get("preprocessing"), exclude=body.sample_weight_column),
        excluded=int(body.sample_weight_column is not None))
    check_weights(body, dataset)
    val = None
    if body.validation_dataset_id is not None:
        if body.validation_split > 0:
            raise InvalidInput("validation_dataset_id: give either validation_split or validation_dataset_id, "
                               "not both")
        val = datasets_service.get_or_raise(session, owner=owner, dataset_id=body.validation_dataset_id)
        check_validation_dataset(dataset, val)
    n_val = validation_rows(dataset, validation_split=body.validation_split, val=val)
    if body.early_stopping is not None:
        check_monitor(body.early_stopping.monitor, dataset, n_val)
    if body.lr_schedule is not None and getattr(body.lr_schedule, "monitor", None) is not None:
        check_monitor(body.lr_schedule.monitor, dataset, n_val, field="lr_schedule.monitor")
    if body.cross_validation is not None:
        _check_cross_validation(body.cross_validation.folds, dataset, storage)
    monitors = {getattr(body.early_stopping, "monitor", None), getattr(body.lr_schedule, "monitor", None)}
    if "val_auc" in monitors:
        check_auc_validation(dataset, storage, validation_split=body.validation_split, seed=body.seed,
                             field="early_stopping.monitor" if getattr(body.early_stopping, "monitor", None)
                             == "val_auc" else "lr_schedule.monitor", val=val)

    now = utcnow()
    job = Job(id=new_id(), owner=owner, network_id=network.id, dataset_id=dataset.id,
              validation_dataset_id=body.validation_dataset_id, params=body.training_params(), sweep_id=sweep_id,
              status=QUEUED, epoch=0, epochs=body.epochs, attempt=0, cancel_requested=False,
              created_at=now, updated_at=now)
    session.add(job)
    quotas.check_new_job(session, settings, owner=owner, network=network, n_features=dataset.n_features)
    if before_commit is not None:
        before_commit(job)
    session.commit()
    executor.submit(job.id)
    return job


def cancel(session: Session, executor: Executor, *, owner: str, job_id: str) -> Job:
    """Cancel a queued job now, or flag a running one (its worker stops within one minibatch)."""
    job = get_or_raise(session, owner=owner, job_id=job_id)
    if job.status in TERMINAL:
        raise Conflict(f"job {job_id} is already {job.status}; only queued or running jobs can be cancelled")
    now = utcnow()
    # queued: never started, or queued again to resume after its worker died (a queued job's epoch stays put)
    queued_error = (f"cancelled while queued to resume after epoch {job.epoch}" if job.epoch
                    else "cancelled before it started")
    res = session.execute(update(Job).where(Job.id == job_id, Job.status == QUEUED).values(
        status=CANCELLED, cancel_requested=True, error=queued_error, finished_at=now,
        updated_at=now).execution_options(**_NO_SYNC))
    if res.rowcount == 0:
        session.execute(update(Job).where(Job.id == job_id, Job.status == RUNNING).values(
            cancel_requested=True, updated_at=now).execution_options(**_NO_SYNC))
    session.commit()
    session.refresh(job)
    if job.status == RUNNING:
        executor.cancel(job_id)
    elif job.status in TERMINAL and not job.cancel_requested:
        raise Conflict(f"job {job_id} is already {job.status}; only queued or running jobs can be cancelled")
    return job


def delete(session: Session, storage: Storage, *, owner: str, job_id: str, model_cache: ModelCache,
           delete_model: bool = False) -> None:
    """Delete a finished job, its metrics and checkpoints; its model too when ``delete_model`` (409 if it runs, or
    if it is a trial of a running sweep)."""
    job = get_or_raise(session, owner=owner, job_id=job_id)
    if job.status not in TERMINAL:
        raise Conflict(f"job {job_id} is {job.status}; only finished jobs (succeeded, failed or cancelled) can be "
                       "deleted: cancel it first")
    sweeps_usage.ensure_trial_deletable(session, owner=owner, job_id=job_id, sweep_id=job.sweep_id)
    model_id = job.model_id
    if delete_model and model_id:
        try:
            models_service.delete(session, owner=owner, storage=storage, model_id=model_id, cache=model_cache)
        except NotFound:
            pass  # the model was deleted on its own before
    session.execute(delete_(JobMetric).where(JobMetric.job_id == job_id, JobMetric.owner == owner)
                    .execution_options(**_NO_SYNC))
    session.execute(delete_(Job).where(Job.id == job_id, Job.owner == owner).execution_options(**_NO_SYNC))
    session.commit()
    storage.delete_prefix(f"jobs/{job_id}")

def check_limits(settings: Settings, body: JobCreate) -> None:
    """InvalidInput naming the field and the setting when the job's epochs or batch size pass the server's limits
    (also the home of these rules for a sweep's space: sweeps/space.py)."""
    if body.epochs > settings.max_epochs:
        raise InvalidInput(f"epochs: {body.epochs} is more than the limit max_epochs={settings.max_epochs} "
                           "(MLP_MAX_EPOCHS)")
    if body.batch_size > settings.max_batch_size:
        raise InvalidInput(f"batch_size: {body.batch_size} is more than the limit "
                           f"max_batch_size={settings.max_batch_size} (MLP_MAX_BATCH_SIZE)")


def check_classes(dataset, field: str = "dataset_id") -> None:
    """A classification data set trains only with 2 classes or more (one class uploads: a validation, scoring or
    evaluation set may hold one); the 422 says what to do with a numeric one."""
    classes = dataset.classes or []
    if dataset.task == "classification" and len(classes) < 2:
        first = classes[0] if classes else "?"
        hint = "" if isinstance(first, (str, bool)) else "; for a numeric target upload with task=regression"
        raise InvalidInput(f"{field}: the target has only one class, {first!r}; classification needs at least "
                           f"2{hint}")


def _check_fit(settings: Settings, network, dataset, width: int | None = None, excluded: int = 0) -> None:
    """The network's input, output and task must fit the data set (``width``: its input width after one-hot)."""
    check_classes(dataset)                  # first: a one-class target is the problem, not the network's task
    loss = core.LOSSES[network.spec["loss"]]
    if network.task != dataset.task:
        raise InvalidInput(f"dataset_id: data set {dataset.id} is for {dataset.task} but network {network.id} "
                           f"(loss {loss.name!r}) does {network.task}")
    n_features = dataset.n_features - excluded
    if network.input_dim is not None and network.input_dim != n_features:
        raise InvalidInput(f"network_id: the network's input_dim is {network.input_dim} but data set "
                           f"{dataset.id} has {n_features} features (n_features"
                           f"{', less the sample weight column' if excluded else ''})")
    width = width or dataset.n_features
    n_params = core.count_params(network.spec, width)
    if n_params is not None and n_params > settings.max_params:
        raise InvalidInput(f"network_id: with {width} input features the network has {n_params} "
                           f"parameters, more than the limit max_params={settings.max_params} (MLP_MAX_PARAMS)")
    units = network.output_dim
    if dataset.task == "classification":
        k = len(dataset.classes or [])
        if loss.n_classes is not None and k != loss.n_classes:
            raise InvalidInput(f"dataset_id: {loss.name} ({loss.fused_activation} output) needs exactly "
                               f"{loss.n_classes} classes, data set {dataset.id} has {k}")
        if units != loss.output_units(k):
            raise InvalidInput(f"network_id: the network's output layer has {units} units but data set "
                               f"{dataset.id} has {k} classes ({loss.units_rule})")
    elif units != loss.output_units(dataset.n_outputs):
        raise InvalidInput(f"network_id: the network's output layer has {units} units but data set "
                           f"{dataset.id} has {dataset.n_outputs} regression target(s) ({loss.units_rule})")


def validation_rows(dataset, *, validation_split: float, val=None) -> int:
    """How many validation rows a job on ``dataset`` has: those of the validation data set row ``val``, or those
    ``validation_split`` holds out (0: none); InvalidInput when the split leaves no rows to train on."""
    if val is not None:
        return int(val.n_samples)
    if not validation_split:
        return 0
    n_val = max(1, int(round(dataset.n_samples * validation_split)))
    if n_val >= dataset.n_samples:
        raise InvalidInput(f"validation_split: {validation_split} of {dataset.n_samples} rows leaves "
                           "no rows to train on")
    return n_val


def check_validation_dataset(train, val) -> None:
    """InvalidInput naming ``validation_dataset_id`` unless data set row ``val`` can validate a model trained on
    ``train``: same task, the same columns (by name) readable as the training ones, as many regression targets,
    no class the training set lacks. Also used by sweeps at creation."""
    if val.task != train.task:
        raise InvalidInput(f"validation_dataset_id: data set {val.id} is for {val.task}, the training data "
                           f"set for {train.task}")
    theirs = {c["name"]: c["type"] for c in job_preprocessing.columns_of(val)}   # matched by name, any order
    ours = job_preprocessing.columns_of(train)
    if val.n_features != train.n_features:
        names = {t["name"] for t in ours}
        extra = [n for n in theirs if n not in names]
        lacking = [t["name"] for t in ours if t["name"] not in theirs]
        which = "; ".join(([f"column(s) {echo(extra)} are not in the training data set"] if extra else [])
                          + ([f"it has no column(s) {echo(lacking)}"] if lacking else []))
        raise InvalidInput(f"validation_dataset_id: data set {val.id} has {val.n_features} features, the "
                           f"training data set {train.n_features}" + (f" ({which})" if which else ""))
    for t in ours:
        if t["name"] not in theirs:
            raise InvalidInput(f"validation_dataset_id: data set {val.id} has no column {t['name']!r}, which the "
                               f"training data set has (columns are matched by name)")
    try:        # columns typed otherwise are read as batch scoring reads them (a column with no value, yes/no)
        job_preprocessing.scoring_plan(ours, val, against="the training data set")
    except ValueError as exc:
        raise InvalidInput(f"validation_dataset_id: {exc}") from None
    if train.task == "regression" and val.n_outputs != train.n_outputs:
        raise InvalidInput(f"validation_dataset_id: data set {val.id} has {val.n_outputs} targets, the "
                           f"training data set {train.n_outputs}")
    if train.task == "classification":
        unknown = [c for c in (val.classes or []) if c not in (train.classes or [])]
        if unknown:
            raise InvalidInput(f"validation_dataset_id: classes {unknown[:5]} of data set {val.id} do not "
                               "occur in the training data set")


def check_monitor(monitor: str, dataset, n_val: int, field: str = "early_stopping.monitor") -> None:
    """InvalidInput naming ``field`` unless the metric ``monitor`` exists for the data set's task and has what it
    needs: ``n_val`` validation rows (> 0) when computed on them; for val_auc two classes. Also checks a sweep's
    ``metric``."""
    task = dataset.task
    n_classes = len(dataset.classes or []) if task == "classification" else None
    if task == "classification" and core.MONITORS.get(monitor, core.MONITORS["val_loss"]).binary_only \
            and n_classes != 2:
        raise InvalidInput(f"{field}: {monitor!r} is for binary classification; data set {dataset.id} has "
                           f"{n_classes} classes")
    allowed = core.monitors_for(task, n_classes)
    if monitor not in allowed:
        raise InvalidInput(f"{field}: {monitor!r} is not available for {task}; use one of "
                           f"{', '.join(allowed)}")
    if core.MONITORS[monitor].needs_validation and not n_val:
        raise InvalidInput(f"{field}: {monitor!r} needs validation data (validation_split > 0 "
                           "or validation_dataset_id)")
    if core.MONITORS[monitor].binary_only and n_val > core.VAL_AUC_MAX_ROWS:
        raise InvalidInput(f"{field}: 'val_auc' is computed for at most {core.VAL_AUC_MAX_ROWS:,} validation rows; "
                           f"this job has {n_val:,}")


def check_auc_validation(dataset, storage: Storage | None, *, validation_split: float, seed: int,
                         field: str, val=None) -> None:
    """A val_auc metric needs both classes among the validation rows: those of the validation data set ``val``
    (its classes), or the rows ``validation_split`` holds out with ``seed`` (counted when ``storage``).
    InvalidInput naming ``field``. Also used by sweeps (every trial of a sweep holds out the same rows)."""
    if val is not None:
        if len(val.classes or []) < 2:
            only = (val.classes or ["no class"])[0]
            raise InvalidInput(f"{field}: 'val_auc' needs both classes among the validation rows, but validation "
                               f"data set {val.id} holds only {only!r}; use a validation data set with both "
                               f"classes, a validation_split, or {field.rsplit('.', 1)[-1]} 'val_loss'")
        return
    if storage is None or not validation_split:
        return
    y = np.asarray(datasets_service.load_arrays(storage, dataset)[1]).reshape(-1)
    va = y[core.validation_indices(y.shape[0], validation_split, seed)[1]]
    if va.min() == va.max():
        label = (dataset.classes or [])[int(va[0])] if int(va[0]) < len(dataset.classes or []) else va[0]
        raise InvalidInput(f"{field}: 'val_auc' needs both classes among the validation rows, but the "
                           f"{va.shape[0]} row(s) that validation_split={validation_split} holds out with "
                           f"seed={seed} are all {label!r}; use a larger validation_split, another seed, "
                           f"a validation_dataset_id, or {field.rsplit('.', 1)[-1]} 'val_loss'")


def _check_cross_validation(folds: int, dataset, storage: Storage | None) -> None:
    """k folds fit the rows; stratified folds (classification) fit the smallest class (counted when ``storage``)."""
    if folds > dataset.n_samples:
        raise InvalidInput(f"cross_validation.folds: {folds} is more than the {dataset.n_samples} rows of data set "
                           f"{dataset.id}")
    if dataset.task != "classification" or storage is None:
        return
    counts = np.bincount(np.asarray(datasets_service.load_arrays(storage, dataset)[1], dtype=np.int64).reshape(-1))
    smallest = int(counts[counts > 0].min())
    if folds > smallest:
        c = int(np.flatnonzero(counts == smallest)[0])
        label = (dataset.classes or [])[c] if c < len(dataset.classes or []) else c
        raise InvalidInput(f"cross_validation.folds: {folds} is more than the {smallest} row(s) of the smallest "
                           f"class ({label!r}); stratified folds need every class in every fold")


def check_weights(body: JobCreate, dataset) -> None:
    """class_weight suits the task and names the data set's labels; sample_weight_column is a numeric column."""
    if body.class_weight is not None:
        if dataset.task != "classification":
            raise InvalidInput(f"class_weight: data set {dataset.id} is for {dataset.task}; class weights are for "
                               "classification (use sample_weight_column)")
        try:
            job_preprocessing.class_weight_indices(body.class_weight, list(dataset.classes or []))
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
    try:
        job_preprocessing.weight_column_index(dataset, body.sample_weight_column)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    column = next((c for c in (dataset.columns or [])
                   if c.get("name") == body.sample_weight_column), None)
    if column is not None and column.get("missing"):
        raise InvalidInput(f"sample_weight_column: column {body.sample_weight_column!r} has {column['missing']} "
                           "missing value(s); every row needs a weight")


# -- worker side ------------------------------------------------------------------------------------------
def requeue_interrupted(session: Session) -> list[str]:
    """At start-up of a single-machine server: jobs left running by a dead server go back to the queue."""
    now = utcnow()
    session.execute(update(Job).where(Job.status == RUNNING, Job.cancel_requested.is_(True)).values(
        status=CANCELLED, worker=None, finished_at=now, updated_at=now).execution_options(**_NO_SYNC))
    ids = list(session.scalars(select(Job.id).where(Job.status == RUNNING)).all())
    if ids:
        session.execute(update(Job).where(Job.id.in_(ids), Job.status == RUNNING).values(
            status=QUEUED, worker=None, updated_at=now).execution_options(**_NO_SYNC))
    session.commit()
    return ids


def has_queued(session: Session) -> bool:
    """Whether any job waits for a worker."""
    return session.scalar(select(Job.id).where(Job.status == QUEUED).limit(1)) is not None


def _fenced(job_id: str, attempt: int):
    return update(Job).where(Job.id == job_id, Job.attempt == attempt, Job.status == RUNNING)


def _take(session: Session, *, job_id: str, attempt: int, worker: str, cond: list) -> bool:
    """The fenced claim UPDATE: (job_id, attempt) under ``cond`` becomes running as ``attempt + 1``."""
    now = utcnow()
    res = session.execute(update(Job).where(Job.id == job_id, Job.attempt == attempt, *cond).values(
        status=RUNNING, attempt=attempt + 1, worker=worker, error=None, progress=None,
        started_at=func.coalesce(Job.started_at, now), updated_at=now).execution_options(**_NO_SYNC))
    session.commit()
    return res.rowcount == 1


def _fair_order() -> tuple:
    """Fair claim order across tenants: fewest running jobs, then least recently served, then oldest job."""
    other = aliased(Job)
    running = (select(func.count(other.id)).where(other.owner == Job.owner, other.status == RUNNING)
               .correlate(Job).scalar_subquery())
    last_start = (select(func.max(other.started_at)).where(other.owner == Job.owner)
                  .correlate(Job).scalar_subquery())
    return running, nulls_first(last_start), Job.created_at, Job.id


def claim_next(session: Session, *, worker: str) -> tuple[str, int] | None:
    """Atomically take the fairest queued job (see ``_fair_order``): returns (job_id, attempt) or None."""
    for _ in range(10):
        row = session.execute(select(Job.id, Job.attempt).where(Job.status == QUEUED)
                              .order_by(*_fair_order()).limit(1)).first()
        if row is None:
            session.rollback()
            return None
        if _take(session, job_id=row.id, attempt=row.attempt, worker=worker, cond=[Job.status == QUEUED]):
            return row.id, row.attempt + 1
    return None


def claim(session: Session, *, job_id: str, worker: str, lease_seconds: float | None = None) -> int | None:
    """Take ``job_id`` if queued (or running with a lease older than ``lease_seconds``); the new attempt or None."""
    row = session.execute(select(Job.status, Job.attempt, Job.updated_at).where(Job.id == job_id)).first()
    if row is None:
        session.rollback()
        return None
    stale = utcnow() - timedelta(seconds=lease_seconds) if lease_seconds is not None else None
    if row.status == QUEUED:
        cond = [Job.status == QUEUED]
    elif row.status == RUNNING and stale is not None and row.updated_at < stale:
        cond = [Job.status == RUNNING, Job.updated_at < stale]
        log.warning("job %s: lease of attempt %d expired (last beat %s); taking it over", job_id, row.attempt,
                    row.updated_at)
    else:
        session.rollback()
        return None
    taken = _take(session, job_id=job_id, attempt=row.attempt, worker=worker, cond=cond)
    return row.attempt + 1 if taken else None


def claim_fairest(session: Session, *, job_id: str, worker: str,
                  lease_seconds: float | None = None) -> tuple[str, int] | None:
    """A broker message's claim: the fairest queued job (``claim_next``), whichever one the message named; when
    none is queued, ``job_id`` itself if its lease expired (a takeover). (job_id, attempt) or None.

    Messages are wake-ups, one published per queued job, so every queued job is still taken by some message."""
    taken = claim_next(session, worker=worker)
    if taken is not None:
        return taken
    attempt = claim(session, job_id=job_id, worker=worker, lease_seconds=lease_seconds)
    return (job_id, attempt) if attempt is not None else None


def renew(session: Session, *, job_id: str, attempt: int) -> bool:
    """Heartbeat: extend the lease of (job_id, attempt); False when that attempt no longer holds the job."""
    res = session.execute(_fenced(job_id, attempt).values(updated_at=utcnow()).execution_options(**_NO_SYNC))
    session.commit()
    return res.rowcount == 1


def requeue_expired(session: Session, *, lease_seconds: float) -> list[str]:
    """Running jobs whose lease is older than ``lease_seconds`` go back to ``queued`` (each fenced on its attempt)."""
    now = utcnow()
    stale = now - timedelta(seconds=lease_seconds)
    rows = session.execute(select(Job.id, Job.attempt).where(Job.status == RUNNING, Job.updated_at < stale)).all()
    ids = []
    for r in rows:
        res = session.execute(_fenced(r.id, r.attempt).where(Job.updated_at < stale)
                              .values(status=QUEUED, worker=None, updated_at=now).execution_options(**_NO_SYNC))
        if res.rowcount == 1:
            ids.append(r.id)
    session.commit()
    return ids


def stale_queued(session: Session, *, older_than: float) -> list[str]:
    """Queued jobs untouched for ``older_than`` seconds; their ``updated_at`` is bumped so one sweeper wins."""
    now = utcnow()
    cutoff = now - timedelta(seconds=older_than)
    rows = session.execute(select(Job.id, Job.updated_at).where(Job.status == QUEUED, Job.updated_at < cutoff)
                           .order_by(Job.created_at).limit(1000)).all()
    ids = []
    for r in rows:
        res = session.execute(update(Job).where(Job.id == r.id, Job.status == QUEUED,
                                                Job.updated_at == r.updated_at)
                              .values(updated_at=now).execution_options(**_NO_SYNC))
        if res.rowcount == 1:
            ids.append(r.id)
    session.commit()
    return ids


def load_for_training(session: Session, *, job_id: str):
    """The job row with its network and data set rows (validation data set or None)."""
    job = session.get(Job, job_id)
    network = networks_service.get_or_raise(session, owner=job.owner, network_id=job.network_id)
    dataset = datasets_service.get_or_raise(session, owner=job.owner, dataset_id=job.dataset_id)
    val = None
    if job.validation_dataset_id:
        val = datasets_service.get_or_raise(session, owner=job.owner, dataset_id=job.validation_dataset_id)
    return job, network, dataset, val


def should_stop(session: Session, *, job_id: str, attempt: int) -> str | None:
    """Why the worker holding (job_id, attempt) must stop: 'cancel', 'lost', or None to go on."""
    row = session.execute(select(Job.status, Job.attempt, Job.cancel_requested).where(Job.id == job_id)).first()
    session.rollback()
    if row is None or row.status != RUNNING or row.attempt != attempt:
        return "lost"
    return "cancel" if row.cancel_requested else None


_INSERT_IGNORE: dict[str, Any] = {}  # dialect name -> the metric rows' INSERT ... ON CONFLICT DO NOTHING


def _insert_ignore_statement(dialect: str):
    """One statement per dialect, built once: executed with a list of rows (executemany), its compiled form is
    cached, where ``insert().values(rows)`` was compiled again at every epoch commit (~1 ms of a worker's CPU)."""
    stmt = _INSERT_IGNORE.get(dialect)
    if stmt is None:
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        stmt = _INSERT_IGNORE[dialect] = insert(JobMetric.__table__).on_conflict_do_nothing(
            index_elements=["job_id", "epoch"])
    return stmt


def _insert_metrics_ignore(session: Session, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        session.connection().execute(_insert_ignore_statement(dialect), rows)
        return
    have = set(session.scalars(select(JobMetric.epoch).where(JobMetric.job_id == rows[0]["job_id"])).all())
    session.add_all(JobMetric(**r) for r in rows if r["epoch"] not in have)


def record_cross_validation(session: Session, *, job_id: str, attempt: int, result: dict[str, Any]) -> bool:
    """Commit the fold models' held-out metrics (a resumed attempt then skips the folds); False if fenced out."""
    res = session.execute(_fenced(job_id, attempt).values(cross_validation=result, updated_at=utcnow())
                          .execution_options(**_NO_SYNC))
    session.commit()
    return res.rowcount == 1


def record_progress(session: Session, *, job_id: str, attempt: int, progress: dict[str, Any]) -> bool:
    """Store the running attempt's within-epoch progress (epoch, batch, batches, fraction, eta); False if fenced out."""
    res = session.execute(_fenced(job_id, attempt).values(progress=progress, updated_at=utcnow())
                          .execution_options(**_NO_SYNC))
    session.commit()
    return res.rowcount == 1


def record_epochs(session: Session, *, job_id: str, attempt: int, owner: str, history: list[dict[str, Any]],
                  best_epoch: int | None) -> bool:
    """Commit the metrics of finished epochs (each epoch once) and the job's progress; False if fenced out."""
    latest = history[-1]
    res = session.execute(_fenced(job_id, attempt).values(
        epoch=int(latest["epoch"]), metrics=latest, best_epoch=best_epoch, updated_at=utcnow())
        .execution_options(**_NO_SYNC))
    if res.rowcount != 1:
        session.rollback()
        return False
    _insert_metrics_ignore(session, [{"job_id": job_id, "owner": owner, "epoch": int(m["epoch"]), "metrics": m}
                                     for m in history])
    session.commit()
    return True


def complete(session: Session, *, job_id: str, attempt: int, model, metrics: dict[str, Any] | None,
             best_epoch: int | None) -> bool:
    """Mark the job succeeded and insert its trained-model row in one transaction; False if fenced out."""
    now = utcnow()
    values = dict(status=SUCCEEDED, model_id=model.id, best_epoch=best_epoch, finished_at=now, updated_at=now,
                  worker=None)
    if metrics:
        values.update(epoch=int(metrics["epoch"]), metrics=metrics)
    res = session.execute(_fenced(job_id, attempt).values(**values).execution_options(**_NO_SYNC))
    if res.rowcount != 1:
        session.rollback()
        return False
    session.add(model)
    session.commit()
    return True


def kind_of(session: Session, *, job_id: str) -> str | None:
    """The job's kind ('train' or 'predict'), or None when the job is gone."""
    kind = session.scalar(select(Job.kind).where(Job.id == job_id))
    session.rollback()
    return kind


def record_rows(session: Session, *, job_id: str, attempt: int, rows: int, metrics: dict[str, Any]) -> bool:
    """A scoring job's progress (rows scored; also its heartbeat); False if fenced out."""
    res = session.execute(_fenced(job_id, attempt).values(epoch=rows, metrics=metrics, updated_at=utcnow())
                          .execution_options(**_NO_SYNC))
    session.commit()
    return res.rowcount == 1


def succeed(session: Session, *, job_id: str, attempt: int, rows: int, metrics: dict[str, Any]) -> bool:
    """Mark a scoring job succeeded (its predictions file is stored); False if fenced out."""
    now = utcnow()
    res = session.execute(_fenced(job_id, attempt).values(
        status=SUCCEEDED, epoch=rows, metrics=metrics, worker=None, finished_at=now, updated_at=now)
        .execution_options(**_NO_SYNC))
    session.commit()
    return res.rowcount == 1


def finish(session: Session, *, job_id: str, attempt: int, status: str, error: str | None = None) -> bool:
    """End the attempt as failed or cancelled, or hand the job back to the queue (status 'queued')."""
    now = utcnow()
    values: dict[str, Any] = dict(status=status, worker=None, updated_at=now)
    if status in (FAILED, CANCELLED):
        values.update(finished_at=now, error=error)
    res = session.execute(_fenced(job_id, attempt).values(**values).execution_options(**_NO_SYNC))
    session.commit()
    return res.rowcount == 1


def hand_back_worker_jobs(session: Session, *, worker: str, error: str, max_attempts: int) -> tuple[list[str], list[str]]:
    """A worker process died: each running job it held goes back to the queue (the next worker resumes it from
    its last epoch checkpoint), or fails with ``error`` once it has been tried ``max_attempts`` times (a job
    that kills every worker must not loop forever). Returns (requeued ids, failed ids)."""
    rows = session.execute(select(Job.id, Job.attempt).where(Job.status == RUNNING, Job.worker == worker)).all()
    requeued, failed = [], []
    now = utcnow()
    for r in rows:
        if r.attempt < max_attempts:
            res = session.execute(_fenced(r.id, r.attempt).values(status=QUEUED, worker=None, updated_at=now)
                                  .execution_options(**_NO_SYNC))
            (requeued if res.rowcount else []).append(r.id)
        else:
            res = session.execute(_fenced(r.id, r.attempt).values(
                status=FAILED, worker=None, finished_at=now, updated_at=now,
                error=f"{error} It was tried {r.attempt} times (MLP_MAX_JOB_ATTEMPTS={max_attempts}); "
                      "each time the worker died.").execution_options(**_NO_SYNC))
            (failed if res.rowcount else []).append(r.id)
    session.commit()
    return requeued, failed


def fail_worker_jobs(session: Session, *, worker: str, error: str) -> list[str]:
    """A worker process died: its running jobs fail with ``error`` (they are not left running)."""
    ids = list(session.scalars(select(Job.id).where(Job.status == RUNNING, Job.worker == worker)).all())
    if ids:
        now = utcnow()
        session.execute(update(Job).where(Job.id.in_(ids), Job.status == RUNNING, Job.worker == worker).values(
            status=FAILED, error=error, worker=None, finished_at=now, updated_at=now)
            .execution_options(**_NO_SYNC))
    session.commit()
    return ids
