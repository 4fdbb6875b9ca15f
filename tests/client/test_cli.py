"""The client commands of ``mlp-service`` (train --watch, predict, jobs, cancel, models, export) run as
subprocesses against a live server; one under a pseudo-terminal, where the live bar must be drawn."""

from __future__ import annotations

import csv
import gzip
import json
import os
import pty
import re
import select
import signal
import subprocess
import time

import numpy as np
import pandas as pd

from core import Network
from mlp_client import Client
from tests.service.helpers import ROOT, blobs, mlp_spec, serve_command

LABELS = np.array(["red", "green", "blue"])


def cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MLP_")}
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    return subprocess.run(serve_command() + list(args), cwd=str(ROOT), env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def write_data(tmp_path, n=240, d=4):
    X, y = blobs(n=n, d=d)
    cols = [f"f{i}" for i in range(d)]
    df = pd.DataFrame(X, columns=cols).assign(label=LABELS[y])
    data = tmp_path / "blobs.csv"
    df.to_csv(data, index=False)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(mlp_spec(3)))
    return df, data, spec


def test_train_watch_prints_model_and_metrics_then_predict_jobs_models_export(server, tmp_path):
    df, data, spec = write_data(tmp_path)
    r = cli("train", "--url", server.url, "--network", str(spec), "--data", str(data), "--target", "label",
            "--epochs", "12", "--batch-size", "16", "--learning-rate", "0.01", "--validation-split", "0.2",
            "--watch")
    assert r.returncode == 0, r.stderr
    job_id = re.search(r"^job ([0-9a-f]{32}) succeeded after", r.stdout, re.M).group(1)
    model_id = re.search(r"^model ([0-9a-f]{32})$", r.stdout, re.M).group(1)
    val_acc = float(re.search(r"^  val_accuracy\s+([0-9.]+)$", r.stdout, re.M).group(1))
    assert val_acc > 0.9, r.stdout
    assert "data set " in r.stderr and "240 rows, 4 features, classification" in r.stderr
    assert r.stderr.count(f"job {job_id} epoch ") == 12              # not a terminal: a line per epoch
    with Client(server.url) as c:
        job = c.get_job(job_id)
        assert job.model_id == model_id and job.params["epochs"] == 12
        assert job.params["optimizer"] == {"type": "adam", "learning_rate": 0.01, "beta1": 0.9, "beta2": 0.999,
                                           "eps": 1e-8}
        expected = c.get_model(model_id).predict(df)

    out = tmp_path / "pred.csv"
    r = cli("predict", model_id, str(data), "-o", str(out), "--proba", env={"MLP_URL": server.url})
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == f"240 predictions written to {out}"
    with open(out, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["prediction", "p_blue", "p_green", "p_red"]
    assert [row[0] for row in rows[1:]] == expected.tolist()
    assert abs(sum(map(float, rows[1][1:])) - 1.0) < 1e-4

    r = cli("jobs", "--url", server.url)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].split() == ["ID", "STATUS", "EPOCH", "METRIC", "MODEL", "CREATED"]
    line = next(line for line in r.stdout.splitlines() if line.startswith(job_id))
    assert line.split()[1:4] == ["succeeded", "12/12", f"val_accuracy={job.metrics['val_accuracy']:.4f}"]

    r = cli("models", "--url", server.url)
    assert r.returncode == 0 and any(line.startswith(f"{model_id}  classification  4") for line in
                                     r.stdout.splitlines()), r.stdout

    r = cli("export", model_id, "--format", "npz", "-o", str(tmp_path / "m.npz"), "--url", server.url)
    assert r.returncode == 0, r.stderr
    net = Network.load(tmp_path / "m.npz")
    X = df.drop(columns="label").to_numpy(np.float32)
    assert (LABELS[[2, 1, 0]][net.predict(X)] == expected).all()   # classes sorted: blue, green, red

    r = cli("cancel", job_id, "--url", server.url)
    assert r.returncode == 1
    assert r.stderr.strip() == (f"error: 409 job {job_id} is already succeeded; only queued or running jobs "
                                "can be cancelled")
    r = cli("delete-job", job_id, "--url", server.url)
    assert r.returncode == 0 and r.stdout.strip() == f"job {job_id} deleted"
    r = cli("predict", model_id, str(data), "--url", server.url)          # the model stays; CSV to stdout
    assert r.returncode == 0 and r.stdout.splitlines()[1:] == expected.tolist()

    # the file goes to the server as a text/csv body: read as an upload is, refused as predict refuses
    gz = tmp_path / "rows.csv.gz"
    gz.write_bytes(gzip.compress(df.to_csv(sep=";", index=False).encode("utf-16")))
    r = cli("predict", model_id, str(gz), "--url", server.url)
    assert r.returncode == 0 and r.stdout.splitlines()[1:] == expected.tolist(), r.stderr
    bad = {"typo.csv": "f0,f1,f2,f3x\n1,2,3,4\n", "quote.csv": 'f0,f1,f2,f3\n1,2,3,"4\n5,6,7,8\n',
           "numbers.csv": "1,2,3,4\n5,6,7,8\n"}
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
        r = cli("predict", model_id, str(tmp_path / name), "--url", server.url)
        assert r.returncode == 1 and r.stdout == "", (name, r.stdout)
    assert "unknown column 'f3x'" in cli("predict", model_id, str(tmp_path / "typo.csv"), "--url", server.url).stderr


def test_cancel_a_running_job_and_errors(server, tmp_path):
    X, y = blobs(n=2000, d=8)
    with Client(server.url) as c:
        job = c.train(mlp_spec(3, hidden=64), c.upload_dataset((X, y)), epochs=1000, batch_size=4)
    r = cli("cancel", job.id, "--url", server.url)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() in (f"job {job.id} cancelled", f"job {job.id} running (stopping)")
    with Client(server.url) as c:
        assert c.get_job(job.id).wait(progress=False, timeout=30).status == "cancelled"
    r = cli("predict", "0" * 32, str(tmp_path), "--url", server.url)
    assert r.returncode == 1 and r.stderr.strip() == f"error: 404 model {'0' * 32} not found"
    r = cli("jobs", "--url", "http://127.0.0.1:9")                        # nothing listens there
    assert r.returncode == 1 and r.stderr.startswith("error: GET /v1/jobs: ConnectError")


def test_api_key_from_option_and_environment(make_server, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("alice:alice-key-0123456789abcdef\n")
    srv = make_server(env={"MLP_API_KEYS_FILE": str(keys)})
    r = cli("jobs", "--url", srv.url)
    assert r.returncode == 1
    assert r.stderr.strip() == "error: 401 missing API key: send the header 'Authorization: Bearer <key>'"
    r = cli("jobs", "--url", srv.url, "--api-key", "alice-key-0123456789abcdef")
    assert r.returncode == 0 and r.stdout.split() == ["ID", "STATUS", "EPOCH", "METRIC", "MODEL", "CREATED"]
    r = cli("models", env={"MLP_URL": srv.url, "MLP_API_KEY": "alice-key-0123456789abcdef"})
    assert r.returncode == 0, r.stderr


def test_train_watch_draws_a_live_bar_on_a_terminal(server, tmp_path):
    df, data, spec = write_data(tmp_path, n=3000, d=8)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLP_")}
    env.update({"PYTHONPATH": str(ROOT), "TERM": "xterm-256color", "COLUMNS": "150", "LINES": "40",
                "MLP_URL": server.url})
    env.pop("NO_COLOR", None)
    master, slave = pty.openpty()
    proc = subprocess.Popen(serve_command() + ["train", "--network", str(spec), "--data", str(data), "--target",
                                               "label", "--epochs", "10", "--batch-size", "8", "--watch"],
                            cwd=str(ROOT), env=env, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data_ = os.read(master, 65536)
            except OSError:              # EIO: the child closed the terminal
                break
            if not data_:
                break
            chunks.append(data_)
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait(timeout=30) == 0
    out = b"".join(chunks).decode("utf-8", "replace")
    assert "━" in out and "\x1b[" in out, out[-2000:]               # rich's bar, redrawn in place
    seen = {int(m) for m in re.findall(r"epoch (\d+)/10", out)}
    assert 10 in seen and len(seen) >= 2, sorted(seen)                 # drawn before the end, not only after
    assert re.search(r"ETA \d+:\d\d", out)
    assert re.search(r"val_\w+ \d\.\d{4}|loss \d\.\d{4}", out)
    assert re.search(r"^model [0-9a-f]{32}\r?$", out, re.M), out[-1000:]


def test_ctrl_c_stops_watching_but_not_the_job(server):
    X, y = blobs(n=2000, d=8)
    with Client(server.url) as c:
        job = c.train(mlp_spec(3, hidden=64), c.upload_dataset((X, y)), epochs=1000, batch_size=4)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLP_")}
        env["PYTHONPATH"] = str(ROOT)
        proc = subprocess.Popen(serve_command() + ["watch", job.id, "--url", server.url], cwd=str(ROOT), env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([proc.stderr], [], [], 120)
        assert ready, "no output from `mlp-service watch` within 120 s"
        first = proc.stderr.readline()                      # the first epoch's line: it follows the stream
        assert first.startswith(f"job {job.id} epoch 1/1000"), first
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert f"stopped watching; job {job.id} goes on (mlp-service watch {job.id}, mlp-service cancel {job.id})" \
            in err
        assert c.get_job(job.id).status == "running"
        c.get_job(job.id).cancel()
        assert c.get_job(job.id).wait(progress=False, timeout=30).status == "cancelled"


def write_export(tmp_path, n=120):
    """A cp1252 ';' export with decimal commas, a customer id, numeric zip codes, an 'n/a' cell and one missing
    label: what a new user's first file looks like."""
    rng = np.random.default_rng(4)
    zips = np.array([1234, 20500, 90210, 501])[rng.integers(0, 4, n)]
    amount = rng.uniform(0, 100, n).round(1)
    plan = np.array(["Basis", "Größer", "Prämie"])[rng.integers(0, 3, n)]
    churned = np.where((amount > 50) ^ (zips == 501), "ja", "nein").astype(object)
    churned[5] = ""
    lines = ["customer_id;zip;amount;plan;churned"]
    for i in range(n):
        cell = "n/a" if i == 7 else f"{amount[i]}".replace(".", ",")
        lines.append(f"C{i:05d};{zips[i]};{cell};{plan[i]};{churned[i]}")
    path = tmp_path / "export.csv"
    path.write_bytes(("\n".join(lines) + "\n").encode("cp1252"))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(mlp_spec(2)))
    return path, spec


def _ids(c: Client) -> tuple[set, set]:
    return ({n.id for n in c.list_networks(limit=100)}, {d.id for d in c.list_datasets(limit=100)})


def test_upload_flags_reach_the_upload_and_a_failed_attempt_leaves_no_network_or_data_set(server, tmp_path):
    path, spec = write_export(tmp_path)
    read = ["--delimiter", ";", "--encoding", "cp1252", "--decimal", ","]
    with Client(server.url) as c:
        before = _ids(c)
        # the upload's 422 (too many categories) comes before any network is made
        r = cli("train", "--url", server.url, "--network", str(spec), "--data", str(path), "--target", "churned",
                *read, "--drop-missing-target", "--max-categories", "50", "--epochs", "2")
        assert r.returncode == 1 and "ignore=customer_id" in r.stderr and "network " not in r.stderr, r.stderr
        assert _ids(c) == before
        # a job the server refuses (epochs 0) after the upload: the data set and the network made are removed
        r = cli("train", "--url", server.url, "--network", str(spec), "--data", str(path), "--target", "churned",
                *read, "--ignore", "customer_id", "--drop-missing-target", "--na-values", "n/a,", "--epochs", "0")
        assert r.returncode == 1 and "error: 422" in r.stderr, r.stderr
        assert re.search(r"^removed network [0-9a-f]{32} \(the command failed\)$", r.stderr, re.M), r.stderr
        assert re.search(r"^removed data set [0-9a-f]{32} \(the command failed\)$", r.stderr, re.M), r.stderr
        assert _ids(c) == before
        # every flag reaches the upload as its form field
        r = cli("train", "--url", server.url, "--network", str(spec), "--data", str(path), "--target", "churned",
                *read, "--ignore", "customer_id", "--categorical", "zip", "--drop-missing-target", "--na-values",
                "n/a,", "--name", "kunden", "--epochs", "2")
        assert r.returncode == 0, r.stderr
        job = c.get_job(r.stdout.strip())
        data = c.get_dataset(job.dataset_id)
        assert (data.name, data.target, data.n_samples, data.n_dropped, data.classes) == \
            ("kunden", "churned", 119, 1, ["ja", "nein"])
        cols = {col["name"]: col for col in data.columns}
        assert {k: v["type"] for k, v in cols.items()} == {"customer_id": "ignored", "zip": "categorical",
                                                             "amount": "numeric", "plan": "categorical"}
        assert cols["zip"]["categories"] == ["1234", "20500", "501", "90210"]
        assert cols["amount"]["missing"] == 1 and cols["plan"]["categories"] == ["Basis", "Größer", "Prämie"]
        networks, datasets = _ids(c)
        assert networks - before[0] == {job.network_id} and datasets - before[1] == {data.id}

        # upload alone: the id on stdout, the columns on stderr; then upload options with an id are refused
        r = cli("upload", str(path), "--url", server.url, *read, "--upload", '{"ignore": "customer_id"}',
                "--categorical", "zip", "--target", "churned", "--drop-missing-target")
        assert r.returncode == 0, r.stderr
        uploaded = c.get_dataset(r.stdout.strip())
        assert [col["type"] for col in uploaded.columns] == ["ignored", "categorical", "numeric", "categorical"]
        assert "  zip: categorical 4 categories" in r.stderr
        r = cli("train", "--url", server.url, "--network", str(spec), "--data", uploaded.id, "--ignore", "zip")
        assert r.returncode == 2 and r.stderr.strip() == (f"error: {uploaded.id} is a data set id: upload options "
                                                          "(ignore) apply to a data file only")

        # sweep: the same flags; a refused sweep leaves no data set behind
        before = _ids(c)
        r = cli("sweep", "--url", server.url, "--data", str(path), "--target", "churned", *read,
                "--ignore", "customer_id", "--drop-missing-target")
        assert r.returncode == 1 and "give a budget" in r.stderr and "removed data set" in r.stderr, r.stderr
        assert _ids(c) == before
        r = cli("sweep", "--url", server.url, "--data", str(path), "--target", "churned", *read,
                "--ignore", "customer_id", "--categorical", "zip", "--drop-missing-target", "--max-trials", "1",
                "--space", '{"epochs": 1}', "--no-wait")
        assert r.returncode == 0, r.stderr
        sweep = c.get_sweep(r.stdout.strip())
        swept = c.get_dataset(sweep.data["request"]["dataset_id"])
        assert [col["type"] for col in swept.columns] == ["ignored", "categorical", "numeric", "categorical"]
        sweep.wait(progress=False, timeout=120)
