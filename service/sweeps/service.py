"""Sweep verbs. API side: create, get, list, cancel, delete. Driver side: take_lease, release, step.

A sweep's state is its rows (sweeps, sweep_trials) and its trials' jobs; each ``step`` rebuilds the Optuna study
from them, so any API process holding the sweep's lease can drive it, also after a kill -9. Trials are created,
cancelled and read through the jobs and networks verbs: this module never writes a job row.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete as delete_
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, defer

import core
from service.datasets import service as datasets_service
from service.datasets.tables import Dataset
from service.database import get_owned_or_raise, lock_for_write, page, utcnow
from service.errors import Conflict, NotFound, ServiceError, TooManyRequests, validation_message
from service.executor.base import Executor
from service.jobs import service as jobs_service
from service.jobs.tables import CANCELLED, FAILED, SUCCEEDED, Job, JobMetric
from service.models.tables import TrainedModel
from service.networks import service as networks_service
from service.networks.schemas import NetworkCreate
from service.settings import Settings
from service.storage import Storage
from service.sweeps import space
from service.sweeps.trials import job_body as _job_body, network_spec
from service.sweeps.schemas import SweepCreate, SweepRead, TrialRead
from service.sweeps.tables import (CANCELLED as SWEEP_CANCELLED, COMPLETE, FAILED as SWEEP_FAILED, PENDING, PRUNED,
                                   RUNNING, SUCCEEDED as SWEEP_SUCCEEDED, SWEEP_TERMINAL, TRIAL_ACTIVE,
                                   TRIAL_CANCELLED, TRIAL_FAILED, TRIAL_RUNNING, Sweep, SweepTrial)

log = logging.getLogger("service.sweeps")

_NO_SYNC = {"synchronize_session": False}
IMPORTANCE_SECONDS = 5.0
_IMPORTANCES_AT: dict[str, float] = {}  # sweep id -> when this process last refitted its importances (monotonic)
DEFAULT_VALIDATION_SPLIT = 0.2  # without validation_split and validation_dataset_id


def _search():
    """The Optuna side, imported on first use (Optuna costs start-up time that servers without sweeps skip)."""
    from service.sweeps import search
    return search


# -- API side ---------------------------------------------------------------------------------------------
def create(session: Session, settings: Settings, *, owner: str, body: SweepCreate,
           storage: Storage | None = None) -> Sweep:
    """Validate the sweep against its data set(s) and limits and commit it; the driver proposes its trials.

    What every trial's job would refuse is a 422 here, through the jobs' own checks: a validation data set the
    training set cannot use, a metric the task (or a multiclass set, for val_auc) lacks or that needs
    validation rows the sweep does not have. ``storage``: also check that val_auc's held-out rows hold both
    classes."""
    dataset = datasets_service.get_or_raise(session, owner=owner, dataset_id=body.dataset_id)
    jobs_service.check_classes(dataset)
    val = None
    if body.validation_dataset_id is not None:
        val = datasets_service.get_or_raise(session, owner=owner, dataset_id=body.validation_dataset_id)
        jobs_service.check_validation_dataset(dataset, val)
    elif body.validation_split is None:
        body = body.model_copy(update={"validation_split": DEFAULT_VALIDATION_SPLIT})
    metric = body.metric or ("val_accuracy" if dataset.task == "classification" else "val_loss")
    n_val = jobs_service.validation_rows(dataset, validation_split=body.validation_split or 0.0, val=val)
    jobs_service.check_monitor(metric, dataset, n_val, field="metric")
    if core.MONITORS[metric].binary_only:
        jobs_service.check_auc_validation(dataset, storage, validation_split=body.validation_split or 0.0,
                                          seed=body.seed, field="metric", val=val)
    direction = body.direction or default_direction(metric)
    body = body.model_copy(update={"metric": metric, "direction": direction})
    space.check_training(body, dataset, n_val)  # 422 for fixed job options no trial could train with
    space.check(settings, body, dataset)  # 422 for a dimension that can only make failing trials
    if body.strategy == "grid":
        size = _search().grid_size(body)  # 422 for ranges a grid cannot enumerate
        if body.max_trials is None or body.max_trials > size:
            body = body.model_copy(update={"max_trials": size})
    # Serialised with DELETE of the data sets (which refuses while a running sweep uses them): either the delete
    # commits first and this is a 404, or the sweep is committed first and the delete a 409.
    used = [body.dataset_id] + ([body.validation_dataset_id] if body.validation_dataset_id else [])
    lock_for_write(session, rows=[(Dataset, d) for d in used], tenant=owner)
    for d in used:
        datasets_service.get_or_raise(session, owner=owner, dataset_id=d)
    now = utcnow()
    sweep = Sweep(owner=owner, name=body.name, request=body.model_dump(mode="json"), status=RUNNING,
                  created_at=now, updated_at=now)
    session.add(sweep)
    session.commit()
    return sweep


def default_direction(metric: str) -> str:
    """``maximize`` for a metric where larger is better (accuracies, AUC, R²: core.MONITORS, the table the jobs'
    early stopping uses), else ``minimize`` (losses, errors)."""
    return "maximize" if core.MONITORS[metric].maximize else "minimize"


def get_or_raise(session: Session, *, owner: str, sweep_id: str) -> Sweep:
    """The sweep, or NotFound (also for another tenant's sweep)."""
    return get_owned_or_raise(session, Sweep, owner=owner, row_id=sweep_id, noun="sweep")


def trials_of(session: Session, *, owner: str, sweep_id: str, for_view: bool = False) -> list[SweepTrial]:
    """The sweep's trial rows in number order. ``for_view``: without their per-epoch values (``intermediate``,
    read only if touched), which the API's answer does not show: decoding them was most of a
    ``GET /v1/sweeps/{id}`` of a sweep with many epochs per trial."""
    query = select(SweepTrial).where(SweepTrial.sweep_id == sweep_id, SweepTrial.owner == owner)
    if for_view:
        query = query.options(defer(SweepTrial.intermediate))
    return list(session.scalars(query.order_by(SweepTrial.number)).all())


def ranked(req: dict, trials: list[SweepTrial]) -> list[tuple[SweepTrial, int | None]]:
    """Trials best first: complete ones by the metric (ranked 1..n), then pruned by epoch reached, then the rest."""
    sign = -1.0 if req["direction"] == "maximize" else 1.0
    done = sorted((t for t in trials if t.status == COMPLETE and t.value is not None),
                  key=lambda t: (sign * t.value, t.number))
    pruned = sorted((t for t in trials if t.status == PRUNED), key=lambda t: (-t.epoch, t.number))
    rest = [t for t in trials if t not in done and t not in pruned]
    return [(t, i + 1) for i, t in enumerate(done)] + [(t, None) for t in pruned + rest]


def read(session: Session, *, owner: str, sweep_id: str, with_trials: bool = True) -> SweepRead:
    """The sweep as the API shows it (trials ranked by the metric)."""
    sweep = get_or_raise(session, owner=owner, sweep_id=sweep_id)
    trials = trials_of(session, owner=owner, sweep_id=sweep_id, for_view=True)
    jobs = {}
    if with_trials and trials:
        jobs = {j.id: (j.status, j.epoch) for j in session.execute(
            select(Job.id, Job.status, Job.epoch).where(Job.owner == owner, Job.sweep_id == sweep_id)).all()}
    return view(sweep, trials, with_trials=with_trials, jobs=jobs, gone=_deleted_models(session, owner, trials))


def _deleted_models(session: Session, owner: str, trials) -> set[str]:
    """The trials' model ids whose model was deleted (only possible once the sweep ended: 409 before)."""
    ids = {t.model_id for t in trials if t.model_id is not None}
    if not ids:
        return set()
    return ids - set(session.scalars(select(TrainedModel.id).where(TrainedModel.id.in_(list(ids)),
                                                                   TrainedModel.owner == owner)).all())


def view(sweep: Sweep, trials: list[SweepTrial], *, with_trials: bool = True,
         jobs: dict[str, tuple[str, int]] | None = None, gone: set[str] = frozenset()) -> SweepRead:
    """Build the SweepRead of a sweep row and its trial rows; ``jobs``: job id -> (status, epoch) of its trials;
    ``gone``: model ids deleted since (shown as null, the trial keeps its rank and value)."""
    jobs = jobs or {}
    req = sweep.request
    order = ranked(req, trials)
    best = order[0][0] if order and order[0][1] == 1 else None
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    return SweepRead(
        id=sweep.id, name=sweep.name, status=sweep.status, reason=sweep.reason, strategy=req["strategy"],
        metric=req["metric"], direction=req["direction"], parallelism=req["parallelism"],
        max_trials=req.get("max_trials"), max_seconds=req.get("max_seconds"), counts=counts,
        best_trial=best.number if best else None, best_value=best.value if best else None,
        best_model_id=best.model_id if best and best.model_id not in gone else None, importances=sweep.importances,
        trials=[TrialRead.from_row(t, rank, jobs.get(t.job_id), model_deleted=t.model_id in gone)
                for t, rank in order] if with_trials else [],
        request=req, created_at=sweep.created_at, updated_at=sweep.updated_at, finished_at=sweep.finished_at)


def list_(session: Session, *, owner: str, limit: int, offset: int,
          status: str | None = None) -> tuple[list[SweepRead], int]:
    """A page of the owner's sweeps (only those with ``status`` when given), newest first (without their trials),
    and the total."""
    cond = [Sweep.owner == owner] + ([Sweep.status == status] if status is not None else [])
    rows, total = page(session, Sweep, *cond, limit=limit, offset=offset)
    trials = {s.id: trials_of(session, owner=owner, sweep_id=s.id, for_view=True) for s in rows}
    gone = _deleted_models(session, owner, [t for ts in trials.values() for t in ts])
    return [view(s, trials[s.id], with_trials=False, gone=gone) for s in rows], total


def cancel(session: Session, executor: Executor, *, owner: str, sweep_id: str,
           reason: str = "cancelled") -> Sweep:
    """Stop the sweep: no new trials, every queued or running trial job cancelled (within one minibatch)."""
    sweep = get_or_raise(session, owner=owner, sweep_id=sweep_id)
    if sweep.status in SWEEP_TERMINAL:
        raise Conflict(f"sweep {sweep_id} is already {sweep.status}; only a running sweep can be cancelled")
    now = utcnow()
    res = session.execute(update(Sweep).where(Sweep.id == sweep_id, Sweep.status == RUNNING).values(
        status=SWEEP_CANCELLED, reason=reason, finished_at=now, updated_at=now, lease_owner=None,
        lease_expires=None).execution_options(**_NO_SYNC))
    session.commit()
    if res.rowcount != 1:
        raise Conflict(f"sweep {sweep_id} has just ended; only a running sweep can be cancelled")
    _stop_active(session, executor, owner=owner, sweep_id=sweep_id, metric=sweep.request["metric"])
    session.refresh(sweep)
    # the trials' final outcomes: the best trial and the importances as a sweep that ended by its budget has them
    _update_best(session, sweep, _request(sweep), list(trials_of(session, owner=owner, sweep_id=sweep_id)),
                 changed=True, final=True)
    return sweep


def _stop_active(session: Session, executor: Executor, *, owner: str, sweep_id: str, metric: str) -> None:
    """Cancel the jobs of the queued and running trials; each trial then takes its job's real outcome: a job that
    ended before the cancel took effect keeps it (``complete`` with its value and model, or ``failed``), the
    others are ``cancelled``."""
    active = [t for t in trials_of(session, owner=owner, sweep_id=sweep_id) if t.status in TRIAL_ACTIVE]
    for t in active:
        _cancel_job(session, executor, owner=owner, job_id=t.job_id)
    jobs = {j.id: j for j in session.execute(
        _jobs_with_models().where(Job.id.in_([t.job_id for t in active if t.job_id]), Job.owner == owner)
    ).all()} if active else {}
    for t in active:
        job = jobs.get(t.job_id)
        if job is None or not _settle(t, job, metric):
            t.status, t.finished_at, t.error = TRIAL_CANCELLED, utcnow(), None
            if job is not None:  # still stopping (within one minibatch): the epochs it had trained
                t.epoch = max(t.epoch, job.epoch)
    session.commit()


def _jobs_with_models():
    """The columns ``_settle`` reads of trial jobs, with their models' metrics (those of the weights the model
    serves: with early stopping's restore_best, the kept epoch's, not the last epoch's)."""
    return (select(Job.id, Job.status, Job.epoch, Job.metrics, Job.model_id, Job.error,
                   TrainedModel.metrics.label("model_metrics"))
            .outerjoin(TrainedModel, TrainedModel.id == Job.model_id))


def _settle(t: SweepTrial, job, metric: str) -> bool:
    """Give trial ``t`` the outcome of its job if the job ended (True): ``complete`` with the metric's value for
    the weights its model serves (the last epoch's, or with ``training.early_stopping`` the kept epoch's) and the
    model, ``failed`` or ``cancelled`` with the job's error. The caller commits."""
    if job.status == SUCCEEDED:
        final = (job.model_metrics or {}).get(metric, (job.metrics or {}).get(metric))
        t.status, t.model_id, t.finished_at = COMPLETE, job.model_id, utcnow()
        t.value = float(final) if final is not None else None
        t.epoch = job.epoch
        return True
    if job.status in (FAILED, CANCELLED):
        t.status, t.error, t.finished_at = (TRIAL_FAILED if job.status == FAILED else TRIAL_CANCELLED,
                                            job.error, utcnow())
        t.epoch = max(t.epoch, job.epoch)  # the epochs it trained, however it was stopped (a sweep's cancel too)
        return True
    return False


def _cancel_job(session: Session, executor: Executor, *, owner: str, job_id: str | None) -> None:
    if job_id is None:
        return
    if session.dirty or session.new:
        session.commit()  # the round's trial updates are kept when the cancel below is refused and rolled back
    try:
        jobs_service.cancel(session, executor, owner=owner, job_id=job_id)
    except (Conflict, NotFound):
        session.rollback()  # it ended (or was deleted) meanwhile


def delete(session: Session, storage: Storage, *, owner: str, sweep_id: str, model_cache) -> None:
    """Delete a finished sweep with its trials' jobs and networks; trained models stay (409 while it runs)."""
    sweep = get_or_raise(session, owner=owner, sweep_id=sweep_id)
    if sweep.status not in SWEEP_TERMINAL:
        raise Conflict(f"sweep {sweep_id} is {sweep.status}; cancel it first")
    trials = trials_of(session, owner=owner, sweep_id=sweep_id)
    for t in trials:
        if t.job_id is not None:
            try:
                jobs_service.delete(session, storage, owner=owner, job_id=t.job_id, model_cache=model_cache)
            except NotFound:
                session.rollback()
        if t.network_id is not None:
            try:
                networks_service.delete(session, owner=owner, network_id=t.network_id)
            except (NotFound, Conflict):
                session.rollback()
    session.execute(delete_(SweepTrial).where(SweepTrial.sweep_id == sweep_id, SweepTrial.owner == owner)
                    .execution_options(**_NO_SYNC))
    session.execute(delete_(Sweep).where(Sweep.id == sweep_id, Sweep.owner == owner).execution_options(**_NO_SYNC))
    session.commit()


# -- driver side --------------------------------------------------------------------------------------------
def warm_up() -> None:
    """Load Optuna's importance machinery (run by the driver in a thread of its own when sweeps first run)."""
    _search().warm_up()


def runnable(session: Session) -> list[str]:
    """Ids of the running sweeps, oldest first."""
    ids = list(session.scalars(select(Sweep.id).where(Sweep.status == RUNNING).order_by(Sweep.created_at)).all())
    session.rollback()
    return ids


def take_lease(session: Session, *, sweep_id: str, driver: str, seconds: float) -> bool:
    """Take (or renew) the lease on a running sweep: free, expired, or already ours."""
    now = utcnow()
    res = session.execute(update(Sweep).where(
        Sweep.id == sweep_id, Sweep.status == RUNNING,
        or_(Sweep.lease_owner.is_(None), Sweep.lease_owner == driver, Sweep.lease_expires < now))
        .values(lease_owner=driver, lease_expires=now + timedelta(seconds=seconds)).execution_options(**_NO_SYNC))
    session.commit()
    return res.rowcount == 1


def release(session: Session, *, driver: str) -> None:
    """Give up every lease of ``driver`` (at shutdown), so another process takes over at once."""
    session.execute(update(Sweep).where(Sweep.lease_owner == driver).values(lease_owner=None, lease_expires=None)
                    .execution_options(**_NO_SYNC))
    session.commit()


def step(session: Session, executor: Executor, settings: Settings, *, sweep_id: str) -> None:
    """One round of the driver: read trial jobs, prune, stop at the budget, ask Optuna for new trials.

    New trials are launched before the best trial and the importances (a random forest: tens of milliseconds)
    are brought up to date, so a worker that finished a trial gets the next one without waiting for them.
    """
    sweep = session.get(Sweep, sweep_id)
    if sweep is None or sweep.status != RUNNING:
        return
    req = _request(sweep)
    trials = _trials(session, sweep)
    before = [t.status for t in trials]
    new_values = _refresh(session, sweep, req, trials)
    if req.pruner != "none" and new_values:
        _prune(session, executor, sweep, req, trials, new_values)
    session.commit()  # what _refresh read and _prune decided: one commit
    changed = before != [t.status for t in trials]
    if sweep.status == RUNNING:
        ending = _advance(session, executor, settings, sweep, req, trials)
    else:
        ending = None
    _update_best(session, sweep, req, trials, changed=changed, final=ending is not None)
    if ending is not None:
        _finish(session, sweep, *_outcome(trials, ending))


def _outcome(trials: list[SweepTrial], ending: str) -> tuple[str, str]:
    """The status and reason of a sweep that reached its budget: ``succeeded`` when at least one trial completed,
    else ``failed`` saying what became of the trials and the first error."""
    if any(t.status == COMPLETE for t in trials):
        return SWEEP_SUCCEEDED, ending
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    what = ", ".join(f"{n} {status}" for status, n in sorted(counts.items(), key=lambda kv: -kv[1])) or "none ran"
    first = next((t.error for t in trials if t.status == TRIAL_FAILED and t.error), None)
    return SWEEP_FAILED, f"no trial completed: {what}{f' (first error: {first})' if first else ''}; {ending}"


def fail(session: Session, executor: Executor, *, sweep_id: str, reason: str) -> None:
    """End a running sweep as ``failed`` with ``reason`` (the driver could not step it); its trials' jobs are
    cancelled as by ``cancel``."""
    session.rollback()
    sweep = session.get(Sweep, sweep_id)
    if sweep is None or sweep.status != RUNNING:
        return
    _finish(session, sweep, SWEEP_FAILED, reason[:2000])
    _stop_active(session, executor, owner=sweep.owner, sweep_id=sweep_id, metric=sweep.request.get("metric") or "")


_ENDED: dict[str, dict[int, SimpleNamespace]] = {}  # sweep id -> copies of its ended trials' rows, by number
_ENDED_KEPT = 64
_TRIAL_COLUMNS = tuple(SweepTrial.__table__.columns.keys())


def _trials(session: Session, sweep: Sweep) -> list:
    """The sweep's trials in number order, for a driver round: rows of the active ones, and of the ended ones a
    copy this process kept when it read them (an ended trial's row never changes again: every write to a trial
    is to an active one, and only an ended sweep's trials are deleted), so a round reads only what can move."""
    ended = _ENDED.pop(sweep.id, {})
    query = select(SweepTrial).where(SweepTrial.sweep_id == sweep.id, SweepTrial.owner == sweep.owner)
    if ended:
        query = query.where(SweepTrial.number.not_in(list(ended)))
    rows = list(session.scalars(query).all())
    out = list(ended.values()) + rows
    for t in rows:
        if t.status not in TRIAL_ACTIVE:
            ended[t.number] = SimpleNamespace(**{c: getattr(t, c) for c in _TRIAL_COLUMNS})
    _ENDED[sweep.id] = ended  # most recently used last
    while len(_ENDED) > _ENDED_KEPT:
        _ENDED.pop(next(iter(_ENDED)))
    return sorted(out, key=lambda t: t.number)


_REQUESTS: dict[str, SweepCreate] = {}  # sweep id -> its validated request (a sweep's request never changes)
_REQUESTS_KEPT = 64


def _request(sweep: Sweep) -> SweepCreate:
    """The sweep's SweepCreate, validated once per process rather than at every round."""
    req = _REQUESTS.pop(sweep.id, None) or SweepCreate.model_validate(sweep.request)
    _REQUESTS[sweep.id] = req  # most recently used last
    while len(_REQUESTS) > _REQUESTS_KEPT:
        _REQUESTS.pop(next(iter(_REQUESTS)))
    return req


def _advance(session: Session, executor: Executor, settings: Settings, sweep: Sweep, req: SweepCreate,
             trials: list[SweepTrial]) -> str | None:
    """Launch pending trials and ask for new ones up to ``parallelism``; the reason to end the sweep, if any."""
    elapsed = (utcnow() - sweep.created_at).total_seconds()
    if req.max_seconds is not None and elapsed >= req.max_seconds:
        if _stop_for_budget(session, executor, sweep, trials):
            return None  # the sweep ends once its cancelled trials' jobs have
        return f"max_seconds={req.max_seconds:g} reached"
    active = [t for t in trials if t.status in TRIAL_ACTIVE]
    for t in active:
        if t.status == PENDING and not _launch(session, executor, settings, sweep, req, t):
            return None  # over the job quota: try again at the next step
    exhausted = req.max_trials is not None and len(trials) >= req.max_trials
    covered = _covered(req, trials)
    if (exhausted or covered) and not any(t.status in TRIAL_ACTIVE for t in trials):
        if covered:
            return _every_point(covered, "space")
        if req.strategy == "grid" and req.max_trials == _search().grid_size(req):
            return _every_point(req.max_trials, "grid")  # (max_trials is the grid's size, not what was given)
        return f"max_trials={req.max_trials} reached"
    while not (exhausted or covered) and sum(t.status in TRIAL_ACTIVE for t in trials) < req.parallelism:
        if not _start(session, executor, settings, sweep, req, trials):
            return None
        exhausted = req.max_trials is not None and len(trials) >= req.max_trials
        covered = _covered(req, trials)
    return None


def _every_point(n: int, what: str) -> str:
    return f"all {n} points of the {what} tried" if n != 1 else f"the one point of the {what} tried"


_BUDGET_CANCELLED: dict[str, set[str]] = {}  # sweep id -> trial jobs this process cancelled at max_seconds


def _stop_for_budget(session: Session, executor: Executor, sweep: Sweep, trials: list[SweepTrial]) -> bool:
    """``max_seconds`` passed: pending trials are cancelled, running trials' jobs are asked to stop (once). A trial
    whose job is still queued or running stays ``running`` until the job ends, and then takes the job's real
    outcome (``_refresh``): a job that succeeded before the cancel took effect is a complete trial with its
    value and model. True while such trials remain."""
    asked = _BUDGET_CANCELLED.setdefault(sweep.id, set())
    waiting = False
    for t in trials:
        if t.status == PENDING or (t.status == TRIAL_RUNNING and t.job_id is None):
            t.status, t.finished_at, t.error = TRIAL_CANCELLED, utcnow(), None
        elif t.status == TRIAL_RUNNING:
            waiting = True
            if t.job_id not in asked:
                _cancel_job(session, executor, owner=sweep.owner, job_id=t.job_id)
                asked.add(t.job_id)
    session.commit()
    if not waiting:
        _BUDGET_CANCELLED.pop(sweep.id, None)
    return waiting


def _finish(session: Session, sweep: Sweep, status: str, reason: str) -> None:
    now = utcnow()
    session.execute(update(Sweep).where(Sweep.id == sweep.id, Sweep.status == RUNNING).values(
        status=status, reason=reason, finished_at=now, updated_at=now, lease_owner=None, lease_expires=None)
        .execution_options(**_NO_SYNC))
    session.commit()
    session.refresh(sweep)
    log.info("sweep %s: %s (%s)", sweep.id, sweep.status, reason)


def _refresh(session: Session, sweep: Sweep, req: SweepCreate, trials: list[SweepTrial]) -> dict[int, list]:
    """Read each running trial's job: new per-epoch metric values, and its outcome when it ended (the caller
    commits).

    Without a pruner nothing judges the epochs while a trial runs: its metric rows are read once, when its job
    has ended (the trial's ``epoch`` is not moved before, so that read starts after the epochs already stored)."""
    new: dict[int, list] = {}
    running = [t for t in trials if t.status == TRIAL_RUNNING and t.job_id is not None]
    if not running:
        return new
    # One read of the running trials' jobs; their metric rows only for those that committed an epoch since.
    jobs = {j.id: j for j in session.execute(
        _jobs_with_models().where(Job.id.in_([t.job_id for t in running]), Job.owner == sweep.owner)).all()}
    judged = req.pruner != "none"
    for t in running:
        job = jobs.get(t.job_id)
        due = job is not None and job.epoch > t.epoch and (judged or job.status in (SUCCEEDED, FAILED, CANCELLED))
        rows = [] if not due else session.scalars(select(JobMetric.metrics).where(
            JobMetric.job_id == t.job_id, JobMetric.owner == sweep.owner, JobMetric.epoch > t.epoch)
            .order_by(JobMetric.epoch)).all()
        values = [(int(m["epoch"]), float(m[req.metric])) for m in rows if m.get(req.metric) is not None]
        if values:
            new[t.number] = values
        _record_values(t, values)
        if job is None:
            t.status, t.error, t.finished_at = TRIAL_FAILED, "its job was deleted", utcnow()
        elif _settle(t, job, req.metric) and t.status != COMPLETE:
            new.pop(t.number, None)
    return new


def _record_values(t: SweepTrial, values: list) -> None:
    if values:
        t.intermediate = {**(t.intermediate or {}), **{str(e): v for e, v in values}}
        t.epoch = max(e for e, _ in values)


def _prune(session: Session, executor: Executor, sweep: Sweep, req: SweepCreate, trials: list[SweepTrial],
           new_values: dict[int, list]) -> None:
    """Report each new epoch to Optuna's pruner in order; a pruned trial's job is cancelled.

    A trial whose job ended before the driver saw its epochs is judged on them all the same (and is ``pruned``
    if the rule says so at any epoch): the outcome depends on the metrics only, never on when they were read.
    The caller commits the trials (a pruned trial's job cancel commits them with it).
    """
    st = _search().judging_study(req, sweep.id, trials,
                                 running={n: values[0][0] for n, values in new_values.items()})
    for t in trials:
        if t.number not in new_values or t.status not in (TRIAL_RUNNING, COMPLETE):
            continue
        inter = {int(k): float(v) for k, v in (t.intermediate or {}).items() if int(k) < new_values[t.number][0][0]}
        last = int(t.params.get("epochs") or 0)
        for epoch, value in new_values[t.number]:
            inter[epoch] = value
            # the last epoch is never judged: the trial has trained in full, pruning it would only discard it
            if epoch < last and _search().should_prune(st, t.number, inter):
                if t.status == TRIAL_RUNNING:
                    _cancel_job(session, executor, owner=sweep.owner, job_id=t.job_id)
                t.status, t.finished_at, t.error = PRUNED, utcnow(), f"pruned by the {req.pruner} rule"
                t.value = t.model_id = None
                break
        t.intermediate = {str(k): v for k, v in inter.items()}
        t.epoch = max(inter)


def _update_best(session: Session, sweep: Sweep, req: SweepCreate, trials: list[SweepTrial], *,
                 changed: bool, final: bool = False) -> None:
    """When a trial ended: the best trial, stored on the sweep row with Optuna's parameter importances (a random
    forest, refitted at most every ``IMPORTANCE_SECONDS`` while the sweep runs, and always as it ends)."""
    if not (changed or final) and sweep.best_trial is not None:
        return
    order = ranked(sweep.request, trials)
    best = order[0][0].number if order and order[0][1] == 1 else None
    if not (changed or final) and best == sweep.best_trial:
        return
    refit = final or time.monotonic() - _IMPORTANCES_AT.get(sweep.id, float("-inf")) >= IMPORTANCE_SECONDS
    if not refit and best == sweep.best_trial:
        return  # a trial ended, but neither the best trial nor (yet) the importances change: no write
    values: dict[str, Any] = {"best_trial": best, "updated_at": utcnow()}
    if refit:
        done = sum(t.status == COMPLETE for t in trials)
        values["importances"] = _search().importances(
            _search().study(req, sweep.id, trials, number=len(trials))) if done >= 2 else None
        if done >= 2:       # the clock starts at the first fit: the second complete trial is not held back
            _IMPORTANCES_AT[sweep.id] = time.monotonic()
        if final:
            _IMPORTANCES_AT.pop(sweep.id, None)
    session.execute(update(Sweep).where(Sweep.id == sweep.id).values(**values).execution_options(**_NO_SYNC))
    session.commit()
    session.refresh(sweep)


def _propose(sweep: Sweep, req: SweepCreate, trials: list[SweepTrial]) -> dict[str, Any]:
    """Optuna's parameters for trial number len(trials), from the stored trials (and the seed) only."""
    return _search().propose(req, sweep.id, trials, number=len(trials))


def _covered(req: SweepCreate, trials: list[SweepTrial]) -> int | None:
    """The size of a random or TPE sweep's finite space once every point of it has been proposed, else None."""
    if req.strategy == "grid":
        return None
    size = _search().space_size(req)
    if size is None or len(trials) < size:  # (counted only when it could be: no key made in a large space)
        return None
    return size if len({_search().params_key(t.params) for t in trials}) >= size else None


def _new_trial(sweep: Sweep, number: int, params: dict[str, Any], status: str) -> SweepTrial:
    return SweepTrial(sweep_id=sweep.id, owner=sweep.owner, number=number, params=params, status=status,
                      epoch=0, intermediate={}, created_at=utcnow())


def _start(session: Session, executor: Executor, settings: Settings, sweep: Sweep, req: SweepCreate,
           trials: list[SweepTrial]) -> bool:
    """Ask Optuna for trial number len(trials) and start it: its network, its job and its trial row (running)
    in one transaction, so after a crash either all three exist or none does and the same number is asked
    again from the same rows. Over the job quota the trial is stored ``pending`` (``_launch`` starts it later)
    and False is returned, as it is when the sweep was cancelled meanwhile (then no trial is stored)."""
    number = len(trials)
    params = _propose(sweep, req, trials)
    t = _new_trial(sweep, number, params, TRIAL_RUNNING)

    def attach(job: Job) -> None:
        t.job_id = job.id
        session.add(t)

    try:
        dataset = _output_of(session, sweep, req)
        network = NetworkCreate(**network_spec(req, params, dataset, name=f"sweep {sweep.id} trial {number}"))
        # The write lock before the reads that must hold at the commit: the sweep's status, the job quota (and
        # jobs.create's reads of the data sets, which find a data set deleted meanwhile).
        lock_for_write(session, rows=[(Dataset, req.dataset_id)], tenant=sweep.owner)
        if session.scalar(select(Sweep.status).where(Sweep.id == sweep.id)) != RUNNING:  # cancelled meanwhile
            session.rollback()
            return False
        net = networks_service.create(session, owner=sweep.owner, body=network, settings=settings, commit=False)
        t.network_id = net.id
        jobs_service.create(session, executor, settings, owner=sweep.owner, body=_job_body(req, t),
                            sweep_id=sweep.id, before_commit=attach, network=net)
    except TooManyRequests as exc:
        session.rollback()
        pending = _new_trial(sweep, number, params, PENDING)
        pending.error = _waiting(exc)
        trials.append(_stored(session, pending))
        return False
    except (ServiceError, ValueError) as exc:
        session.rollback()
        detail = _why(exc)
        failed = _new_trial(sweep, number, params, TRIAL_FAILED)
        failed.error, failed.finished_at = f"cannot start the trial: {detail}", utcnow()
        trials.append(_stored(session, failed))
        return True
    trials.append(t)
    if session.scalar(select(Sweep.status).where(Sweep.id == sweep.id)) != RUNNING:  # cancelled as it started
        _cancel_job(session, executor, owner=sweep.owner, job_id=t.job_id)
        t.status, t.finished_at, t.error = TRIAL_CANCELLED, utcnow(), None
        session.commit()
        return False
    return True


def _waiting(exc: TooManyRequests) -> str:
    """What a ``pending`` trial waits for: the job quota's 429 detail."""
    return f"waiting for a job slot: {exc.detail}"


def _why(exc: Exception) -> str:
    """Why a trial could not start, readable: a service error's detail, pydantic's errors as ``field: message``."""
    if isinstance(exc, ServiceError):
        return str(exc.detail)
    if isinstance(exc, ValidationError):
        return validation_message(exc.errors(include_url=False))
    return str(exc)


_OUTPUTS: dict[str, SimpleNamespace] = {}  # sweep id -> what a trial's network needs of its data set
_OUTPUTS_KEPT = 64


def _output_of(session: Session, sweep: Sweep, req: SweepCreate) -> SimpleNamespace:
    """The training data set's ``task``, ``classes`` and ``n_outputs`` (what ``network_spec`` reads), read once per
    process and sweep: they never change under a data set's id. Whether the data set still exists is asked at
    every start all the same, by ``jobs.create`` under the write lock (a deleted one fails the trial: NotFound)."""
    out = _OUTPUTS.pop(sweep.id, None)
    if out is None or out.id != req.dataset_id:
        d = datasets_service.get_or_raise(session, owner=sweep.owner, dataset_id=req.dataset_id)
        out = SimpleNamespace(id=d.id, task=d.task, classes=list(d.classes or []), n_outputs=d.n_outputs)
    _OUTPUTS[sweep.id] = out  # most recently used last
    while len(_OUTPUTS) > _OUTPUTS_KEPT:
        _OUTPUTS.pop(next(iter(_OUTPUTS)))
    return out


def _stored(session: Session, t: SweepTrial) -> SweepTrial:
    session.add(t)
    session.commit()
    return t


def _launch(session: Session, executor: Executor, settings: Settings, sweep: Sweep, req: SweepCreate,
            t: SweepTrial) -> bool:
    """Start a ``pending`` trial (one stored over the job quota, or before this version's one-commit start):
    its network and job through their verbs, idempotent after a crash; False over quota."""
    name = f"sweep {sweep.id} trial {t.number}"
    if session.scalar(select(Sweep.status).where(Sweep.id == sweep.id)) != RUNNING:  # cancelled meanwhile
        t.status, t.finished_at, t.error = TRIAL_CANCELLED, utcnow(), None
        session.commit()
        return False
    try:
        if t.network_id is None:
            dataset = datasets_service.get_or_raise(session, owner=sweep.owner, dataset_id=req.dataset_id)
            spec = network_spec(req, t.params, dataset, name=name)
            net = networks_service.create(session, owner=sweep.owner, body=NetworkCreate(**spec), settings=settings)
            t.network_id = net.id
            session.commit()
        if t.job_id is None:  # a job made before a crash is found by its network
            t.job_id = session.scalar(select(Job.id).where(Job.owner == sweep.owner, Job.sweep_id == sweep.id,
                                                           Job.network_id == t.network_id))
        if t.job_id is None:
            job = jobs_service.create(session, executor, settings, owner=sweep.owner, body=_job_body(req, t),
                                      sweep_id=sweep.id)
            t.job_id = job.id
    except TooManyRequests as exc:
        session.rollback()
        if t.error != _waiting(exc):  # the count of the tenant's jobs moved: say so, else no write
            t.error = _waiting(exc)
            session.commit()
        return False
    except (ServiceError, ValueError) as exc:
        session.rollback()
        detail = _why(exc)
        t.status, t.error, t.finished_at = TRIAL_FAILED, f"cannot start the trial: {detail}", utcnow()
        session.commit()
        return True
    t.status, t.error = TRIAL_RUNNING, None
    session.commit()
    if session.scalar(select(Sweep.status).where(Sweep.id == sweep.id)) != RUNNING:
        _cancel_job(session, executor, owner=sweep.owner, job_id=t.job_id)
        t.status, t.finished_at, t.error = TRIAL_CANCELLED, utcnow(), None
        session.commit()
        return False
    return True
