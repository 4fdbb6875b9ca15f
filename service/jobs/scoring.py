"""Batch scoring as a job (``kind='predict'``), API side: create one, and find its stored predictions file.

The worker side (read the data set in row chunks, predict, write the file) is ``service/executor/scoring.py``.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from service import quotas
from service.database import lock_for_write, utcnow
from service.datasets import service as datasets_service
from service.datasets.tables import Dataset
from service.errors import Conflict, InvalidInput, NotFound
from service.executor.base import Executor
from service.jobs import preprocessing as job_preprocessing
from service.jobs import service as jobs_service
from service.jobs.schemas import PredictionCreate
from service.jobs.tables import PREDICT, QUEUED, SUCCEEDED, Job
from service.models import service as models_service
from service.storage import Storage

FORMATS = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}


def predictions_key(job_id: str, fmt: str) -> str:
    """Storage key of a scoring job's predictions file (under the job's folder: deleting the job removes it)."""
    return f"jobs/{job_id}/predictions.{fmt}"


def create(session: Session, executor: Executor, storage: Storage, settings, *, owner: str, model_id: str,
           body: PredictionCreate, cache: models_service.ModelCache) -> Job:
    """Check the model's columns against the data set's, commit a queued predict job, hand it over."""
    lock_for_write(session, rows=[(Dataset, body.dataset_id)], tenant=owner)  # serialised with DELETE of it
    row = models_service.get_or_raise(session, owner=owner, model_id=model_id)
    dataset = datasets_service.get_or_raise(session, owner=owner, dataset_id=body.dataset_id)
    model = models_service.load(session, storage, owner=owner, model_id=model_id, cache=cache)
    try:
        job_preprocessing.scoring_plan(model.columns.columns, dataset)
    except ValueError as exc:
        raise InvalidInput(f"dataset_id: {exc}") from None
    if dataset.n_samples < 1:
        raise InvalidInput(f"dataset_id: data set {dataset.id} has no rows to score")
    now = utcnow()
    job = Job(owner=owner, kind=PREDICT, network_id=row.network_id or "", dataset_id=dataset.id,
              validation_dataset_id=None, model_id=row.id, params={"model_id": row.id, "format": body.format},
              status=QUEUED, epoch=0, epochs=int(dataset.n_samples), attempt=0, cancel_requested=False,
              created_at=now, updated_at=now)
    session.add(job)
    quotas.check_jobs(session, settings, owner=owner)
    session.commit()
    executor.submit(job.id)
    return job


def predictions_file(session: Session, storage: Storage, *, owner: str, model_id: str,
                     job_id: str) -> tuple[str, str]:
    """(storage key, media type) of a succeeded scoring job's file; 404 unknown, 409 while not succeeded."""
    job = jobs_service.get_or_raise(session, owner=owner, job_id=job_id)
    if job.kind != PREDICT or job.model_id != model_id:
        raise NotFound(f"job {job_id} is not a batch prediction of model {model_id}")
    if job.status != SUCCEEDED:
        why = f": {job.error}" if job.error else ""
        raise Conflict(f"job {job_id} is {job.status}{why}; its predictions can be downloaded once it has "
                       "succeeded")
    fmt = job.params.get("format", "csv")
    key = predictions_key(job.id, fmt)
    if not storage.exists(key):
        raise NotFound(f"the predictions file of job {job_id} is missing from storage ({key})")
    return key, FORMATS[fmt]


def load_for_scoring(session: Session, *, job_id: str) -> tuple[Job, Dataset]:
    """Worker side: the predict job's row and its data set's row (NotFound when the data set was deleted)."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    dataset = datasets_service.get_or_raise(session, owner=job.owner, dataset_id=job.dataset_id)
    return job, dataset
