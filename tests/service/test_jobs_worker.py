"""The worker's epoch writer: checkpoints and metric commits off the training thread, in a safe order."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from service.executor.worker import EpochWriter, LostJob, Training


def _blocking_save(log: list):
    """A checkpoint save that sets ``saving`` and then waits for ``gate``, so the writer falls behind."""
    gate, saving = threading.Event(), threading.Event()

    def save(state):
        saving.set()
        gate.wait(5)
        log.append(("save", state))

    return save, gate, saving


def test_writer_saves_newest_checkpoint_before_committing_its_epochs():
    log: list = []
    save, gate, saving = _blocking_save(log)

    def record(batch, best):
        log.append(("record", [m["epoch"] for m in batch], best))

    w = EpochWriter(save, record)
    w.start()
    w.put({"epoch": 1}, "state-1", 1)  # the writer takes this one and blocks in save
    assert saving.wait(5)
    w.put({"epoch": 2}, "state-2", 2)
    w.put({"epoch": 3}, "state-3", 2)  # the writer is behind: epochs 2 and 3 share the newest checkpoint
    gate.set()
    w.close()
    assert log == [("save", "state-1"), ("record", [1], 1), ("save", "state-3"), ("record", [2, 3], 2)]


def test_writer_error_reaches_the_training_thread():
    def record(batch, best):
        raise LostJob("job-x")

    w = EpochWriter(lambda state: None, record)
    w.start()
    w.put({"epoch": 1}, "s", None)
    w.join(5)
    with pytest.raises(LostJob):
        w.check()
    with pytest.raises(LostJob):
        w.put({"epoch": 2}, "s", None)
    with pytest.raises(LostJob):
        w.close()


def test_writer_commits_epochs_without_a_checkpoint_and_only_the_newest_progress():
    log: list = []
    save, gate, saving = _blocking_save(log)

    w = EpochWriter(save, lambda batch, best: log.append(("record", [m["epoch"] for m in batch], best)),
                    lambda progress: log.append(("report", progress["batch"])))
    w.start()
    w.put({"epoch": 1}, "state-1", 1)
    assert saving.wait(5)
    w.put({"epoch": 2}, None, 1)  # not checkpointed: committed all the same, with no save
    w.report({"batch": 3})
    w.report({"batch": 7})  # the writer is behind: only the newest report is written
    w.put({"epoch": 3}, None, 3)
    gate.set()
    w.close()
    assert log == [("save", "state-1"), ("record", [1], 1), ("record", [2, 3], 3), ("report", 7)]


def test_checkpoints_the_first_epoch_then_at_most_every_checkpoint_seconds_and_never_the_last():
    def due(seconds: float, epochs: list[int], total: int = 5, stopped_at: int | None = None) -> list[bool]:
        t = Training.__new__(Training)
        t.worker = SimpleNamespace(settings=SimpleNamespace(checkpoint_seconds=seconds))
        t.job, t._last_checkpoint = SimpleNamespace(params={"epochs": total}), None
        return [t.checkpoint_due(SimpleNamespace(epoch=e, stopped=e == stopped_at)) for e in epochs]

    assert due(0.0, [1, 2, 3, 4, 5]) == [True, True, True, True, False]
    assert due(3600.0, [1, 2, 3, 4, 5]) == [True, False, False, False, False]
    assert due(3600.0, [3, 4]) == [True, False]  # a resumed attempt checkpoints its first epoch too
    assert due(0.0, [1, 2], stopped_at=2) == [True, False]  # early stopping's last epoch: no checkpoint
