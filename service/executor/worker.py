"""The training loop of one embedded worker process (imports numpy and core; runs outside the API)."""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback

import numpy as np

import core
from service.database import make_engine, make_sessionmaker, new_id, utcnow
from service.datasets import service as datasets_service
from service.errors import ServiceError
from service.executor.embedded import worker_name
from service.jobs import preprocessing as job_preprocessing
from service.jobs import service as jobs_service
from service.jobs.tables import CANCELLED, FAILED, QUEUED
from service.models.tables import TrainedModel
from service.storage import make_storage

log = logging.getLogger("service.worker")

IDLE_POLL_SECONDS = 1.0
CANCEL_POLL_SECONDS = 0.2


class LostJob(Exception):
    """This worker no longer holds the job (its attempt was fenced out)."""


class EpochWriter(threading.Thread):
    """Writes each epoch's checkpoint and then commits its metrics, off the training thread.

    Training never waits for the disk: the callback hands over (metrics, state) and goes on. If the writer is
    behind, it saves only the newest state and commits every epoch's metrics up to it, so the invariant holds
    that no epoch is committed before a checkpoint at least that far is durable. ``close`` drains the queue and
    re-raises the writer's error (e.g. LostJob when the attempt was fenced out).
    """

    def __init__(self, save, record):
        super().__init__(name="epoch-writer", daemon=True)
        self._save, self._record = save, record
        self._cond = threading.Condition()
        self._metrics: list[dict] = []
        self._latest = None
        self._closed = False
        self.error: BaseException | None = None

    def put(self, metrics: dict, state, best_epoch: int | None) -> None:
        with self._cond:
            if self.error is not None:
                raise self.error
            self._metrics.append(metrics)
            self._latest = (state, best_epoch)
            self._cond.notify()

    def check(self) -> None:
        """Raise the writer's error, if any (polled from should_stop)."""
        if self.error is not None:
            raise self.error

    def run(self) -> None:
        while True:
            with self._cond:
                while not self._metrics and not self._closed:
                    self._cond.wait()
                if not self._metrics:
                    return
                batch, (state, best_epoch) = self._metrics, self._latest
                self._metrics, self._latest = [], None
            try:
                self._save(state)
                self._record(batch, best_epoch)
            except BaseException as exc:  # noqa: BLE001 - handed to the training thread
                with self._cond:
                    self.error = exc
                return

    def close(self) -> None:
        """Wait until every handed-over epoch is written; raise the writer's error."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self.join()
        self.check()


def checkpoint_key(job_id: str) -> str:
    return f"jobs/{job_id}/checkpoint.npz"


def model_key(model_id: str) -> str:
    return f"models/{model_id}/model.npz"


def _remap_classes(y_val: np.ndarray, val_classes: list, train_classes: list) -> np.ndarray:
    """Validation labels are indices into the validation set's classes; re-index them to the training set's."""
    if list(val_classes) == list(train_classes):
        return y_val
    index = {c: i for i, c in enumerate(train_classes)}
    table = np.array([index[c] for c in val_classes], dtype=np.int64)
    return table[np.asarray(y_val, dtype=np.int64)]


class Worker:
    """Claims queued jobs from the database and trains them with core.fit, one at a time."""

    def __init__(self, settings, conn, parent_pid: int):
        self.settings = settings
        self.conn = conn
        self.parent_pid = parent_pid
        self.engine = make_engine(settings)
        self.Session = make_sessionmaker(self.engine)
        self.storage = make_storage(settings)
        self.name = worker_name(os.getpid())
        self.shutdown = False
        self.cancel_hints: set[str] = set()

    # -- messages from the server -----------------------------------------------------------------------
    def _drain(self) -> None:
        try:
            while self.conn.poll(0):
                kind, arg = self.conn.recv()
                if kind == "stop":
                    self.shutdown = True
                elif kind == "cancel":
                    self.cancel_hints.add(arg)
        except (EOFError, OSError):  # the server closed our pipe: it is gone
            self.shutdown = True

    def _parent_alive(self) -> bool:
        return os.getppid() == self.parent_pid

    def run(self) -> None:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s[%(process)d]: %(message)s")
        while not self.shutdown and self._parent_alive():
            with self.Session() as session:
                claim = jobs_service.claim_next(session, worker=self.name)
            if claim is not None:
                self.run_job(*claim)
                continue
            try:
                self.conn.poll(IDLE_POLL_SECONDS)
            except (EOFError, OSError):
                break
            self._drain()
        self.engine.dispose()

    # -- one job ------------------------------------------------------------------------------------------
    def run_job(self, job_id: str, attempt: int) -> None:
        log.info("job %s: attempt %d started", job_id, attempt)
        self.cancel_hints.discard(job_id)
        stop_reason: list[str] = []
        try:
            self._train(job_id, attempt, stop_reason)
        except core.TrainingCancelled:
            reason = stop_reason[0] if stop_reason else "cancel"
            if reason == "shutdown":
                self._finish(job_id, attempt, QUEUED)  # resumes from its checkpoint after the restart
            elif reason == "cancel":
                self._finish(job_id, attempt, CANCELLED, "cancelled while running")
        except LostJob:
            log.warning("job %s: attempt %d was superseded; dropping it", job_id, attempt)
        except core.TrainingDiverged as exc:
            self._finish(job_id, attempt, FAILED, str(exc))
        except ServiceError as exc:  # e.g. the network or data set was deleted
            self._finish(job_id, attempt, FAILED, f"cannot train: {exc.detail}")
        except ValueError as exc:
            self._finish(job_id, attempt, FAILED, f"training failed: {exc}")
        except Exception as exc:  # noqa: BLE001 - the job fails with a readable message, the worker lives on
            log.error("job %s failed:\n%s", job_id, traceback.format_exc())
            self._finish(job_id, attempt, FAILED, f"internal error while training: {type(exc).__name__}: {exc}")

    def _finish(self, job_id: str, attempt: int, status: str, error: str | None = None) -> None:
        with self.Session() as session:
            ok = jobs_service.finish(session, job_id=job_id, attempt=attempt, status=status, error=error)
        log.info("job %s: attempt %d ended %s%s", job_id, attempt, status, "" if ok else " (superseded)")

    def _train(self, job_id: str, attempt: int, stop_reason: list[str]) -> None:
        with self.Session() as session:
            job, network, dataset, val = jobs_service.load_for_training(session, job_id=job_id)
        params = job.params
        X, y = datasets_service.load_arrays(self.storage, dataset, mmap=True)
        validation = None
        if val is not None:
            Xv, yv = datasets_service.load_arrays(self.storage, val, mmap=True)
            if dataset.task == "classification":
                yv = _remap_classes(yv, val.classes or [], dataset.classes or [])
            validation = (job_preprocessing.align_validation(Xv, val, dataset), yv)

        net = core.Network.from_spec(network.spec)
        ckpt_path = self.storage.local_path(checkpoint_key(job_id))
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        resume = None
        if ckpt_path.is_file():
            resume = core.TrainingState.load(ckpt_path)
            log.info("job %s: resuming after epoch %d", job_id, resume.epoch)
            if resume.history:
                self._record(job, attempt, resume.history, resume.early.get("best_epoch"))

        last_check = [time.monotonic()]

        def should_stop() -> bool:
            writer.check()
            self._drain()
            if self.shutdown:
                stop_reason.append("shutdown")
                return True
            if job_id in self.cancel_hints:
                stop_reason.append("cancel")
                return True
            now = time.monotonic()
            if now - last_check[0] < CANCEL_POLL_SECONDS:
                return False
            last_check[0] = now
            if not self._parent_alive():
                self.shutdown = True
                stop_reason.append("shutdown")
                return True
            with self.Session() as session:
                why = jobs_service.should_stop(session, job_id=job_id, attempt=attempt)
            if why == "lost":
                raise LostJob(job_id)
            if why:
                stop_reason.append(why)
                return True
            return False

        def save_checkpoint(state: core.TrainingState) -> None:
            state.save(ckpt_path)  # atomic: temp file, fsync, rename
            self.storage.upload_local(checkpoint_key(job_id))

        writer = EpochWriter(save_checkpoint, lambda batch, best: self._record(job, attempt, batch, best))
        writer.start()

        def on_epoch(metrics: dict, state: core.TrainingState) -> bool:
            writer.put(metrics, state, state.early.get("best_epoch"))
            return False

        optimizer = dict(params["optimizer"])
        try:
            history = core.fit(
                net, X, y, epochs=params["epochs"], batch_size=params["batch_size"], optimizer=optimizer,
                weight_decay=params["weight_decay"], validation=validation,
                validation_split=params["validation_split"], early_stopping=params.get("early_stopping"),
                preprocessing=job_preprocessing.build(params, dataset), seed=params["seed"], callback=on_epoch,
                should_stop=should_stop, resume=resume)
        except BaseException:
            try:  # record the epochs that did finish before the job is marked failed/cancelled/requeued
                writer.close()
            except LostJob:
                raise
            except Exception:  # noqa: BLE001 - the training error is the one to report
                log.exception("job %s: writing the last epochs failed", job_id)
            raise
        writer.close()

        net.meta = {"job_id": job_id, "network_id": network.id, "dataset_id": dataset.id,
                    "task": dataset.task, "classes": dataset.classes, "feature_names": dataset.feature_names}
        model_id = new_id()
        key = model_key(model_id)
        path = self.storage.local_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        net.save(path)  # atomic
        self.storage.upload_local(key)
        final = dict(history[-1]) if history else {}
        metrics = dict(final, best_epoch=history.best_epoch)
        model = TrainedModel(id=model_id, owner=job.owner, job_id=job_id, network_id=network.id,
                             dataset_id=dataset.id, task=dataset.task, classes=dataset.classes,
                             input_dim=dataset.n_features, output_dim=net.output_dim, metrics=metrics,
                             artifact_key=key, created_at=utcnow())
        with self.Session() as session:
            ok = jobs_service.complete(session, job_id=job_id, attempt=attempt, model=model,
                                       metrics=final or None, best_epoch=history.best_epoch)
        if not ok:
            self.storage.delete_prefix(f"models/{model_id}")
            raise LostJob(job_id)
        self.storage.delete_prefix(f"jobs/{job_id}")
        log.info("job %s: succeeded after %d epoch(s); model %s", job_id, len(history), model_id)

    def _record(self, job, attempt: int, history: list[dict], best_epoch: int | None) -> None:
        with self.Session() as session:
            ok = jobs_service.record_epochs(session, job_id=job.id, attempt=attempt, owner=job.owner,
                                            history=history, best_epoch=best_epoch)
        if not ok:
            raise LostJob(job.id)
