"""The README's curl walkthrough runs as written against a live server, and its settings table is complete."""

from __future__ import annotations

import json
import os
import re
import subprocess

from service.settings import Settings
from tests.service.helpers import ROOT

README = ROOT / "README.md"


def section(name: str) -> str:
    """The README text from ``<!-- section: name -->`` to the next section marker."""
    text = README.read_text()
    start = text.index(f"<!-- section: {name} -->")
    nxt = text.find("<!-- section:", start + 1)
    return text[start:nxt if nxt != -1 else len(text)]


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_walkthrough_has_the_steps():
    script = "\n".join(bash_blocks(section("walkthrough")))
    for step in ("/v1/networks", "/v1/datasets", "/v1/jobs", "/events", "/metrics?since_epoch", "/predict"):
        assert step in script


def test_walkthrough_runs_against_a_live_server(live_server, tmp_path):
    srv = live_server(workers=1)
    script = "set -euo pipefail\n" + "\n".join(bash_blocks(section("walkthrough")))
    work = tmp_path / "walk"
    work.mkdir()
    r = subprocess.run(["bash", "-c", script], cwd=work, capture_output=True, text=True, timeout=180,
                       env={**os.environ, "API": srv.url})
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}\nserver:\n{srv.log()}"
    lines = r.stdout.strip().splitlines()
    answer = json.loads(lines[-1])
    assert answer["predictions"] == ["upper", "lower"]
    assert len(answer["probabilities"]) == 2 and all(abs(sum(p) - 1) < 1e-5 for p in answer["probabilities"])
    assert any(line.startswith("succeeded epoch") for line in lines)
    assert "event: end" in r.stdout


def test_settings_table_lists_every_setting():
    text = section("settings")
    documented = set(re.findall(r"^\| `(MLP_[A-Z_]+)`", text, flags=re.M))
    expected = {f"MLP_{name.upper()}" for name in Settings.model_fields}
    assert documented == expected
