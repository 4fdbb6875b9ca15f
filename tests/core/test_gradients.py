"""Central-difference gradient checks in float64 for every activation, every
loss, and the dense and dropout layers (scikit-learn's ``test_gradient`` idea).

Each check compares the analytic gradient with ``(f(x+h) - f(x-h)) / 2h`` and
asserts the relative error ``|a - n| / (|a| + |n|)`` (norms over all entries)
is below 1e-6.  Inputs are kept away from the kinks of relu, leaky relu and
mae, where the derivative is not defined.
"""
from __future__ import annotations

import numpy as np
import pytest

from core.activations import ACTIVATIONS
from core.layers import ActivationLayer, Dense, Dropout
from core.losses import LOSSES, UNFUSED_LOSSES
from tests.core.gradcheck import TOL, assert_gradient, numeric_grad, rel_error

KINKED = {"relu", "leaky_relu"}


def away_from_zero(rng, shape, low=0.05, high=2.0):
    """Values with |v| in [low, high] and random sign (no relu/mae kinks in reach of gradcheck.EPS)."""
    return rng.uniform(low, high, shape) * rng.choice([-1.0, 1.0], shape)


# ----------------------------------------------------------------- activations
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_gradient(name):
    rng = np.random.default_rng(1)
    act = ACTIVATIONS[name]
    z = away_from_zero(rng, (5, 4))
    R = rng.standard_normal((5, 4))  # projection: f = sum(act(z) * R), so df/dy = R

    def f():
        return float(np.sum(act.forward(z.copy(), out=np.empty_like(z)) * R))

    y = act.forward(z.copy(), out=np.empty_like(z))
    analytic = act.backward(y, R.copy())
    assert_gradient(analytic, f, z)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_forward_in_place_matches_out_of_place(name):
    rng = np.random.default_rng(2)
    act = ACTIVATIONS[name]
    z = rng.standard_normal((6, 3))
    expected = act.forward(z.copy(), out=np.empty_like(z))
    zz = z.copy()
    got = act.forward(zz, out=zz)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_layer_gradient(name):
    rng = np.random.default_rng(3)
    layer = ActivationLayer(name)
    layer.build(4, rng, dtype=np.float64)
    x = away_from_zero(rng, (3, 4))
    R = rng.standard_normal((3, 4))

    def f():
        return float(np.sum(layer.forward(x.copy(), training=True) * R))

    layer.forward(x.copy(), training=True)
    analytic = layer.backward(R.copy())
    assert rel_error(analytic, numeric_grad(f, x)) < TOL


def test_activation_values():
    z = np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]])
    out = lambda n: ACTIVATIONS[n].forward(z.copy(), out=np.empty_like(z))  # noqa: E731
    np.testing.assert_allclose(out("relu"), [[0, 0, 0, 0.5, 3.0]])
    np.testing.assert_allclose(out("leaky_relu"), [[-0.02, -0.005, 0, 0.5, 3.0]])
    np.testing.assert_allclose(out("tanh"), np.tanh(z))
    np.testing.assert_allclose(out("sigmoid"), 1 / (1 + np.exp(-z)), rtol=1e-12)
    np.testing.assert_allclose(out("linear"), z)
    e = np.exp(z - z.max())
    np.testing.assert_allclose(out("softmax"), e / e.sum(), rtol=1e-12)
    # Stable for huge inputs: no overflow, no NaN.
    big = np.array([[1000.0, -1000.0, 0.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        s = ACTIVATIONS["softmax"].forward(big.copy(), out=np.empty_like(big))
        g = ACTIVATIONS["sigmoid"].forward(big.copy(), out=np.empty_like(big))
    np.testing.assert_allclose(s, [[1.0, 0.0, 0.0]])
    np.testing.assert_allclose(g, [[1.0, 0.0, 0.5]])


# ---------------------------------------------------------------------- losses
def _loss_inputs(name, rng, n=6, k=3):
    if name == "cross_entropy":
        return rng.standard_normal((n, k)) * 2, rng.integers(0, k, n)
    if name == "binary_cross_entropy":
        return rng.standard_normal((n, 1)) * 2, rng.integers(0, 2, n)
    out = rng.standard_normal((n, k))
    return out, out + away_from_zero(rng, (n, k))  # mae: |out - y| >= 0.05


def assert_loss_gradient(loss, out: np.ndarray, y: np.ndarray) -> None:
    """``loss.gradient`` after ``loss.value`` at ``out`` matches central differences of the value."""
    def f():
        return loss.value(out.copy(), y)

    buf = out.copy()
    loss.value(buf, y)
    assert_gradient(loss.gradient(buf, y), f, out)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_gradient(name):
    """Fused losses get logits and return dL/dlogits; others dL/dout."""
    rng = np.random.default_rng(4)
    loss = LOSSES[name]
    out, y = _loss_inputs(name, rng)
    assert_loss_gradient(loss, out, y)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_gradient_scale(name):
    rng = np.random.default_rng(5)
    loss = LOSSES[name]
    out, y = _loss_inputs(name, rng)
    a, b = out.copy(), out.copy()
    loss.value(a, y)
    loss.value(b, y)
    np.testing.assert_allclose(loss.gradient(a, y, 0.1), 0.1 * loss.gradient(b, y), rtol=1e-12)


@pytest.mark.parametrize("name", sorted(UNFUSED_LOSSES))
def test_unfused_loss_gradient(name):
    """The loss on probabilities (what the fused forms are derived from) checks too."""
    rng = np.random.default_rng(6)
    loss = UNFUSED_LOSSES[name]
    if name == "cross_entropy":
        z = rng.standard_normal((5, 3))
        out = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        y = rng.integers(0, 3, 5)
    elif name == "binary_cross_entropy":
        out = rng.uniform(0.1, 0.9, (5, 1))
        y = rng.integers(0, 2, 5)
    else:
        out, y = _loss_inputs(name, rng)
    assert_loss_gradient(loss, out, y)


@pytest.mark.parametrize("loss_name, act_name", [("cross_entropy", "softmax"),
                                                 ("binary_cross_entropy", "sigmoid")])
def test_fused_gradient_equals_chain_rule(loss_name, act_name):
    """softmax+CE and sigmoid+BCE fused deltas equal activation' x unfused loss'."""
    rng = np.random.default_rng(7)
    k = 3 if loss_name == "cross_entropy" else 1
    z = rng.standard_normal((5, k))
    y = rng.integers(0, max(k, 2), 5)
    act = ACTIVATIONS[act_name]
    p = act.forward(z.copy(), out=np.empty_like(z))
    unfused = UNFUSED_LOSSES[loss_name]
    buf = p.copy()
    v_unfused = unfused.value(buf, y)
    chain = act.backward(p, unfused.gradient(buf, y))
    fused = LOSSES[loss_name]
    buf = z.copy()
    v_fused = fused.value(buf, y)
    assert v_fused == pytest.approx(v_unfused, rel=1e-10)
    np.testing.assert_allclose(fused.gradient(buf, y), chain, rtol=1e-9, atol=1e-12)


def test_loss_values_by_hand():
    ce = LOSSES["cross_entropy"]
    assert ce.value(np.zeros((2, 2)), np.array([0, 1])) == pytest.approx(np.log(2))
    bce = LOSSES["binary_cross_entropy"]
    assert bce.value(np.zeros((1, 1)), np.array([1])) == pytest.approx(np.log(2))
    mse = LOSSES["mse"]
    assert mse.value(np.array([[1.0], [3.0]]), np.array([0.0, 1.0])) == pytest.approx(2.5)
    mae = LOSSES["mae"]
    assert mae.value(np.array([[1.0, -1.0]]), np.array([[0.0, 1.0]])) == pytest.approx(1.5)


def test_losses_stable_for_large_logits():
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        v = LOSSES["cross_entropy"].value(np.array([[1000.0, -1000.0]]), np.array([1]))
        assert v == pytest.approx(2000.0)
        v = LOSSES["binary_cross_entropy"].value(np.array([[800.0], [-800.0]]), np.array([0, 1]))
        assert v == pytest.approx(800.0)
        v = LOSSES["binary_cross_entropy"].value(np.array([[800.0], [-800.0]]), np.array([1, 0]))
        assert v == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------------- dense
@pytest.mark.parametrize("activation", sorted(set(ACTIVATIONS)))
def test_dense_gradient(activation):
    rng = np.random.default_rng(8)
    layer = Dense(4, activation=activation)
    layer.build(3, rng, dtype=np.float64)
    layer.params["b"][:] = rng.standard_normal(4) * 0.1
    x = rng.standard_normal((5, 3))
    if activation in KINKED:
        # Keep pre-activations away from 0 so the numeric derivative is defined.
        for _ in range(100):
            z = x @ layer.params["W"] + layer.params["b"]
            if np.abs(z).min() > 1e-3:
                break
            x = rng.standard_normal((5, 3))
        else:  # pragma: no cover
            pytest.fail("could not draw inputs away from the kink")
    R = rng.standard_normal((5, 4))

    def f():
        return float(np.sum(layer.forward(x.copy(), training=True) * R))

    layer.forward(x.copy(), training=True)
    gx = layer.backward(R.copy()).copy()
    gW, gb = layer.grads["W"].copy(), layer.grads["b"].copy()
    assert gx.shape == x.shape and gW.shape == (3, 4) and gb.shape == (4,)
    assert rel_error(gx, numeric_grad(f, x)) < TOL
    assert rel_error(gW, numeric_grad(f, layer.params["W"])) < TOL
    assert rel_error(gb, numeric_grad(f, layer.params["b"])) < TOL


def test_dense_float64_is_float64():
    layer = Dense(2, activation="tanh")
    layer.build(3, np.random.default_rng(0), dtype=np.float64)
    assert layer.params["W"].dtype == np.float64
    assert layer.forward(np.ones((2, 3)), training=True).dtype == np.float64


def test_dense_inference_matches_training_forward():
    rng = np.random.default_rng(9)
    layer = Dense(4, activation="relu")
    layer.build(3, rng, dtype=np.float64)
    x = rng.standard_normal((5, 3))
    a = layer.forward(x, training=True).copy()
    b = layer.forward(x, training=False)
    np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------- dropout
@pytest.mark.parametrize("rate", [0.0, 0.3, 0.7])
def test_dropout_gradient_with_fixed_mask(rate):
    rng = np.random.default_rng(10)
    layer = Dropout(rate)
    layer.build(6, rng, dtype=np.float64)
    x = rng.standard_normal((8, 6))
    R = rng.standard_normal((8, 6))

    def forward():
        layer.rng = np.random.default_rng(123)  # the same mask on every call
        return layer.forward(x.copy(), training=True)

    def f():
        return float(np.sum(forward() * R))

    y = forward().copy()
    analytic = layer.backward(R.copy())
    assert rel_error(analytic, numeric_grad(f, x)) < TOL
    # Inverted dropout: kept units scaled by 1/(1-rate), the rest zero.
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / (1 - rate), rtol=1e-12)
    if rate == 0.0:
        assert kept.all()
    else:
        assert 0 < (~kept).sum() < x.size


def test_dropout_is_identity_at_inference():
    layer = Dropout(0.5)
    layer.build(10, np.random.default_rng(0), dtype=np.float64)
    x = np.random.default_rng(1).standard_normal((4, 10))
    np.testing.assert_array_equal(layer.forward(x, training=False), x)


def test_dropout_drops_about_rate():
    layer = Dropout(0.25)
    layer.build(1000, np.random.default_rng(0), dtype=np.float32)
    layer.rng = np.random.default_rng(0)
    y = layer.forward(np.ones((100, 1000), dtype=np.float32), training=True)
    assert abs((y == 0).mean() - 0.25) < 0.01
    assert abs(float(y.mean()) - 1.0) < 0.02


# -------------------------------------------------------- stacked layers (chain)
def test_two_layer_chain_gradient():
    """dense(tanh) -> dropout -> dense(softmax logits) + cross-entropy, end to end."""
    rng = np.random.default_rng(11)
    l1, drop, l2 = Dense(5, activation="tanh"), Dropout(0.2), Dense(3, activation="softmax")
    l1.build(4, rng, dtype=np.float64)
    drop.build(5, rng, dtype=np.float64)
    l2.build(5, rng, dtype=np.float64)
    l2.skip_activation = True  # the loss applies softmax (fused)
    loss = LOSSES["cross_entropy"]
    x = rng.standard_normal((7, 4))
    y = rng.integers(0, 3, 7)

    def run():
        drop.rng = np.random.default_rng(5)
        h = l1.forward(x.copy(), training=True)
        h = drop.forward(h, training=True)
        return l2.forward(h, training=True)

    def f():
        return loss.value(run().copy(), y)

    out = run()
    loss.value(out, y)
    g = loss.gradient(out, y)
    g = l2.backward(g)
    g = drop.backward(g)
    gx = l1.backward(g).copy()
    analytic = {"W1": l1.grads["W"].copy(), "b1": l1.grads["b"].copy(),
                "W2": l2.grads["W"].copy(), "b2": l2.grads["b"].copy()}
    assert rel_error(gx, numeric_grad(f, x)) < TOL
    assert rel_error(analytic["W1"], numeric_grad(f, l1.params["W"])) < TOL
    assert rel_error(analytic["b1"], numeric_grad(f, l1.params["b"])) < TOL
    assert rel_error(analytic["W2"], numeric_grad(f, l2.params["W"])) < TOL
    assert rel_error(analytic["b2"], numeric_grad(f, l2.params["b"])) < TOL
