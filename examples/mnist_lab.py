"""The course lab through the service: 1-, 2- and 3-layer perceptrons on handwritten digits (MNIST).

Trains the three networks on the same rows through ``mlp_client`` (20 % of them held out for
validation), scores each on a separate test slice, prints a table of accuracy and time per network,
and draws their train and validation curves to a PNG (matplotlib: ``pip install -e '.[examples]'``).

    make serve                                          # in another terminal
    python examples/mnist_lab.py                        # MNIST from tests/data/mnist (or --mnist-dir / $MLP_MNIST_DIR)
    python examples/mnist_lab.py --train 2000 --epochs 5 --out curves.png

The repository ships MNIST's 10,000-image test set (``tests/data/mnist``): by default 8,000 of its
images (a seeded shuffle) train and the other 2,000 test. Where ``train-images-idx3-ubyte.gz`` /
``train-labels-idx1-ubyte.gz`` lie in the same directory, the 60,000 training images train instead.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))            # run from a checkout without installing the package

from mlp_client import Client  # noqa: E402

HIDDEN = {"1-layer (784-10)": [],
          "2-layer (784-128-10)": [128],
          "3-layer (784-256-128-10)": [256, 128]}


def read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        return np.frombuffer(fh.read(), dtype=np.uint8, offset=offset)


def load_mnist(directory: Path, n_train: int, n_test: int):
    """(X_train, y_train, X_test, y_test): pixels scaled to 0-1 as float32, labels 0-9."""
    def pair(prefix: str):
        X = read_idx(directory / f"{prefix}-images-idx3-ubyte.gz", 16).reshape(-1, 784)
        y = read_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", 8)
        return (X.astype(np.float32) / 255.0), y.astype(np.int64)

    X_t10k, y_t10k = pair("t10k")
    if (directory / "train-images-idx3-ubyte.gz").is_file():
        X_train, y_train = pair("train")
        return X_train[:n_train], y_train[:n_train], X_t10k[:n_test], y_t10k[:n_test]
    if n_train + n_test > len(X_t10k):
        raise SystemExit(f"--train {n_train} + --test {n_test} is more than the {len(X_t10k)} images in {directory}")
    # The test set's first half was written by Census Bureau employees, its second half by students
    # (harder): a seeded shuffle gives training and test rows from both.
    order = np.random.default_rng(0).permutation(len(X_t10k))
    train, test = order[:n_train], order[n_train:n_train + n_test]
    return X_t10k[train], y_t10k[train], X_t10k[test], y_t10k[test]


def spec(name: str, hidden: list[int]) -> dict:
    layers = [{"type": "dense", "units": u, "activation": "relu"} for u in hidden]
    layers.append({"type": "dense", "units": 10, "activation": "softmax"})
    return {"name": name, "input_dim": 784, "layers": layers, "loss": "cross_entropy"}


def seconds(job) -> float:
    start = datetime.fromisoformat(job.started_at.replace("Z", "+00:00"))
    end = datetime.fromisoformat(job.finished_at.replace("Z", "+00:00"))
    return (end - start).total_seconds()


def plot(histories: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    for (name, hist), color in zip(histories.items(), ("tab:blue", "tab:orange", "tab:green")):
        epochs = [h["epoch"] for h in hist]
        ax_loss.plot(epochs, [h["train_loss"] for h in hist], "--", color=color, alpha=0.7, label=f"{name} train")
        ax_loss.plot(epochs, [h["val_loss"] for h in hist], "-", color=color, label=f"{name} validation")
        ax_acc.plot(epochs, [h["train_accuracy"] for h in hist], "--", color=color, alpha=0.7)
        ax_acc.plot(epochs, [h["val_accuracy"] for h in hist], "-", color=color, label=name)
    ax_loss.set(title="loss (dashed: training, solid: validation)", xlabel="epoch", ylabel="cross-entropy")
    ax_acc.set(title="accuracy (dashed: training, solid: validation)", xlabel="epoch", ylabel="accuracy")
    ax_loss.legend(fontsize=7)
    ax_acc.legend(fontsize=7, loc="lower right")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("MLP_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--api-key", default=os.environ.get("MLP_API_KEY"))
    parser.add_argument("--mnist-dir", type=Path,
                        default=Path(os.environ.get("MLP_MNIST_DIR", ROOT / "tests" / "data" / "mnist")))
    parser.add_argument("--train", type=int, default=8000, help="training rows (20 %% of them validate)")
    parser.add_argument("--test", type=int, default=2000, help="test rows, never seen in training")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=0.001)
    parser.add_argument("--out", type=Path, default=Path("mnist_lab.png"), help="PNG of the curves")
    parser.add_argument("--no-progress", action="store_true", help="no live bars")
    args = parser.parse_args(argv)

    X, y, X_test, y_test = load_mnist(args.mnist_dir, args.train, args.test)
    print(f"MNIST: {len(X)} training rows ({int(round(len(X) * 0.2))} of them for validation), "
          f"{len(X_test)} test rows")
    with Client(args.url, api_key=args.api_key) as api:
        data = api.upload_dataset((X, y), name=f"mnist-{len(X)}", task="classification")
        jobs = {}
        for name, hidden in HIDDEN.items():   # queued together; the server's workers take them in turn
            jobs[name] = api.train(spec(name, hidden), data, epochs=args.epochs, batch_size=args.batch_size,
                                   validation_split=0.2, seed=0,
                                   optimizer={"type": "adam", "learning_rate": args.learning_rate})
        rows, histories = [], {}
        for name, job in jobs.items():
            t0 = time.monotonic()
            job.wait(progress=not args.no_progress)
            waited = time.monotonic() - t0
            model = job.model
            accuracy = float((model.predict(X_test) == y_test).mean())
            histories[name] = job.history(as_frame=False)
            best = max(h["val_accuracy"] for h in histories[name])
            net = api.get_network(job.network_id)
            rows.append((name, net.n_params, best, accuracy, seconds(job), waited))
        print()
        header = f"{'network':<26}{'params':>10}{'best val acc':>14}{'test acc':>10}{'train s':>9}"
        print(header)
        print("-" * len(header))
        for name, n_params, best, accuracy, train_s, _ in rows:
            print(f"{name:<26}{n_params:>10,}{best:>14.4f}{accuracy:>10.4f}{train_s:>9.1f}")
        plot(histories, args.out)
        print(f"\nvalidation curves: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
