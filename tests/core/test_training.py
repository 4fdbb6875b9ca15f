"""fit's contract: determinism, bitwise resume, early stopping, divergence,
cancellation, callbacks, validation and standardisation."""
from __future__ import annotations

import re

import numpy as np
import pytest

from core import Network, TrainingCancelled, TrainingDiverged, TrainingState, fit

SPEC = {"layers": [{"type": "dense", "units": 16, "activation": "relu"},
                   {"type": "dropout", "rate": 0.2},
                   {"type": "dense", "units": 8, "activation": "tanh"},
                   {"type": "dense", "units": 3, "activation": "softmax"}],
        "loss": "cross_entropy"}


def data(n=300, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 2
    y = rng.integers(0, k, n)
    X = (centers[y] + rng.standard_normal((n, d))) * 10 + 3  # unscaled, so standardize matters
    return X.astype(np.float32), y


def weights(net):
    return {k: p.copy() for k, p, _ in net.param_items()}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), f"parameter {k} differs"


def strip_seconds(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


ARGS = dict(epochs=6, batch_size=32, optimizer={"type": "adam", "learning_rate": 0.01},
            validation_split=0.2, standardize=True, seed=7, weight_decay=1e-4)


# ------------------------------------------------------------------ history
def test_history_fields_classification():
    X, y = data()
    history = fit(Network.from_spec(SPEC), X, y, **ARGS)
    assert [h["epoch"] for h in history] == list(range(1, 7))
    for h in history:
        assert {"epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy", "seconds"} <= set(h)
        assert 0 <= h["val_accuracy"] <= 1 and h["seconds"] >= 0
    assert history.best_epoch in range(1, 7)
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_history_fields_regression():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3)).astype(np.float32)
    y = X @ np.array([1.0, -2.0, 0.5], dtype=np.float32)
    net = Network.from_spec({"layers": [{"type": "dense", "units": 1}], "loss": "mse"})
    history = fit(net, X, y, epochs=3, validation=(X[:50], y[:50]))
    assert {"train_loss", "val_loss", "train_mae", "val_mae", "val_rmse", "val_r2", "seconds"} <= set(history[-1])


# -------------------------------------------------------------- determinism
def test_same_seed_gives_identical_metrics_and_weights():
    X, y = data()
    a, b = Network.from_spec(SPEC), Network.from_spec(SPEC)
    ha, hb = fit(a, X, y, **ARGS), fit(b, X, y, **ARGS)
    assert strip_seconds(ha) == strip_seconds(hb)
    assert_same_weights(weights(a), weights(b))
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_different_seed_gives_different_weights():
    X, y = data()
    a, b = Network.from_spec(SPEC), Network.from_spec(SPEC)
    fit(a, X, y, **ARGS)
    fit(b, X, y, **{**ARGS, "seed": 8})
    assert not np.array_equal(a.layers[0].params["W"], b.layers[0].params["W"])


def test_sgd_momentum_nesterov_deterministic():
    X, y = data()
    args = {**ARGS, "optimizer": {"type": "sgd", "learning_rate": 0.05, "momentum": 0.9, "nesterov": True}}
    a, b = Network.from_spec(SPEC), Network.from_spec(SPEC)
    assert strip_seconds(fit(a, X, y, **args)) == strip_seconds(fit(b, X, y, **args))
    assert_same_weights(weights(a), weights(b))


# ------------------------------------------------------------------- resume
@pytest.mark.parametrize("optimizer, weight_decay", [
    ({"type": "adam", "learning_rate": 0.01}, 1e-4),
    ({"type": "sgd", "learning_rate": 0.05, "momentum": 0.9}, 1e-4),
    # plain SGD without decay: the layers apply the step inside backpropagation
    ({"type": "sgd", "learning_rate": 0.05}, 0.0),
])
def test_resume_after_any_epoch_is_bitwise_identical(tmp_path, optimizer, weight_decay):
    X, y = data()
    args = {**ARGS, "optimizer": optimizer, "weight_decay": weight_decay}
    full = Network.from_spec(SPEC)
    paths = {}

    def checkpoint(metrics, state):
        paths[state.epoch] = tmp_path / f"state-{state.epoch}.npz"
        state.save(paths[state.epoch])

    full_history = fit(full, X, y, callback=checkpoint, **args)
    expected = weights(full)
    assert sorted(paths) == list(range(1, args["epochs"] + 1))
    for k in range(1, args["epochs"]):
        resumed = Network.from_spec(SPEC)
        history = fit(resumed, X, y, resume=paths[k], **args)
        assert_same_weights(weights(resumed), expected)
        assert strip_seconds(history) == strip_seconds(full_history), f"history differs resuming at {k}"
        assert history.best_epoch == full_history.best_epoch


def test_interrupted_run_resumed_from_state_object(tmp_path):
    """Stop via the callback at epoch 3 (as a crash would), then resume from the TrainingState."""
    X, y = data()
    full = Network.from_spec(SPEC)
    fit(full, X, y, **ARGS)
    saved = {}

    def stop_at_3(metrics, state):
        saved["state"] = state
        return state.epoch == 3

    part = Network.from_spec(SPEC)
    h = fit(part, X, y, callback=stop_at_3, **ARGS)
    assert len(h) == 3 and saved["state"].epoch == 3
    assert len(saved["state"].history) == 3
    # round trip through disk too
    saved["state"].save(tmp_path / "s.npz")
    state = TrainingState.load(tmp_path / "s.npz")
    assert state.epoch == 3
    for resume in (saved["state"], state):
        net = Network.from_spec(SPEC)
        fit(net, X, y, resume=resume, **ARGS)
        assert_same_weights(weights(net), weights(full))


def test_resume_with_early_stopping_is_identical(tmp_path):
    X, y = data(n=120)
    args = {**ARGS, "epochs": 30, "optimizer": {"type": "adam", "learning_rate": 0.05},
            "early_stopping": {"monitor": "val_loss", "patience": 3}}
    full = Network.from_spec(SPEC)
    states = {}
    full_history = fit(full, X, y, callback=lambda m, s: states.__setitem__(s.epoch, s), **args)
    for k in sorted(states)[:-1]:
        net = Network.from_spec(SPEC)
        h = fit(net, X, y, resume=states[k], **args)
        assert_same_weights(weights(net), weights(full))
        assert h.best_epoch == full_history.best_epoch and len(h) == len(full_history)


# ----------------------------------------------------------- early stopping
def test_early_stopping_restores_best_weights_and_reports_best_epoch():
    # Few noisy rows, a big net and a high learning rate: validation loss turns up early.
    rng = np.random.default_rng(3)
    X = rng.standard_normal((80, 10)).astype(np.float32)
    y = (X[:, 0] + rng.standard_normal(80) * 1.5 > 0).astype(np.int64)
    spec = {"layers": [{"type": "dense", "units": 128, "activation": "relu"},
                       {"type": "dense", "units": 2, "activation": "softmax"}], "loss": "cross_entropy"}
    snapshots = {}

    def snap(metrics, state):
        snapshots[metrics["epoch"]] = {k: v.copy() for k, v in state.net_arrays.items()}

    net = Network.from_spec(spec)
    history = fit(net, X, y, epochs=200, batch_size=8, optimizer={"type": "adam", "learning_rate": 0.01},
                  validation_split=0.3, early_stopping={"monitor": "val_loss", "patience": 4},
                  seed=0, callback=snap)
    val = [h["val_loss"] for h in history]
    best = int(np.argmin(val)) + 1
    assert history.best_epoch == best
    assert len(history) == best + 4 < 200, "stopped patience epochs after the best"
    final = {f"param/{k}": p for k, p, _ in net.param_items()}
    for k, p in final.items():
        np.testing.assert_array_equal(p, snapshots[best][k])
    assert not np.array_equal(snapshots[best]["param/0.W"], snapshots[len(history)]["param/0.W"])


def test_early_stopping_on_accuracy_maximizes():
    X, y = data()
    history = fit(Network.from_spec(SPEC), X, y, epochs=40, batch_size=32,
                  optimizer={"type": "adam", "learning_rate": 0.01}, validation_split=0.25,
                  early_stopping={"monitor": "val_accuracy", "patience": 3}, standardize=True)
    acc = [h["val_accuracy"] for h in history]
    assert acc[history.best_epoch - 1] == max(acc)
    assert history.best_epoch == acc.index(max(acc)) + 1  # first epoch reaching the max


# --------------------------------------------------------------- divergence
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow on the way to inf is the point
def test_divergence_raises_with_epoch_and_advice():
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((256, 4)) * 1e3).astype(np.float32)
    y = X.sum(axis=1) * 1e3
    net = Network.from_spec({"layers": [{"type": "dense", "units": 8, "activation": "relu"},
                                        {"type": "dense", "units": 1}], "loss": "mse"})
    with pytest.raises(TrainingDiverged) as exc:
        fit(net, X, y, epochs=5, batch_size=16, optimizer={"type": "sgd", "learning_rate": 10.0})
    msg = str(exc.value)
    m = re.search(r"epoch (\d+)", msg)
    assert m and int(m.group(1)) == exc.value.epoch >= 1
    assert "learning rate" in msg and "standardi" in msg


# ------------------------------------------------------------- cancellation
def test_should_stop_cancels_within_one_minibatch():
    X, y = data(n=320)
    polls = []
    callbacks = []

    def should_stop():
        polls.append(1)
        return len(polls) == 13  # 10 batches per epoch: the 3rd batch of epoch 2

    net = Network.from_spec(SPEC)
    with pytest.raises(TrainingCancelled) as exc:
        fit(net, X, y, epochs=5, batch_size=32, should_stop=should_stop,
            callback=lambda m, s: callbacks.append(m["epoch"]))
    assert len(polls) == 13, "no further minibatch after should_stop returned True"
    assert callbacks == [1]
    assert "epoch 2" in str(exc.value)


def test_callback_truthy_stops_after_that_epoch():
    X, y = data()
    history = fit(Network.from_spec(SPEC), X, y, epochs=10, callback=lambda m, s: m["epoch"] == 4)
    assert len(history) == 4


# ----------------------------------------------------- validation, scaling
def test_validation_tuple_and_standardize_applied_at_predict():
    X, y = data()
    net = Network.from_spec(SPEC)
    history = fit(net, X[:240], y[:240], epochs=15, batch_size=32, standardize=True,
                  optimizer={"type": "adam", "learning_rate": 0.01}, validation=(X[240:], y[240:]))
    assert history[-1]["val_accuracy"] == pytest.approx((net.predict(X[240:]) == y[240:]).mean())
    assert history[-1]["val_accuracy"] > 0.9


def test_standardize_matches_pre_scaled_data():
    X, y = data()
    Xs = (X - X.mean(axis=0)) / X.std(axis=0)
    args = dict(epochs=3, optimizer={"type": "sgd", "learning_rate": 0.1}, seed=1)
    a, b = Network.from_spec(SPEC), Network.from_spec(SPEC)
    fit(a, X, y, standardize=True, **args)
    fit(b, Xs, y, **args)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(Xs), rtol=1e-3, atol=1e-4)


def test_fit_does_not_modify_inputs():
    X, y = data()
    X0, y0 = X.copy(), y.copy()
    fit(Network.from_spec(SPEC), X, y, epochs=2, standardize=True, validation_split=0.2)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)


def test_plain_sgd_stepped_in_backward_matches_the_optimizer_step(monkeypatch):
    """Plain SGD is applied by the layers during backpropagation (one
    accumulating GEMM per weight matrix); it must train exactly like the
    optimizer's own ``w -= lr * g`` step, up to float32 rounding."""
    from core.optimizers import SGD

    X, y = data()
    args = dict(epochs=2, batch_size=32, optimizer={"type": "sgd", "learning_rate": 0.05},
                standardize=True, seed=3)
    fused = Network.from_spec(SPEC)
    h_fused = fit(fused, X, y, **args)
    monkeypatch.setattr(SGD, "steps_in_backward", lambda self, weight_decay=0.0: False)
    plain = Network.from_spec(SPEC)
    h_plain = fit(plain, X, y, **args)
    for (k, a, _), (_, b, _) in zip(fused.param_items(), plain.param_items()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=k)
    assert h_fused[-1]["train_loss"] == pytest.approx(h_plain[-1]["train_loss"], rel=1e-5)
    assert h_fused[-1]["train_loss"] < h_fused[0]["train_loss"]


@pytest.mark.parametrize("optimizer, weight_decay", [
    ({"type": "adam", "learning_rate": 0.01}, 0.0),
    ({"type": "adam", "learning_rate": 0.01}, 1e-3),
    ({"type": "sgd", "learning_rate": 0.05, "momentum": 0.9}, 1e-3),
    ({"type": "sgd", "learning_rate": 0.05, "momentum": 0.9, "nesterov": True}, 0.0),
])
def test_optimizer_steps_through_blas_match_plain_numpy(monkeypatch, optimizer, weight_decay):
    """Adam's moments and step, momentum and weight decay go through BLAS axpy/axpby
    where numpy's OpenBLAS has them; the numpy fallback must train the same way."""
    from core import _blas

    X, y = data()
    args = dict(epochs=3, batch_size=32, optimizer=optimizer, weight_decay=weight_decay,
                standardize=True, seed=5)
    fast = Network.from_spec(SPEC)
    h_fast = fit(fast, X, y, **args)
    monkeypatch.setitem(_blas._state, "funcs", {})  # as on a platform without them
    plain = Network.from_spec(SPEC)
    h_plain = fit(plain, X, y, **args)
    for (k, a, _), (_, b, _) in zip(fast.param_items(), plain.param_items()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=k)
    assert h_fast[-1]["train_loss"] == pytest.approx(h_plain[-1]["train_loss"], rel=1e-4)


def test_weight_decay_shrinks_weights():
    X, y = data()
    args = dict(epochs=10, optimizer={"type": "sgd", "learning_rate": 0.05}, standardize=True, seed=2)
    a, b = Network.from_spec(SPEC), Network.from_spec(SPEC)
    fit(a, X, y, **args)
    fit(b, X, y, weight_decay=0.5, **args)
    assert np.linalg.norm(b.layers[0].params["W"]) < 0.8 * np.linalg.norm(a.layers[0].params["W"])


def test_continue_training_a_fitted_network():
    """A second fit on a built network keeps its weights as the starting point."""
    X, y = data()
    net = Network.from_spec(SPEC)
    h1 = fit(net, X, y, epochs=5, standardize=True, optimizer={"type": "adam", "learning_rate": 0.01})
    h2 = fit(net, X, y, epochs=1, optimizer={"type": "adam", "learning_rate": 0.001})
    assert h2[0]["train_loss"] < h1[0]["train_loss"]


def test_float64_data_with_validation_split_holds_less_than_one_extra_copy():
    """fit keeps one float32 working copy of the rows; splitting float64 data
    must not pass through a full-size float64 temporary on the way there."""
    import tracemalloc

    rng = np.random.default_rng(0)
    X = rng.standard_normal((60_000, 100))  # float64, 48 MB
    y = (X[:, 0] > 0).astype(np.int64)
    spec = {"layers": [{"type": "dense", "units": 8, "activation": "relu"},
                       {"type": "dense", "units": 2, "activation": "softmax"}],
            "loss": "cross_entropy"}
    net = Network.from_spec(spec)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fit(net, X, y, epochs=1, batch_size=256, validation_split=0.2, seed=0)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    # the float32 copy is half of X; gathering through float64 would need 1.2x X
    assert peak < 0.75 * X.nbytes, f"peak {peak / 2**20:.0f} MiB for {X.nbytes / 2**20:.0f} MiB of data"
