"""The training loop of one embedded worker process (imports numpy and core; runs outside the API)."""

from __future__ import annotations

import logging
import math
import os
import select
import threading
import time
import traceback

import numpy as np

import core
from service.database import connection_lost, make_engine, make_sessionmaker, new_id
from service.datasets import service as datasets_service
from service.errors import ServiceError
from service.executor.base import LostJob, worker_name
from service.executor.runner import PROGRESS_SECONDS, Runner
from service.executor.scoring import Scoring
from service.jobs import preprocessing as job_preprocessing
from service.jobs import service as jobs_service
from service.jobs.tables import CANCELLED, FAILED, PREDICT, QUEUED, TRAIN
from service.models import service as models_service
from service.storage import make_storage

log = logging.getLogger("service.worker")

IDLE_POLL_SECONDS = 1.0
RATE_SECONDS = 4.0  # time constant of the smoothed training rate behind the ETA
WRITE_GAP_SECONDS = 0.05  # an attempt's epoch and progress commits at most this often (pruning waits no longer)
DATA_CACHE_BYTES = 256 * 2**20  # data set arrays a worker keeps in memory between jobs (sweep trials share them)


class EpochWriter(threading.Thread):
    """Writes checkpoints, commits epoch metrics and progress reports, off the training thread.

    Training never waits for the disk: the callbacks hand over (metrics, state) or a progress report and go on.
    ``state`` is None for an epoch that is not checkpointed (see ``Training.checkpoint_due``). If the writer is
    behind, it saves only the newest state handed over and commits every epoch's metrics up to it in one
    transaction, and only the newest progress report. Writes are spaced ``min_gap`` seconds apart (fast epochs
    are committed a few at a time, leaving the database's write lock and the disk to claims, completions and the
    sweep driver). ``close`` drains the queue at once and re-raises the writer's error (e.g. LostJob when the
    attempt was fenced out).
    """

    def __init__(self, save, record, report=None, min_gap: float = 0.0):
        super().__init__(name="epoch-writer", daemon=True)
        self._save, self._record, self._report, self._gap = save, record, report, min_gap
        self._cond = threading.Condition()
        self._metrics: list[dict] = []
        self._state = None
        self._best: int | None = None
        self._progress: dict | None = None
        self._closed = False
        self.error: BaseException | None = None

    def put(self, metrics: dict, state, best_epoch: int | None) -> None:
        with self._cond:
            if self.error is not None:
                raise self.error
            self._metrics.append(metrics)
            if state is not None:
                self._state = state
            self._best = best_epoch
            self._cond.notify()

    def report(self, progress: dict) -> None:
        """Hand over a within-epoch progress report (only the newest pending one is written)."""
        with self._cond:
            self._progress = progress
            self._cond.notify()

    def check(self) -> None:
        """Raise the writer's error, if any (polled from should_stop)."""
        if self.error is not None:
            raise self.error

    def run(self) -> None:
        while True:
            with self._cond:
                while not self._metrics and self._progress is None and not self._closed:
                    self._cond.wait()
                if not self._metrics and self._progress is None:
                    return
                batch, state, best, progress = self._metrics, self._state, self._best, self._progress
                self._metrics, self._state, self._progress = [], None, None
            try:
                if state is not None:
                    self._save(state)
                if batch:
                    self._record(batch, best)
                if progress is not None and self._report is not None:
                    self._report(progress)
            except BaseException as exc:  # noqa: BLE001 - handed to the training thread
                with self._cond:
                    self.error = exc
                return
            self._pause()

    def _pause(self) -> None:
        """Wait ``min_gap`` before the next write, unless closed meanwhile."""
        deadline = time.monotonic() + self._gap
        with self._cond:
            while not self._closed and (rest := deadline - time.monotonic()) > 0:
                self._cond.wait(rest)

    def close(self) -> None:
        """Wait until every handed-over epoch and report is written; raise the writer's error."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self.join()
        self.check()


class Eta:
    """Seconds left from the fraction done per second, exponentially weighted over about ``tau`` seconds.

    Each report's rate is measured since the previous report (validation passes included), so one slow or fast
    stretch moves the estimate little, and a lasting change of speed (another job on the machine) is followed
    within a few ``tau``. The last epoch's duration alone would jump with every epoch.
    """

    def __init__(self, tau: float = RATE_SECONDS):
        self.tau = tau
        self._last: tuple[float, float] | None = None  # (time, fraction) of the previous report
        self.rate: float | None = None  # smoothed fraction per second

    def update(self, now: float, fraction: float) -> float | None:
        """Report ``fraction`` done at monotonic time ``now``; the estimated seconds left (None until known)."""
        if self._last is not None:
            t, f = self._last
            if now <= t or fraction <= f:
                return self._eta(fraction)
            rate, w = (fraction - f) / (now - t), 1.0 - math.exp(-(now - t) / self.tau)
            self.rate = rate if self.rate is None else w * rate + (1.0 - w) * self.rate
        self._last = (now, fraction)
        return self._eta(fraction)

    def _eta(self, fraction: float) -> float | None:
        return round(max(1.0 - fraction, 0.0) / self.rate, 2) if self.rate else None


class ArrayCache:
    """A warm worker's data set arrays between jobs, least recently used out first, at most ``capacity`` bytes.

    Keyed by the data set's id and content (rows, columns, stored size, creation time): a data set's files never
    change under its id, and a deleted one is never asked for again. Cached arrays are read-only, like the
    memory maps they replace; a data set bigger than the capacity stays memory-mapped.
    """

    def __init__(self, capacity: int = DATA_CACHE_BYTES):
        self.capacity = capacity
        self._items: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def load(self, storage, dataset) -> tuple[np.ndarray, np.ndarray]:
        key = (dataset.id, dataset.n_samples, dataset.n_features, dataset.size_bytes, str(dataset.created_at))
        if key in self._items:
            self._items[key] = self._items.pop(key)  # most recently used last
            return self._items[key]
        X, y = datasets_service.load_arrays(storage, dataset, mmap=True)
        if X.nbytes + y.nbytes > self.capacity:
            return X, y
        X, y = np.array(X), np.array(y)
        X.flags.writeable = y.flags.writeable = False
        while self._items and self._bytes() + X.nbytes + y.nbytes > self.capacity:
            self._items.pop(next(iter(self._items)))
        self._items[key] = (X, y)
        return X, y

    def _bytes(self) -> int:
        return sum(X.nbytes + y.nbytes for X, y in self._items.values())


def checkpoint_key(job_id: str) -> str:
    return f"jobs/{job_id}/checkpoint.npz"


def served_metrics(history: core.History) -> dict:
    """The metrics of the weights the model serves: the best epoch's when they were restored (with
    ``best_epoch`` and the last epoch's as ``last_epoch_metrics``), else the last epoch's (no best_epoch)."""
    if not history:
        return {}
    last = dict(history[-1])
    if not history.restored_best or history.best_epoch is None:
        return last
    best = next((dict(h) for h in history if h.get("epoch") == history.best_epoch), None)
    if best is None:
        return last
    return dict(best, best_epoch=history.best_epoch, last_epoch_metrics=last)


def fit_options(params: dict, dataset, validation=None) -> dict:
    """core.fit's training options for a job's stored params on a data set row (a fresh preprocessor each call)."""
    return dict(epochs=params["epochs"], batch_size=params["batch_size"], optimizer=dict(params["optimizer"]),
                weight_decay=params["weight_decay"], validation=validation,
                validation_split=params["validation_split"], early_stopping=params.get("early_stopping"),
                preprocessing=job_preprocessing.build(params, dataset), seed=params["seed"],
                lr_schedule=params.get("lr_schedule"), clip_norm=params.get("clip_norm"),
                l1=params.get("l1", 0.0), output_bias=params.get("output_bias", "zeros"),  # jobs stored before it
                class_weight=job_preprocessing.class_weight_indices(params.get("class_weight"),
                                                                     list(dataset.classes or [])))


def _remap_classes(y_val: np.ndarray, val_classes: list, train_classes: list) -> np.ndarray:
    """Validation labels are indices into the validation set's classes; re-index them to the training set's."""
    if list(val_classes) == list(train_classes):
        return y_val
    index = {c: i for i, c in enumerate(train_classes)}
    table = np.array([index[c] for c in val_classes], dtype=np.int64)
    return table[np.asarray(y_val, dtype=np.int64)]


class Worker:
    """Claims queued jobs from the database and trains them with core.fit, one at a time."""

    def __init__(self, settings, conn, parent_pid: int, events=None):
        self.settings = settings
        self.conn = conn
        self.events = events  # hints to the server (epoch committed, job ended), or None
        self._events_lock = threading.Lock()
        self.parent_pid = parent_pid
        self.engine = make_engine(settings)
        self.Session = make_sessionmaker(self.engine)
        self.storage = make_storage(settings)
        self.name = worker_name(os.getpid())
        self.shutdown = False
        self.cancel_hints: set[str] = set()
        self.arrays = ArrayCache()
        self._poller = None  # a select.poll on the server's pipe (see _drain)

    # -- messages from the server -----------------------------------------------------------------------
    def _drain(self) -> None:
        """Read the server's messages, if any. Called before every minibatch: asked of a ``select.poll`` object
        made once (~1 us), where ``Connection.poll(0)`` builds a selector each call (~40 us, 7% of small epochs)."""
        try:
            if self._poller is None:
                self._poller = select.poll()
                self._poller.register(self.conn.fileno(), select.POLLIN)
            if not self._poller.poll(0):
                return
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

    def notify(self, kind: str, job_id: str) -> None:
        """Hint the server that ``job_id`` committed an epoch or ended; dropped rather than ever blocking."""
        if self.events is None:
            return
        with self._events_lock:
            try:
                # a message this small is written whole when select says the pipe has room (PIPE_BUF)
                if select.select([], [self.events.fileno()], [], 0)[1]:
                    self.events.send((kind, job_id))
            except (OSError, ValueError):
                self.events = None

    def run(self) -> None:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s[%(process)d]: %(message)s")
        while not self.shutdown and self._parent_alive():
            with self.Session() as session:
                claim = jobs_service.claim_next(session, worker=self.name)
            if claim is not None:
                self.run_job(*claim)
                self.notify("ended", claim[0])
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
        with self.Session() as session:
            kind = jobs_service.kind_of(session, job_id=job_id) or TRAIN
        runner = RUNNERS[kind](self, job_id, attempt)
        try:
            runner.run()
        except core.TrainingCancelled:
            reason = runner.stop_reason or "cancel"
            if reason == "shutdown":
                self._finish(job_id, attempt, QUEUED)  # resumes from its checkpoint after the restart
            elif reason == "cancel":
                self._finish(job_id, attempt, CANCELLED, "cancelled while running")
        except LostJob:
            log.warning("job %s: attempt %d was superseded; dropping it", job_id, attempt)
        except core.TrainingDiverged as exc:
            self._finish(job_id, attempt, FAILED, str(exc))
        except ServiceError as exc:  # e.g. the network or data set was deleted
            self._finish(job_id, attempt, FAILED, f"cannot {runner.verb}: {exc.detail}")
        except ValueError as exc:
            self._finish(job_id, attempt, FAILED, f"{runner.noun} failed: {exc}")
        except Exception as exc:  # noqa: BLE001 - the job fails with a readable message, the worker lives on
            if connection_lost(exc):
                self._database_lost(job_id, attempt, exc)
                return
            log.error("job %s failed:\n%s", job_id, traceback.format_exc())
            self._finish(job_id, attempt, FAILED,
                         f"internal error while {runner.noun}: {type(exc).__name__}: {exc}")

    def _database_lost(self, job_id: str, attempt: int, exc: Exception) -> None:
        """The database could not be reached while training: here (one machine) the job fails and says why."""
        log.error("job %s lost the database:\n%s", job_id, traceback.format_exc())
        self._finish(job_id, attempt, FAILED, f"internal error while training: {type(exc).__name__}: {exc}")

    def _finish(self, job_id: str, attempt: int, status: str, error: str | None = None) -> None:
        with self.Session() as session:
            ok = jobs_service.finish(session, job_id=job_id, attempt=attempt, status=status, error=error)
        log.info("job %s: attempt %d ended %s%s", job_id, attempt, status, "" if ok else " (superseded)")

    def _record(self, job, attempt: int, history: list[dict], best_epoch: int | None) -> None:
        with self.Session() as session:
            ok = jobs_service.record_epochs(session, job_id=job.id, attempt=attempt, owner=job.owner,
                                            history=history, best_epoch=best_epoch)
        if not ok:
            raise LostJob(job.id)
        self.notify("epoch", job.id)


class Training(Runner):
    """One attempt at one job, in four steps: load, resume from the checkpoint, fit (polling for a stop), save."""

    verb, noun = "train", "training"     # for the job's error message

    def __init__(self, worker: Worker, job_id: str, attempt: int):
        super().__init__(worker, job_id, attempt)
        self.ckpt_path = worker.storage.local_path(checkpoint_key(job_id))
        self._writer: EpochWriter | None = None
        self._eta = Eta()
        self._next_report = 0.0
        self._first_batch_at: float | None = None  # wall time of this attempt's first minibatch
        self._last_checkpoint: float | None = None  # monotonic time of this attempt's last checkpoint
        self._fold: int | None = None  # the fold model in training (from 0), None for the final model
        self._folds = 0  # cross_validation.folds, 0 without
        self.cross_validation: dict | None = None

    def run(self) -> None:
        self.load()
        resume = self.resume()
        self.cross_validation = self.cross_validate()
        net = core.Network.from_spec(self.network.spec)
        history = self.fit(net, resume)
        self.save(net, history)

    def load(self) -> None:
        """The job, network and data set rows, and the training (and validation) arrays."""
        w = self.worker
        with w.Session() as session:
            self.job, self.network, self.dataset, val = jobs_service.load_for_training(session, job_id=self.job_id)
        self.X, self.y = w.arrays.load(w.storage, self.dataset)
        # A sample-weight column is not a feature: cut from the rows (and the validation rows) here.
        j = job_preprocessing.weight_column_index(self.dataset, self.job.params.get("sample_weight_column"))
        self.X, self.sample_weight = job_preprocessing.split_weights(self.X, j)
        self.validation = None
        if val is not None:
            Xv, yv = w.arrays.load(w.storage, val)
            if self.dataset.task == "classification":
                yv = _remap_classes(yv, val.classes or [], self.dataset.classes or [])
            Xv = job_preprocessing.align_validation(Xv, val, self.dataset)
            self.validation = (job_preprocessing.split_weights(Xv, j)[0], yv)

    def resume(self) -> core.TrainingState | None:
        """The last epoch checkpoint of an earlier attempt (its epochs recorded again, once each), or None."""
        self.ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        if not self.ckpt_path.is_file():
            return None
        state = core.TrainingState.load(self.ckpt_path)
        log.info("job %s: resuming after epoch %d", self.job_id, state.epoch)
        if state.history:
            self._record(state.history, state.early.get("best_epoch"))
        return state

    def fit_options(self) -> dict:
        """core.fit's training options from the job's params (a fresh preprocessor each call)."""
        return fit_options(self.job.params, self.dataset, self.validation)

    def cross_validate(self) -> dict | None:
        """With cross_validation: train and score the fold models, then record their metrics on the job.

        Resuming: an attempt that finds them recorded goes straight to the final model; one killed during the folds
        left nothing, and the folds run again from the start (seeded: the same figures).
        """
        options = self.job.params.get("cross_validation")
        if not options:
            return None
        self._folds = int(options["folds"])
        if getattr(self.job, "cross_validation", None):
            return self.job.cross_validation
        result = core.cross_validate(self.network.spec, self.X, self.y, folds=self._folds,
                                     sample_weight=self.sample_weight, should_stop=self.should_stop,
                                     on_fold=self._on_fold, on_batch=self._on_batch, **self.fit_options())
        self._fold = None
        with self.worker.Session() as session:
            ok = jobs_service.record_cross_validation(session, job_id=self.job_id, attempt=self.attempt,
                                                      result=result)
        if not ok:
            raise LostJob(self.job_id)
        log.info("job %s: %d-fold cross-validation done: %s", self.job_id, self._folds, result["mean"])
        return result

    def _on_fold(self, fold: int, folds: int) -> None:
        self._fold = fold

    def fit(self, net: core.Network, resume: core.TrainingState | None) -> core.History:
        """Train; each epoch's checkpoint and metrics are written by an EpochWriter off this thread."""
        self._writer = writer = EpochWriter(self._save_checkpoint, self._record, self._report, WRITE_GAP_SECONDS)
        writer.start()
        try:
            history = core.fit(net, self.X, self.y, callback=self._on_epoch, should_stop=self.should_stop,
                               resume=resume, sample_weight=self.sample_weight, on_batch=self._on_batch,
                               **self.fit_options())
        except BaseException:
            try:  # record the epochs that did finish before the job is marked failed/cancelled/requeued
                writer.close()
            except LostJob:
                raise
            except Exception:  # noqa: BLE001 - the training error is the one to report
                log.exception("job %s: writing the last epochs failed", self.job_id)
            raise
        writer.close()
        return history

    def _check(self) -> None:
        if self._writer is not None:  # None while the cross-validation folds train (no epoch writer yet)
            self._writer.check()  # the epoch writer's error (e.g. LostJob) stops training at the next poll

    def save(self, net: core.Network, history: core.History) -> None:
        """Store the model's weights and commit it with the job's success; fenced out -> the weights go again."""
        w, job, dataset = self.worker, self.job, self.dataset
        names = dataset.feature_names
        if names and job.params.get("sample_weight_column") in names:
            names = [n for n in names if n != job.params["sample_weight_column"]]
        net.meta = {"job_id": job.id, "network_id": self.network.id, "dataset_id": dataset.id,
                    "task": dataset.task, "classes": dataset.classes, "feature_names": names,
                    "non_inputs": job_preprocessing.non_inputs(dataset, job.params)}
        final = dict(history[-1]) if history else {}
        metrics = served_metrics(history)
        if self.cross_validation is not None:
            metrics["cross_validation"] = self.cross_validation
        model = models_service.new_from_job(w.storage, model_id=new_id(), net=net, job=job, network=self.network,
                                            dataset=dataset, metrics=metrics)
        with w.Session() as session:
            ok = jobs_service.complete(session, job_id=job.id, attempt=self.attempt, model=model,
                                       metrics=final or None, best_epoch=history.best_epoch)
        if not ok:
            models_service.delete_weights(w.storage, model_id=model.id)
            raise LostJob(job.id)
        w.storage.delete_prefix(f"jobs/{job.id}")
        log.info("job %s: succeeded after %d epoch(s); model %s", job.id, len(history), model.id)

    def _on_epoch(self, metrics: dict, state: core.TrainingState) -> bool:
        self._writer.put(metrics, state if self.checkpoint_due(state) else None, state.early.get("best_epoch"))
        return False

    def checkpoint_due(self, state: core.TrainingState) -> bool:
        """Checkpoint this epoch? The attempt's first epoch, then at most every ``checkpoint_seconds``; never the
        last (the model is saved next). Epochs after the last checkpoint are committed all the same: a resumed
        attempt trains them again bit-for-bit, and their metric rows, written once, stay as they were."""
        if state.stopped or state.epoch >= self.job.params["epochs"]:
            return False
        now = time.monotonic()
        if self._last_checkpoint is not None and now - self._last_checkpoint < self.worker.settings.checkpoint_seconds:
            return False
        self._last_checkpoint = now
        return True

    def _on_batch(self, epoch: int, done: int, n_batches: int) -> None:
        """Before each minibatch: about twice a second, hand the writer the fraction done and the ETA (from a
        smoothed rate) and when this attempt's first minibatch began (the queue-to-training probe)."""
        now = time.monotonic()
        if now < self._next_report:
            return
        if self._first_batch_at is None:
            self._first_batch_at = round(time.time(), 4)
        self._next_report = now + PROGRESS_SECONDS
        fraction = (epoch - 1 + done / n_batches) / self.job.params["epochs"]
        if self._folds:  # k fold models and the final one: k + 1 runs of the planned epochs
            run = self._folds if self._fold is None else self._fold
            fraction = (run + fraction) / (self._folds + 1)
        progress = {"epoch": epoch, "batch": done, "batches": n_batches, "fraction": round(fraction, 6),
                    "eta_seconds": self._eta.update(now, fraction), "at": round(time.time(), 3),
                    "first_batch_at": self._first_batch_at}
        if self._fold is not None:
            progress.update(fold=self._fold + 1, folds=self._folds)
        if self._writer is not None:
            self._writer.report(progress)
        else:  # the cross-validation folds train before the epoch writer exists: written here (twice a second)
            self._report(progress)

    def _report(self, progress: dict) -> None:
        with self.worker.Session() as session:
            jobs_service.record_progress(session, job_id=self.job_id, attempt=self.attempt, progress=progress)

    def _save_checkpoint(self, state: core.TrainingState) -> None:
        state.save(self.ckpt_path)  # atomic: temp file, fsync, rename
        self.worker.storage.upload_local(checkpoint_key(self.job_id))  # remote storage uploads it

    def _record(self, history: list[dict], best_epoch: int | None) -> None:
        self.worker._record(self.job, self.attempt, history, best_epoch)


# What a worker runs for each kind of job (jobs.kind): a Runner each.
RUNNERS = {TRAIN: Training, PREDICT: Scoring}
