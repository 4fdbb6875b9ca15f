"""Preprocessing learned from the training rows and stored with the model.

The steps are tables keyed by the strings the API accepts, as the
activations and losses are::

    IMPUTERS = {"mean", "median", "constant", "most_frequent"}
    SCALERS  = {"standard", "minmax", "none"}
    ENCODERS = {"onehot"}

Each step has ``fit`` / ``transform`` / ``to_arrays`` / ``from_arrays``. A
:class:`Preprocessor` applies them per column type, as scikit-learn's
``ColumnTransformer`` of ``SimpleImputer`` + ``StandardScaler`` and
``SimpleImputer`` + ``OneHotEncoder`` does, and keeps its whole state as plain
arrays (no pickles), so a model file can carry it.

Data representation
-------------------
``X`` is one float matrix (n_samples, n_features). A categorical column holds
integer codes (as floats) indexing that column's ``categories`` list; a
boolean column holds 0/1. A missing value is NaN in any column.

Scaling that cannot explode
---------------------------
``"standard"`` scaling divides by the training standard deviation, with two
guards that scikit-learn's ``StandardScaler`` lacks:

* the scale is at least ``SPREAD_FLOOR`` (1/20) of the column's training
  range: a column with a tiny but non-zero spread (an MNIST border pixel that
  is non-zero in 2 of 8,000 images) no longer turns a held-out value into
  thousands of standard deviations. A column constant in training gets scale
  1, as in scikit-learn;
* before scaling, values are clipped to the training range widened by its
  width on both sides, ``[min - R, max + R]`` (R = max - min); a column
  constant in training therefore always contributes 0.

Together they bound every scaled value by ``2 / SPREAD_FLOOR`` = 40 in
magnitude. The result equals scikit-learn's whenever the training standard
deviation is at least 1/20 of the range (for normally distributed data that
holds unless there are about 1e22 rows) and held-out values lie within one
range-width of the training range. ``"minmax"`` uses the same clip (so its
output lies in [-1, 2]).
"""
from __future__ import annotations

import json
import math
import re
import reprlib
import unicodedata
from abc import ABC, abstractmethod

import numpy as np

SPREAD_FLOOR = 1.0 / 20.0
FLOAT32_MAX = float(np.finfo(np.float32).max)
CHUNK = 8192
COLUMN_TYPES = ("numeric", "categorical", "boolean")
MISSING = "<missing>"
OTHER = "<other>"

_NUMERIC_DEFAULTS = {"impute": "mean", "fill_value": None, "add_indicator": False, "scale": "standard"}
_CATEGORICAL_DEFAULTS = {"encode": "onehot", "max_categories": None}


def _chunks(n: int, size: int = CHUNK):
    for s in range(0, n, size):
        yield s, min(n, s + size)


def _f64(block) -> np.ndarray:
    return np.array(block, dtype=np.float64)


def _shown(v) -> float:
    """A statistic as ``schema()`` shows it: a value that is exactly a float32 (a data value, e.g. a constant
    column's 14.62, a median, a min/max) as the shortest decimal that reads back as that float32 (14.62, not
    14.619999885559082); any other float64 (a mean of several values) in full."""
    v = float(v)
    f = np.float32(v)
    return float(str(f)) if np.isfinite(f) and float(f) == v else v


# -- imputers ------------------------------------------------------------------------------------
class _Imputer(ABC):
    """Fills NaN with one value per column, learned from the training rows.

    Attributes
    ----------
    fill_ : ndarray of shape (n_columns,), float64
    """

    name = ""

    def __init__(self, fill_value: float | None = None):
        self.fill_value = fill_value
        self.fill_: np.ndarray | None = None

    @abstractmethod
    def _fill(self, X: np.ndarray) -> np.ndarray:
        """Fill value per column, shape (n_columns,) float64, from the training rows ``X`` (NaN = missing)."""

    def fit(self, X: np.ndarray) -> "_Imputer":
        """Learn the fill values.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_columns), float; NaN marks a missing value.
        """
        fill = self._fill(X)
        # A column with no observed value (all missing in training) is filled with 0 (or fill_value),
        # as scikit-learn's SimpleImputer(keep_empty_features=True) does.
        self.fill_ = np.where(np.isfinite(fill), fill, 0.0 if self.fill_value is None else self.fill_value)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Replace NaN in place.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_columns), float64 (modified and returned).
        """
        mask = np.isnan(X)
        if mask.any():
            np.copyto(X, np.broadcast_to(self.fill_, X.shape), where=mask)
        return X

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted state: ``{"fill": ndarray of shape (n_columns,), float64}``."""
        return {"fill": self.fill_}

    @classmethod
    def from_arrays(cls, arrays: dict, fill_value: float | None = None) -> "_Imputer":
        """A fitted imputer from ``to_arrays()`` output (and the configured ``fill_value``)."""
        step = cls(fill_value)
        step.fill_ = np.asarray(arrays["fill"], dtype=np.float64)
        return step


class MeanImputer(_Imputer):
    """Fill with the column's training mean."""

    name = "mean"

    def _fill(self, X):
        k = X.shape[1]
        s, c = np.zeros(k), np.zeros(k)
        for a, b in _chunks(X.shape[0]):
            blk = _f64(X[a:b])
            ok = ~np.isnan(blk)
            s += np.where(ok, blk, 0.0).sum(axis=0)
            c += ok.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return s / c


class MedianImputer(_Imputer):
    """Fill with the column's training median."""

    name = "median"

    def _fill(self, X):
        return _per_column(X, np.median)


class ConstantImputer(_Imputer):
    """Fill with ``fill_value`` (default 0, as scikit-learn's for numbers)."""

    name = "constant"

    def _fill(self, X):
        return np.full(X.shape[1], 0.0 if self.fill_value is None else float(self.fill_value))


class MostFrequentImputer(_Imputer):
    """Fill with the column's most frequent training value (the smallest on ties, as scikit-learn)."""

    name = "most_frequent"

    def _fill(self, X):
        return _per_column(X, _most_frequent)


def _most_frequent(col: np.ndarray) -> float:
    vals, counts = np.unique(col, return_counts=True)
    return vals[np.argmax(counts)]


def _per_column(X: np.ndarray, stat) -> np.ndarray:
    """``stat`` of each column's present (not NaN) values: ndarray of shape (n_columns,), NaN where none is."""
    out = np.full(X.shape[1], np.nan)
    for j in range(X.shape[1]):
        col = _f64(X[:, j])
        col = col[~np.isnan(col)]
        if col.size:
            out[j] = stat(col)
    return out


IMPUTERS = {c.name: c for c in (MeanImputer, MedianImputer, ConstantImputer, MostFrequentImputer)}


# -- scalers -------------------------------------------------------------------------------------
class _Scaler(ABC):
    """``(clip(x, lo, hi) - center) / scale`` per column, learned from the (imputed) training rows.

    Attributes
    ----------
    center_, scale_, lo_, hi_ : ndarray of shape (n_columns,), float64
    """

    name = ""
    clips = True

    def __init__(self):
        self.center_ = self.scale_ = self.lo_ = self.hi_ = None

    @abstractmethod
    def _center_scale(self, X, lo, hi) -> tuple[np.ndarray, np.ndarray]:
        """Center and scale per column, each shape (n_columns,) float64, from the training rows ``X`` and
        their per-column minimum ``lo`` and maximum ``hi``."""

    def fit(self, X: np.ndarray, prepare=None) -> "_Scaler":
        """Learn center, scale and the clip interval.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_columns), float
        prepare : callable(float64 block) -> float64 block, optional
            Applied to each chunk first (the imputer).
        """
        k = X.shape[1]
        lo, hi = np.full(k, np.inf), np.full(k, -np.inf)
        for blk in self._blocks(X, prepare):
            lo = np.minimum(lo, blk.min(axis=0))
            hi = np.maximum(hi, blk.max(axis=0))
        center, scale = self._center_scale(X, prepare, lo, hi)
        width = hi - lo
        # The mean of n equal values need not round back to that value (n * 1e30 / n is 9.999999999999999e29):
        # the center is kept within [lo, hi], and is exactly the value of a column constant in training, so
        # ``clip(x) - center`` is exactly 0 there, in float64 as in float32 (the ONNX export's precision).
        center = np.where(width == 0, lo, np.clip(center, lo, hi)) if center.size else center
        self.center_, self.scale_ = center, scale
        self.lo_, self.hi_ = lo - width, hi + width
        return self

    @staticmethod
    def _blocks(X, prepare):
        for a, b in _chunks(X.shape[0]):
            blk = _f64(X[a:b])
            yield prepare(blk) if prepare is not None else blk

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Clip and scale in place.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_columns), float64 (modified and returned).
        """
        if self.clips:
            np.minimum(X, self.hi_, out=X)
            np.maximum(X, self.lo_, out=X)
        X -= self.center_
        X /= self.scale_
        return X

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted state: ``center``, ``scale``, ``lo``, ``hi``, each of shape (n_columns,), float64."""
        return {"center": self.center_, "scale": self.scale_, "lo": self.lo_, "hi": self.hi_}

    @classmethod
    def from_arrays(cls, arrays: dict) -> "_Scaler":
        """A fitted scaler from ``to_arrays()`` output."""
        step = cls()
        for key in ("center", "scale", "lo", "hi"):
            setattr(step, f"{key}_", np.asarray(arrays[key], dtype=np.float64))
        return step


class StandardScaler(_Scaler):
    """Zero mean, unit variance; scale >= SPREAD_FLOOR * range, 1 for a constant column (module docstring)."""

    name = "standard"

    def _center_scale(self, X, prepare, lo, hi):
        k = X.shape[1]
        n = X.shape[0]
        s = np.zeros(k)
        for blk in self._blocks(X, prepare):
            s += blk.sum(axis=0)
        mean = s / n
        ss = np.zeros(k)
        for blk in self._blocks(X, prepare):
            d = blk - mean
            ss += (d * d).sum(axis=0)
        std = np.sqrt(ss / n)
        width = hi - lo
        scale = np.maximum(std, width * SPREAD_FLOOR)
        scale[width == 0] = 1.0
        return mean, scale


class MinMaxScaler(_Scaler):
    """Training range mapped to [0, 1]; a constant column gets scale 1."""

    name = "minmax"

    def _center_scale(self, X, prepare, lo, hi):
        width = hi - lo
        return lo.copy(), np.where(width > 0, width, 1.0)


class IdentityScaler(_Scaler):
    """No scaling and no clipping (``"none"``)."""

    name = "none"
    clips = False

    def _center_scale(self, X, lo, hi):
        return np.zeros(X.shape[1]), np.ones(X.shape[1])

    def fit(self, X, prepare=None):
        k = X.shape[1]
        self.center_, self.scale_ = np.zeros(k), np.ones(k)
        self.lo_, self.hi_ = np.full(k, -np.inf), np.full(k, np.inf)
        return self

    def transform(self, X):
        return X


SCALERS = {c.name: c for c in (StandardScaler, MinMaxScaler, IdentityScaler)}


# -- encoders ------------------------------------------------------------------------------------
class OneHotEncoder:
    """One-hot encoding of one categorical column of integer codes.

    A missing value (NaN) is a category of its own. With ``max_categories``,
    when the training values number ``max_categories`` or more, only the
    ``max_categories - 1`` most frequent keep a slot and the rarer ones share
    an "other" slot (scikit-learn's
    ``OneHotEncoder(max_categories=..., handle_unknown="infrequent_if_exist")``,
    same tie-breaking). A value unseen in training (a code outside the
    training values, e.g. -1) maps to the "other" slot if there is one, else to
    all zeros; never an error.

    Parameters
    ----------
    n_codes : int
        Length of the column's ``categories`` list; code ``n_codes`` stands for missing.
    max_categories : int or None
        Output columns at most (the "other" slot included).

    Attributes
    ----------
    kept_ : ndarray of shape (n_slots,), int64
        The code of each slot (``n_codes`` = missing), in code order, missing last.
    has_other_ : bool
    """

    name = "onehot"

    def __init__(self, n_codes: int, max_categories: int | None = None):
        self.n_codes = int(n_codes)
        self.max_categories = max_categories
        self.kept_: np.ndarray | None = None
        self.has_other_ = False
        self._table = None

    def _codes(self, col: np.ndarray) -> np.ndarray:
        """Float codes -> int64 in 0..n_codes+1 (n_codes: missing, n_codes+1: unseen)."""
        col = np.asarray(col, dtype=np.float64)
        out = np.full(col.shape, self.n_codes + 1, dtype=np.int64)
        miss = np.isnan(col)
        out[miss] = self.n_codes
        ok = ~miss & (col >= 0) & (col < self.n_codes) & (np.mod(col, 1) == 0)
        out[ok] = col[ok].astype(np.int64)
        return out

    def fit(self, col: np.ndarray) -> "OneHotEncoder":
        """Learn the slots from the training values.

        Parameters
        ----------
        col : ndarray of shape (n_samples,), float codes (NaN = missing)

        Raises
        ------
        ValueError
            A training value is not a valid code (the message names it).
        """
        codes = self._codes(col)
        bad = codes == self.n_codes + 1
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"row {i} holds {float(np.asarray(col)[i])!r}, not a category code "
                             f"0..{self.n_codes - 1}")
        counts = np.bincount(codes, minlength=self.n_codes + 1)
        seen = np.flatnonzero(counts)
        keep = seen
        self.has_other_ = False
        # as scikit-learn: the limit counts the "other" slot, so len(seen) >= max_categories groups
        if self.max_categories is not None and self.max_categories <= len(seen):
            n_frequent = self.max_categories - 1
            order = np.argsort(counts[seen], kind="mergesort")  # stable: ties keep code order
            keep = np.sort(seen[order[len(seen) - n_frequent:]]) if n_frequent else seen[:0]
            self.has_other_ = True
        self.kept_ = np.asarray(keep, dtype=np.int64)
        self._table = None
        return self

    @property
    def n_slots(self) -> int:
        """Output columns: one per kept category, plus one for ``<other>`` when used.

        Returns
        -------
        int
        """
        return len(self.kept_) + int(self.has_other_)

    def _lookup(self) -> np.ndarray:
        if self._table is None:
            unseen = len(self.kept_) if self.has_other_ else -1
            table = np.full(self.n_codes + 2, unseen, dtype=np.int64)
            table[self.kept_] = np.arange(len(self.kept_))
            self._table = table
        return self._table

    def transform(self, col: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """One-hot rows.

        Parameters
        ----------
        col : ndarray of shape (n_samples,), float codes
        out : ndarray of shape (n_samples, n_slots), optional (overwritten)

        Returns
        -------
        ndarray of shape (n_samples, n_slots), float32
        """
        slot = self._lookup()[self._codes(col)]
        n = slot.shape[0]
        if out is None:
            out = np.empty((n, self.n_slots), dtype=np.float32)
        out[...] = 0
        rows = np.flatnonzero(slot >= 0)
        out[rows, slot[rows]] = 1
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted state.

        Returns
        -------
        dict of str to ndarray
            ``kept``: shape (n_kept,), int64 codes with a slot; ``has_other``: 0-d bool.
        """
        return {"kept": self.kept_, "has_other": np.array(self.has_other_)}

    @classmethod
    def from_arrays(cls, arrays: dict, n_codes: int, max_categories: int | None = None) -> "OneHotEncoder":
        """A fitted encoder from ``to_arrays()`` output.

        Parameters
        ----------
        arrays : dict of str to ndarray
        n_codes : int
            Number of categories of the column.
        max_categories : int or None
            As configured.

        Returns
        -------
        OneHotEncoder
        """
        step = cls(n_codes, max_categories)
        step.kept_ = np.asarray(arrays["kept"], dtype=np.int64)
        step.has_other_ = bool(np.asarray(arrays["has_other"]))
        return step


ENCODERS = {"onehot": OneHotEncoder}


# -- configuration -------------------------------------------------------------------------------
def _options(given, defaults: dict, field: str) -> dict:
    if given is None:
        return dict(defaults)
    if not isinstance(given, dict):
        raise ValueError(f"{field} must be an object, got {given!r}")
    unknown = set(given) - set(defaults)
    if unknown:
        raise ValueError(f"{field}.{sorted(unknown)[0]}: unknown option; allowed: {', '.join(defaults)}")
    out = dict(defaults)
    out.update({k: v for k, v in given.items()})
    return out


def _check_choice(value, table, field: str, allow_none: bool = False):
    if value is None and allow_none:
        return
    if value not in table:
        raise ValueError(f"{field} must be one of {', '.join(table)}, got {value!r}")


def normalize_columns(columns, n_features: int | None = None) -> list[dict]:
    """Column descriptions ``{"name", "type", "categories"?}`` checked, with defaults.

    Parameters
    ----------
    columns : list of dict, or None
        None: ``n_features`` numeric columns named ``x0, x1, ...``.
    n_features : int or None
        The width of X, when known: ``columns`` must describe that many.

    Returns
    -------
    list of dict
        ``{"name": str, "type": "numeric" | "categorical" | "boolean", "categories"?: list of str}``.

    Raises
    ------
    ValueError
        Naming the column (``columns[2].type must be one of ...``).
    """
    if columns is None:
        if n_features is None:
            raise ValueError("columns or n_features is needed")
        return [{"name": f"x{j}", "type": "numeric"} for j in range(n_features)]
    out = []
    names = set()
    for j, c in enumerate(columns):
        if not isinstance(c, dict):
            raise ValueError(f"columns[{j}] must be an object, got {c!r}")
        name = str(c.get("name", f"x{j}"))
        if name in names:
            raise ValueError(f"columns[{j}].name: {name!r} appears twice")
        names.add(name)
        kind = c.get("type", "numeric")
        _check_choice(kind, COLUMN_TYPES, f"columns[{j}].type")
        col = {"name": name, "type": kind}
        if kind == "categorical":
            cats = c.get("categories")
            if not isinstance(cats, (list, tuple)):
                raise ValueError(f"columns[{j}].categories must be a list for a categorical column")
            col["categories"] = [str(v) for v in cats]
        out.append(col)
    if n_features is not None and len(out) != n_features:
        raise ValueError(f"columns describes {len(out)} columns but X has {n_features}")
    return out


class Preprocessor:
    """Imputation, scaling and one-hot encoding per column type, learned from training rows.

    Output columns, in this order (as a ``ColumnTransformer``): the numeric
    columns (imputed, clipped and scaled), their missing indicators (with
    ``add_indicator``: one per numeric column that had a missing value in
    training, as scikit-learn's ``SimpleImputer(add_indicator=True)``), the
    boolean columns (0/1, a missing value filled with the most frequent
    training value), then each categorical column's one-hot slots.

    Parameters
    ----------
    columns : list of dict, optional
        ``{"name", "type": "numeric"|"categorical"|"boolean", "categories"?}``
        per input column; default: all numeric, named ``x0, x1, ...``.
    numeric : dict, optional
        ``{"impute": "mean"|"median"|"constant"|"most_frequent"|None,
        "fill_value": float, "add_indicator": bool,
        "scale": "standard"|"minmax"|"none"}``; default mean imputation and
        standard scaling. ``impute=None`` makes a missing numeric value an error.
    categorical : dict, optional
        ``{"encode": "onehot", "max_categories": int or None}``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, 0.0], [3.0, 1.0], [np.nan, 1.0]])
    >>> p = Preprocessor([{"name": "age", "type": "numeric"},
    ...                   {"name": "plan", "type": "categorical", "categories": ["basic", "pro"]}])
    >>> p.fit(X).transform(X).shape
    (3, 3)
    >>> p.feature_names_out()
    ['age', 'plan=basic', 'plan=pro']
    """

    def __init__(self, columns: list[dict] | None = None, numeric: dict | None = None,
                 categorical: dict | None = None):
        self.columns = None if columns is None else normalize_columns(columns)
        self.numeric = _options(numeric, _NUMERIC_DEFAULTS, "numeric")
        self.categorical = _options(categorical, _CATEGORICAL_DEFAULTS, "categorical")
        _check_choice(self.numeric["impute"], IMPUTERS, "numeric.impute", allow_none=True)
        _check_choice(self.numeric["scale"], SCALERS, "numeric.scale")
        _check_choice(self.categorical["encode"], ENCODERS, "categorical.encode")
        fv = self.numeric["fill_value"]
        if fv is not None and (isinstance(fv, bool) or not isinstance(fv, (int, float)) or not math.isfinite(fv)
                               or abs(fv) > FLOAT32_MAX):
            raise ValueError(f"numeric.fill_value must be a finite number within float32's range (about "
                             f"3.4e38, the network computes in float32), got {fv!r}")
        mc = self.categorical["max_categories"]
        if mc is not None and (isinstance(mc, bool) or not isinstance(mc, (int, np.integer)) or mc < 1):
            raise ValueError(f"categorical.max_categories must be an integer >= 1, got {mc!r}")
        self.fitted = False

    @classmethod
    def standardize(cls, columns: list[dict] | None = None) -> "Preprocessor":
        """Legacy ``standardize=True``: standard scaling, missing values are an error.

        Parameters
        ----------
        columns : list of dict, or None
            As for ``normalize_columns``; None: all numeric.

        Returns
        -------
        Preprocessor
            Not fitted yet.
        """
        return cls(columns, numeric={"impute": None, "scale": "standard"})

    # -- structure ------------------------------------------------------------------------------
    def _index(self) -> None:
        kinds = [c["type"] for c in self.columns]
        self.num_idx_ = np.array([j for j, k in enumerate(kinds) if k == "numeric"], dtype=np.int64)
        self.bool_idx_ = np.array([j for j, k in enumerate(kinds) if k == "boolean"], dtype=np.int64)
        self.cat_idx_ = np.array([j for j, k in enumerate(kinds) if k == "categorical"], dtype=np.int64)
        self._all_numeric = len(self.num_idx_) == len(kinds)

    @property
    def n_features_in(self) -> int:
        """Width of the raw input.

        Returns
        -------
        int
        """
        return len(self.columns)

    @property
    def n_features_out(self) -> int:
        """Width of the transformed output.

        Returns
        -------
        int

        Raises
        ------
        ValueError
            When not fitted yet.
        """
        self._check_fitted()
        return self._n_out

    def _finish(self) -> "Preprocessor":
        self.fitted = True
        self._n_ind = int(self.indicator_.sum())
        self._n_out = (len(self.num_idx_) + int(self.indicator_.sum()) + len(self.bool_idx_)
                       + sum(enc.n_slots for enc in self.encoders_))
        return self

    def feature_names_out(self) -> list[str]:
        """Names of the output columns.

        Returns
        -------
        list of str
            ``n_features_out`` names: ``age``, ``age=<missing>``, ``plan=pro``, ``plan=<other>``.

        Raises
        ------
        ValueError
            When not fitted yet.
        """
        self._check_fitted()
        names = [self.columns[j]["name"] for j in self.num_idx_]
        names += [f"{self.columns[j]['name']}={MISSING}" for j in self.num_idx_[self.indicator_]]
        names += [self.columns[j]["name"] for j in self.bool_idx_]
        for j, enc in zip(self.cat_idx_, self.encoders_):
            col = self.columns[j]
            names += [f"{col['name']}={self._label(col, c)}" for c in enc.kept_]
            if enc.has_other_:
                names.append(f"{col['name']}={OTHER}")
        return names

    @staticmethod
    def _label(col: dict, code: int) -> str:
        cats = col["categories"]
        return cats[code] if code < len(cats) else MISSING

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise ValueError("the preprocessor is not fitted: call fit() first")

    # -- fit / transform ------------------------------------------------------------------------
    def fit(self, X) -> "Preprocessor":
        """Learn every statistic from ``X`` (the training rows only).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), float; NaN = missing

        Raises
        ------
        ValueError
            Infinite values, missing values where imputation is off, invalid
            category codes; the message names row and column.
        """
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[0] == 0:
            raise ValueError(f"X must be a non-empty 2-D array, got shape {X.shape}")
        self.check_values(X)
        num = X if self._all_numeric else X[:, self.num_idx_]
        k = len(self.num_idx_)
        imp_name = self.numeric["impute"]
        self.imputer_ = IMPUTERS[imp_name](self.numeric["fill_value"]).fit(num) if imp_name and k else None
        if self.numeric["add_indicator"] and k:
            had = np.zeros(k, dtype=bool)
            for a, b in _chunks(X.shape[0]):
                had |= np.isnan(num[a:b]).any(axis=0)
            self.indicator_ = had
        else:
            self.indicator_ = np.zeros(k, dtype=bool)
        prepare = self.imputer_.transform if self.imputer_ is not None else None
        self.scaler_ = SCALERS[self.numeric["scale"]]().fit(num, prepare) if k else None
        self.bool_imputer_ = (MostFrequentImputer().fit(X[:, self.bool_idx_])
                              if len(self.bool_idx_) else None)
        self.encoders_ = []
        for j in self.cat_idx_:
            enc = ENCODERS[self.categorical["encode"]](len(self.columns[j]["categories"]),
                                                       self.categorical["max_categories"])
            try:
                enc.fit(X[:, j])
            except ValueError as exc:
                raise ValueError(f"column {j} ({self.columns[j]['name']!r}): {exc}") from None
            self.encoders_.append(enc)
        return self._finish()

    def check_values(self, X, name: str = "X", limit: float | None = None) -> None:
        """Refuse infinite values, NaN in numeric columns when imputation is off and, with ``limit``,
        magnitudes above it; the message names the first such cell.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        """
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}")
        if self.fitted:
            if X.shape[1] != self.n_features_in:
                raise ValueError(f"{name} has {X.shape[1]} features, the preprocessing {self.n_features_in}")
        else:
            self.columns = normalize_columns(self.columns, X.shape[1])
            self._index()
        for a, b in _chunks(X.shape[0]):
            self._check_values(X[a:b], a, name, limit)

    def _check_values(self, block: np.ndarray, first_row: int, name: str = "X",
                      limit: float | None = None) -> None:
        bad = np.isinf(block)
        if self.numeric["impute"] is None and len(self.num_idx_):
            if self._all_numeric:
                bad |= np.isnan(block)
            else:
                bad[:, self.num_idx_] |= np.isnan(block[:, self.num_idx_])
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ValueError(f"{name} has a non-finite value at row {first_row + int(r)}, column {int(c)}")
        if limit is not None:
            with np.errstate(invalid="ignore"):
                big = np.abs(block) > limit
            if big.any():
                r, c = np.argwhere(big)[0]
                raise ValueError(f"{name} has a value too large for float32 at row {first_row + int(r)}, "
                                 f"column {int(c)}: {float(block[r, c]):g}; rescale the data")

    def transform(self, X, first_row: int = 0, dtype=np.float32) -> np.ndarray:
        """Apply the learned preprocessing.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in), float; NaN = missing
        first_row : int
            Row number of ``X[0]`` in error messages.
        dtype : numpy dtype
            Of the output (float32, or float64 for gradient checks).

        Returns
        -------
        ndarray of shape (n_samples, n_features_out), float32 by default
        """
        self._check_fitted()
        X = np.asarray(X)
        if X.ndim == 1 and X.shape[0] == self.n_features_in:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != self.n_features_in:
            raise ValueError(f"X must have shape (n_samples, {self.n_features_in}), got {X.shape}")
        n = X.shape[0]
        if self._all_numeric and not self._n_ind and n <= CHUNK:
            num = _f64(X)
            if math.isfinite(num.sum()):       # no NaN and no infinity: nothing to impute or refuse
                return self.scaler_.transform(num).astype(dtype, copy=False)     # a one-row predict's path
        out = np.empty((n, self._n_out), dtype=dtype)
        if n <= CHUNK:
            self._transform_block(X, out, first_row)
        else:
            for a, b in _chunks(n):
                self._transform_block(X[a:b], out[a:b], first_row + a)
        return out

    def _transform_block(self, X: np.ndarray, out: np.ndarray, first_row: int) -> None:
        k = len(self.num_idx_)
        pos = 0
        if self._all_numeric:
            num = _f64(X)
            # one sum tells whether there is any NaN or infinity to look at (or an overflow: looked at too)
            if not math.isfinite(num.sum()):
                self._check_values(X, first_row)
        else:
            self._check_values(X, first_row)
            num = _f64(X[:, self.num_idx_]) if k else None
        if k:
            n_ind = self._n_ind
            if n_ind:
                out[:, k:k + n_ind] = np.isnan(num[:, self.indicator_])
            if self.imputer_ is not None:
                self.imputer_.transform(num)
            out[:, :k] = self.scaler_.transform(num)
            pos = k + n_ind
        if len(self.bool_idx_):
            b = self.bool_imputer_.transform(_f64(X[:, self.bool_idx_]))
            out[:, pos:pos + b.shape[1]] = b
            pos += b.shape[1]
        for j, enc in zip(self.cat_idx_, self.encoders_):
            enc.transform(X[:, j], out=out[:, pos:pos + enc.n_slots])
            pos += enc.n_slots

    def fit_transform(self, X) -> np.ndarray:
        """``fit(X)`` then ``transform(X)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in)

        Returns
        -------
        ndarray of shape (n_samples, n_features_out), float32
        """
        return self.fit(X).transform(X)

    # -- raw values by column name --------------------------------------------------------------
    def values_as_column(self, j: int, values) -> np.ndarray:
        """Raw values for input column ``j`` -> its stored representation, as ``matrix_from_columns`` reads them.

        Parameters
        ----------
        j : int
            Index of the input column (``columns`` order).
        values : sequence
            Raw values as predict takes them (numbers, ``True``/``False``, category text; ``None`` is missing).

        Returns
        -------
        ndarray of shape (len(values),), float64
            The value (numeric), 1.0/0.0 (boolean) or the category code (categorical; -1.0 unseen), NaN for
            missing.

        Raises
        ------
        ValueError
            A value the column cannot take (text for a numeric column, ``'maybe'`` for a boolean one, a
            number matching several categories); the message names the value.
        """
        conv = self._converter(j)[1]
        return np.array([np.nan if v is None else conv(v) for v in values], dtype=np.float64)

    def matrix_from_columns(self, names: list, rows: list, ignore=(), na_values=()) -> np.ndarray:
        """Rows of raw values in the order of ``names`` -> float64 (n, n_features_in) for ``transform``.

        Numeric columns take numbers; boolean columns ``true``/``false`` (or
        0/1, ``"true"``/``"false"``/``"yes"``/``"no"``); categorical columns
        their category text, with surrounding whitespace trimmed and in
        Unicode NFC as the upload reads it (a value not in the categories is unseen, never an
        error), or a number, matched to the category written as that number
        (``1234`` to ``"1234"``, ``2`` to ``"2.0"``; a number that matches two
        categories, such as ``"01234"`` and ``"1234"``, is an error: send the
        text); ``None``, a blank string or a string in ``na_values`` (compared
        trimmed) is a missing value everywhere. Names
        are compared trimmed and in NFC (``text_key``). A trained column left
        out of ``names`` is all missing.

        Rows are numbered from 1 in error messages (``row 1`` is ``rows[0]``).

        Parameters
        ----------
        names : list of str
        rows : list of list, each of len(names)
        ignore : collection of str
            Names that are accepted and dropped (e.g. the training target and
            the columns the data set ignored); a model column is never dropped.
        na_values : collection of str
            Text values read as missing (e.g. ``"NA"``, ``"NULL"``), as a CSV
            upload reads its NA tokens.

        Raises
        ------
        ValueError
            Unknown or repeated column names, a column left out that cannot be
            imputed, a value of the wrong type; the message names the column (and row).
        """
        self._check_fitted()
        where = {text_key(c["name"]): j for j, c in enumerate(self.columns)}
        ignore = {text_key(n) for n in ignore}
        keys = [text_key(n) for n in names]            # ' age ' and a decomposed 'café' name their columns
        seen = set()
        for name, key in zip(names, keys):
            if key in seen:
                raise ValueError(f"column {_echo(name)} is given twice")
            seen.add(key)
            if key not in where and key not in ignore:
                raise ValueError(f"unknown column {_echo(name)}; the model's columns are "
                                 f"{', '.join(repr(c['name']) for c in self.columns)}")
        absent = [c["name"] for c in self.columns if text_key(c["name"]) not in seen]
        for name in absent:
            if not self.imputes(where[text_key(name)]):     # a model stored ' a' before names were trimmed
                raise ValueError(f"missing column {name!r}: the model was trained without imputation "
                                 "for it, so every row needs a value")
        X = np.full((len(rows), self.n_features_in), np.nan)
        # (index in the row, model column, converter) of each named model column; ignored names are skipped
        used = [(k, *self._converter(where[key]), name) for k, (name, key) in enumerate(zip(names, keys))
                if key in where]
        width = len(names)
        na = frozenset(na_values) | {""}
        for i, row in enumerate(rows):
            if len(row) != width:
                raise ValueError(f"row {i + 1} has {len(row)} values but there are {width} columns")
            for k, j, conv, name in used:
                v = row[k]
                if v is None or (type(v) is str and v.strip() in na):   # blank or an NA token: missing, as at upload
                    if not self.imputes(j):
                        raise ValueError(f"row {i + 1}, column {name!r}: a missing value, but the model was "
                                         "trained without imputation for this column")
                    continue
                try:
                    X[i, j] = conv(v)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"row {i + 1}, column {name!r}: {exc}") from None
        return X

    def imputes(self, j: int) -> bool:
        """Whether a missing value in an input column is filled (rather than an error).

        Parameters
        ----------
        j : int
            Index of the input column.

        Returns
        -------
        bool
        """
        kind = self.columns[j]["type"]
        return kind != "numeric" or self.numeric["impute"] is not None

    def _converter(self, j: int):
        col = self.columns[j]
        if col["type"] == "numeric":
            def conv(v):
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise ValueError(f"expected a number, got {_echo(v)}")
                try:
                    v = float(v)
                except OverflowError:                      # an integer beyond float64
                    v = math.inf
                if not math.isfinite(v):
                    raise ValueError(f"expected a finite number, got {_echo(v)}")
                return v
            return (j, conv)
        if col["type"] == "boolean":
            def conv(v):
                if isinstance(v, bool):
                    return float(v)
                if isinstance(v, (int, float)) and v in (0, 1):
                    return float(v)
                if isinstance(v, str) and v.strip().lower() in _BOOL_TEXT:
                    return _BOOL_TEXT[v.strip().lower()]
                raise ValueError(f"expected true or false, got {_echo(v)}")
            return (j, conv)
        exact, trimmed, numbers = self._category_lookup(j)

        def conv(v):
            if isinstance(v, str):
                code = exact.get(v)
                return float(code) if code is not None else trimmed.get(text_key(v), -1.0)
            if isinstance(v, bool):
                return exact.get(str(v).lower(), exact.get(str(v), -1.0))
            if isinstance(v, (int, float)):
                return _number_code(v, numbers, col["categories"])
            raise ValueError(f"expected a category (text), got {_echo(v)}")
        return (j, conv)

    def _category_lookup(self, j: int) -> tuple[dict, dict, dict]:
        """For categorical column ``j``: category -> code, trimmed category -> code, and the value -> codes of the
        categories written as a number (``"01234"``, ``"2.0"``, ``"1e+20"``); built once per column."""
        cache = self.__dict__.setdefault("_lookups", {})
        if j not in cache:
            cats = self.columns[j]["categories"]
            exact = {c: float(i) for i, c in enumerate(cats)}
            trimmed: dict[str, float] = {}
            numbers: dict = {}
            for i, c in enumerate(cats):
                t = text_key(c)
                trimmed.setdefault(t, float(i))
                if _NUMBER_TEXT.fullmatch(t):
                    numbers.setdefault(_number_key(t), []).append(i)
            cache[j] = (exact, trimmed, numbers)
        return cache[j]

    # -- description ----------------------------------------------------------------------------
    def schema(self) -> list[dict]:
        """Describe every input column: name, type, how missing values are filled, scaling, categories.

        Returns
        -------
        list of dict
            One JSON-able dict per input column, in order.

        Raises
        ------
        ValueError
            When not fitted yet.
        """
        self._check_fitted()
        out = []
        num_pos = {int(j): p for p, j in enumerate(self.num_idx_)}
        bool_pos = {int(j): p for p, j in enumerate(self.bool_idx_)}
        cat_pos = {int(j): p for p, j in enumerate(self.cat_idx_)}
        for j, col in enumerate(self.columns):
            item = {"name": col["name"], "type": col["type"]}
            if j in num_pos:
                p = num_pos[j]
                imp = self.numeric["impute"]
                item["missing"] = ({"strategy": imp, "fill_value": _shown(self.imputer_.fill_[p]),
                                    "indicator": bool(self.indicator_[p])} if imp
                                   else {"strategy": None, "detail": "a missing value is an error"})
                sc = self.scaler_
                item["scale"] = {"method": self.numeric["scale"], "center": _shown(sc.center_[p]),
                                 "scale": _shown(sc.scale_[p])}
                if sc.clips:
                    item["scale"]["clip"] = [_shown(sc.lo_[p]), _shown(sc.hi_[p])]
            elif j in bool_pos:
                item["missing"] = {"strategy": "most_frequent",
                                   "fill_value": bool(self.bool_imputer_.fill_[bool_pos[j]])}
            else:
                enc = self.encoders_[cat_pos[j]]
                item["categories"] = [self._label(col, c) for c in enc.kept_ if c < len(col["categories"])]
                item["encode"] = self.categorical["encode"]
                item["other"] = enc.has_other_
                missing_slot = bool(len(enc.kept_) and enc.kept_[-1] == len(col["categories"]))
                item["missing"] = {"strategy": "category" if missing_slot else
                                   ("other" if enc.has_other_ else "all_zero")}
                item["unseen"] = "other" if enc.has_other_ else "all_zero"
            out.append(item)
        return out

    # -- state as arrays ------------------------------------------------------------------------
    def to_arrays(self, prefix: str = "prep/") -> dict[str, np.ndarray]:
        """The whole fitted state as named arrays.

        Parameters
        ----------
        prefix : str
            Put before every key.

        Returns
        -------
        dict of str to ndarray
            ``<prefix>config`` (a 0-d JSON string) plus float and int arrays.

        Raises
        ------
        ValueError
            When not fitted yet.
        """
        self._check_fitted()
        arrays = {f"{prefix}config": np.array(json.dumps({
            "columns": self.columns, "numeric": self.numeric, "categorical": self.categorical}))}
        arrays[f"{prefix}indicator"] = self.indicator_.astype(np.int8)
        if self.imputer_ is not None:
            arrays.update({f"{prefix}impute/{k}": v for k, v in self.imputer_.to_arrays().items()})
        if self.scaler_ is not None:
            arrays.update({f"{prefix}scale/{k}": v for k, v in self.scaler_.to_arrays().items()})
        if self.bool_imputer_ is not None:
            arrays.update({f"{prefix}bool/{k}": v for k, v in self.bool_imputer_.to_arrays().items()})
        for i, enc in enumerate(self.encoders_):
            arrays.update({f"{prefix}cat{i}/{k}": v for k, v in enc.to_arrays().items()})
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict, prefix: str = "prep/") -> "Preprocessor":
        """Rebuild a fitted preprocessor from ``to_arrays`` output.

        Parameters
        ----------
        arrays : mapping of str to ndarray
        prefix : str
            The prefix ``to_arrays`` was given.

        Returns
        -------
        Preprocessor
            Fitted.
        """
        cfg = json.loads(str(np.asarray(arrays[f"{prefix}config"])[()]))
        p = cls(cfg["columns"], cfg["numeric"], cfg["categorical"])
        p._index()

        def group(name):
            pre = f"{prefix}{name}/"
            return {k[len(pre):]: arrays[k] for k in arrays if k.startswith(pre)}

        p.indicator_ = np.asarray(arrays[f"{prefix}indicator"]).astype(bool)
        imp = p.numeric["impute"]
        p.imputer_ = IMPUTERS[imp].from_arrays(group("impute"), p.numeric["fill_value"]) \
            if imp and len(p.num_idx_) else None
        p.scaler_ = SCALERS[p.numeric["scale"]].from_arrays(group("scale")) if len(p.num_idx_) else None
        p.bool_imputer_ = MostFrequentImputer.from_arrays(group("bool")) if len(p.bool_idx_) else None
        p.encoders_ = [ENCODERS[p.categorical["encode"]].from_arrays(
            group(f"cat{i}"), len(p.columns[j]["categories"]), p.categorical["max_categories"])
            for i, j in enumerate(p.cat_idx_)]
        return p._finish()

    @classmethod
    def from_standardization(cls, mean, scale) -> "Preprocessor":
        """A fitted preprocessor equal to the old ``x_mean``/``x_scale`` standardisation (format-1 files).

        Parameters
        ----------
        mean, scale : array-like of shape (n_features,)

        Returns
        -------
        Preprocessor
            Fitted; no imputation, no clipping.
        """
        mean = np.asarray(mean, dtype=np.float64)
        p = cls.standardize(normalize_columns(None, mean.shape[0]))
        p._index()
        k = mean.shape[0]
        p.indicator_ = np.zeros(k, dtype=bool)
        p.imputer_ = None
        p.scaler_ = StandardScaler.from_arrays({"center": mean, "scale": np.asarray(scale, dtype=np.float64),
                                                "lo": np.full(k, -np.inf), "hi": np.full(k, np.inf)})
        p.bool_imputer_ = None
        p.encoders_ = []
        return p._finish()


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 2, 6, 4, 80, 80, 80
ECHO_CHARS = 200   # an error message echoes at most this much of an offending value


def _echo(v) -> str:
    """``repr(v)`` for an error message, cut short (a value sent may be megabytes long)."""
    s = _REPR.repr(v)
    return s if len(s) <= ECHO_CHARS else s[:ECHO_CHARS] + "..."


_BOOL_TEXT = {"true": 1.0, "false": 0.0, "yes": 1.0, "no": 0.0, "1": 1.0, "0": 0.0}


def text_key(v):
    """How names and category text are compared: spaces around trimmed, Unicode NFC (``'café'`` typed as ``e`` +
    combining accent, as macOS writes it, is the composed ``'café'``). Non-strings are returned as they are."""
    return unicodedata.normalize("NFC", v.strip()) if isinstance(v, str) else v
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _number_key(v):
    """The value of a number (an int or float, or a category's text such as ``"01234"``), as a dict key: an exact
    int when the value is a whole number float64 holds exactly or any int, else the float."""
    if isinstance(v, str):
        if _INT_TEXT.fullmatch(v):
            return int(v)
        v = float(v)
    if isinstance(v, float) and v.is_integer() and abs(v) < 2.0 ** 53:
        return int(v)
    return v


_INT_TEXT = re.compile(r"[+-]?[0-9]+")


def _number_code(v, numbers: dict, categories: list) -> float:
    """The code of the one category written as the number ``v`` (-1.0: none, unseen); ValueError when several
    are (``"01234"`` and ``"1234"``): the number alone cannot tell which was meant."""
    try:
        codes = numbers.get(_number_key(v))
    except (OverflowError, ValueError):          # inf or NaN: no category is written as it
        codes = None
    if not codes:
        return -1.0
    if len(codes) > 1:
        names = ", ".join(repr(categories[i]) for i in codes[:5])
        raise ValueError(f"the number {_echo(v)} matches several categories ({names}); send the category as "
                         "text")
    return float(codes[0])
