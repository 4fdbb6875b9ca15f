"""core.preprocessing: golden tests against scikit-learn's ColumnTransformer, the scaling guards
(a column constant in training, MNIST pixels with a tiny spread), unseen categories, state round trips."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

from core import Network, Preprocessor, fit
from core.preprocessing import ENCODERS, IMPUTERS, SCALERS, SPREAD_FLOOR

MNIST = Path(__file__).resolve().parents[1] / "data" / "mnist"
PLANS = ["basic", "free", "pro", "team"]
REGIONS = ["eu", "us"]
COLUMNS = [{"name": "age", "type": "numeric"},
           {"name": "plan", "type": "categorical", "categories": PLANS},
           {"name": "income", "type": "numeric"},
           {"name": "active", "type": "boolean"},
           {"name": "region", "type": "categorical", "categories": REGIONS},
           {"name": "score", "type": "numeric"}]


def mixed(n: int, seed: int, unseen: bool = False) -> np.ndarray:
    """Rows in the agreed representation: codes as floats, NaN missing (about 10 % per column)."""
    rng = np.random.default_rng(seed)
    X = np.empty((n, 6))
    X[:, 0] = rng.normal(40, 12, n)
    X[:, 1] = rng.choice(4, n, p=[0.5, 0.3, 0.15, 0.05])
    X[:, 2] = rng.lognormal(10, 0.5, n)
    X[:, 3] = rng.random(n) < 0.3
    X[:, 4] = rng.choice(2, n, p=[0.7, 0.3])
    X[:, 5] = rng.uniform(-1, 1, n)
    X[rng.random((n, 6)) < 0.1] = np.nan
    if unseen:
        X[::7, 1] = -1.0     # a plan unseen in training
        X[::11, 4] = 5.0     # a code outside the categories
    return X


def as_objects(X: np.ndarray) -> np.ndarray:
    """The same rows as scikit-learn sees them: category text, NaN missing, unseen codes as new text."""
    out = X.astype(object)
    for j, cats in ((1, PLANS), (4, REGIONS)):
        out[:, j] = [np.nan if np.isnan(v) else (cats[int(v)] if 0 <= v < len(cats) else "unseen")
                     for v in X[:, j]]
    return out


def sklearn_oracle(impute="mean", scale="standard", add_indicator=False, fill_value=None,
                   max_categories=None) -> ColumnTransformer:
    num = [0, 2, 5]
    scaler = {"standard": StandardScaler(), "minmax": MinMaxScaler(), "none": "passthrough"}[scale]
    imputer = SimpleImputer(strategy=impute, fill_value=fill_value)
    parts = [("num", Pipeline([("impute", imputer), ("scale", scaler)]), num)]
    if add_indicator:
        parts.append(("ind", MissingIndicator(), num))
    parts.append(("bool", SimpleImputer(strategy="most_frequent"), [3]))
    onehot = OneHotEncoder(handle_unknown="infrequent_if_exist" if max_categories else "ignore",
                           max_categories=max_categories, sparse_output=False)
    for j, name in ((1, "plan"), (4, "region")):
        parts.append((name, Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="<missing>")),
                                      ("onehot", onehot)]), [j]))
    return ColumnTransformer(parts, verbose_feature_names_out=False)


def sklearn_names(ct: ColumnTransformer) -> list[str]:
    """scikit-learn's output names in ours: plan_pro -> plan=pro, infrequent -> <other>, indicators."""
    cols = {f"x{j}": c["name"] for j, c in enumerate(COLUMNS)}
    names = []
    for name in ct.get_feature_names_out():
        if name.startswith("missingindicator_"):
            names.append(cols[name[len("missingindicator_"):]] + "=<missing>")
        elif name.startswith(("x1_", "x4_")):
            col, value = name.split("_", 1)
            names.append(f"{cols[col]}={'<other>' if value == 'infrequent_sklearn' else value}")
        else:
            names.append(cols[name])
    return names


def aligned(ours: Preprocessor, ct: ColumnTransformer, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mine = ours.transform(X, dtype=np.float64)
    assert np.array_equal(ours.transform(X), mine.astype(np.float32))
    theirs = np.asarray(ct.transform(as_objects(X)), dtype=np.float64)
    names = ours.feature_names_out()
    theirs_names = sklearn_names(ct)
    assert sorted(names) == sorted(theirs_names)
    order = [theirs_names.index(n) for n in names]
    return mine, theirs[:, order]


@pytest.mark.parametrize("impute,scale,add_indicator,fill_value", [
    ("mean", "standard", False, None),
    ("median", "standard", True, None),
    ("constant", "minmax", False, -3.0),
    ("mean", "none", True, None),
])
def test_equals_sklearn_column_transformer(impute, scale, add_indicator, fill_value):
    train, test = mixed(2000, 0), mixed(500, 1, unseen=True)
    ours = Preprocessor(COLUMNS, numeric={"impute": impute, "scale": scale, "add_indicator": add_indicator,
                                          "fill_value": fill_value}).fit(train)
    ct = sklearn_oracle(impute, scale, add_indicator, fill_value).fit(as_objects(train))
    for X in (train, test):
        mine, theirs = aligned(ours, ct, X)
        assert mine.dtype == np.float64 and mine.shape == theirs.shape
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-6)
    # the unseen plan (-1) and region code 5 give all-zero one-hot blocks, never an error
    out = ours.transform(test)
    plan = [i for i, n in enumerate(ours.feature_names_out()) if n.startswith("plan=")]
    assert (out[::7][:, plan] == 0).all()


def test_rows_without_missing_values_take_the_short_path_bitwise():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(50, 6)) * 100
    X[rng.random(X.shape) < 0.1] = np.nan
    p = Preprocessor().fit(X)
    rows = rng.normal(size=(4, 6)) * 300                     # some beyond the clip bounds
    short = p.transform(rows)                                # no NaN: the one-row predict's path
    full = p.transform(np.vstack([rows, np.full((1, 6), np.nan)]))[:4]  # a NaN row: the general path
    assert short.dtype == np.float32 and short.tobytes() == full.tobytes()
    assert p.transform(rows[0]).tobytes() == full[:1].tobytes()


def test_max_categories_equals_sklearn_infrequent():
    train, test = mixed(2000, 2), mixed(300, 3, unseen=True)
    ours = Preprocessor(COLUMNS, categorical={"max_categories": 3}).fit(train)
    ct = sklearn_oracle(max_categories=3).fit(as_objects(train))
    names = ours.feature_names_out()
    # plan has 5 training values (4 plans + missing): 2 most frequent keep a slot, the rest share <other>;
    # region's 3 (eu, us, missing) reach the limit too (it counts the <other> slot, as scikit-learn's)
    assert [n for n in names if n.startswith("plan=")] == ["plan=basic", "plan=free", "plan=<other>"]
    assert [n for n in names if n.startswith("region=")] == ["region=eu", "region=us", "region=<other>"]
    for X in (train, test):
        mine, theirs = aligned(ours, ct, X)
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-6)
    # an unseen plan goes to <other> when there is one
    out = ours.transform(test)
    assert (out[::7, names.index("plan=<other>")] == 1).all()


def test_missing_category_is_its_own_slot_and_tables_are_keyed_by_api_strings():
    assert set(IMPUTERS) >= {"mean", "median", "constant"} and set(SCALERS) == {"standard", "minmax", "none"}
    assert set(ENCODERS) == {"onehot"}
    p = Preprocessor([{"name": "plan", "type": "categorical", "categories": ["a", "b"]}])
    out = p.fit_transform(np.array([[0.0], [1.0], [np.nan], [1.0]]))
    assert p.feature_names_out() == ["plan=a", "plan=b", "plan=<missing>"]
    assert out.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 0]]
    assert p.schema()[0]["missing"] == {"strategy": "category"}


def test_state_round_trips_through_arrays_bitwise():
    train, test = mixed(1000, 4), mixed(200, 5, unseen=True)
    p = Preprocessor(COLUMNS, numeric={"impute": "median", "add_indicator": True},
                     categorical={"max_categories": 3}).fit(train)
    arrays = p.to_arrays()
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in arrays.values())
    q = Preprocessor.from_arrays(arrays)
    assert q.feature_names_out() == p.feature_names_out()
    assert np.array_equal(q.transform(test), p.transform(test))
    assert q.schema() == p.schema()


def test_statistics_come_from_the_rows_given_to_fit_only():
    X = np.arange(10, dtype=np.float64)[:, None]
    p = Preprocessor().fit(X[:5])
    assert p.schema()[0]["scale"]["center"] == 2.0
    assert p.schema()[0]["missing"]["fill_value"] == 2.0


def test_schema_shows_float32_data_values_as_written_and_other_statistics_in_full():
    X = np.array([[14.62, 1.0], [14.62, np.nan], [14.62, 3.3]], dtype=np.float32)
    a, b = Preprocessor(numeric={"impute": "median"}).fit(X).schema()
    assert a["missing"]["fill_value"] == 14.62 and a["scale"]["center"] == 14.62     # not 14.619999885559082
    assert a["scale"]["clip"] == [14.62, 14.62] and b["scale"]["clip"] == [-1.3, 5.6]
    assert np.float32(a["missing"]["fill_value"]) == X[0, 0]                          # reads back as the data value
    mean_b = Preprocessor().fit(X).schema()[1]["missing"]["fill_value"]
    assert mean_b == (float(np.float32(1.0)) + float(np.float32(3.3))) / 2            # a mean: float64, in full


def test_constant_column_gets_scale_1_and_contributes_nothing():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.uniform(-1, 1, 1000), np.full(1000, 14.62)]).astype(np.float32)
    p = Preprocessor().fit(X)
    assert p.schema()[1]["scale"]["scale"] == 1.0          # float32's 14.62 has spread 0, not 2e-6
    out = p.transform(np.array([[0.5, 14.63], [-0.5, 14.63], [0.5, 1e6]], dtype=np.float32))
    assert out[:, 1].tolist() == [0.0, 0.0, 0.0]


def test_issue_example_constant_column_predictions_differ():
    """1,000 rows, x1 uniform in [-1, 1], x2 always 14.62, label yes iff x1 > 0 (the issue's example)."""
    rng = np.random.default_rng(0)
    x1 = rng.uniform(-1, 1, 1000)
    X = np.column_stack([x1, np.full(1000, 14.62)]).astype(np.float32)
    y = (x1 > 0).astype(np.int64)
    net = Network.from_spec({"layers": [{"type": "dense", "units": 8, "activation": "tanh"},
                                        {"type": "dense", "units": 1, "activation": "sigmoid"}],
                             "loss": "binary_cross_entropy"})
    fit(net, X, y, epochs=20, batch_size=32, optimizer={"type": "adam", "learning_rate": 0.01},
        preprocessing={}, seed=0)
    proba = net.predict_proba(np.array([[0.5, 14.63], [-0.5, 14.63]], dtype=np.float32))
    assert proba[0, 1] > 0.9 and proba[1, 1] < 0.1
    assert net.predict(np.array([[0.5, 14.63], [-0.5, 14.63]])).tolist() == [1, 0]


def read_mnist() -> np.ndarray:
    images = MNIST / "t10k-images-idx3-ubyte.gz"
    if not images.is_file():
        pytest.fail(f"{images} is missing (the MNIST test set ships with the repository)")
    return np.frombuffer(gzip.open(images).read(), np.uint8, offset=16).reshape(-1, 784).astype(np.float32) / 255


def test_mnist_tiny_spread_pixels_stay_bounded():
    X = read_mnist()
    train, held_out = X[:8000], X[8000:]
    # scikit-learn's StandardScaler turns some held-out pixels into thousands of standard deviations
    naive = np.abs(StandardScaler().fit(train).transform(held_out))
    assert naive.max() > 1000
    p = Preprocessor().fit(train)
    out = p.transform(held_out)
    assert np.isfinite(out).all() and np.abs(out).max() <= 2 / SPREAD_FLOOR
    assert np.abs(p.transform(train)).max() <= 1 / SPREAD_FLOOR
    # columns with a normal spread are scaled exactly as scikit-learn does
    std = train.astype(np.float64).std(axis=0)
    width = train.max(axis=0) - train.min(axis=0)
    normal = (width > 0) & (std >= width * SPREAD_FLOOR)
    assert normal.sum() > 400
    ref = StandardScaler().fit(train).transform(held_out)
    np.testing.assert_allclose(out[:, normal], ref[:, normal], rtol=0, atol=1e-5)
    # pixels always 0 in training contribute nothing, whatever the held-out image has there
    assert (out[:, width == 0] == 0).all() and (held_out[:, width == 0] > 0).any()


def test_fit_refuses_infinite_values_and_invalid_codes_naming_the_cell():
    p = Preprocessor(COLUMNS)
    X = mixed(50, 6)
    X[7, 2] = np.inf
    with pytest.raises(ValueError, match=r"X has a non-finite value at row 7, column 2"):
        p.fit(X)
    X = mixed(50, 6)
    X[3, 1] = 2.5
    with pytest.raises(ValueError, match=r"column 1 \('plan'\): row 3 holds 2.5, not a category code 0..3"):
        Preprocessor(COLUMNS).fit(X)


def test_bad_options_name_the_field():
    with pytest.raises(ValueError, match=r"numeric.impute must be one of mean, median, constant"):
        Preprocessor(numeric={"impute": "mode"})
    with pytest.raises(ValueError, match=r"numeric.scale must be one of standard, minmax, none, got 'z'"):
        Preprocessor(numeric={"scale": "z"})
    with pytest.raises(ValueError, match=r"categorical.max_categories must be an integer >= 1, got 0"):
        Preprocessor(categorical={"max_categories": 0})
    with pytest.raises(ValueError, match=r"numeric.scaling: unknown option"):
        Preprocessor(numeric={"scaling": "standard"})


def test_matrix_from_columns_by_name_any_order():
    p = Preprocessor(COLUMNS).fit(mixed(500, 7))
    X = p.matrix_from_columns(["region", "age", "plan", "income", "active", "score"],
                              [["us", 41, "pro", None, True, 0.5], ["mars", 30.5, "unknown", 1e4, "no", None]])
    assert X[0, :].tolist()[:2] == [41.0, 2.0] and X[0, 4] == 1.0 and np.isnan(X[0, 2])
    assert X[1, 1] == -1.0 and X[1, 4] == -1.0 and X[1, 3] == 0.0
    out = p.transform(X)
    assert np.isfinite(out).all()
    with pytest.raises(ValueError, match=r"unknown column 'agee'"):
        p.matrix_from_columns(["agee"], [[1]])
    with pytest.raises(ValueError, match=r"row 1, column 'age': expected a number, got 'old'"):
        p.matrix_from_columns(["age"], [["old"]])
    legacy = Preprocessor.standardize().fit(np.arange(6.0).reshape(3, 2))
    with pytest.raises(ValueError, match=r"missing column 'x1'"):
        legacy.matrix_from_columns(["x0"], [[1.0]])


MIXED_SPEC = {"layers": [{"type": "dense", "units": 8, "activation": "relu"},
                         {"type": "dense", "units": 3, "activation": "softmax"}], "loss": "cross_entropy"}
MIXED_PREP = {"columns": COLUMNS, "numeric": {"add_indicator": True}, "categorical": {"max_categories": 4}}


def mixed_labels(X: np.ndarray) -> np.ndarray:
    return ((np.nan_to_num(X[:, 0], nan=40) > 40).astype(int) + (np.nan_to_num(X[:, 1]) >= 2)).astype(np.int64)


def test_model_file_carries_the_preprocessing(tmp_path):
    X = mixed(600, 8)
    net = Network.from_spec(MIXED_SPEC)
    fit(net, X, mixed_labels(X), epochs=3, validation_split=0.2, preprocessing=MIXED_PREP, seed=1)
    assert net.n_features_in == 6 and net.input_dim == net.preprocessor.n_features_out > 6
    net.save(tmp_path / "m.npz")
    loaded = Network.load(tmp_path / "m.npz")
    raw = mixed(50, 9, unseen=True)            # NaN cells and unseen codes: imputed / all-zero, as trained
    assert np.array_equal(loaded.predict_proba(raw), net.predict_proba(raw))
    assert loaded.preprocessor.schema() == net.preprocessor.schema()
    with pytest.raises(ValueError, match=r"X has a non-finite value at row 3, column 0"):
        raw[3, 0] = np.inf
        loaded.predict(raw)


def test_preprocessing_fitted_on_the_training_rows_of_the_split_only():
    X = mixed(400, 10)
    net = Network.from_spec(MIXED_SPEC)
    fit(net, X, mixed_labels(X), epochs=1, validation_split=0.25, preprocessing=MIXED_PREP, seed=3)
    perm = np.random.default_rng([3, 1]).permutation(400)          # fit's own split of the rows
    train_rows = np.sort(perm[100:])
    ref = Preprocessor(**MIXED_PREP).fit(X[train_rows].astype(np.float32))
    assert net.preprocessor.schema() == ref.schema()
    assert Preprocessor(**MIXED_PREP).fit(X.astype(np.float32)).schema() != ref.schema()


def test_resume_with_preprocessing_is_bitwise_identical(tmp_path):
    X = mixed(500, 11)
    y = mixed_labels(X)
    args = dict(epochs=5, batch_size=32, validation_split=0.2, preprocessing=MIXED_PREP, seed=4,
                optimizer={"type": "adam", "learning_rate": 0.01})
    full = Network.from_spec(MIXED_SPEC)
    states = {}
    fit(full, X, y, callback=lambda m, s: states.setdefault(m["epoch"], s.save(tmp_path / f"{m['epoch']}.npz")),
        **args)
    for k in (1, 3):
        resumed = Network.from_spec(MIXED_SPEC)
        fit(resumed, X, y, resume=tmp_path / f"{k}.npz", **args)
        for (key, a, _), (_, b, _) in zip(full.param_items(), resumed.param_items()):
            assert np.array_equal(a, b), key
        assert resumed.preprocessor.schema() == full.preprocessor.schema()


def test_model_files_of_format_1_still_load(tmp_path):
    """Files written before the preprocessor stored x_mean / x_scale; they still predict the same."""
    rng = np.random.default_rng(0)
    X = rng.normal(5, 3, (100, 3)).astype(np.float32)
    y = (X[:, 0] > 5).astype(np.int64)
    net = Network.from_spec(MIXED_SPEC)
    fit(net, X, y, epochs=2, standardize=True)
    arrays = {k: v for k, v in net.to_arrays().items() if not k.startswith("prep/")}
    sc = net.preprocessor.scaler_
    arrays["x_mean"], arrays["x_scale"] = sc.center_.astype(np.float32), sc.scale_.astype(np.float32)
    np.savez(tmp_path / "old.npz", **arrays)
    old = Network.load(tmp_path / "old.npz")
    np.testing.assert_allclose(old.predict_proba(X), net.predict_proba(X), atol=1e-6)


def test_a_constant_column_contributes_exactly_0_in_float64_and_float32():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=999), np.full(999, np.float32(1e20)), np.full(999, np.nan)])
    p = Preprocessor(numeric={"impute": "constant", "fill_value": 1e30}).fit(X)
    # n equal values' mean need not round back to the value: the center is the value itself, as the clip is
    assert p.scaler_.center_[1] == p.scaler_.lo_[1] == p.scaler_.hi_[1] == np.float32(1e20)
    assert p.scaler_.center_[2] == p.scaler_.lo_[2] == 1e30
    held_out = np.array([[0.5, 1e20, np.nan], [0.5, -3e38, 3e38], [0.5, 3e38, -5.0]])
    for dtype in (np.float32, np.float64):
        out = p.transform(held_out, dtype=dtype)
        assert (out[:, 1:] == 0).all(), out
    # the same subtraction in float32 (the ONNX export's precision) agrees
    sc = p.scaler_
    clipped = np.clip(held_out[:, 1:].astype(np.float32), sc.lo_[1:].astype(np.float32), sc.hi_[1:].astype(np.float32))
    assert (np.nan_to_num(clipped - sc.center_[1:].astype(np.float32), nan=0.0) == 0).all()


def test_fill_value_beyond_float32_is_refused():
    for fv in (1e39, -3.5e38, float("inf")):
        with pytest.raises(ValueError, match=r"numeric.fill_value must be a finite number within float32's range"):
            Preprocessor(numeric={"impute": "constant", "fill_value": fv})


def test_categorical_values_trimmed_and_numbers_matched_to_their_written_category():
    cols = [{"name": "zip", "type": "categorical", "categories": ["01234", "11111", "2.0", "1e+20", "a b"]},
            {"name": "x", "type": "numeric"}]
    p = Preprocessor(cols).fit(np.array([[0, 1.0], [1, 2.0], [2, 3.0], [3, 4.0], [4, 5.0]]))
    X = p.matrix_from_columns(["zip", "label", "x"],
                              [["01234", "y", 1], [1234, "n", 1], [" 11111\t", None, 1], [2, 0, 1], [2.0, 0, 1],
                               [1e20, 0, 1], ["\u00a0a b ", 0, 1], ["1234", 0, 1], [2.5, 0, 1], ["a  b", 0, 1]],
                              ignore={"label"})
    assert X[:, 0].tolist() == [0, 0, 1, 2, 2, 3, 4, -1, -1, -1]
    with pytest.raises(ValueError, match=r"unknown column 'label'"):
        p.matrix_from_columns(["zip", "label"], [["01234", "y"]])
    twice = Preprocessor([{"name": "zip", "type": "categorical", "categories": ["01234", "1234"]}]).fit(
        np.array([[0.0], [1.0]]))
    assert twice.matrix_from_columns(["zip"], [["1234"], ["01234"]])[:, 0].tolist() == [1, 0]
    with pytest.raises(ValueError, match=r"^row 2, column 'zip': the number 1234 matches several categories "
                                         r"\('01234', '1234'\); send the category as text$"):
        twice.matrix_from_columns(["zip"], [["1234"], [1234]])


def test_columns_named_with_spaces_before_names_were_trimmed_are_imputed_when_left_out():
    """A model stored before uploads trimmed names (columns ' a', 'b'): leaving ' a' out imputes it (was a
    KeyError, a 500 on predict)."""
    X = np.array([[1.0, 2.0], [3.0, 4.0]])
    p = Preprocessor([{"name": " a", "type": "numeric"}, {"name": "b", "type": "numeric"}]).fit(X)
    got = p.matrix_from_columns(["b"], [[5.0]])
    assert np.isnan(got[0, 0]) and got[0, 1] == 5.0
    assert np.array_equal(p.matrix_from_columns(["a", "b"], [[1.0, 5.0]]), [[1.0, 5.0]])
