"""The dashboard at /ui, end to end in headless Chromium (Debian's package driven by Playwright) against a live
server with API keys: enter the key, start a job, watch its curves grow epoch by epoch, see it finish, open the
confusion matrix, predict, look at a data set's columns and overlay two jobs. Screenshots go to tmp_path, or to
docs/ when MLP_UI_SCREENSHOTS=docs (how the README's pictures are made)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.service.helpers import ROOT, LiveServer

CHROMIUM = os.environ.get("MLP_CHROMIUM", "/usr/bin/chromium")
KEY = "alice-key-0123456789abcdef"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install -y chromium` (make test and .ci/run do it as root)",
                    pytrace=False)
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=30_000)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui")
    (tmp / "keys.txt").write_text(f"alice:{KEY}\n")
    srv = LiveServer(tmp / "data", workers=2, env={"MLP_API_KEYS_FILE": str(tmp / "keys.txt")}).start()
    yield srv
    srv.stop()


def _csv(path: Path, n: int, seed: int) -> Path:
    """Three noisy overlapping classes in four columns (one with missing values) and a string label."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.normal(size=(n, 4)) + np.array([[0, 0, 0, 0], [1.2, 0.6, 0, 0], [0, 1.2, 0.6, 0]])[y]
    lines = ["f0,f1,f2,f3,species"]
    for i in range(n):
        f3 = "" if i % 17 == 0 else f"{X[i, 3]:.3f}"
        lines.append(f"{X[i, 0]:.3f},{X[i, 1]:.3f},{X[i, 2]:.3f},{f3},{['setosa', 'versicolor', 'virginica'][y[i]]}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _shots() -> Path | None:
    return ROOT / "docs" if os.environ.get("MLP_UI_SCREENSHOTS") == "docs" else None


def test_dashboard_end_to_end(browser, server, tmp_path):
    api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    train_csv, val_csv = _csv(tmp_path / "train.csv", 400, 0), _csv(tmp_path / "val.csv", 300, 1)
    with train_csv.open("rb") as f:
        r = api.post("/v1/datasets", files={"file": ("flowers.csv", f, "text/csv")},
                     data={"name": "flowers", "target": "species"})
    assert r.status_code == 201, r.text
    ds = r.json()
    # a wide network on few rows: the validation loss turns up while the training loss goes down (overfitting)
    net = api.post("/v1/networks", json={"name": "wide", "layers": [
        {"type": "dense", "units": 256, "activation": "relu"}, {"type": "dense", "units": 256, "activation": "relu"},
        {"type": "dense", "units": 3, "activation": "softmax"}], "loss": "cross_entropy"}).json()
    shots = _shots() or tmp_path
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    # without a key the API says 401 and the page asks for one; the key is kept for this tab only
    page.goto(server.url + "/ui")
    page.wait_for_selector("text=401: missing API key")
    page.fill("#apikey", KEY)
    page.click("#keyform button")
    page.wait_for_selector("text=No jobs yet")
    assert page.evaluate("sessionStorage.getItem('mlp_api_key')") == KEY
    assert page.evaluate("localStorage.length") == 0

    body = {"network_id": net["id"], "dataset_id": ds["id"], "epochs": 60, "batch_size": 4,
            "validation_split": 0.3, "optimizer": {"type": "adam", "learning_rate": 0.003}}
    r = api.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    deadline = time.monotonic() + 60  # worker processes start slowly on a loaded machine
    while api.get(f"/v1/jobs/{job_id}").json()["status"] == "queued":
        assert time.monotonic() < deadline, "no worker took the job within 60 s"
        time.sleep(0.1)
    errors.clear()  # the 401 before the key was entered

    # the job page draws the curves point by point from the event stream
    page.goto(f"{server.url}/ui#/jobs/{job_id}")
    try:
        page.wait_for_function("Number(document.getElementById('view').dataset.points || 0) >= 1")
    except Exception:
        page.screenshot(path=str(tmp_path / "debug.png"))
        raise AssertionError(f"{errors} {api.get(f'/v1/jobs/{job_id}').json()} {page.inner_text('#view')}")
    first = int(page.evaluate("document.getElementById('view').dataset.points"))
    page.wait_for_function(f"Number(document.getElementById('view').dataset.points) >= {first + 2}")
    grown = page.evaluate("[document.getElementById('view').dataset.points, document.querySelector('#status .badge').dataset.status]")
    assert int(grown[0]) >= first + 2 and grown[1] == "running", grown
    assert page.locator("#loss .u-legend").text_content().count("val_loss") == 1
    page.screenshot(path=str(shots / "ui-job-running.png"))

    page.wait_for_selector("#status [data-status=succeeded]", timeout=60_000)
    assert page.evaluate("document.getElementById('view').dataset.points") == "60"
    hist = api.get(f"/v1/jobs/{job_id}/metrics").json()["items"]
    val = [m["val_loss"] for m in hist]
    assert val[-1] > min(val) * 1.2, val  # the overfitting the chart shows
    assert all(m["lr"] > 0 for m in hist), hist[0]   # the learning rate in effect, drawn in its own chart
    assert page.locator("#lr").is_visible() and "lr" in page.locator("#lr .u-legend").text_content()

    # confusion matrix of the finished model on labelled rows, computed in the page from a predict
    page.set_input_files("#cmfile", str(val_csv))
    page.click("#cmrun")
    page.wait_for_selector("#cmtable")
    cells = page.eval_on_selector_all("#cmtable tbody td", "tds => tds.map(t => Number(t.textContent))")
    assert len(cells) == 9 and sum(cells) == 300, cells
    assert sum(cells[i * 4] for i in range(3)) > 150, cells  # most rows on the diagonal
    acc = float(page.inner_text("#cmacc"))
    assert abs(acc - sum(cells[i * 4] for i in range(3)) / 300) < 1e-3
    page.click("#predict")
    page.wait_for_selector("#poutput:has-text('predictions')")
    page.screenshot(path=str(shots / "ui-job.png"), full_page=True)

    # the data set page lists its columns with types and missing counts
    page.goto(f"{server.url}/ui#/datasets/{ds['id']}")
    page.wait_for_selector("#columns")
    rows = page.eval_on_selector_all("#columns tbody tr", "trs => trs.map(tr => [...tr.children].map(td => td.textContent))")
    assert [r[0] for r in rows] == ["f0", "f1", "f2", "f3"], rows
    assert rows[3][1] == "numeric" and rows[3][2] == str(sum(1 for i in range(400) if i % 17 == 0)), rows
    page.screenshot(path=str(shots / "ui-dataset.png"))

    # a second job with another learning rate, overlaid on the first
    r = api.post("/v1/jobs", json=dict(body, epochs=20, optimizer={"type": "sgd", "learning_rate": 0.01}))
    second = r.json()["id"]
    deadline = time.monotonic() + 60
    while api.get(f"/v1/jobs/{second}").json()["status"] != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    page.goto(f"{server.url}/ui#/")
    page.check(f"input[data-id='{job_id}']")
    page.check(f"input[data-id='{second}']")
    page.screenshot(path=str(shots / "ui-jobs.png"))
    page.click("#compare")
    page.wait_for_selector("#closs .u-legend")
    legend = page.text_content("#closs .u-legend")
    assert legend.count("val_loss") == 2 and legend.count("train_loss") == 2, legend
    page.screenshot(path=str(shots / "ui-compare.png"))
    assert errors == []
    page.close()


def test_sweep_view_scatters_the_metric_against_each_parameter(browser, server, tmp_path):
    """A small random search (parallelism 1, so its pruning is decided by the metrics alone): the sweeps list
    links to the sweep, whose page draws one scatter per searched parameter, a point per finished trial
    (pruned ones in their own series), log axes for the log-scale ranges."""
    from sklearn.datasets import load_digits

    api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    X, y = load_digits(return_X_y=True)
    ds = api.post("/v1/datasets", json={"name": "digits", "X": X[:400].tolist(), "y": y[:400].tolist()}).json()
    r = api.post("/v1/sweeps", json={
        "name": "digits-random", "dataset_id": ds["id"], "strategy": "random", "seed": 1, "max_trials": 10,
        "parallelism": 1, "pruner": "median", "pruner_startup_trials": 3,
        "space": {"hidden_layers": {"low": 1, "high": 2}, "units": {"low": 8, "high": 128, "log": True},
                  "shared_units": True, "activation": ["relu", "tanh"], "batch_size": [16, 32, 64],
                  "learning_rate": {"low": 1e-5, "high": 0.3, "log": True}, "epochs": 10}})
    assert r.status_code == 202, r.text
    sid = r.json()["id"]
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.add_init_script(f"sessionStorage.setItem('mlp_api_key', '{KEY}')")  # the key entered before (test 1)
    page.goto(server.url + "/ui")
    page.click("header nav >> text=Sweeps")
    page.click(f"#sweeps tr[data-sweep='{sid}'] a")
    page.wait_for_selector("#sweepsel")
    assert page.evaluate("document.getElementById('sweepsel').value") == sid

    deadline = time.monotonic() + 90
    while (s := api.get(f"/v1/sweeps/{sid}").json())["status"] == "running":
        assert time.monotonic() < deadline, s["counts"]
        time.sleep(0.2)
    assert s["status"] == "succeeded", s
    page.wait_for_selector("#status [data-status=succeeded]")  # the page follows the sweep to its end
    page.wait_for_function(f"document.querySelectorAll('.scatter[data-points]').length === 5")
    charts = page.eval_on_selector_all(".scatter", "els => els.map(e => Object.assign({}, e.dataset))")
    complete = sum(t["status"] == "complete" for t in s["trials"])
    pruned = sum(t["status"] == "pruned" for t in s["trials"])
    assert complete + pruned == 10 and pruned >= 1 and complete >= 3, s["counts"]
    assert page.evaluate("document.getElementById('view').dataset.trials") == "10"
    assert [c["param"] for c in charts] == ["hidden_layers", "units", "activation", "learning_rate", "batch_size"]
    assert [c["scale"] for c in charts] == ["discrete", "log", "category", "log", "category"]
    for c in charts:  # one point per finished trial in every chart; pruned ones in their own (hollow) series
        assert (c["points"], c["complete"], c["pruned"]) == ("10", str(complete), str(pruned)), c
    # the points are the trials' values: uPlot's data of the learning-rate chart (x: learning rate, y: metric)
    xs, done, cut = page.evaluate("document.querySelectorAll('.scatter')[3].uplot.data.slice(0, 3)")
    for status, ys in (("complete", done), ("pruned", cut)):
        drawn = sorted(x for x, y in zip(xs, ys) if y is not None)
        assert drawn == sorted(t["params"]["learning_rate"] for t in s["trials"] if t["status"] == status)
    assert sorted(y for y in done if y is not None) == sorted(t["value"] for t in s["trials"] if t["value"] is not None)
    stopped = [next(m["val_accuracy"] for m in api.get(f"/v1/jobs/{t['job_id']}/metrics").json()["items"]
                    if m["epoch"] == t["epoch"]) for t in s["trials"] if t["status"] == "pruned"]
    assert sorted(y for y in cut if y is not None) == sorted(stopped)  # a pruned trial at the epoch it stopped
    rows = page.eval_on_selector_all("#trialtable tbody tr", "trs => trs.map(tr => tr.children[1].textContent)")
    assert rows == [str(t["number"]) for t in s["trials"]]  # ranked as the API ranks them
    page.screenshot(path=str((_shots() or tmp_path) / "ui-sweep.png"), full_page=True)
    assert errors == []
    page.close()


def test_sweep_view_of_failed_trials_shows_the_count_the_errors_and_why_no_scatter(browser, server, tmp_path):
    """Every trial fails (3 layers of 2,048 units: each value alone trains, together over MLP_MAX_PARAMS): the page
    counts them as failed, shows each error, and says there is nothing to draw (the space does search: a log range
    of learning rates), not that nothing is searched."""
    api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    ds = api.post("/v1/datasets", json={"name": "tiny", "X": [[float(i), float(i % 3)] for i in range(30)],
                                        "y": [i % 2 for i in range(30)]}).json()
    r = api.post("/v1/sweeps", json={"name": "all-fail", "dataset_id": ds["id"], "strategy": "random",
                                     "max_trials": 2, "space": {"hidden_layers": 3, "units": 2048, "epochs": 2}})
    assert r.status_code == 202, r.text
    sid = r.json()["id"]
    deadline = time.monotonic() + 60
    while (s := api.get(f"/v1/sweeps/{sid}").json())["status"] == "running":
        assert time.monotonic() < deadline, s["counts"]
        time.sleep(0.1)
    assert s["status"] == "failed" and s["counts"] == {"failed": 2}, s
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.add_init_script(f"sessionStorage.setItem('mlp_api_key', '{KEY}')")
    page.goto(server.url + f"/ui#/sweeps/{sid}")
    page.wait_for_selector("#status [data-status=failed]")
    assert page.inner_text("#sfailed b") == "2"
    assert page.inner_text("#noscatter") == "No trial completed or was pruned: nothing to draw (see the trials below)."
    notes = page.eval_on_selector_all("#trialtable td.note", "tds => tds.map(td => td.textContent)")
    assert notes == [t["error"] for t in s["trials"]] and all(n.startswith("cannot start the trial: ") for n in notes)
    assert errors == []
    page.close()
