"""examples/mnist_lab.py, the course lab, runs as written on a small slice of MNIST against a live server."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys

from tests.service.helpers import ROOT


def test_mnist_lab_prints_the_table_and_draws_the_curves(server, tmp_path):
    png = tmp_path / "curves.png"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLP_")}
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "mnist_lab.py"), "--url", server.url,
                        "--train", "600", "--test", "300", "--epochs", "3", "--batch-size", "64",
                        "--learning-rate", "0.005",
                        "--out", str(png)], cwd=str(tmp_path), env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "MNIST: 600 training rows (120 of them for validation), 300 test rows" in r.stdout
    rows = re.findall(r"^(\d)-layer \(([\d-]+)\)\s+([\d,]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", r.stdout, re.M)
    assert [(n, arch) for n, arch, *_ in rows] == [("1", "784-10"), ("2", "784-128-10"), ("3", "784-256-128-10")]
    params = [int(p.replace(",", "")) for _, _, p, *_ in rows]
    assert params == [784 * 10 + 10, 784 * 128 + 128 + 128 * 10 + 10,
                      784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10]
    for _, _, _, best_val, test_acc, train_s in rows:
        assert 0.7 < float(best_val) <= 1.0 and 0.7 < float(test_acc) <= 1.0, r.stdout
        assert float(train_s) >= 0  # printed to 0.1 s: 3 epochs of the 784-10 net on 480 rows can take < 0.05 s
    assert f"validation curves: {png}" in r.stdout
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    assert (width, height) == (1210, 462)             # 11 x 4.2 inches at 110 dpi
    assert png.stat().st_size > 20_000                # curves, not an empty canvas
