"""A tiny network worked through by hand: forward pass, loss, every gradient,
and one SGD step, against numbers computed on paper.

Network 2 -> 2 (relu) -> 1 (linear), loss mse, one sample x = [1, 2], y = 1.

    W1 = [[0.5, -1.0], [0.25, 0.5]]   b1 = [0, 0.5]
    z1 = x W1 + b1 = [1*0.5 + 2*0.25, 1*(-1) + 2*0.5 + 0.5] = [1.0, 0.5]
    h  = relu(z1) = [1.0, 0.5]
    W2 = [[2.0], [-1.0]]               b2 = [0.25]
    out = 1*2 + 0.5*(-1) + 0.25 = 1.75
    L  = (1.75 - 1)^2 = 0.5625
    dL/dout = 2 * 0.75 = 1.5
    dW2 = h^T * 1.5 = [[1.5], [0.75]]    db2 = [1.5]
    dh  = 1.5 * W2^T = [3.0, -1.5]  (both z1 > 0, so dz1 = dh)
    dW1 = x^T dz1 = [[3.0, -1.5], [6.0, -3.0]]   db1 = [3.0, -1.5]
    dx  = dz1 W1^T = [3*0.5 + (-1.5)(-1), 3*0.25 + (-1.5)(0.5)] = [3.0, 0.0]

One SGD step with learning rate 0.1 subtracts 0.1 x each gradient.
"""
from __future__ import annotations

import numpy as np
import pytest

from core import Network, fit

SPEC = {
    "input_dim": 2,
    "layers": [{"type": "dense", "units": 2, "activation": "relu"},
               {"type": "dense", "units": 1, "activation": "linear"}],
    "loss": "mse",
}
W1 = np.array([[0.5, -1.0], [0.25, 0.5]])
B1 = np.array([0.0, 0.5])
W2 = np.array([[2.0], [-1.0]])
B2 = np.array([0.25])
X = np.array([[1.0, 2.0]])
Y = np.array([1.0])


def hand_net(dtype=np.float64) -> Network:
    net = Network.from_spec(SPEC, dtype=dtype, seed=0)
    dense = [layer for layer in net.layers if layer.params]
    dense[0].params["W"][...] = W1
    dense[0].params["b"][...] = B1
    dense[1].params["W"][...] = W2
    dense[1].params["b"][...] = B2
    return net


def test_forward_loss_and_gradients_by_hand():
    net = hand_net()
    out = net.forward(X.copy(), training=True)
    np.testing.assert_allclose(out, [[1.75]])
    assert net.loss.value(out, Y) == pytest.approx(0.5625)
    delta = net.loss.gradient(out, Y)
    np.testing.assert_allclose(delta, [[1.5]])
    first = net.layers[0]
    net.layers[1].backward(delta)  # dense 2 alone, to see dx of the hidden layer
    dh = net.layers[1]._buffer("gin", (1, 2)).copy()
    np.testing.assert_allclose(dh, [[3.0, -1.5]])
    gx = first.backward(dh.copy())
    np.testing.assert_allclose(gx, [[3.0, 0.0]], atol=1e-15)
    np.testing.assert_allclose(net.layers[1].grads["W"], [[1.5], [0.75]])
    np.testing.assert_allclose(net.layers[1].grads["b"], [1.5])
    np.testing.assert_allclose(first.grads["W"], [[3.0, -1.5], [6.0, -3.0]])
    np.testing.assert_allclose(first.grads["b"], [3.0, -1.5])


def test_network_backward_fills_all_grads():
    net = hand_net()
    out = net.forward(X.copy(), training=True)
    net.loss.value(out, Y)
    net.backward(net.loss.gradient(out, Y))
    grads = {k: g.copy() for k, _, g in net.param_items()}
    np.testing.assert_allclose(grads["0.W"], [[3.0, -1.5], [6.0, -3.0]])
    np.testing.assert_allclose(grads["0.b"], [3.0, -1.5])
    np.testing.assert_allclose(grads["1.W"], [[1.5], [0.75]])
    np.testing.assert_allclose(grads["1.b"], [1.5])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_one_sgd_step_by_hand(dtype):
    net = hand_net(dtype)
    history = fit(net, X, Y, epochs=1, batch_size=1,
                  optimizer={"type": "sgd", "learning_rate": 0.1}, seed=0)
    assert history[0]["train_loss"] == pytest.approx(0.5625, rel=1e-6)
    dense = [layer for layer in net.layers if layer.params]
    tol = dict(rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dense[0].params["W"], W1 - 0.1 * np.array([[3.0, -1.5], [6.0, -3.0]]), **tol)
    np.testing.assert_allclose(dense[0].params["b"], B1 - 0.1 * np.array([3.0, -1.5]), **tol)
    np.testing.assert_allclose(dense[1].params["W"], W2 - 0.1 * np.array([[1.5], [0.75]]), **tol)
    np.testing.assert_allclose(dense[1].params["b"], B2 - 0.1 * np.array([1.5]), **tol)
    # After the step: h = relu([1*0.2 + 2*(-0.35), 1*(-0.85) + 2*0.8 + 0.65]) = relu([-0.2, 1.4]) = [0, 1.4]
    # out = 0*1.85 + 1.4*(-1.075) + 0.1 = -1.405
    np.testing.assert_allclose(net.predict(X), [-1.405], rtol=1e-6)


def test_softmax_cross_entropy_by_hand():
    """Logits [ln 1, ln 3] -> p = [0.25, 0.75]; label 1 -> loss = -ln 0.75, delta = [0.25, -0.25]."""
    spec = {"input_dim": 1,
            "layers": [{"type": "dense", "units": 2, "activation": "softmax"}],
            "loss": "cross_entropy"}
    net = Network.from_spec(spec, dtype=np.float64, seed=0)
    net.layers[0].params["W"][...] = [[0.0, np.log(3.0)]]
    net.layers[0].params["b"][...] = 0.0
    np.testing.assert_allclose(net.predict_proba([[1.0]]), [[0.25, 0.75]])
    assert net.predict([[1.0]]).tolist() == [1]
    out = net.forward(np.array([[1.0]]), training=True)
    assert net.loss.value(out, np.array([1])) == pytest.approx(-np.log(0.75))
    np.testing.assert_allclose(net.loss.gradient(out, np.array([1])), [[0.25, -0.25]])
