"""The training options of issue 14 in the engine: schedules, clipping, adamw and rmsprop,
l1 and max_norm, class and sample weights, huber, batch_norm.

Gradient checks are central differences in float64 (as tests/core/test_gradients.py);
the guarantees (bitwise determinism, bitwise resume, inference mode at predict) are
checked with every option on at once.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from core import OPTIMIZERS, Network, TrainingState, fit
from core.layers import LAYERS, BatchNorm
from core.losses import LOSSES
from core.optimizers import GradPack, clip_by_global_norm, make_optimizer
from core.schedules import SCHEDULES, make_schedule
from core.training import class_weights
from tests.core.gradcheck import TOL, numeric_grad, rel_error


def blobs(n=240, d=5, k=3, seed=0, imbalance=None):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 2
    p = imbalance if imbalance is not None else np.full(k, 1 / k)
    y = rng.choice(k, n, p=p)
    X = centers[y] + rng.standard_normal((n, d)) * 1.5
    return X.astype(np.float32), y


CLF = {"layers": [{"type": "dense", "units": 16, "activation": "relu", "max_norm": 2.0},
                  {"type": "batch_norm", "momentum": 0.2},
                  {"type": "dropout", "rate": 0.1},
                  {"type": "dense", "units": 3, "activation": "softmax"}], "loss": "cross_entropy"}


# ------------------------------------------------------------ gradient checks (float64)
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_weighted_loss_gradient(name):
    """Every loss with per-sample weights: value sum_i w_i l_i / n, gradient by central differences."""
    rng = np.random.default_rng(3)
    loss = LOSSES[name]
    n, m = 6, (3 if name == "cross_entropy" else 1 if name == "binary_cross_entropy" else 2)
    z = rng.uniform(0.1, 1.5, (n, m)) * rng.choice([-1.0, 1.0], (n, m))
    if loss.task == "classification":
        y = rng.integers(0, max(m, 2), n)
    else:
        y = z + rng.uniform(0.2, 2.5, (n, m)) * rng.choice([-1.0, 1.0], (n, m))  # both huber branches
    w = rng.uniform(0.0, 3.0, n)

    def f():
        return loss.value(z.copy(), y, w)

    out = z.copy()
    loss.value(out, y, w)
    analytic = loss.gradient(out, y, 1.0, w)
    assert rel_error(analytic, numeric_grad(f, z)) < TOL
    ones = z.copy()
    assert loss.value(ones, y, np.ones(n)) == pytest.approx(loss.value(z.copy(), y), rel=1e-12)


def test_huber_values_by_hand_and_delta():
    huber = LOSSES["huber"].with_delta(0.5)
    out = np.array([[0.2], [2.0]])
    y = np.array([[0.0], [0.0]])
    # 0.5 * 0.2^2 = 0.02; 0.5 * (2 - 0.25) = 0.875
    assert huber.value(out.copy(), y) == pytest.approx((0.02 + 0.875) / 2)
    assert Network({"layers": [{"type": "dense", "units": 1}], "loss": "huber",
                    "huber_delta": 0.5}).loss.delta == 0.5
    with pytest.raises(ValueError, match=r"^huber_delta is only used with loss 'huber', not 'mse'$"):
        Network({"layers": [{"type": "dense", "units": 1}], "loss": "mse", "huber_delta": 0.5})
    with pytest.raises(ValueError, match=r"^huber_delta must be a number > 0, got 0$"):
        Network({"layers": [{"type": "dense", "units": 1}], "loss": "huber", "huber_delta": 0})


def test_batch_norm_gradient():
    rng = np.random.default_rng(4)
    layer = BatchNorm(momentum=0.1, eps=1e-3)
    layer.build(4, rng, np.float64)
    layer.params["gamma"][:] = rng.uniform(0.5, 2.0, 4)
    layer.params["beta"][:] = rng.standard_normal(4)
    x = rng.standard_normal((7, 4)) * 3 + 1
    R = rng.standard_normal((7, 4))

    def f():
        saved = {k: v.copy() for k, v in layer.state.items()}
        value = float(np.sum(layer.forward(x, training=True) * R))
        for k, v in saved.items():
            layer.state[k][...] = v
        return value

    f()
    gin = layer.backward(R.copy()).copy()
    grads = {k: v.copy() for k, v in layer.grads.items()}
    assert rel_error(gin, numeric_grad(f, x)) < TOL
    for name in ("gamma", "beta"):
        assert rel_error(grads[name], numeric_grad(f, layer.params[name])) < TOL


def test_network_gradient_with_batch_norm_weights_and_clipping():
    """Whole network in float64: batch_norm + dense, weighted loss, then clipping by global norm.
    The clipped analytic gradient equals the numeric one scaled by min(1, clip / its norm)."""
    rng = np.random.default_rng(5)
    for loss, units, act in (("cross_entropy", 3, "softmax"), ("huber", 2, "linear")):
        spec = {"layers": [{"type": "dense", "units": 5, "activation": "tanh"}, {"type": "batch_norm"},
                           {"type": "dense", "units": units, "activation": act}], "loss": loss}
        net = Network.from_spec(spec, dtype=np.float64)
        net.build(4, rng)
        X = rng.standard_normal((8, 4))
        y = rng.integers(0, 3, 8) if loss == "cross_entropy" else rng.standard_normal((8, 2)) * 3
        w = rng.uniform(0.2, 2.0, 8)
        keys, params, grads = zip(*net.param_items())

        def f():
            saved = {k: v.copy() for k, v in net.get_arrays().items() if k.startswith("state/")}
            value = net.loss.value(net.forward(X, training=True), y, w)
            net.set_arrays({**net.get_arrays(), **saved})
            return value

        f()
        out = net.forward(X, training=True)
        net.loss.value(out, y, w)
        net.backward(net.loss.gradient(out, y, 1.0, w))
        numeric = [numeric_grad(f, p) for p in params]
        norm = math.sqrt(sum(float((g * g).sum()) for g in numeric))
        clip = norm / 3
        analytic = [g.copy() for g in grads]
        assert clip_by_global_norm(analytic, clip) == pytest.approx(norm, rel=1e-6)
        for a, nm in zip(analytic, numeric):
            assert rel_error(a, nm * (clip / norm)) < TOL


# ------------------------------------------------------------ schedules
def test_schedule_values_by_hand():
    def lrs(spec, epochs=8, base=0.1):
        s = make_schedule(spec, base, epochs, task="classification", has_val=True)
        return [s.lr(e) for e in range(1, epochs + 1)]

    assert lrs({"type": "step", "step_size": 3, "gamma": 0.5}) == pytest.approx(
        [0.1] * 3 + [0.05] * 3 + [0.025] * 2)
    assert lrs({"type": "exponential", "gamma": 0.9}) == pytest.approx([0.1 * 0.9 ** k for k in range(8)])
    cos = lrs({"type": "cosine", "warmup_epochs": 2, "min_lr": 0.01})
    assert cos[:2] == pytest.approx([0.1 / 3, 0.2 / 3])  # linear warm-up
    assert cos[2] == pytest.approx(0.1)  # the schedule's first epoch: base
    assert cos[2:] == pytest.approx([0.01 + 0.09 * (1 + math.cos(math.pi * k / 6)) / 2 for k in range(6)])
    assert set(SCHEDULES) == {"step", "exponential", "cosine", "reduce_on_plateau"}


@pytest.mark.parametrize("spec, message", [
    ({"type": "warm"}, r"^lr_schedule\.type must be one of step, exponential, cosine, reduce_on_plateau, "
                       r"got 'warm'$"),
    ({"type": "step", "gamma": 1.5}, r"^lr_schedule\.gamma must be > 0 and <= 1, got 1\.5$"),
    ({"type": "cosine", "warmup_epochs": -1}, r"^lr_schedule\.warmup_epochs must be >= 0, got -1$"),
    ({"type": "reduce_on_plateau", "factor": 1.0}, r"^lr_schedule\.factor must be > 0 and < 1, got 1\.0$"),
    ({"type": "reduce_on_plateau", "monitor": "val_mae"},
     r"^lr_schedule\.monitor must be one of train_loss, val_loss, train_accuracy, val_accuracy, val_auc, got 'val_mae'$"),
    ({"type": "reduce_on_plateau", "warmup_epochs": 1},
     r"^lr_schedule\.warmup_epochs: unknown option for 'reduce_on_plateau'"),
])
def test_schedule_errors_name_the_option(spec, message):
    X, y = blobs(60)
    with pytest.raises(ValueError, match=message):
        fit(Network.from_spec(CLF), X, y, epochs=1, validation_split=0.2, lr_schedule=spec)


def test_lr_in_metrics_and_reduce_on_plateau_reduces():
    X, y = blobs(120)
    # min_delta 10: the loss never improves enough, so every epoch after the first is a plateau
    sched = {"type": "reduce_on_plateau", "monitor": "train_loss", "factor": 0.5, "patience": 2,
             "min_lr": 0.002, "min_delta": 10}
    h = fit(Network.from_spec(CLF), X, y, epochs=8, optimizer={"type": "sgd", "learning_rate": 0.02},
            lr_schedule=sched)
    assert [m["lr"] for m in h] == pytest.approx([0.02, 0.02, 0.02, 0.01, 0.01, 0.005, 0.005, 0.0025])
    plain = fit(Network.from_spec(CLF), X, y, epochs=2, optimizer={"type": "adam", "learning_rate": 0.003})
    assert [m["lr"] for m in plain] == [0.003, 0.003]


# ------------------------------------------------------------ optimizers, clipping, regularisation
def test_adamw_and_rmsprop_steps_match_their_formulas():
    rng = np.random.default_rng(6)
    w0, g = rng.standard_normal(5), rng.standard_normal(5)
    adamw = make_optimizer({"type": "adamw", "learning_rate": 0.1, "weight_decay": 0.05})
    w = w0.copy()
    adamw.step(["p"], [w], [g.copy()])
    m, v = 0.1 * g, 0.001 * g * g
    # the engine's Adam folds the bias corrections into the step (Kingma & Ba, section 2's last paragraph)
    expected = w0 * (1 - 0.1 * 0.05) - 0.1 * math.sqrt(0.001) / 0.1 * m / (np.sqrt(v) + 1e-8)
    assert np.allclose(w, expected, rtol=1e-12, atol=0)
    rms = make_optimizer({"type": "rmsprop", "learning_rate": 0.01, "rho": 0.8, "eps": 1e-7})
    w = w0.copy()
    rms.step(["p"], [w], [g.copy()])
    assert np.allclose(w, w0 - 0.01 * g / (np.sqrt(0.2 * g * g) + 1e-7), rtol=1e-12, atol=0)
    assert {"adamw", "rmsprop"} <= set(OPTIMIZERS)
    with pytest.raises(ValueError, match=r"^optimizer\.rho must be in \[0, 1\), got 1\.5$"):
        make_optimizer({"type": "rmsprop", "rho": 1.5})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("spec, wd, l1", [({"type": "adam", "learning_rate": 0.01}, 0.0, 0.0),
                                          ({"type": "adamw", "learning_rate": 0.01}, 1e-3, 1e-4)])
def test_packed_steps_are_bitwise_the_per_parameter_steps_and_keep_their_state(spec, wd, l1, dtype):
    """The flat step (moments of all parameters in one array, see GradPack) is the per-parameter loop, bit for bit,
    on shapes that are no multiple of a SIMD vector; its state is saved and loaded under the same keys."""
    rng = np.random.default_rng(3)
    shapes = [(7, 37), (37,), (37, 23), (23,), (23, 3), (3,)]
    keys = [f"{i // 2}.{'Wb'[i % 2]}" for i in range(len(shapes))]
    w_loop = [rng.standard_normal(s).astype(dtype) for s in shapes]
    w_pack = [w.copy() for w in w_loop]
    loop, packed = make_optimizer(spec), make_optimizer(spec)
    pack = GradPack(shapes, dtype)
    packed.use_pack(pack)
    for t in range(6):
        grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
        for view, g in zip(pack.views, grads):
            view[...] = g
        loop.step(keys, w_loop, [g.copy() for g in grads], wd, l1)
        packed.step(keys, w_pack, pack.views, wd, l1)
        if t == 2:  # a checkpoint: the flat state is saved by key and loaded back (copied) before going on
            packed.load_state({k: v.copy() for k, v in packed.state_arrays().items()}, packed.state_scalars())
        assert all(np.array_equal(a, b) for a, b in zip(w_loop, w_pack))
        assert np.count_nonzero(pack.flat) == sum(map(np.count_nonzero, pack.views))  # the gaps stay zero
    assert loop.state_arrays().keys() == packed.state_arrays().keys()
    assert all(np.array_equal(loop.state[k], packed.state[k]) for k in loop.state)
    assert all(v.ctypes.data % 64 == 0 for v in pack.views)


def test_adamw_decay_is_decoupled_from_the_gradient():
    """With a zero gradient Adam's step is 0, so only the decoupled decay moves the weights."""
    w = np.ones(3)
    make_optimizer({"type": "adamw", "learning_rate": 0.1, "weight_decay": 0.5}).step(["p"], [w], [np.zeros(3)])
    assert np.allclose(w, 0.95)


def test_clip_norm_bounds_each_update_for_sgd():
    X, y = blobs(64)
    X = X * 100  # huge gradients
    spec = {"layers": [{"type": "dense", "units": 3, "activation": "softmax"}], "loss": "cross_entropy"}
    for clip in (0.5, None):
        net = Network(dict(spec, input_dim=5), seed=0)
        before = {k: p.copy() for k, p, _ in net.param_items()}
        fit(net, X, y, epochs=1, batch_size=64, optimizer={"type": "sgd", "learning_rate": 0.1}, clip_norm=clip)
        step = math.sqrt(sum(float(((p - before[k]) ** 2).sum()) for k, p, _ in net.param_items()))
        if clip is not None:
            assert step == pytest.approx(0.1 * 0.5, rel=1e-4)  # lr * clip_norm: one full-batch step
        else:
            assert step > 1.0
    with pytest.raises(ValueError, match=r"^clip_norm must be a number > 0 or None, got 0$"):
        fit(Network.from_spec(spec), X, y, epochs=1, clip_norm=0)


def test_l1_and_max_norm():
    X, y = blobs(200)
    spec = {"layers": [{"type": "dense", "units": 32, "activation": "relu", "max_norm": 0.5},
                       {"type": "dense", "units": 3, "activation": "softmax"}], "loss": "cross_entropy"}
    net = Network.from_spec(spec)
    fit(net, X, y, epochs=5, optimizer={"type": "adam", "learning_rate": 0.05})
    W = net.layers[0].params["W"]
    assert np.sqrt((W.astype(np.float64) ** 2).sum(axis=0)).max() <= 0.5 * (1 + 1e-5)
    plain, lasso = Network.from_spec(CLF), Network.from_spec(CLF)
    args = dict(epochs=8, optimizer={"type": "sgd", "learning_rate": 0.05})
    fit(plain, X, y, **args)
    fit(lasso, X, y, l1=0.05, **args)
    l1_norm = {n: float(np.abs(n.layers[0].params["W"]).sum()) for n in (plain, lasso)}
    assert l1_norm[lasso] < 0.8 * l1_norm[plain]
    with pytest.raises(ValueError, match=r"^layers\[0\]\.max_norm must be a number > 0, got -1$"):
        Network.from_spec({"layers": [{"type": "dense", "units": 2, "activation": "softmax", "max_norm": -1}],
                           "loss": "cross_entropy"})
    with pytest.raises(ValueError, match=r"^l1 must be >= 0, got -0\.1$"):
        fit(Network.from_spec(CLF), X, y, l1=-0.1)


# ------------------------------------------------------------ class and sample weights
def test_balanced_class_weight_is_scikit_learns():
    from sklearn.utils.class_weight import compute_class_weight
    y = np.array([0] * 70 + [1] * 20 + [2] * 10)
    assert np.allclose(class_weights("balanced", y, 3), compute_class_weight("balanced", classes=np.arange(3), y=y))
    assert list(class_weights({1: 4.0}, y, 3)) == [1.0, 4.0, 1.0]
    with pytest.raises(ValueError, match=r"^class_weight: class 5 is not a class index in 0\.\.2$"):
        class_weights({5: 1.0}, y, 3)


def test_class_weight_raises_minority_recall():
    X, y = blobs(600, imbalance=[0.9, 0.07, 0.03], seed=2)
    X = X * 0.4 + np.random.default_rng(0).standard_normal(X.shape).astype(np.float32)  # overlap
    spec = {"layers": [{"type": "dense", "units": 3, "activation": "softmax"}], "loss": "cross_entropy"}
    args = dict(epochs=15, optimizer={"type": "adam", "learning_rate": 0.02}, seed=1)
    recall = {}
    for cw in (None, "balanced"):
        net = Network.from_spec(spec)
        fit(net, X, y, class_weight=cw, **args)
        pred = net.predict(X)
        recall[cw] = np.mean([np.mean(pred[y == k] == k) for k in (1, 2)])
    assert recall["balanced"] > recall[None] + 0.1


def test_sample_weight_of_ones_is_bitwise_the_unweighted_run_and_zero_weights_ignore_rows():
    X, y = blobs(150)
    args = dict(epochs=3, optimizer={"type": "sgd", "learning_rate": 0.05}, seed=3)
    a, b = Network.from_spec(CLF), Network.from_spec(CLF)
    fit(a, X, y, **args)
    fit(b, X, y, sample_weight=np.ones(len(y)), **args)
    for (k, p, _), (_, q, _) in zip(a.param_items(), b.param_items()):
        assert np.array_equal(p, q), k
    with pytest.raises(ValueError, match=r"^sample_weight must be finite and >= 0, got -1\.0 at row 4$"):
        fit(Network.from_spec(CLF), X, y, sample_weight=np.r_[np.ones(4), -1.0, np.ones(len(y) - 5)])
    with pytest.raises(ValueError, match=r"^sample_weight must have shape \(150,\), one weight per row"):
        fit(Network.from_spec(CLF), X, y, sample_weight=np.ones(3))


# ------------------------------------------------------------ the guarantees, every option on
ALL = dict(epochs=6, batch_size=16, seed=5, validation_split=0.25, l1=1e-4, weight_decay=1e-4,
           clip_norm=1.0, class_weight="balanced", optimizer={"type": "adamw", "learning_rate": 0.01},
           early_stopping={"monitor": "val_loss", "patience": 4})


@pytest.mark.parametrize("schedule", [
    {"type": "cosine", "warmup_epochs": 2},
    {"type": "reduce_on_plateau", "monitor": "train_loss", "factor": 0.5, "patience": 2, "min_delta": 10},
])
def test_bitwise_determinism_and_resume_with_every_option(tmp_path, schedule):
    X, y = blobs(160, imbalance=[0.6, 0.3, 0.1])
    sw = np.random.default_rng(1).uniform(0.5, 2.0, len(y))
    args = dict(ALL, lr_schedule=schedule, sample_weight=sw)
    paths = {}

    def checkpoint(metrics, state):
        paths[state.epoch] = tmp_path / f"s{state.epoch}.npz"
        state.save(paths[state.epoch])

    full = Network.from_spec(CLF)
    history = fit(full, X, y, callback=checkpoint, **args)
    again = Network.from_spec(CLF)
    assert [dict(h, seconds=0) for h in fit(again, X, y, **args)] == [dict(h, seconds=0) for h in history]
    expected = full.get_arrays()
    assert any(k.startswith("state/1.running_") for k in expected)
    for k, v in again.get_arrays().items():
        assert np.array_equal(v, expected[k]), k
    if schedule["type"] == "reduce_on_plateau":  # the plateau actually moved the rate during the run
        assert len({m["lr"] for m in history}) > 1
    for e in range(1, len(history)):
        resumed = Network.from_spec(CLF)
        h = fit(resumed, X, y, resume=paths[e], **args)
        assert [dict(m, seconds=0) for m in h] == [dict(m, seconds=0) for m in history], f"resumed at {e}"
        for k, v in resumed.get_arrays().items():
            assert np.array_equal(v, expected[k]), f"{k} resumed at {e}"


def test_plateau_state_is_in_the_checkpoint(tmp_path):
    X, y = blobs(100)
    states = []
    fit(Network.from_spec(CLF), X, y, epochs=6, optimizer={"type": "sgd", "learning_rate": 0.5},
        lr_schedule={"type": "reduce_on_plateau", "monitor": "train_accuracy", "patience": 1, "factor": 0.5},
        callback=lambda m, s: states.append((m, s)))
    metrics, state = states[-1]
    state.save(tmp_path / "s.npz")
    loaded = TrainingState.load(tmp_path / "s.npz").schedule
    assert set(loaded) == {"current", "best", "wait"}
    assert loaded["best"] == max(m["train_accuracy"] for m, _ in states)


def test_batch_norm_uses_running_statistics_at_predict_and_saves_them(tmp_path):
    X, y = blobs(200)
    net = Network.from_spec(CLF)
    fit(net, X, y, epochs=3, optimizer={"type": "adam", "learning_rate": 0.01})
    bn = net.layers[1]
    assert not np.allclose(bn.state["running_mean"], 0) and not np.allclose(bn.state["running_var"], 1)
    probs = net.predict_proba(X[:10])
    # one row at a time gives the same answer: no batch statistics at inference, no dropout
    assert np.allclose(np.vstack([net.predict_proba(X[i]) for i in range(10)]), probs, atol=1e-6)
    assert np.array_equal(net.predict_proba(X[:10]), probs)
    h = net.layers[0].forward(X[:10].astype(np.float32))
    manual = (h - bn.state["running_mean"]) / np.sqrt(bn.state["running_var"] + bn.eps) \
        * bn.params["gamma"] + bn.params["beta"]
    assert np.allclose(bn.forward(h), manual, atol=1e-5)
    net.save(tmp_path / "m.npz")
    loaded = Network.load(tmp_path / "m.npz")
    assert np.array_equal(loaded.layers[1].state["running_var"], bn.state["running_var"])
    assert np.array_equal(loaded.predict_proba(X[:10]), probs)
    assert "batch_norm" in LAYERS
    with pytest.raises(ValueError, match=r"^layers\[1\]\.momentum must be in \(0, 1\], got 2$"):
        Network.from_spec({**CLF, "layers": [CLF["layers"][0], {"type": "batch_norm", "momentum": 2},
                                             CLF["layers"][3]]})
