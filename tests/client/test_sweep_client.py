"""Client.sweep(...) and `mlp-service sweep` against a live server (issue 17)."""

from __future__ import annotations

import asyncio
import io
import json
import re

import pytest

from mlp_client import Client
from tests.client.test_cli import cli, write_data


def test_cli_sweep_prints_ranked_trials_and_best_model_and_client_sweep_waits(server, tmp_path):
    _, data, _ = write_data(tmp_path)
    space = {"hidden_layers": [1], "units": [4, 16], "learning_rate": [0.01], "epochs": 3}
    r = cli("sweep", "--url", server.url, "--data", str(data), "--target", "label", "--strategy", "grid",
            "--space", json.dumps(space), "--pruner", "none")
    assert r.returncode == 0, r.stderr
    assert re.search(r"^sweep [0-9a-f]{32} succeeded: all 2 points of the grid tried$", r.stdout, re.M), r.stdout
    assert len(re.findall(r"^  #\d+ +complete +val_accuracy=\d\.\d{4} epoch 3 ", r.stdout, re.M)) == 2, r.stdout
    best = re.search(r"^best model ([0-9a-f]{32})$", r.stdout, re.M).group(1)
    with Client(server.url) as c:
        sweep = c.list_sweeps()[0]
        assert [s.id for s in c.list_sweeps(status="succeeded")] == [sweep.id] and not c.list_sweeps(status="failed")
        assert sweep.status == "succeeded" and sweep.data["best_model_id"] == best
        again = c.sweep(sweep.data["request"]["dataset_id"], strategy="random", seed=1, max_trials=2,
                        space={"epochs": 2}, pruner="none", wait=True, progress=False, timeout=120)
        assert again.status == "succeeded" and [t["rank"] for t in again.trials] == [1, 2]
        assert again.best_model().id == again.data["best_model_id"]
        assert len(c.list_jobs()) >= 4


def _pty_run(args: list[str], env: dict, until: bytes, then_signal: int, timeout: float = 120):
    """Run ``mlp-service args`` under a pseudo-terminal (rich draws its live bar and hides the cursor), send
    ``then_signal`` once ``until`` was printed; the exit status and everything written."""
    import os
    import pty
    import select
    import subprocess
    import time

    from tests.service.helpers import ROOT, serve_command

    master, slave = pty.openpty()
    proc = subprocess.Popen(serve_command() + args, cwd=str(ROOT), env=env, stdin=slave, stdout=slave, stderr=slave,
                            close_fds=True)
    os.close(slave)
    out, sent = b"", False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
        if not sent and until in out and b"\x1b[?25l" in out:
            proc.send_signal(then_signal)
            sent = True
    os.close(master)
    return proc.wait(timeout=30), out.decode("utf-8", "replace")


def test_ctrl_c_during_a_sweep_restores_the_cursor_exits_130_and_sweep_status_cancel_follow_it(server, tmp_path):
    import os
    import signal

    from tests.service.helpers import ROOT

    _, data, _ = write_data(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLP_")}
    env.update({"PYTHONPATH": str(ROOT), "TERM": "xterm-256color", "COLUMNS": "150", "LINES": "40",
                "MLP_URL": server.url})
    env.pop("NO_COLOR", None)
    code, out = _pty_run(["sweep", "--data", str(data), "--target", "label", "--strategy", "random", "--max-trials",
                          "3", "--parallelism", "1", "--pruner", "none",
                          "--space", json.dumps({"epochs": 1000, "batch_size": 1})], env, b" running", signal.SIGINT)
    assert code == 130, out[-2000:]
    sid = re.search(r"sweep ([0-9a-f]{32}) running", out).group(1)
    assert out.rfind("\x1b[?25h") > out.rfind("\x1b[?25l"), repr(out[-1500:])  # the cursor is shown again
    assert (f"stopped watching; sweep {sid} goes on (mlp-service sweep-status --watch {sid}, "
            f"mlp-service sweep-cancel {sid})") in out
    r = cli("sweep-status", "--url", server.url, sid)
    assert r.returncode == 0 and r.stdout.splitlines()[0] == f"sweep {sid} running", r.stdout + r.stderr
    r = cli("sweep-cancel", "--url", server.url, sid)
    assert r.returncode == 0 and r.stdout.strip() == f"sweep {sid} cancelled", r.stdout + r.stderr
    r = cli("sweep-status", "--url", server.url, "--watch", sid)
    assert r.returncode == 1 and r.stdout.splitlines()[0] == f"sweep {sid} cancelled: cancelled", r.stdout
    r = cli("sweep-cancel", "--url", server.url, sid)
    assert r.returncode == 1
    assert r.stderr.strip() == f"error: 409 sweep {sid} is already cancelled; only a running sweep can be cancelled"


def test_wait_on_a_failed_sweep_raises_sweep_failed(server, tmp_path):
    from mlp_client import Sweep, SweepFailed

    _, data, _ = write_data(tmp_path)
    with Client(server.url) as c:
        ds = c.upload_dataset(str(data), target="label")
        try:
            # each value trains alone; together over MLP_MAX_PARAMS (5M): every trial fails to start
            c.sweep(ds, strategy="random", max_trials=2, space={"epochs": 2, "hidden_layers": 3, "units": 2048},
                    pruner="none", wait=True, progress=False, timeout=120)
        except SweepFailed as exc:
            assert isinstance(exc.sweep, Sweep) and exc.sweep.status == "failed"
            assert exc.detail == exc.sweep.data["reason"]
            assert exc.detail.startswith("no trial completed: 2 failed (first error: "), exc.detail
            try:
                exc.sweep.best_model()
            except ValueError as err:
                assert str(err) == (f"sweep {exc.sweep.id} ended failed without a complete trial: "
                                    f"{exc.sweep.data['reason']}")
            else:
                raise AssertionError("best_model() of a failed sweep")
        else:
            raise AssertionError("wait() returned on a failed sweep")


def test_async_client_sweep_waits_lists_gets_the_best_model_and_deletes(server, tmp_path):
    from mlp_client import AsyncClient, AsyncModel, AsyncSweep, NotFound

    _, data, _ = write_data(tmp_path)

    async def main():
        async with AsyncClient(server.url) as c:
            ds = await c.upload_dataset(str(data), target="label")
            sweep = await c.sweep(ds, strategy="random", seed=1, max_trials=2, space={"epochs": 2}, pruner="none")
            assert isinstance(sweep, AsyncSweep) and sweep.status == "running"
            out = io.StringIO()
            assert await sweep.wait(file=out, timeout=120) is sweep
            assert sweep.status == "succeeded" and [t["rank"] for t in sweep.trials] == [1, 2]
            best = f"{sweep.data['best_value']:.4g}"
            assert re.search(rf"sweep {sweep.id[:8]} .* 2/2 best {best} ", out.getvalue()), out.getvalue()
            model = await sweep.best_model()
            assert isinstance(model, AsyncModel) and model.id == sweep.data["best_model_id"]
            assert (await model.predict([[0.0, 0.0, 0.0, 0.0]])).shape == (1,)
            again = await c.get_sweep(sweep.id)
            assert again == sweep and again.data["best_model_id"] == model.id
            assert sweep.id in [s.id for s in await c.list_sweeps()]
            assert sweep.id in [s.id for s in await c.list_sweeps(status="succeeded")]
            assert sweep.id not in [s.id for s in await c.list_sweeps(status="running")]
            waited = await c.sweep(ds.id, strategy="random", seed=2, max_trials=2, space={"epochs": 3},
                                   pruner="none", validation_dataset=ds, wait=True, progress=False, timeout=120)
            assert waited.status == "succeeded" and waited.data["request"]["validation_dataset_id"] == ds.id
            await sweep.delete()
            with pytest.raises(NotFound):
                await c.get_sweep(sweep.id)
            assert (await c.get_model(model.id)).id == model.id      # trained models stay

    asyncio.run(main())


def test_async_sweep_wait_times_out_cancel_ends_it_and_a_failed_one_raises_sweep_failed(server, tmp_path):
    from mlp_client import AsyncClient, AsyncSweep, Conflict, SweepFailed

    _, data, _ = write_data(tmp_path)

    async def main():
        async with AsyncClient(server.url) as c:
            ds = await c.upload_dataset(str(data), target="label")
            sweep = await c.sweep(ds, strategy="random", max_trials=2, parallelism=1, pruner="none",
                                  space={"epochs": 3, "batch_size": 1})
            with pytest.raises(TimeoutError, match=f"sweep {sweep.id} still running after 0 s"):
                await sweep.wait(progress=False, timeout=0)
            with pytest.raises(ValueError, match=f"sweep {sweep.id} has no complete trial yet"):
                await sweep.best_model()
            with pytest.raises(Conflict, match="cancel it first"):
                await sweep.delete()
            assert (await sweep.cancel()).status == "cancelled"
            assert (await sweep.wait(progress=False, timeout=120)).status == "cancelled"   # returned, not raised
            with pytest.raises(SweepFailed) as err:
                # each value trains alone; together over MLP_MAX_PARAMS (5M): every trial fails to start
                await c.sweep(ds, strategy="random", max_trials=2, pruner="none", wait=True, progress=False,
                              timeout=120, space={"epochs": 2, "hidden_layers": 3, "units": 2048})
            failed = err.value.sweep
            assert isinstance(failed, AsyncSweep) and failed.status == "failed"
            assert err.value.detail == failed.data["reason"]
            assert err.value.detail.startswith("no trial completed: 2 failed (first error: "), err.value.detail
            with pytest.raises(ValueError, match=f"sweep {failed.id} ended failed without a complete trial: "):
                await failed.best_model()

    asyncio.run(main())


def test_cli_sweep_errors_are_readable_and_it_takes_validation_options(server, tmp_path):
    _, data, _ = write_data(tmp_path)
    r = cli("sweep", "--url", server.url, "--data", str(data), "--target", "label")
    assert r.returncode == 1 and r.stderr.strip().endswith("error: 422 give a budget: max_trials and/or max_seconds")
    r = cli("sweep", "--url", server.url, "--data", str(data), "--target", "label", "--max-trials", "1",
            "--validation-split", "0", "--space", '{"epochs": 1}')
    assert r.returncode == 1
    assert r.stderr.strip().endswith("error: 422 metric: 'val_accuracy' needs validation data (validation_split > 0 "
                                     "or validation_dataset_id)"), r.stderr
    r = cli("sweep", "--url", server.url, "--data", str(data), "--target", "label", "--max-trials", "1",
            "--validation-data", str(data), "--space", '{"epochs": 1, "units": true}')
    assert r.returncode == 1 and r.stderr.strip().endswith("error: 422 space.units.value: a boolean is not a number: "
                                                           "got true"), r.stderr


def test_cli_sweep_passes_any_field_of_the_sweep_body_as_json(server, tmp_path):
    """--sweep carries what has no flag (training, name, the pruner's options) inline or as a .json file; the
    named flags win over it; a --sweep or --space that is not a JSON object is an error naming the flag."""
    _, data, _ = write_data(tmp_path)
    extra = tmp_path / "sweep.json"
    extra.write_text(json.dumps({"name": "weighted", "max_trials": 5, "pruner_warmup_epochs": 2,
                                 "training": {"class_weight": "balanced", "lr_schedule": {"type": "cosine"}}}))
    r = cli("sweep", "--url", server.url, "--data", str(data), "--target", "label", "--max-trials", "1",
            "--space", '{"epochs": 2, "hidden_layers": 1, "units": [4]}', "--pruner", "none", "--sweep", str(extra))
    assert r.returncode == 0, r.stderr
    with Client(server.url) as c:
        sweep = c.get_sweep(c.list_sweeps()[0].id)
        req = sweep.data["request"]
        assert (sweep.data["name"], req["max_trials"], req["pruner_warmup_epochs"]) == ("weighted", 1, 2)
        assert req["training"]["class_weight"] == "balanced" and req["training"]["lr_schedule"]["type"] == "cosine"
        job = c.get_job(sweep.trials[0]["job_id"])
        params = job.data["params"]
        assert params["class_weight"] == "balanced" and params["lr_schedule"]["type"] == "cosine", params
    for flag, value, message in (("--sweep", "[1]", "--sweep must be a JSON object"),
                                 ("--sweep", "{name: 1}", "--sweep is not valid JSON: Expecting property name"),
                                 ("--space", '"units"', "--space must be a JSON object")):
        r = cli("sweep", "--url", server.url, "--data", str(data), "--target", "label", "--max-trials", "1", flag,
                value)
        assert r.returncode == 2 and f"error: {message}" in r.stderr, r.stderr  # 2: a usage error, nothing sent


def _fake_sweep(trials: list[dict], counts: dict):
    from types import SimpleNamespace

    return SimpleNamespace(id="s1", status="succeeded", trials=trials,
                           data={"metric": "val_accuracy", "counts": counts, "reason": f"max_trials={len(trials)} "
                                 "reached", "best_model_id": "m1"})


def _trial(number: int, status: str, epoch: int = 3, **extra) -> dict:
    value = 0.9 - number / 100 if status == "complete" else None
    return {"number": number, "status": status, "value": value, "epoch": epoch, "params": {"units": 8}, **extra}


def test_the_cli_says_how_many_trials_it_left_out_and_shows_every_failed_one(capsys):
    from mlp_client.cli import _print_sweep

    trials = [_trial(i, "complete") for i in range(11)] + [_trial(11, "failed", 0, error="training failed: boom")]
    sweep = _fake_sweep(trials, {"complete": 11, "failed": 1})
    assert _print_sweep(sweep) == 0
    out = capsys.readouterr().out
    assert ("\n  12 trial(s): 11 complete, 1 failed; 11 shown (the 10 best and every failed one), 1 left out "
            "(mlp-service sweep-status s1 for all)\n") in out
    assert "#10 " not in out and "#11  failed" in out and "error: training failed: boom" in out
    assert len(re.findall(r"^  #\d+ ", out, re.M)) == 11
    _print_sweep(sweep, limit=None)
    out = capsys.readouterr().out
    assert "#10 " in out and "\n  12 trial(s): 11 complete, 1 failed\n" in out

    # 7 complete, 5 failed: the first 10 and the 2 failed ones after them are every trial; nothing is left out
    trials = [_trial(i, "complete") for i in range(7)] + [_trial(i, "failed", 0, error=f"e{i}") for i in range(7, 12)]
    _print_sweep(_fake_sweep(trials, {"complete": 7, "failed": 5}))
    out = capsys.readouterr().out
    assert "\n  12 trial(s): 7 complete, 5 failed\n" in out, out
    assert len(re.findall(r"^  #\d+ ", out, re.M)) == 12 and out.count("       error: e") == 5

    # no failed one after the first 10: the line says only the best were shown
    trials = [_trial(i, "complete") for i in range(11)] + [_trial(11, "pruned", 1)]
    _print_sweep(_fake_sweep(trials, {"complete": 11, "pruned": 1}))
    out = capsys.readouterr().out
    assert ("\n  12 trial(s): 11 complete, 1 pruned; 10 shown (the 10 best), 2 left out (mlp-service sweep-status "
            "s1 for all)\n") in out, out
    assert len(re.findall(r"^  #\d+ ", out, re.M)) == 10


def test_the_cli_says_what_the_job_of_a_pruned_or_cancelled_trial_did(capsys):
    """A pruned trial's job may train on past the epoch it was judged at (even to its end) before the verdict
    reaches it: the line says so when the job did something else than stop there; complete lines are unchanged."""
    from mlp_client.cli import _print_sweep

    trials = [_trial(0, "complete", job_status="succeeded", job_epoch=3),
              _trial(1, "pruned", 1, job_status="cancelled", job_epoch=7),
              _trial(2, "pruned", 2, job_status="succeeded", job_epoch=20),
              _trial(3, "pruned", 2, job_status="running", job_epoch=5),
              _trial(4, "pruned", 3, job_status="cancelled", job_epoch=3),
              _trial(5, "cancelled", 4, job_status="cancelled", job_epoch=4),
              _trial(6, "cancelled", 0, job_status="queued", job_epoch=0),
              _trial(7, "pruned", 1, job_status=None, job_epoch=None),
              _trial(8, "failed", 0, job_status="failed", job_epoch=0, error="boom")]
    _print_sweep(_fake_sweep(trials, {"complete": 1, "pruned": 5, "cancelled": 2, "failed": 1}))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  #")]
    assert re.fullmatch(r'  #0 +complete +val_accuracy=\d\.\d{4} epoch 3 \{"units":8\}', lines[0]), lines[0]
    assert lines[1:] == [
        '  #1   pruned    val_accuracy=- epoch 1 (job cancelled at epoch 7) {"units":8}',
        '  #2   pruned    val_accuracy=- epoch 2 (job succeeded, 20 epochs) {"units":8}',
        '  #3   pruned    val_accuracy=- epoch 2 (job running at epoch 5) {"units":8}',
        '  #4   pruned    val_accuracy=- epoch 3 {"units":8}',
        '  #5   cancelled val_accuracy=- epoch 4 {"units":8}',
        '  #6   cancelled val_accuracy=- epoch 0 (job queued) {"units":8}',
        '  #7   pruned    val_accuracy=- epoch 1 {"units":8}',
        '  #8   failed    val_accuracy=- epoch 0 {"units":8}',
    ]


def test_best_model_of_a_sweep_whose_best_model_was_deleted_says_so():
    from mlp_client.client import Sweep

    from types import SimpleNamespace

    sweep = Sweep(SimpleNamespace(get_model=lambda model_id: model_id), {"id": "s1", "status": "succeeded", "best_trial": 3, "best_model_id": None,
                         "reason": "max_trials=4 reached"})
    try:
        sweep.best_model()
    except ValueError as exc:
        assert str(exc) == "sweep s1: the model of its best trial (#3) was deleted"
    else:
        raise AssertionError("best_model() returned without a model")
