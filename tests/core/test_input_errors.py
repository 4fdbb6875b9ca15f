"""Inputs that would silently break training or loading get a ValueError that says what is wrong."""
import numpy as np
import pytest

from core import Network, fit

SPEC = {"layers": [{"type": "dense", "units": 2, "activation": "softmax"}], "loss": "cross_entropy"}


def test_float64_value_beyond_float32_range_is_named_not_reported_as_divergence():
    X = np.array([[1.0, 2.0], [1e300, 1.0]])
    with pytest.raises(ValueError, match=r"too large for float32 at row 1, column 0"):
        fit(Network.from_spec(SPEC), X, [0, 1], epochs=1)


def test_loading_a_file_that_is_not_a_saved_network(tmp_path):
    bad = tmp_path / "model.npz"
    bad.write_text("not an npz")
    with pytest.raises(ValueError, match="is not a network saved by Network.save"):
        Network.load(bad)
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="is not a network saved by Network.save"):
        Network.load(tmp_path / "other.npz")
