"""Batch scoring of one ``kind='predict'`` job in a worker: the stored data set is read in bounded row chunks,
matched to the model's input columns, predicted, and written as one CSV or Parquet file (temp name + rename)."""

from __future__ import annotations

import logging
import time

import numpy as np

import core
from service.datasets import service as datasets_service
from service.errors import InvalidInput
from service.executor.base import LostJob
from service.executor.runner import PROGRESS_SECONDS, Runner
from service.jobs import preprocessing as job_preprocessing
from service.jobs import scoring as jobs_scoring
from service.jobs import service as jobs_service
from service.models import service as models_service

log = logging.getLogger("service.worker")

MAX_CHUNK_ROWS = 65_536


def _open_writer(path, schema, fmt: str):
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    if fmt == "parquet":
        return pq.ParquetWriter(str(path), schema)
    return pcsv.CSVWriter(str(path), schema)


class Scoring(Runner):
    """One attempt at one predict job: load the model and data set, then predict and write chunk by chunk.

    Stops between chunks on cancel or shutdown (``core.TrainingCancelled``, ``stop_reason`` as for training);
    whatever ends it early, the temporary file is removed and no predictions file is left behind.
    """

    verb, noun = "score", "scoring"     # for the job's error message

    def __init__(self, worker, job_id: str, attempt: int):
        super().__init__(worker, job_id, attempt)
        self._last_check = 0.0  # the first poll asks the database at once

    def run(self) -> None:
        w = self.worker
        with w.Session() as session:
            job, dataset = jobs_scoring.load_for_scoring(session, job_id=self.job_id)
            cache = models_service.ModelCache(capacity=1, predict_memory_bytes=w.settings.predict_memory_bytes)
            model = models_service.load(session, w.storage, owner=job.owner, model_id=job.model_id, cache=cache)
        try:
            plan = job_preprocessing.scoring_plan(model.columns.columns, dataset)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        X = w.storage.load_array(datasets_service.x_key(dataset.id), mmap=True)
        fmt = job.params.get("format", "csv")
        key = jobs_scoring.predictions_key(job.id, fmt)
        started = time.monotonic()
        try:
            with w.storage.atomic_writer(key) as tmp:
                self._write(tmp, fmt, model, X, plan, started)
            ok = self._commit(X.shape[0], started)
        except LostJob:
            raise  # another attempt holds the job (and writes the same key)
        except BaseException:
            w.storage.delete_prefix(key)  # published but not committed: no file for a job that did not succeed
            raise
        if not ok:
            raise LostJob(self.job_id)
        log.info("job %s: scored %d rows of data set %s into %s", job.id, X.shape[0], dataset.id, key)

    def _chunk_rows(self, model, n_features: int) -> int:
        budget = self.worker.settings.predict_memory_bytes // (8 * max(n_features, 1))
        return max(1, min(MAX_CHUNK_ROWS, model.chunk_rows, budget))

    def _write(self, path, fmt: str, model, X: np.ndarray, plan, started: float) -> None:
        n, step = X.shape[0], self._chunk_rows(model, X.shape[1])
        writer = None
        last_progress = time.monotonic()
        try:
            for start in range(0, n, step):
                if self.should_stop():
                    raise core.TrainingCancelled(f"job {self.job_id} stopped ({self.stop_reason})")
                table = self._predict(model, X[start:start + step], plan, start)
                if writer is None:
                    writer = _open_writer(path, table.schema, fmt)
                writer.write_table(table)
                done = min(start + step, n)
                if done < n and time.monotonic() - last_progress >= PROGRESS_SECONDS:
                    last_progress = time.monotonic()
                    self._progress(done, started)
        finally:
            if writer is not None:
                writer.close()

    def _predict(self, model, rows: np.ndarray, plan, start: int):
        """One chunk -> an Arrow table: ``prediction`` (labels as uploaded, or values), ``proba_<label>``."""
        import pyarrow as pa

        Xc = job_preprocessing.apply_plan(rows, plan)
        try:
            proba, out = models_service.predict_arrays_unlocked(model, Xc)
        except InvalidInput as exc:  # the message names a row of this chunk: name the data set's row
            raise InvalidInput(f"rows {start}..{start + len(Xc) - 1} of the data set: {exc.detail}") from None
        if proba is None:
            if out.ndim == 2:
                return pa.table({f"prediction_{j}": out[:, j] for j in range(out.shape[1])})
            return pa.table({"prediction": out})
        labels = list(model.classes) if model.classes is not None else list(range(proba.shape[1]))
        pred = pa.array(labels).take(pa.array(np.asarray(out, dtype=np.int64)))
        cols = {"prediction": pred}
        cols.update({f"proba_{label}": proba[:, i] for i, label in enumerate(labels)})
        return pa.table(cols)

    def _metrics(self, rows: int, started: float) -> dict:
        seconds = max(time.monotonic() - started, 1e-9)
        return {"rows": rows, "seconds": round(seconds, 3), "rows_per_second": round(rows / seconds, 1)}

    def _progress(self, rows: int, started: float) -> None:
        with self.worker.Session() as session:
            ok = jobs_service.record_rows(session, job_id=self.job_id, attempt=self.attempt, rows=rows,
                                          metrics=self._metrics(rows, started))
        if not ok:
            raise LostJob(self.job_id)

    def _commit(self, rows: int, started: float) -> bool:
        with self.worker.Session() as session:
            return jobs_service.succeed(session, job_id=self.job_id, attempt=self.attempt, rows=rows,
                                        metrics=self._metrics(rows, started))
