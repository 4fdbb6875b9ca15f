"""Client.sweep(...) and `mlp-service sweep` against a live server (issue 17)."""

from __future__ import annotations

import json
import re

from mlp_client import Client
from tests.client.test_cli import cli, write_data


def test_cli_sweep_prints_ranked_trials_and_best_model_and_client_sweep_waits(server, tmp_path):
    _, data, _ = write_data(tmp_path)
    space = {"hidden_layers": [1], "units": [4, 16], "learning_rate": [0.01], "epochs": 3}
    r = cli("sweep", "--url", server.url, "--data", str(data), "--target", "label", "--strategy", "grid",
            "--space", json.dumps(space), "--pruner", "none")
    assert r.returncode == 0, r.stderr
    assert re.search(r"^sweep [0-9a-f]{32} succeeded: max_trials=2 reached$", r.stdout, re.M), r.stdout
    assert len(re.findall(r"^  #\d+ +complete +val_accuracy=\d\.\d{4} epoch 3 ", r.stdout, re.M)) == 2, r.stdout
    best = re.search(r"^best model ([0-9a-f]{32})$", r.stdout, re.M).group(1)
    with Client(server.url) as c:
        sweep = c.list_sweeps()[0]
        assert sweep.status == "succeeded" and sweep.data["best_model_id"] == best
        again = c.sweep(sweep.data["request"]["dataset_id"], strategy="random", seed=1, max_trials=2,
                        space={"epochs": 2}, pruner="none", wait=True, progress=False, timeout=120)
        assert again.status == "succeeded" and [t["rank"] for t in again.trials] == [1, 2]
        assert again.best_model().id == again.data["best_model_id"]
        assert len(c.list_jobs()) >= 4
