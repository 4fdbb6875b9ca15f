"""The one Settings object: every knob from MLP_* variables, read once, never changed afterwards."""

from __future__ import annotations

import pydantic
import pytest

from service.settings import Settings, unknown_variables


def test_lease_timings_and_worker_priority_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MLP_LEASE_SECONDS", "6")
    monkeypatch.setenv("MLP_LEASE_HEARTBEAT_SECONDS", "1")
    monkeypatch.setenv("MLP_SWEEP_SECONDS", "0.5")
    monkeypatch.setenv("MLP_REPUBLISH_SECONDS", "2")
    monkeypatch.setenv("MLP_WORKER_NICE", "5")
    s = Settings(data_dir=tmp_path)
    assert (s.lease_seconds, s.lease_heartbeat_seconds, s.sweep_seconds, s.republish_seconds,
            s.worker_nice) == (6.0, 1.0, 0.5, 2.0, 5)


def test_defaults_follow_the_data_directory(tmp_path):
    s = Settings(data_dir=tmp_path / "d")
    assert s.database_url == f"sqlite:///{tmp_path / 'd' / 'mlp.db'}"
    assert s.storage_url == str(tmp_path / "d" / "artifacts")
    assert (s.lease_seconds, s.lease_heartbeat_seconds, s.sweep_seconds, s.republish_seconds,
            s.worker_nice) == (15.0, 3.0, 5.0, 30.0, 10)
    assert Settings(**s.model_dump(mode="json")) == s  # how embedded workers receive them


def test_settings_are_frozen(tmp_path):
    s = Settings(data_dir=tmp_path)
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        s.max_upload_bytes = 10
    assert s.max_upload_bytes == 200 * 1024 * 1024


def test_a_bad_lease_is_refused_naming_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("MLP_LEASE_SECONDS", "0")
    with pytest.raises(pydantic.ValidationError, match="lease_seconds"):
        Settings(data_dir=tmp_path)


def test_unknown_mlp_variables_are_named_with_the_closest_setting():
    env = {"MLP_API_KEYS": "k", "MLP_WORKER": "2", "MLP_MAX_UPLOAD_BYTES": "1", "MLP_URL": "u", "MLP_API_KEY": "k",
           "MLP_STORAGE_ENDPOINT_URL": "http://s3", "MLP_ZZZ": "1", "HOME": "/root", "MLP_MNIST_DIR": "/d",
           "MLP_HEALTHCHECK_URL": "http://x", "MLP_TEST_REDIS_URL": "redis://"}  # the lab's, the image's, tests'
    assert unknown_variables(env) == [("MLP_API_KEYS", "MLP_API_KEYS_FILE"), ("MLP_WORKER", "MLP_WORKERS"),
                                      ("MLP_ZZZ", None)]
