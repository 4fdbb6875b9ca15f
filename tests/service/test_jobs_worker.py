"""The worker's epoch writer: checkpoints and metric commits off the training thread, in a safe order."""

from __future__ import annotations

import threading

import pytest

from service.executor.worker import EpochWriter, LostJob


def test_writer_saves_newest_checkpoint_before_committing_its_epochs():
    gate, saving = threading.Event(), threading.Event()
    log: list = []

    def save(state):
        saving.set()
        gate.wait(5)
        log.append(("save", state))

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
