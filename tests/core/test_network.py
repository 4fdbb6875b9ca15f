"""Network specs, prediction, persistence and input checks (public API only)."""
from __future__ import annotations

import numpy as np
import pytest

from core import ACTIVATIONS, INITS, LOSSES, OPTIMIZERS, Network, count_params, fit


def clf_spec(hidden=8, k=3, input_dim=None, **extra_layer):
    spec = {"layers": [{"type": "dense", "units": hidden, "activation": "relu"},
                       {"type": "dense", "units": k, "activation": "softmax"}],
            "loss": "cross_entropy"}
    if input_dim is not None:
        spec["input_dim"] = input_dim
    return spec


def blobs(n=150, d=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 3
    y = rng.integers(0, k, n)
    X = centers[y] + rng.standard_normal((n, d))
    return X.astype(np.float32), y


# ----------------------------------------------------------------- tables
def test_tables_are_keyed_by_api_strings():
    assert set(ACTIVATIONS) == {"relu", "leaky_relu", "tanh", "sigmoid", "softmax", "linear"}
    assert set(LOSSES) == {"cross_entropy", "binary_cross_entropy", "mse", "mae", "huber"}
    assert set(OPTIMIZERS) == {"sgd", "adam", "adamw", "rmsprop"}
    assert set(INITS) == {"he", "glorot", "normal"}


# ------------------------------------------------------------ invalid specs
@pytest.mark.parametrize("spec, words", [
    ({"layers": [{"type": "dense", "units": 0, "activation": "relu"},
                 {"type": "dense", "units": 2, "activation": "softmax"}], "loss": "cross_entropy"},
     ["layers[0].units", "0"]),
    ({"layers": [{"type": "dense", "units": -3, "activation": "relu"},
                 {"type": "dense", "units": 2, "activation": "softmax"}], "loss": "cross_entropy"},
     ["units", "-3"]),
    ({"layers": [{"type": "dense", "units": 4, "activation": "swish"},
                 {"type": "dense", "units": 2, "activation": "softmax"}], "loss": "cross_entropy"},
     ["layers[0].activation", "swish"]),
    ({"layers": [{"type": "dense", "units": 4},
                 {"type": "activation", "name": "gelu"},
                 {"type": "dense", "units": 2, "activation": "softmax"}], "loss": "cross_entropy"},
     ["layers[1].name", "gelu"]),
    ({"layers": [{"type": "dense", "units": 4, "activation": "softmax"},
                 {"type": "dense", "units": 2, "activation": "softmax"}], "loss": "cross_entropy"},
     ["layers[0]", "softmax"]),
    ({"layers": [{"type": "dense", "units": 4, "activation": "relu"},
                 {"type": "dense", "units": 2, "activation": "sigmoid"}], "loss": "cross_entropy"},
     ["loss", "cross_entropy", "sigmoid"]),
    ({"layers": [{"type": "dense", "units": 4, "activation": "relu"},
                 {"type": "dense", "units": 3, "activation": "softmax"}], "loss": "mse"},
     ["loss", "mse", "softmax"]),
    ({"layers": [{"type": "dense", "units": 4, "activation": "relu"},
                 {"type": "dense", "units": 1, "activation": "linear"}], "loss": "binary_cross_entropy"},
     ["loss", "binary_cross_entropy"]),
    ({"layers": [{"type": "dense", "units": 4, "activation": "relu"},
                 {"type": "dropout", "rate": 1.0},
                 {"type": "dense", "units": 2, "activation": "softmax"}], "loss": "cross_entropy"},
     ["layers[1].rate", "1.0"]),
    ({"layers": [{"type": "dense", "units": 4, "activation": "relu"},
                 {"type": "dropout", "rate": -0.1},
                 {"type": "dense", "units": 2, "activation": "softmax"}], "loss": "cross_entropy"},
     ["rate", "-0.1"]),
    ({"layers": [{"type": "dense", "units": 2, "activation": "softmax"}], "loss": "hinge"},
     ["loss", "hinge"]),
    ({"layers": [{"type": "conv", "units": 2}], "loss": "mse"}, ["layers[0].type", "conv"]),
    ({"layers": [{"type": "dense", "units": 2, "activation": "relu", "init": "zeros"}], "loss": "mse"},
     ["layers[0].init", "zeros"]),
    ({"layers": [], "loss": "mse"}, ["layers"]),
    ({"input_dim": 0, "layers": [{"type": "dense", "units": 1}], "loss": "mse"}, ["input_dim", "0"]),
    ({"layers": [{"type": "dense", "units": 2.5}], "loss": "mse"}, ["units", "2.5"]),
])
def test_invalid_spec_raises_value_error_naming_field_and_value(spec, words):
    with pytest.raises(ValueError) as exc:
        Network.from_spec(spec)
    msg = str(exc.value)
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"


def test_valid_specs_and_properties():
    net = Network.from_spec({"input_dim": 784, "layers": [
        {"type": "dense", "units": 256, "activation": "relu"},
        {"type": "dense", "units": 128, "activation": "relu"},
        {"type": "dense", "units": 10, "activation": "softmax"}], "loss": "cross_entropy"})
    assert net.n_params == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10
    assert net.task == "classification" and net.output_dim == 10
    assert count_params(net.spec, 784) == net.n_params
    binary = Network.from_spec({"layers": [{"type": "dense", "units": 1, "activation": "sigmoid"}],
                                "loss": "binary_cross_entropy"})
    assert binary.task == "classification" and binary.n_params is None
    reg = Network.from_spec({"layers": [{"type": "dense", "units": 3},
                                        {"type": "activation", "name": "tanh"},
                                        {"type": "dropout", "rate": 0.0},
                                        {"type": "dense", "units": 2}], "loss": "mae"})
    assert reg.task == "regression" and reg.output_dim == 2
    # softmax as a separate last activation layer is fine too
    sep = Network.from_spec({"layers": [{"type": "dense", "units": 3},
                                        {"type": "activation", "name": "softmax"}],
                             "loss": "cross_entropy"})
    X, y = blobs()
    fit(sep, X, y, epochs=20, optimizer={"type": "adam", "learning_rate": 0.05})
    assert (sep.predict(X) == y).mean() > 0.9
    np.testing.assert_allclose(sep.predict_proba(X).sum(axis=1), 1.0, rtol=1e-5)


def test_float32_by_default_and_input_dim_from_data():
    net = Network.from_spec(clf_spec())
    assert net.input_dim is None
    X, y = blobs(d=5)
    fit(net, X.astype(np.float64), y, epochs=1)
    assert net.input_dim == 5 and net.n_params == 5 * 8 + 8 + 8 * 3 + 3
    assert all(p.dtype == np.float32 for _, p, _ in net.param_items())
    assert net.predict_proba(X).dtype == np.float32


def test_predict_before_fit_raises():
    net = Network.from_spec(clf_spec())
    with pytest.raises(ValueError, match="fit"):
        net.predict(np.zeros((1, 4)))


# -------------------------------------------------------------- data checks
def test_x_y_shape_mismatch_raises():
    net = Network.from_spec(clf_spec())
    X, y = blobs()
    with pytest.raises(ValueError, match="rows"):
        fit(net, X, y[:-1], epochs=1)
    with pytest.raises(ValueError, match="2-D"):
        fit(net, X[:, 0], y, epochs=1)


def test_nan_and_inf_in_x_raise_with_position():
    net = Network.from_spec(clf_spec())
    X, y = blobs()
    X[7, 2] = np.nan
    with pytest.raises(ValueError, match=r"non-finite.*row 7.*column 2"):
        fit(net, X, y, epochs=1)
    X[7, 2] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        fit(net, X, y, epochs=1)


def test_predict_names_the_non_finite_cell_and_accepts_huge_finite_values():
    net = Network.from_spec(clf_spec())
    X, y = blobs()
    fit(net, X, y, epochs=1)
    for bad in (np.nan, np.inf, -np.inf):
        Xb = X[:5].copy()
        Xb[3, 1] = bad
        with pytest.raises(ValueError, match=r"non-finite value at row 3, column 1"):
            net.predict(Xb)
    huge = np.full((2, 4), 3e38, dtype=np.float32)  # finite, though their sum is not
    with np.errstate(over="ignore"):
        assert net.predict(huge).shape == (2,)


# numpy warns "invalid value encountered in dot" when it meets inf * 0 on the way
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("standardize", [False, True])
def test_predict_finds_every_non_finite_cell_through_the_first_layer(standardize):
    """predict spots bad inputs from column 0 of the first dense layer's output;
    any non-finite cell, wherever it sits, must still be named."""
    X, y = blobs(d=6)
    net = Network.from_spec(clf_spec())
    fit(net, X, y, epochs=2, standardize=standardize)
    W = net.layers[0].params["W"]
    W[4, :] = 0.0  # inf * 0 is NaN: a bad value in a zero-weight feature is caught too
    for bad in (np.nan, np.inf, -np.inf):
        for row, col in [(0, 0), (0, 5), (3, 4), (9, 2)]:
            Xb = X[:10].copy()
            Xb[row, col] = bad
            with pytest.raises(ValueError, match=rf"non-finite value at row {row}, column {col}$"):
                net.predict(Xb)
            with pytest.raises(ValueError, match=rf"row {row}, column {col}$"):
                net.predict_proba(Xb)
            with pytest.raises(ValueError, match=rf"row 0, column {col}$"):
                net.predict(Xb[row])  # one row, given as a vector


def test_predict_names_a_bad_row_in_a_later_chunk():
    X, y = blobs()
    net = Network.from_spec(clf_spec())
    fit(net, X, y, epochs=1)
    big = np.tile(X, (60, 1))[:9000]  # more than one 8,192-row chunk
    big[8500, 3] = np.nan
    with pytest.raises(ValueError, match=r"row 8500, column 3$"):
        net.predict(big)


def test_predict_checks_inputs_when_the_first_layer_is_not_dense():
    X, y = blobs()
    net = Network.from_spec({"layers": [{"type": "dropout", "rate": 0.1},
                                        {"type": "dense", "units": 3, "activation": "softmax"}],
                             "loss": "cross_entropy"})
    fit(net, X, y, epochs=1)
    Xb = X[:4].copy()
    Xb[2, 1] = -np.inf
    with pytest.raises(ValueError, match=r"row 2, column 1$"):
        net.predict(Xb)


def test_bad_targets_raise():
    X, y = blobs()
    net = Network.from_spec(clf_spec(k=3))
    with pytest.raises(ValueError, match="class"):
        fit(net, X, np.where(y == 0, 3, y), epochs=1)  # label 3 with 3 outputs
    with pytest.raises(ValueError, match="class"):
        fit(net, X, y + 0.5, epochs=1)
    reg = Network.from_spec({"layers": [{"type": "dense", "units": 2}], "loss": "mse"})
    with pytest.raises(ValueError, match="target column"):
        fit(reg, X, np.zeros((len(X), 3)), epochs=1)
    with pytest.raises(ValueError, match="non-finite"):
        fit(reg, X, np.full((len(X), 2), np.nan), epochs=1)


def test_feature_count_mismatch_raises():
    X, y = blobs(d=4)
    net = Network.from_spec(clf_spec(input_dim=5))
    with pytest.raises(ValueError, match="5"):
        fit(net, X, y, epochs=1)
    net = Network.from_spec(clf_spec())
    fit(net, X, y, epochs=1)
    with pytest.raises(ValueError, match="shape"):
        net.predict(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        net.predict(np.full((2, 4), np.nan))


@pytest.mark.parametrize("kwargs", [
    {"epochs": 0}, {"batch_size": 0}, {"optimizer": {"type": "adagrad"}},
    {"optimizer": {"type": "sgd", "learning_rate": -1}}, {"optimizer": {"type": "adam", "beta1": 1.0}},
    {"validation_split": 1.0}, {"weight_decay": -0.1},
    {"early_stopping": {"monitor": "val_loss", "patience": 2}},  # no validation data
    {"early_stopping": {}},  # on with defaults: monitor val_loss, which needs validation data
    {"early_stopping": "yes"},
])
def test_invalid_fit_arguments_raise(kwargs):
    X, y = blobs()
    with pytest.raises(ValueError):
        fit(Network.from_spec(clf_spec()), X, y, **{"epochs": 1, **kwargs})


@pytest.mark.parametrize("field, value", [
    ("learning_rate", "0.1"), ("learning_rate", True), ("learning_rate", None), ("momentum", "0.9"),
])
def test_optimizer_numbers_must_be_numbers(field, value):
    X, y = blobs()
    with pytest.raises(ValueError, match=f"optimizer.{field} must be a number, got {value!r}"):
        fit(Network.from_spec(clf_spec()), X, y, epochs=1,
            optimizer={"type": "sgd", "learning_rate": 0.1, field: value})


def test_empty_early_stopping_dict_means_on_with_defaults():
    X, _ = blobs()
    y = np.random.default_rng(0).integers(0, 3, len(X))  # noise labels: val_loss soon rises
    history = fit(Network.from_spec(clf_spec()), X, y, epochs=40, validation_split=0.3,
                  early_stopping={}, optimizer={"type": "adam", "learning_rate": 0.05}, seed=0)
    # patience 5 on val_loss: training ends 5 epochs after the best one
    assert history.stopped_early
    assert len(history) == history.best_epoch + 5 < 40


# --------------------------------------------------------------- prediction
def test_predict_shapes_and_binary_proba():
    X, y = blobs(k=2)
    net = Network.from_spec({"layers": [{"type": "dense", "units": 8, "activation": "tanh"},
                                        {"type": "dense", "units": 1, "activation": "sigmoid"}],
                             "loss": "binary_cross_entropy"})
    fit(net, X, y, epochs=30, optimizer={"type": "adam", "learning_rate": 0.01})
    proba = net.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    pred = net.predict(X)
    assert pred.shape == (len(X),) and set(np.unique(pred)) <= {0, 1}
    np.testing.assert_array_equal(pred, proba.argmax(axis=1))
    assert (pred == y).mean() > 0.95
    # a single row given as 1-D works
    assert net.predict(X[0]).shape == (1,)


def test_predict_large_input_in_chunks_matches_small():
    X, y = blobs(n=20_000, d=4)
    net = Network.from_spec(clf_spec())
    fit(net, X[:200], y[:200], epochs=2)
    full = net.predict_proba(X)
    np.testing.assert_allclose(full[:100], net.predict_proba(X[:100]), rtol=1e-6)
    np.testing.assert_allclose(full[-100:], net.predict_proba(X[-100:]), rtol=1e-6)


def test_regression_predict_shapes():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 3)).astype(np.float32)
    one = Network.from_spec({"layers": [{"type": "dense", "units": 1}], "loss": "mse"})
    fit(one, X, X[:, 0], epochs=1)
    assert one.predict(X).shape == (100,)
    two = Network.from_spec({"layers": [{"type": "dense", "units": 2}], "loss": "mse"})
    fit(two, X, X[:, :2], epochs=1)
    assert two.predict(X).shape == (100, 2)
    with pytest.raises(ValueError):
        two.predict_proba(X)


def test_dropout_inactive_at_predict():
    X, y = blobs()
    spec = {"layers": [{"type": "dense", "units": 32, "activation": "relu"},
                       {"type": "dropout", "rate": 0.5},
                       {"type": "dense", "units": 3, "activation": "softmax"}],
            "loss": "cross_entropy"}
    net = Network.from_spec(spec)
    fit(net, X, y, epochs=3, seed=1)
    p1, p2 = net.predict_proba(X), net.predict_proba(X)
    np.testing.assert_array_equal(p1, p2)
    # Equal to the same weights run without the dropout layer at all.
    W1, b1 = net.layers[0].params["W"], net.layers[0].params["b"]
    W2, b2 = net.layers[2].params["W"], net.layers[2].params["b"]
    z = np.maximum(X @ W1 + b1, 0) @ W2 + b2
    e = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(p1, e / e.sum(axis=1, keepdims=True), rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------- save / load
def test_save_load_round_trip_is_exact(tmp_path):
    X, y = blobs()
    spec = clf_spec(hidden=16)
    spec["name"] = "round-trip"
    spec["layers"].insert(1, {"type": "dropout", "rate": 0.2})
    net = Network.from_spec(spec)
    fit(net, X, y, epochs=3, standardize=True, seed=3)
    net.meta = {"classes": ["a", "b", "c"], "note": "ü"}
    path = tmp_path / "model.npz"
    net.save(path)
    loaded = Network.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X), net.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), net.predict(X))
    assert loaded.meta == net.meta
    assert loaded.spec == net.spec and loaded.spec["name"] == "round-trip"
    assert loaded.input_dim == net.input_dim and loaded.task == net.task
    for (k1, p1, _), (k2, p2, _) in zip(net.param_items(), loaded.param_items()):
        assert k1 == k2 and p1.dtype == p2.dtype
        np.testing.assert_array_equal(p1, p2)
    # no pickled objects inside: loading with allow_pickle=False reads every array
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            assert data[key].dtype != object
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was renamed away


def test_save_load_regression_float64(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 3))
    net = Network.from_spec({"layers": [{"type": "dense", "units": 4, "activation": "tanh"},
                                        {"type": "dense", "units": 2}], "loss": "mse"},
                            dtype=np.float64)
    fit(net, X, X[:, :2] * 2, epochs=2)
    net.save(tmp_path / "r.npz")
    loaded = Network.load(tmp_path / "r.npz")
    assert loaded.dtype == np.float64
    np.testing.assert_array_equal(loaded.predict(X), net.predict(X))


def test_save_before_fit_raises(tmp_path):
    with pytest.raises(ValueError):
        Network.from_spec(clf_spec()).save(tmp_path / "x.npz")


def test_one_row_predict_sees_bias_changes_made_in_place_or_by_rebinding():
    """Dense adds its bias through a (1, units) view for one-row inputs; predict
    must follow the bias whether it is changed in place or replaced."""
    X, y = blobs()
    net = Network.from_spec(clf_spec())
    fit(net, X, y, epochs=2)
    row = X[:1]
    last = net.layers[-1]
    before = net.predict_proba(row)
    last.params["b"] += np.array([5.0, 0.0, 0.0], dtype=np.float32)       # in place
    shifted = net.predict_proba(row)
    assert shifted[0, 0] > before[0, 0]
    last.params["b"] = np.array([0.0, 0.0, 50.0], dtype=np.float32)       # rebound
    assert net.predict(row)[0] == 2
    assert net.predict(X[:5]).tolist() == [2] * 5
