"""Read tabular uploads with pyarrow, one record batch at a time: CSV (any dialect, ``.csv.gz``), Parquet, Arrow IPC.

Memory stays bounded by the output (float32 X, the target column) plus one batch: the file is never held whole.
The storage representation this produces is documented at the top of ``parsing.py``.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import math
import mmap
import os
import queue
import re
import tempfile
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from core.preprocessing import text_key
from service import arrow_ipc
from service.bodies import ParseError, float32_text
from service.datasets.spool import Spool
from service.dialects import (COMMA_NUMBER, DELIMITERS, NA_TOKENS, arrow_nbytes, binary_format, blank_as_null,
                              blank_space_lines, detect_encoding, encoding_label, grouped_cell, hex_integer_columns,
                              pandas_index_columns, sep_line, sniff_decimal, sniff_delimiter, text_as_values,
                              unnamed_column_hint)
from service.errors import TooLarge

DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
MAX_CATEGORIES = 1000
TOP_VALUES = 10
WIDE_COLUMNS = 200              # more numeric columns than this: converted as one block (RecordBatch.to_tensor)
BLOCK_BYTES = 1 << 20           # CSV block: the unit of pyarrow's parallel parsing (its default)
SEGMENT_BYTES = 8 << 20         # CSV segment: one pyarrow.csv.read_csv call; bounds the parser's memory
PARQUET_BATCH_ROWS = 65536
_SNIFF_BYTES = 256 << 10        # sample for encoding and delimiter detection (grown until the header ends)
_MAX_HEADER_BYTES = 64 << 20
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_LEADING_ZERO = r"^[+-]?0[0-9]"  # '007': a label spelled with a leading zero is text, not the number 7
DECIMALS = (".", ",")


@dataclass
class TableOptions:
    """How to read a tabular file (the upload's form fields)."""

    target: str | None = None
    delimiter: str | None = None
    na_values: tuple[str, ...] = NA_TOKENS
    encoding: str | None = None
    decimal: str | None = None        # "." or ","; None: detected (see dialects.sniff_decimal)
    thousands: str | None = None      # thousands separator; None: '.' when the decimal mark is ',' (dialects)
    categorical: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    max_categories: int = MAX_CATEGORIES
    drop_missing_target: bool = False
    max_columns: int = 10_000
    regression: bool = False          # task=regression was asked for: a numeric-looking target is read as numbers
    x_dir: Path | None = None         # build X memory-mapped in a .npy file in this directory (else in memory)
    max_decoded_bytes: int | None = None   # MLP_MAX_UPLOAD_BYTES: a .csv.gz's text, a Parquet/Arrow file's arrays
    decimal_open: bool = False        # set by the reader: ';' and no decimal sampled (dialects.sniff_decimal)
    blank_cells: set = field(default_factory=set)   # set by the reader: columns read as text for blank cells
    pandas_index: tuple[str, ...] = ()  # set by the reader: a Parquet/Arrow file's pandas row index (ignored)


@dataclass
class Table:
    """Feature matrix, its column profile and the raw target, ready for ``encode_target``."""

    X: np.ndarray                     # float32 (n, d)
    feature_names: list[str]
    columns: list[dict]               # the profile / metadata (see parsing.py)
    target: str
    y: np.ndarray                     # numeric (n,); a text target: its sorted distinct labels (see y_codes)
    n_dropped: int = 0
    y_codes: tuple | None = None      # text y: (sorted distinct labels, index of each row's label), np.unique's
    x_file: Path | None = None        # the .npy file X maps (with TableOptions.x_dir)

    def y_rows(self) -> np.ndarray:
        """The target of every row (a text target's labels by row: only error messages need them)."""
        return self.y if self.y_codes is None else self.y_codes[0][self.y_codes[1]]


# ----------------------------------------------------------------------------- column accumulators

class _Numeric:
    """A numeric column: float values, missing = NaN; min/max/mean/variance kept by ``_Builder`` for all numeric
    columns at once (Chan's merge per batch) and copied here at the end."""

    type = "numeric"

    def __init__(self, name: str):
        self.name, self.missing, self.n, self.mean, self.m2 = name, 0, 0, 0.0, 0.0
        self.lo, self.hi = math.inf, -math.inf

    def profile(self, full: bool) -> dict:
        seen = self.n > 0
        return {"name": self.name, "type": self.type, "missing": self.missing,
                "min": float32_text(self.lo) if seen else None, "max": float32_text(self.hi) if seen else None,
                "mean": self.mean if seen else None, "std": math.sqrt(self.m2 / self.n) if seen else None}



class _Boolean(_Numeric):
    """A true/false column stored as 1/0, missing = NaN."""

    type = "boolean"

    def convert(self, arr: pa.Array, where, col) -> np.ndarray:
        v = np.asarray(pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
        nan = np.isnan(v)
        self.missing += int(nan.sum())
        self.n += int(v.size - nan.sum())
        self.m2 += float(np.nansum(v)) if v.size else 0.0     # count of true values
        return v

    def profile(self, full: bool) -> dict:
        return {"name": self.name, "type": self.type, "missing": self.missing, "true": int(self.m2),
                "false": int(self.n - self.m2)}


class _Categorical:
    """A text column (or a column named in ``categorical``): per batch the codes of its values in first-seen
    order (-1 = missing), kept aside as small integers, and their values in X, each category's rank among the
    categories sorted by their string value. A category met later that sorts before known ones changes those ranks
    (``stale``): ``finish`` then gives the codes for X's rows to be written again with the final ranks."""

    type = "categorical"

    def __init__(self, name: str, limit: int, forced: bool, na_text: frozenset = frozenset({""})):
        self.name, self.limit, self.forced = name, limit, forced
        self.na_text = na_text              # values that, trimmed, are missing: '' (and a CSV's NA tokens)
        self.codes: dict[str, int] = {}
        self.counts = np.zeros(0, dtype=np.int64)
        self.missing = 0
        self.dtype = np.int16 if limit < 2**15 - 1 else np.int32
        self.chunks: list[np.ndarray] = []
        self.ranks = np.full(1, np.nan, dtype=np.float32)   # X's value of each code; the last slot (-1): missing
        self.stale = False                  # rows of X hold ranks that are not the final ones (or no ranks)

    def convert(self, arr: pa.Array | pa.ChunkedArray, where, col, out: np.ndarray | None = None) -> None:
        """Code one batch's values (a chunked column is coded chunk by chunk, never concatenated) and write their
        values in X (float32, NaN for missing) into ``out`` (the batch's rows of the column)."""
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            arr = pc.cast(arr, pa.string())
        arr = arr.dictionary_encode()               # a chunked array's chunks share the one dictionary it builds
        chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
        if not chunks:
            return
        # trimmed through the (small) dictionary: ' pro' and 'pro' are one category, '  ' and ' NA' are missing
        values = [text_key(v) for v in chunks[0].dictionary.to_pylist()]     # trimmed, NFC: as predict compares
        na = self.na_text
        mapping = [-1 if s in na else self.codes.setdefault(s, len(self.codes)) for s in values]
        if len(self.codes) > self.limit:
            how = ("form field categorical names it" if self.forced
                   else "text columns are categorical")
            raise ParseError(f"{col} has more than {self.limit} distinct values ({how}); drop it with the form "
                             f"field ignore={self.name} (e.g. an id or free text), or raise max_categories")
        mapping = np.array(mapping, dtype=self.dtype)
        lookup = np.append(mapping, self.dtype(-1))         # the slot after the dictionary: missing
        if len(self.codes) + 1 != self.ranks.size:
            self._rank()
        if out is None:
            self.stale = True
        else:
            in_x = self.ranks[lookup]                       # X's value of each dictionary slot
        codes = np.empty(sum(len(c) for c in chunks), dtype=self.dtype)
        per_value = np.zeros(len(values) + 1, dtype=np.int64)
        a = 0
        for chunk in chunks:
            idx = chunk.indices
            self.missing += idx.null_count
            if idx.null_count:
                idx = pc.fill_null(idx, len(values))
            ii = idx.to_numpy(zero_copy_only=False)
            np.take(lookup, ii, out=codes[a:a + ii.size])
            if out is not None:
                np.take(in_x, ii, out=out[a:a + ii.size])
            per_value += np.bincount(ii, minlength=len(values) + 1)
            a += ii.size
        self.chunks.append(codes)
        if self.counts.size < len(self.codes):
            self.counts = np.concatenate([self.counts, np.zeros(len(self.codes) - self.counts.size, np.int64)])
        per_value = per_value[:len(values)]
        present = mapping >= 0
        self.missing += int(per_value[~present].sum())
        np.add.at(self.counts, mapping[present], per_value[present])

    def _order(self) -> list[str]:
        return sorted(self.codes)

    def _rank(self) -> None:
        """Each code's rank among the categories sorted (new categories were met); stale when a known one moved."""
        ranks = np.empty(len(self.codes) + 1, dtype=np.float32)
        for new, s in enumerate(self._order()):
            ranks[self.codes[s]] = new
        ranks[-1] = np.nan                                  # code -1: missing
        known = self.ranks.size - 1
        if known and not np.array_equal(ranks[:known], self.ranks[:known]):
            self.stale = True
        self.ranks = ranks

    def finish(self) -> tuple[np.ndarray, np.ndarray] | None:
        """None when X's rows hold the final values; else (each row's code in first-seen order, the float value
        of each such code in X): the codes renumbered to the sorted categories, missing (code -1) as NaN."""
        if not self.stale:
            self.chunks = []
            return None
        codes = self.chunks[0] if len(self.chunks) == 1 else np.concatenate(self.chunks)
        self.chunks = []
        return codes, self.ranks

    def profile(self, full: bool) -> dict:
        cats = self._order()
        counts = [int(self.counts[self.codes[s]]) for s in cats]
        top = sorted(range(len(cats)), key=lambda i: (-counts[i], cats[i]))[:TOP_VALUES]
        out = {"name": self.name, "type": self.type, "missing": self.missing, "n_categories": len(cats)}
        if full:
            out["categories"] = cats
        out["top"] = [{"value": cats[i], "count": counts[i]} for i in top]
        return out


# ----------------------------------------------------------------------------- the batch loop shared by all formats

def _npy_header(rows: int, d: int) -> bytes:
    """The header ``np.save`` writes for a float32 (rows, d) array (its length does not depend on ``rows``:
    numpy pads it for the first axis to grow)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (rows, d)})
    return buf.getvalue()


def _libc_sync_file_range():
    try:
        import ctypes
        import ctypes.util

        f = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).sync_file_range
        f.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        return f
    except (OSError, AttributeError):
        return None


_sync_file_range = _libc_sync_file_range() if os.name == "posix" else None


class _XFile:
    """X built inside the ``.npy`` file that is stored (a temporary file): each batch's rows are written at their
    place (``pwrite`` of a block built in memory), and the file is mapped at the end; storing it is an fsync and a
    rename instead of a second copy of X written at the end."""

    def __init__(self, directory: Path, d: int):
        fd, name = tempfile.mkstemp(prefix="X-", suffix=".npy", dir=directory)
        os.close(fd)
        self.path, self.d, self.offset = Path(name), d, 0
        self.flushed = 0                            # bytes from the start whose write-back has been started

    def map(self, rows: int) -> np.ndarray:
        """The file sized for ``rows`` rows, mapped; rows written before keep their values."""
        self.reserve(rows)
        if rows == 0:
            return np.empty((0, self.d), dtype=np.float32)
        return np.memmap(self.path, dtype=np.float32, mode="r+", offset=self.offset, shape=(rows, self.d))

    def reserve(self, rows: int) -> None:
        """Size the file for ``rows`` rows (a sparse file: blocks exist once written) and name them in its header."""
        header = _npy_header(rows, self.d)
        if not self.offset:
            self.offset = len(header)
        elif len(header) != self.offset:            # cannot happen (see _npy_header); never a corrupt file
            raise RuntimeError(f"npy header length changed from {self.offset} to {len(header)}")
        with open(self.path, "r+b") as f:
            f.write(header)
            f.truncate(self.offset + rows * self.d * 4)

    def write(self, row: int, block: np.ndarray) -> None:
        """Write the C-contiguous float32 rows ``block`` (n, d) as rows ``row``.. of X (inside the reserved rows).
        A write, not a store through a mapping: no page fault per page of a sparse file, and no mapped pages whose
        dirty bits the write-back must clear (a TLB flush of every core running the parse, per page)."""
        view = memoryview(np.ascontiguousarray(block)).cast("B")
        pos = self.offset + row * self.d * 4
        fd = os.open(self.path, os.O_WRONLY)
        try:
            while view:
                n = os.pwrite(fd, view, pos)
                view, pos = view[n:], pos + n
        finally:
            os.close(fd)

    def discard(self) -> None:
        """Remove the file (idempotent)."""
        self.path.unlink(missing_ok=True)

    def write_back(self, rows: int) -> None:
        """Start writing the first ``rows`` rows' pages to disk in the background (Linux ``sync_file_range``; a
        no-op elsewhere), so that the fsync that stores the file waits for little more than its last rows."""
        end = self.offset + rows * self.d * 4
        end -= end % mmap.PAGESIZE
        if end <= self.flushed or _sync_file_range is None:
            return
        fd = os.open(self.path, os.O_RDWR)
        try:
            _sync_file_range(fd, self.flushed, end - self.flushed, 2)     # SYNC_FILE_RANGE_WRITE: do not wait
        finally:
            os.close(fd)
        self.flushed = end


class _Builder:
    """Consumes record batches of one file: feature columns into float32 chunks (categorical codes aside), the
    target into Arrow chunks; a missing target is a 422 naming its row, or the row is dropped
    (``drop_missing_target``)."""

    def __init__(self, names: list[str], target: str, opts: TableOptions, kinds: dict[str, str],
                 where: Callable[[int], str], trim_target: bool = True, na_text: frozenset = frozenset({""})):
        self.opts, self.target, self.where = opts, target, where
        self.trim_target = trim_target      # CSV: spaces around a label are layout; a typed Parquet string is not
        self.file_index = {n: i for i, n in enumerate(names)}
        self.features = [n for n in names if n != target and n not in opts.ignore]
        if not self.features:
            raise ParseError("no feature columns are left: every column but the target is in ignore")
        self.cols = []
        for n in self.features:
            k = kinds[n]
            if k == "categorical":
                self.cols.append(_Categorical(n, opts.max_categories, n in opts.categorical, na_text))
            elif k == "boolean":
                self.cols.append(_Boolean(n))
            else:
                self.cols.append(_Numeric(n))
        self.num_idx = np.array([j for j, c in enumerate(self.cols) if type(c) is _Numeric], dtype=np.intp)
        self.all_numeric = self.num_idx.size == len(self.cols)
        k = self.num_idx.size
        self.stats = {"n": np.zeros(k, np.int64), "missing": np.zeros(k, np.int64), "mean": np.zeros(k),
                      "m2": np.zeros(k), "lo": np.full(k, np.inf), "hi": np.full(k, -np.inf)}
        self.X = np.empty((0, len(self.cols)), dtype=np.float32)    # grown in place (realloc), rows [0, n) filled
        self.xfile = None if opts.x_dir is None else _XFile(opts.x_dir, len(self.cols))   # or in this file
        self.reserved = 0       # rows the file is sized for (with xfile)
        self.block: np.ndarray | None = None    # the batch's rows before they are written into the file (xfile)
        self.n = 0
        self.y_chunks: list[pa.Array] = []
        self.rows = 0           # rows read, including dropped ones (for error positions)
        self.dropped = 0

    def _col(self, name: str) -> str:
        return f"column {self.file_index[name] + 1} ({name!r})"

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Convert one record batch, or one table whose columns are chunked (a CSV segment: its columns walked
        chunk by chunk, never concatenated first)."""
        if batch.num_rows == 0:
            return
        read = batch.num_rows
        batch, y, rows = self._target(batch)
        n = batch.num_rows
        base = self.rows
        where = (lambda i: self.where(base + i)) if rows is None else (lambda i: self.where(base + int(rows[i])))
        self.rows += read
        if n == 0:
            return
        out = self._rows(n)
        pos = {name: i for i, name in enumerate(batch.schema.names)}
        wide = self.num_idx.size > WIDE_COLUMNS and self._numeric_block(batch, pos, out)
        # the numeric columns as rows of a float32 block S (k, n): each column converted into contiguous memory,
        # written into X's rows once, and its statistics reduced along contiguous rows (along X's columns a
        # reduction steps through k values per row, which is 10-50x slower for a few dozen columns)
        S = None if wide or not self.num_idx.size else np.empty((self.num_idx.size, n), dtype=np.float32)
        # the other columns as rows of a block B (d, n) in X's column order, written into X's rows in one transposed
        # copy as S is (a strided write into X per column passes over all of the rows' memory each time);
        # categorical rows hold each value's rank among the categories met so far (``finish`` writes them again if a
        # later category changed those ranks)
        B = None if self.all_numeric or wide else np.empty((len(self.cols), n), dtype=np.float32)
        t = 0
        with np.errstate(over="ignore", invalid="ignore"):
            for j, c in enumerate(self.cols):
                if type(c) is _Numeric:
                    if wide:
                        continue
                    arr = batch.column(pos[c.name])
                    if pa.types.is_decimal(arr.type):
                        arr = pc.cast(arr, pa.float64())
                    a = 0
                    for chunk in (arr.chunks if isinstance(arr, pa.ChunkedArray) else (arr,)):
                        # too large for float32: inf, refused below
                        S[t, a:a + len(chunk)] = chunk.to_numpy(zero_copy_only=False)
                        a += len(chunk)
                    t += 1
                elif type(c) is _Boolean:
                    v = c.convert(batch.column(pos[c.name]), where, self._col(c.name))
                    if B is None:
                        out[:, j] = v
                    else:
                        B[j] = v
                else:
                    c.convert(batch.column(pos[c.name]), where, self._col(c.name), None if B is None else B[j])
        if S is not None:
            if self.all_numeric:
                out[:] = S.T
            else:
                B[self.num_idx] = S
        if B is not None:
            out[:] = B.T
        del B
        if S is None and self.num_idx.size:
            S = np.ascontiguousarray((out if self.all_numeric else out[:, self.num_idx]).T)
        if S is not None:
            self._numeric(S, batch, where)
        if self.xfile is not None:
            self.xfile.write(self.n, out)
        del out, S
        self.n += n
        if self.xfile is not None and not any(c.stale for c in self.cols if type(c) is _Categorical):
            self.xfile.write_back(self.n)       # these rows are final (else categorical ones are written at the end)
        self.y_chunks.extend(y.chunks if isinstance(y, pa.ChunkedArray) else (y,))

    def _target(self, batch):
        """(batch, its target with missing values as nulls, the indices of the rows kept or None): a missing target
        is a ParseError naming its line, or with ``drop_missing_target`` its row is dropped and counted."""
        y = batch.column(self.target)
        if pa.types.is_string(y.type) or pa.types.is_large_string(y.type):
            if self.trim_target:        # CSV: trimmed, and ' NA ' is missing as in a feature column (one rule)
                y = blank_as_null(y, self.opts.na_values)
            else:                       # Parquet/Arrow: typed text; only an empty string is missing, as in features
                y = pc.if_else(pc.equal(y, ""), pa.scalar(None, y.type), y)
        elif pa.types.is_floating(y.type) and y.null_count < len(y):
            y = pc.if_else(pc.is_nan(y), pa.scalar(None, y.type), y)       # NaN: how pandas writes a missing value
        if not y.null_count:
            return batch, y, None
        nulls = np.asarray(y.is_null().to_numpy(zero_copy_only=False))
        if not self.opts.drop_missing_target:
            i = int(np.flatnonzero(nulls)[0])
            raise ParseError(f"{self.where(self.rows + i)}, {self._col(self.target)}: missing target value; "
                             f"fill it in, or drop such rows with the form field drop_missing_target=true")
        keep = ~nulls
        self.dropped += int(nulls.sum())
        return batch.filter(pa.array(keep)), y.filter(pa.array(keep)), np.flatnonzero(keep)

    def _numeric_block(self, batch: pa.RecordBatch, pos: dict, out: np.ndarray) -> bool:
        """Many numeric columns: all of them in one conversion (no Python work per column); False when their
        types need the per-column path (decimals, all-empty columns)."""
        try:
            sel = batch.select([pos[self.cols[j].name] for j in self.num_idx])
            if isinstance(sel, pa.Table):
                sel = sel.combine_chunks().to_batches()
                if len(sel) != 1:
                    return False
                sel = sel[0]
            T = np.asarray(sel.to_tensor(null_to_nan=True, row_major=True))
        except (pa.ArrowException, TypeError, ValueError):
            return False
        with np.errstate(over="ignore", invalid="ignore"):
            if self.all_numeric:
                out[:] = T
            else:
                out[:, self.num_idx] = T
        return True

    def expect(self, rows: int) -> None:
        """Reserve X for about ``rows`` rows before the first batch (an estimate from the file's size): one
        ``np.empty`` (or a sparse file), whose pages become resident only once written, instead of growing by
        ``resize``, which zero-fills every row it adds before the batch overwrites it."""
        if self.xfile is not None:
            if self.reserved == 0 and rows > 0:
                self.xfile.reserve(rows)
                self.reserved = rows
        elif self.X.shape[0] == 0 and rows > 0:
            self.X = np.empty((rows, self.X.shape[1]), dtype=np.float32)

    def _rows(self, n: int) -> np.ndarray:
        """The next ``n`` rows of X, growing it geometrically in place past the reserved rows (``resize``
        reallocates: large blocks are remapped, not copied); with a file, a block in memory that ``add`` writes
        into the file's next rows (the file lengthened past the reserved rows)."""
        if self.xfile is not None:
            if self.n + n > self.reserved:
                self.reserved = max(self.n + n, 2 * self.reserved)
                self.xfile.reserve(self.reserved)
            if self.block is None or self.block.shape[0] < n:
                self.block = np.empty((n, len(self.cols)), dtype=np.float32)
            return self.block[:n]
        if self.n + n > self.X.shape[0]:
            rows = max(self.n + n, 2 * self.X.shape[0])
            self.X.resize((rows, self.X.shape[1]), refcheck=False)
        return self.X[self.n:self.n + n]

    def discard(self) -> None:
        """Drop X and remove its file (a failed parse leaves nothing behind)."""
        self.X = self.block = None
        if self.xfile is not None:
            self.xfile.discard()

    def _numeric(self, S: np.ndarray, batch: pa.RecordBatch, where) -> None:
        """Finiteness check and running statistics of a batch's numeric columns, given as the rows of a float32
        block S (k, n), vectorised over the columns: a 40,000-column file costs no Python work per cell or per
        statistic."""
        n = S.shape[1]
        with np.errstate(invalid="ignore"):
            lo, hi = np.fmin.reduce(S, axis=1), np.fmax.reduce(S, axis=1)      # NaN (missing) ignored
        if np.isinf(lo).any() or np.isinf(hi).any():
            self._not_finite(S.T, batch, where)
        nan = np.isnan(S)
        miss = np.count_nonzero(nan, axis=1)
        D = S.astype(np.float64)
        if miss.any():
            np.copyto(D, 0.0, where=nan)
        del nan
        cnt = n - miss
        mean = D.sum(axis=1) / np.maximum(cnt, 1)
        D -= mean[:, None]                                   # a missing cell contributes mean**2
        m2 = np.einsum("ij,ij->i", D, D) - miss * mean * mean
        del D
        st = self.stats
        st["missing"] += miss
        seen = cnt > 0
        total = st["n"] + cnt
        delta = mean - st["mean"]
        frac = np.where(seen, cnt / np.maximum(total, 1), 0.0)
        st["mean"] = np.where(seen, st["mean"] + delta * frac, st["mean"])
        st["m2"] = np.where(seen, st["m2"] + np.maximum(m2, 0.0) + delta * delta * st["n"] * frac, st["m2"])
        st["n"] = total
        st["lo"] = np.fmin(st["lo"], lo)
        st["hi"] = np.fmax(st["hi"], hi)

    def _not_finite(self, V: np.ndarray, batch: pa.RecordBatch, where) -> None:
        """422 for the first infinite cell (or a value float32 cannot hold), naming its row and column."""
        i, t = (int(v) for v in np.argwhere(np.isinf(V))[0])
        name = self.cols[self.num_idx[t]].name
        v = batch.column(name)[i].as_py()
        what = "infinite" if math.isinf(float(v)) else f"{float(v)!r} is too large for float32"
        raise ParseError(f"{where(i)}, {self._col(name)}: value is not finite ({what})")

    def finish(self) -> tuple[np.ndarray, list, pa.ChunkedArray]:
        if not self.y_chunks:
            if self.dropped:
                raise ParseError(f"every row has a missing target value ({self.dropped} dropped); nothing is left")
            raise ParseError("the file has a header row but no data rows")
        st = {k: v.tolist() for k, v in self.stats.items()}        # Python numbers: no per-value conversion
        for t, j in enumerate(self.num_idx.tolist()):
            c = self.cols[j]
            c.n, c.missing, c.mean, c.m2 = st["n"][t], st["missing"][t], st["mean"][t], st["m2"][t]
            c.lo, c.hi = st["lo"][t], st["hi"][t]
        X, self.X, self.block = self.X, None, None
        if self.xfile is None:
            X.resize((self.n, X.shape[1]), refcheck=False)        # shrinks in place
        else:
            del X
            X = self.xfile.map(self.n)                            # the header names n rows; the file is cut there
        cats = [(j, *again) for j, c in enumerate(self.cols) if type(c) is _Categorical
                for again in [c.finish()] if again is not None]
        # categorical columns whose ranks changed after rows were written: row blocks that stay in the CPU cache
        # while each such column is written into them (one pass over X instead of one per column)
        step = max(1, (1 << 19) // (4 * X.shape[1]))
        for a in range(0, self.n, step):
            rows = X[a:a + step]
            for j, codes, perm in cats:
                rows[:, j] = perm[codes[a:a + step]]
        ycol = pa.chunked_array(self.y_chunks)
        return X, self.cols, ycol


def _kind_of(t: pa.DataType) -> str | None:
    """'numeric' | 'boolean' | 'categorical' for an Arrow type, None when it must be read as text first."""
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "numeric"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "categorical"
    if pa.types.is_dictionary(t):       # as its values are typed: a Parquet file stores the same column decoded
        return _kind_of(t.value_type)
    return None


def _profiles(cols, opts: TableOptions, names: list[str]) -> list[dict]:
    by_name = {c.name: c for c in cols}
    out = []
    for n in names:
        if n in by_name:
            out.append(by_name[n].profile(full=True))
        elif n in opts.pandas_index:
            out.append({"name": n, "type": "ignored", "reason": "the row index pandas wrote with the data "
                                                                "(read back as the index, not as a column)"})
        elif n in opts.ignore:
            out.append({"name": n, "type": "ignored"})
    return out


def _target_values(y: pa.ChunkedArray, text: bool, opts: TableOptions) -> tuple[np.ndarray, tuple | None]:
    """The target as numbers when it is cleanly numeric, else as the strings written (``007`` stays ``007``),
    with their sorted labels and codes (see ``_strings``)."""
    if not text:
        if pa.types.is_boolean(y.type):
            return np.asarray(y.to_numpy(), dtype=bool), None
        if not (pa.types.is_integer(y.type) or pa.types.is_floating(y.type) or pa.types.is_decimal(y.type)):
            return _strings(pc.cast(y, pa.string()))
        return np.asarray(y.to_numpy(), dtype=np.float64 if pa.types.is_decimal(y.type) else None), None
    num = None
    comma = opts.decimal == ","           # decimal commas: 2,5 is the number 2.5 and 2.5 is text
    if opts.decimal_open and pc.any(pc.match_substring(y, ",")).as_py() and \
            pc.all(pc.match_substring_regex(y, _COMMA_NUMBERS)).as_py():
        comma = True                      # the first decimal comma (past the sampled lines) is in the target
    if not (comma and pc.any(pc.match_substring(y, ".")).as_py()):
        try:
            pc.cast(_decimal_point(y.slice(0, 1000), comma), pa.float64())   # text labels fail here, cheaply
            num = pc.cast(_decimal_point(y, comma), pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    if num is not None and (opts.regression or not pc.any(pc.match_substring_regex(y, _LEADING_ZERO)).as_py()):
        v = num.to_numpy()
        if np.all(np.isfinite(v)) and np.all(np.mod(v, 1) == 0):
            if np.all(np.abs(v) < 2**53):
                return v.astype(np.int64), None
            if not opts.regression:     # integers past float64's exact ones: labels as written, never rounded
                try:
                    return np.asarray(pc.cast(y, pa.int64()).to_numpy()), None
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    return _strings(y)  # past int64 too, or spelled 1e20: the text
        return v, None
    return _strings(y)


def _decimal_point(y: pa.ChunkedArray, comma: bool) -> pa.ChunkedArray:
    """Numbers written with a decimal comma, respelled with a point."""
    return pc.replace_substring(y, ",", ".") if comma else y


def _strings(y: pa.ChunkedArray) -> tuple[np.ndarray, tuple]:
    """A text column without nulls as its sorted distinct values (a NumPy str array), and (those values, each
    row's index into them) as ``np.unique(..., return_inverse=True)`` gives, through its dictionary (hashing, not
    sorting every row; the rows' labels themselves are never built: ``Table.y_rows``)."""
    enc = y.combine_chunks().dictionary_encode()
    values = enc.dictionary.to_pylist() or [""]
    order = sorted(range(len(values)), key=values.__getitem__)
    rank = np.empty(len(values), dtype=np.int64)
    rank[order] = np.arange(len(values))
    labels = np.array([values[i] for i in order], dtype=str)
    codes = rank[np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)]
    return labels, (labels, codes)


def check_names(names: list[str], what: str = "header") -> None:
    """422 for an empty name or a name given twice. ``names`` are already compared as predict compares them
    (``text_key``: trimmed, NFC), so ``' a'`` and ``'a '`` are the same name, as in a CSV header."""
    if "" in names:
        i = names.index("")
        raise ParseError(f"header column {i + 1} has no name" if what == "header" else f"{what}[{i}] is empty")
    if len(set(names)) != len(names):
        dup = next(n for n, k in Counter(names).items() if k > 1)
        raise ParseError(f"{what} names column {dup!r} more than once (names are compared with surrounding "
                         f"spaces trimmed)")


def _check_columns(names: list[str], opts: TableOptions) -> None:
    """Limits, empty and duplicate names, and form fields naming columns that do not exist (linear time)."""
    if len(names) > opts.max_columns:
        raise ParseError(f"the file has {len(names)} columns, more than the limit of {opts.max_columns} "
                         f"(MLP_MAX_COLUMNS)")
    check_names(names)
    present = set(names)
    for fld in ("categorical", "ignore"):
        unknown = [c for c in getattr(opts, fld) if c not in present]
        if unknown:
            raise ParseError(f"{fld}: column {unknown[0]!r} not found; the header has: {_header_list(names)}")


def _header_list(names: list[str]) -> str:
    return ", ".join(names[:50]) + (f", ... ({len(names)} columns)" if len(names) > 50 else "")


def _target_name(names: list[str], opts: TableOptions) -> str:
    if opts.target in (None, ""):
        t = next((n for n in reversed(names) if n not in opts.pandas_index), names[-1])
    elif opts.target in names:
        t = opts.target
    else:
        raise ParseError(f"target column {opts.target!r} not found; the header has: {_header_list(names)}")
    if t in opts.ignore:
        raise ParseError(f"ignore: {t!r} is the target column; it cannot be ignored")
    return t


# ----------------------------------------------------------------------------- CSV

def _open_raw(path: Path | Spool, gz: bool, limit: int | None = None):
    """The file's bytes (decompressed, at most ``limit`` of them: past it a 413); a spool's reader waits for the
    bytes still arriving."""
    if not isinstance(path, Spool):
        f = gzip.open(path, "rb") if gz else open(path, "rb")
    else:
        f = raw = path.reader()
        if gz:
            f = gzip.GzipFile(fileobj=raw, mode="rb")
            f.myfileobj = raw               # closing f closes raw too
    return io.BufferedReader(_Inflated(f, limit), buffer_size=1 << 20) if gz and limit is not None else f


class _Inflated(io.RawIOBase):
    """A gzip stream that counts what it inflates and stops with a 413 once that passes ``limit`` bytes: a small
    .csv.gz must not become gigabytes of text (a decompression bomb), as an .npz is refused by its declared size."""

    def __init__(self, f, limit: int):
        self._f, self.limit, self.count = f, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self._f.readinto(b)
        self.count += n
        if self.count > self.limit:
            raise TooLarge(f"the .csv.gz decompresses to more than {self.limit:,} bytes, the limit "
                           f"(MLP_MAX_UPLOAD_BYTES); nothing is stored")
        return n

    def close(self) -> None:
        self._f.close()
        super().close()


def _nul_error(path: Path, gz: bool, bom: int, encoding: str, limit: int | None) -> ParseError:
    """A 422 naming the first line that holds a NUL character: text in an encoding other than the one read (UTF-16
    or UTF-32 without a byte-order mark), or not text at all."""
    line = 0
    raw = _open_raw(path, gz, limit)
    raw.read(bom)
    with io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline="") as f:
        for line, text in enumerate(f, 1):
            if "\x00" in text:
                break
    return ParseError(f"line {line}: the text holds a NUL character (byte 0), so it is not {encoding_label(encoding)}"
                      f"; UTF-16 or UTF-32 without a byte-order mark looks like this: name the encoding in the form "
                      f"field encoding (e.g. utf-16-le, utf-16-be)")


def _utf8_error(path: Path, gz: bool, bom: int, encoding: str, limit: int | None = None) -> ParseError:
    """A 422 naming the byte offset of the first byte the encoding cannot decode."""
    dec = codecs.getincrementaldecoder(encoding)()
    offset = 0
    with _open_raw(path, gz, limit) as f:
        f.read(bom)
        offset = bom
        while chunk := f.read(1 << 20):
            try:
                dec.decode(chunk)
            except UnicodeDecodeError as e:
                if not isinstance(e.object, (bytes, bytearray)) or e.start < 0:
                    break
                # the decoder may hold back bytes of the previous chunk; e.start is within the joined buffer
                held = len(e.object) - len(chunk)
                pos = offset - held + e.start
                return ParseError(f"the file is not {encoding_label(encoding)} text (byte offset {pos}); name its "
                                  f"encoding in the form field encoding, e.g. cp1252 or latin-1")
            except UnicodeError:
                break
            offset += len(chunk)
    return ParseError(f"the file is not {encoding_label(encoding)} text; name its encoding in the form field "
                      f"encoding, e.g. cp1252 or latin-1")


def _sample(path: Path, gz: bool, opts: TableOptions) -> tuple[str, int, str, bool]:
    """(decoded sample that holds at least the header line, BOM length, codec, whether it is the whole file)."""
    with _open_raw(path, gz, opts.max_decoded_bytes) as f:
        try:
            raw = f.read(_SNIFF_BYTES)
        except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise ParseError(f"not a valid .gz file ({e})") from None
        looks = None if gz else binary_format(raw)
        if looks is not None:
            raise ParseError(f"the file looks like {looks[0]}, not CSV text: {looks[1]}")
        enc, bom = detect_encoding(raw, opts.encoding)
        if b"\x00" in raw and not enc.startswith(("utf-16", "utf-32")):
            raise _nul_error(path, gz, bom, enc, opts.max_decoded_bytes)
        dec = codecs.getincrementaldecoder(enc)()
        eof = len(raw) < _SNIFF_BYTES
        try:
            text = dec.decode(raw[bom:], final=eof)
            while not eof:
                body = text.lstrip("\r\n")
                if "\n" in body or "\r" in body or len(raw) >= _MAX_HEADER_BYTES:
                    break
                more = f.read(_SNIFF_BYTES)
                if not more:
                    text += dec.decode(b"", final=True)
                    eof = True
                    break
                raw += more
                text += dec.decode(more)
        except UnicodeError:
            raise _utf8_error(path, gz, bom, enc, opts.max_decoded_bytes) from None
        except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise ParseError(f"not a valid .gz file ({e})") from None
    return text, bom, enc, eof


def _csv_reader_text(path: Path, gz: bool, bom: int, encoding: str, limit: int | None) -> io.TextIOBase:
    raw = _open_raw(path, gz, limit)
    raw.read(bom)
    return io.TextIOWrapper(raw, encoding=encoding, newline="")


class _CsvDiagnosis:
    """Error-path helpers: re-scan the text with the csv module to name a line (never used on success)."""

    def __init__(self, path, gz, bom, encoding, delimiter, header_line, width, limit):
        self.args, self.limit = (path, gz, bom, encoding, limit), limit
        self.delimiter, self.header_line, self.width = delimiter, header_line, width

    def _records(self) -> Iterator[tuple[int, int, list[str]]]:
        """(first line, last line, fields) of every non-empty data record."""
        with _csv_reader_text(*self.args) as f:
            reader = csv.reader(f, delimiter=self.delimiter, strict=True)
            last = 0
            for row in reader:
                first, last = last + 1, reader.line_num
                if first <= self.header_line or not row or (len(row) == 1 and not row[0].strip(" \t")):
                    continue                                # blank lines, also of spaces (blank_space_lines)
                yield first, last, row

    def line_of(self, k: int) -> str:
        """'line L' of the k-th (0-based) data record."""
        try:
            for i, (first, _, _) in enumerate(self._records()):
                if i == k:
                    return f"line {first}"
        except (csv.Error, UnicodeDecodeError):
            pass
        return f"data row {k + 1}"

    def structure_error(self) -> ParseError | None:
        """The first row with the wrong number of fields, or an unterminated quote."""
        first = self.header_line
        try:
            for first, _, row in self._records():
                if len(row) != self.width:
                    return ParseError(f"line {first}: expected {self.width} columns (as in the header), "
                                      f"found {len(row)}")
        except csv.Error as e:
            if "unexpected end of data" in str(e) or "EOF" in str(e):
                start = self._open_quote_line()
                return ParseError(f"line {start}: unterminated quote: a field opens with \" and is never closed")
            return ParseError(f"line {first + 1}: {e}")
        return None

    def _open_quote_line(self) -> int:
        """Line on which the last record (the one the unterminated quote swallows) starts."""
        start, line, inside = 1, 0, False
        with _csv_reader_text(*self.args) as f:
            for text in f:
                line += 1
                if not inside:
                    start = line
                inside ^= text.count('"') % 2 == 1
        return start


def read_csv(path: Path, opts: TableOptions, *, gz: bool = False) -> Table:
    """Read a delimited text file with a header row into a Table."""
    text, bom, enc, whole = _sample(path, gz, opts)
    if "\x00" in text:                  # a U+0000 in UTF-16/32
        raise _nul_error(path, gz, bom, enc, opts.max_decoded_bytes)
    if not text.strip():
        raise ParseError("the file is empty")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if not whole and len(lines) > 1:
        lines = lines[:-1]              # the sample may end inside a line
    blank = 0
    while blank < len(lines) and not lines[blank].strip():
        blank += 1
    excel_sep = sep_line(lines[blank]) if blank < len(lines) else None
    sep_at = blank + 1
    if excel_sep is not None:           # Excel's 'sep=;' line: the delimiter, and the header is on the next line
        blank += 1
        while blank < len(lines) and not lines[blank].strip():
            blank += 1
    sample = [ln for ln in lines[blank:blank + 50] if ln.strip()]
    if not sample:
        raise ParseError(f"line {sep_at}: a 'sep=' line and no header line after it")
    d = _delimiter(opts, excel_sep, sample)
    try:
        rows = list(csv.reader(sample, delimiter=d))
    except csv.Error:
        rows = list(csv.reader(sample[:1], delimiter=d)) if sample else []
    if not rows:
        raise ParseError("line 1: the header row could not be read")
    if '"' in sample[0] and any("\n" in h for h in next(csv.reader(io.StringIO("\n".join(sample[:50])),
                                                                delimiter=d), [])):  # a quoted name spans lines
        raise ParseError(f"line {blank + 1}: a column name in the header holds a line break (a quoted field "
                         f"spans lines); column names must be on the header line")
    header = [text_key(h) for h in rows[0]]        # trimmed, Unicode NFC: as predict compares names
    hint = unnamed_column_hint(header)
    if hint is not None:
        raise ParseError(f"line {blank + 1}: header column {header.index('') + 1} has no name; {hint}")
    _number_marks(opts, rows[1:], d)
    header_line = blank + 1
    if len(header) < 2:
        how = (f"split on the delimiter {DELIMITER_NAMES.get(d, repr(d))} given in the form field delimiter; check "
               f"it" if opts.delimiter else "delimiters tried: comma, semicolon, tab, pipe; set the form field "
               "delimiter")
        raise ParseError(f"the header row must name at least one feature column and the target column; found "
                         f"{len(header)} column(s) ({how})")
    _check_columns(header, opts)
    target = _target_name(header, opts)
    diag = _CsvDiagnosis(path, gz, bom, enc, d, header_line, len(header), opts.max_decoded_bytes)
    include = [h for h in header if h not in opts.ignore] if opts.ignore else []     # []: every column
    forced: dict[str, pa.DataType] = {target: pa.string()}
    forced.update({c: pa.string() for c in opts.categorical if c != target})
    while True:
        try:
            return _read_csv_segments(path, gz, enc, d, header, header_line, include, target, forced, opts, diag)
        except _Retype as r:
            if opts.decimal_open and COMMA_NUMBER.fullmatch(r.value):
                opts.decimal, opts.decimal_open = ",", False    # a decimal comma past the sample: read again
            elif (r.value in opts.na_values or not r.value or grouped_cell(r.value, opts.decimal, opts.thousands)) \
                    and r.column not in opts.blank_cells:
                opts.blank_cells.add(r.column)      # '  ', ' NA ' or '1.234' past the first segment: text, then numbers
                forced[r.column] = pa.string()
            else:
                opts.blank_cells.discard(r.column)
                forced[r.column] = r.to


def _delimiter(opts: TableOptions, excel_sep: str | None, sample: list[str]) -> str:
    """The form field ``delimiter`` (a character or its name), else Excel's ``sep=`` line, else sniffed."""
    if opts.delimiter is None and excel_sep is not None:
        return excel_sep
    if not opts.delimiter:
        return sniff_delimiter(sample)
    d = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}.get(opts.delimiter, opts.delimiter)
    if len(d) != 1 or d in "\r\n":
        raise ParseError(f"delimiter must be one character (e.g. , ; | or tab), got {opts.delimiter!r}")
    if d == '"':
        raise ParseError("delimiter cannot be '\"', the quote character of CSV fields")
    return d


def _number_marks(opts: TableOptions, rows: list[list[str]], d: str) -> None:
    """Settle ``opts.decimal`` (the form field, the other mark of ``thousands``, or sniffed from the sample rows;
    ``decimal_open`` while the sample could not tell) and check it against ``thousands`` and the delimiter."""
    if opts.thousands is not None:
        if opts.decimal is None and opts.thousands in DECIMALS:    # 1.234,5 or 1,234.5: the other mark
            opts.decimal = "," if opts.thousands == "." else "."
        if opts.thousands == opts.decimal:
            raise ParseError(f"thousands {opts.thousands!r} is also the decimal mark; set the form field decimal")
    if opts.decimal is None:
        opts.decimal, decided = sniff_decimal(rows, d)
        opts.decimal_open = not decided
    elif opts.decimal not in DECIMALS:
        raise ParseError(f"decimal must be '.' or ',', got {opts.decimal!r}")
    if opts.decimal == d:
        raise ParseError(f"decimal {opts.decimal!r} is also the delimiter; set the form field delimiter")


class _Retype(Exception):
    """A column's type inferred from the first block does not hold for a later value: read again as ``to``."""

    def __init__(self, column: str, to: pa.DataType, value: str = ""):
        super().__init__(column)
        self.column, self.to, self.value = column, to, value


_CONVERSION = re.compile(r"In CSV column #(\d+): CSV conversion error to (\w+)(?:: invalid value '(.*)')?", re.S)
_COMMA_NUMBERS = r"^\s*[+-]?[0-9]+(?:,[0-9]+)?(?:[eE][+-]?[0-9]+)?\s*$"


def _segments(path: Path, gz: bool, enc: str, limit: int | None) -> Iterator[tuple[memoryview, bool]]:
    """The file as UTF-8 byte segments of about SEGMENT_BYTES, each cut after a line break outside quotes (an
    even number of ``"`` before the cut); yields (segment, whether it holds a quote)."""
    if not gz and enc == "utf-8":
        yield from _mapped_segments(path)
        return
    transcode = None if enc == "utf-8" else codecs.getincrementaldecoder(enc)()
    with _open_raw(path, gz, limit) as f:
        carry = b""
        while True:
            try:
                chunk = f.read(SEGMENT_BYTES)
                if transcode is not None:
                    chunk = transcode.decode(chunk, final=not chunk).encode("utf-8")
            except UnicodeError:
                raise _utf8_error(path, gz, 0, enc, limit) from None
            except (pa.ArrowException, OSError, EOFError, zlib.error) as e:
                what = "not a valid .gz file" if gz else "the file could not be read"
                raise ParseError(f"{what} ({str(e).splitlines()[0]})") from None
            if b"\x00" in chunk:
                raise _nul_error(path, gz, 0, enc, limit)
            if not chunk:
                if carry.strip():
                    yield memoryview(carry), b'"' in carry
                return
            buf = carry + chunk if carry else chunk
            cut = buf.rfind(b"\n") + 1
            quotes = buf.count(b'"', 0, cut) if cut and buf.find(b'"', 0, cut) >= 0 else 0
            while quotes % 2 and cut:                  # the cut falls inside a quoted field: cut earlier
                prev = buf.rfind(b"\n", 0, cut - 1) + 1
                quotes -= buf.count(b'"', prev, cut)
                cut = prev
            if cut == 0:
                carry = buf
                continue
            view = memoryview(buf)
            carry = bytes(view[cut:])
            yield view[:cut], quotes > 0


def _mapped_segments(path: Path | Spool) -> Iterator[tuple[memoryview, bool]]:
    """``_segments`` of a plain UTF-8 file, or of a spool still arriving, without copying its bytes: each segment is
    a view of a read-only mapping of the file's pages (the page cache), which pyarrow parses in place, and the next
    segment starts where this one was cut (no carried bytes, no concatenation). The end of the file is cut after
    its last line break, and text after it is a last line unless it is blank."""
    spool = path if isinstance(path, Spool) else None
    with open(spool.path if spool else path, "rb") as f:
        size = None if spool else os.fstat(f.fileno()).st_size
        start = 0
        while True:
            want = SEGMENT_BYTES
            while True:                                 # grow the segment until a cut is found or the file ends
                if spool is not None:
                    spool.wait(start, want)             # the bytes have arrived, or the part ended (or failed)
                    done = spool.state == "done"        # read before the size: once done, the size is final
                    total = spool.size
                    whole = done and start + want >= total
                    end = min(total, start + want)
                else:
                    end = min(size, start + want)
                    whole = end == size
                if end <= start:
                    return
                base = start - start % mmap.ALLOCATIONGRANULARITY
                try:
                    mm = mmap.mmap(f.fileno(), end - base, access=mmap.ACCESS_READ, offset=base)
                except (OSError, ValueError) as e:
                    raise ParseError(f"the file could not be read ({e})") from None
                a, b = start - base, end - base
                if mm.find(b"\x00", a, b) >= 0:
                    raise _nul_error(path, False, 0, "utf-8", None)
                cut = mm.rfind(b"\n", a, b) + 1
                if whole:                               # the rest of the file: its last line, unless blank
                    if mm[max(cut, a):b].strip():
                        cut = b
                    elif cut <= a:
                        return
                    quotes = int(mm.find(b'"', a, cut) >= 0)
                    break
                quotes = 0
                if cut > a and mm.find(b'"', a, cut) >= 0:
                    u8 = np.frombuffer(mm, dtype=np.uint8)
                    quotes = int(np.count_nonzero(u8[a:cut] == 0x22))
                    while quotes % 2 and cut > a:       # the cut falls inside a quoted field: cut earlier
                        prev = max(mm.rfind(b"\n", a, cut - 1) + 1, a)
                        quotes -= int(np.count_nonzero(u8[prev:cut] == 0x22))
                        cut = prev
                    del u8
                if cut > a:
                    break
                mm.close()
                want *= 2                               # no line break outside quotes yet: a longer segment
            yield memoryview(mm)[a:cut], quotes > 0
            del mm
            start = base + cut
            if whole and cut == b:
                return


def _expected_bytes(path: Path | Spool, gz: bool) -> int | None:
    """The file's size, or the size announced for a spool still arriving (None: unknown, or compressed)."""
    if gz:
        return None
    if isinstance(path, Spool):
        return path.expected
    try:
        return path.stat().st_size
    except OSError:
        return None


def _fixed_types(schema: pa.Schema, forced: dict) -> dict:
    """Column types for the segments after the first: what the first inferred, widened so that later segments
    parse the same way (integers and all-empty columns as float64)."""
    out = dict(forced)
    for f in schema:
        if f.name in out:
            continue
        if pa.types.is_integer(f.type) or pa.types.is_null(f.type):
            out[f.name] = pa.float64()
        else:
            out[f.name] = f.type
    return out


def _segment_tables(path, gz, enc, d, header, header_line, include, forced, opts, diag) -> Iterator[tuple]:
    """(pyarrow table, column kinds or None) of each segment; the first segment's types (inferred) are fixed for
    the rest (integers widened to float). While the decimal mark is open (``opts.decimal_open``), a text column
    of the first segment holding only integers and decimal-comma numbers raises ``_Retype`` with one of them."""
    types = dict(forced)
    first = True
    block = max(BLOCK_BYTES, 2 * sum(len(h.encode()) + 3 for h in header))   # the header fits in the first block
    for seg, quoted in _segments(path, gz, enc, opts.max_decoded_bytes):
        ro = pacsv.ReadOptions(column_names=header, skip_rows=header_line if first else 0,
                               block_size=block)
        po = pacsv.ParseOptions(delimiter=d, newlines_in_values=quoted)
        co = pacsv.ConvertOptions(column_types=types, null_values=list(opts.na_values), strings_can_be_null=True,
                                  quoted_strings_can_be_null=True, include_columns=include, timestamp_parsers=[],
                                  decimal_point=opts.decimal)
        table = _read_segment(seg, ro, po, co, header, path, gz, enc, diag)
        hexed = hex_integer_columns(table, seg) if first else []
        if hexed:           # '0x10' read as 16: read as float64 they fail, and _Retype makes them text
            co.column_types = {**types, **{n: pa.float64() for n in hexed}}
            _read_segment(seg, ro, po, co, header, path, gz, enc, diag)
        nbytes = len(seg)
        del seg
        kinds = None
        if first:
            kinds, texty = {}, {}
            for f in table.schema:
                if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type):
                    raise _utf8_error(path, gz, 0, enc, opts.max_decoded_bytes)
                k = "numeric" if pa.types.is_null(f.type) else _kind_of(f.type)
                if k is None:
                    raise _Retype(f.name, pa.string())      # dates and times: categorical, exactly as written
                if k == "categorical" and (f.name not in forced or f.name in opts.blank_cells):
                    if opts.decimal_open:
                        _decimal_commas(table.column(f.name), f.name)
                    as_values = text_as_values(table.column(f.name), opts.na_values, opts.decimal,
                                               opts.thousands)
                    if as_values is not None:               # numbers or true/false with blank or ' NA ' cells
                        k = texty[f.name] = as_values[0]
                kinds[f.name] = k
            types = _fixed_types(table.schema, forced)      # texty columns stay text for pyarrow: '  ' is no number
            first = False
        for name, kind in texty.items():
            as_values = text_as_values(table.column(name), opts.na_values, opts.decimal, opts.thousands)
            if as_values is None or as_values[0] != kind:   # a real text value further down: categorical after all
                raise _Retype(name, pa.string())
            table = table.set_column(table.schema.get_field_index(name), name, as_values[1])
        yield table, kinds, nbytes                          # chunked (one chunk per block): _Builder walks them
        del table


def _decimal_commas(col: pa.ChunkedArray, name: str) -> None:
    """Raise ``_Retype`` with a decimal-comma number when every value of the text column is a number written with
    a decimal comma or an integer (``2,5``, ``7``)."""
    present = col.drop_null()
    if len(present) and pc.all(pc.match_substring_regex(present, _COMMA_NUMBERS)).as_py():
        commas = present.filter(pc.match_substring(present, ","))
        if len(commas):
            raise _Retype(name, pa.string(), commas[0].as_py().strip())


_END = object()


def _ahead(items: Iterator) -> Iterator:
    """The items of ``items``, each produced in a thread while the consumer works on the previous one (pyarrow
    reads segment k+1 while segment k is converted); the producer's exceptions are raised here."""
    q: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_END, None))
        except BaseException as exc:            # noqa: BLE001 - re-raised in the consumer
            put((None, exc))

    threading.Thread(target=produce, name="csv-segments", daemon=True).start()
    try:
        while True:
            item, exc = q.get()
            if exc is not None:
                raise exc
            if item is _END:
                return
            yield item
            del item
    finally:
        stop.set()                              # the producer ends after the segment it is reading


def _read_csv_segments(path, gz, enc, d, header, header_line, include, target, forced, opts, diag) -> Table:
    """Read the data lines segment by segment with pyarrow's multi-threaded reader, the next segment read while
    this one is converted: memory holds two segments' Arrow tables next to the float32 X built so far."""
    builder = None
    last = None
    total = _expected_bytes(path, gz)
    try:
        for table, kinds, nbytes in _ahead(_segment_tables(path, gz, enc, d, header, header_line, include, forced,
                                                           opts, diag)):
            if kinds is not None:
                builder = _Builder(header, target, opts, kinds, diag.line_of,
                                   na_text=frozenset(opts.na_values) | {""})
                if total and table.num_rows and nbytes:
                    # rows of the whole file at the first segment's bytes per row, a little over (a row takes at
                    # least one byte per column)
                    rows = min(int(total * table.num_rows / nbytes * 1.02) + 1024, total // len(header) + 1)
                    builder.expect(rows)
            if table.num_rows:
                last = table
                builder.add(table)                    # the whole segment in one step, its chunks as they are
            del table
        if builder is None or last is None:
            raise ParseError("the CSV has a header row but no data rows")
        _check_unterminated(last, diag)
        del last
        X, cols, y = builder.finish()
        y, codes = _target_values(y, True, opts)
    except BaseException:
        if builder is not None:
            builder.discard()
        raise
    return Table(X=X, feature_names=builder.features, columns=_profiles(cols, opts, header), target=target,
                 y=y, y_codes=codes, n_dropped=builder.dropped, x_file=builder.xfile and builder.xfile.path)


def _read_segment(seg, ro, po, co, header, path, gz, enc, diag) -> pa.Table:
    """One segment through ``pyarrow.csv.read_csv``; its errors become 422s naming the line, or a re-read."""
    try:
        return pacsv.read_csv(pa.BufferReader(pa.py_buffer(seg)), read_options=ro, parse_options=po,
                              convert_options=co)
    except pa.ArrowInvalid as e:
        msg = str(e)
        if msg.startswith("CSV parse error") and seg is not (spaced := blank_space_lines(seg)):
            return _read_segment(spaced, ro, po, co, header, path, gz, enc, diag)   # lines of spaces: blank lines
        m = _CONVERSION.search(msg)
        if m:
            if "invalid UTF8" in msg or m.group(2) == "string":
                raise _utf8_error(path, gz, 0, enc, diag.limit) from None
            raise _Retype(header[int(m.group(1))], pa.string(), (m.group(3) or "").strip()) from None
        if "UTF8" in msg:
            raise _utf8_error(path, gz, 0, enc, diag.limit) from None
        found = diag.structure_error()
        if found is not None:
            raise found from None
        raise ParseError(f"the CSV could not be parsed: {msg.splitlines()[0]}") from None
    except pa.ArrowException as e:
        raise ParseError(f"the CSV could not be parsed: {str(e).splitlines()[0]}") from None


def _check_unterminated(table: pa.Table, diag: _CsvDiagnosis) -> None:
    """An unterminated quote swallows the rest of the file into one value: confirm with the csv module."""
    text = pa.string()
    for i in [i for i, t in enumerate(table.schema.types) if t == text]:
        col = table.column(i)
        if len(col):
            v = col[len(col) - 1]
            if v.is_valid and ("\n" in v.as_py() or "\r" in v.as_py()):
                found = diag.structure_error()
                if found is not None:
                    raise found


# ----------------------------------------------------------------------------- Parquet and Arrow IPC

def _read_batches(schema: pa.Schema, batches: Iterator[pa.RecordBatch], opts: TableOptions, what: str) -> Table:
    names = [text_key(n) for n in schema.names]     # trimmed, NFC: as a CSV header's, as predict compares names
    if names != schema.names:
        schema = pa.schema([f.with_name(n) for f, n in zip(schema, names)], metadata=schema.metadata)
        batches = (b.rename_columns(names) for b in batches)
    if len(names) < 2:
        raise ParseError(f"the {what} file must have at least one feature column and the target column; found "
                         f"{len(names)}")
    _check_columns(names, opts)
    _ignore_pandas_index(schema, opts)
    target = _target_name(names, opts)
    kinds = {}
    for f in schema:
        if f.name == target or f.name in opts.ignore:
            continue
        k = "categorical" if f.name in opts.categorical else _kind_of(f.type)
        if k is None:
            if pa.types.is_temporal(f.type) or pa.types.is_null(f.type):
                k = "categorical" if pa.types.is_temporal(f.type) else "numeric"
            else:
                raise ParseError(f"column {names.index(f.name) + 1} ({f.name!r}) has type {f.type}, which is not "
                                 f"numeric, boolean or text; drop it with the form field ignore={f.name}")
        kinds[f.name] = k
    t = schema.field(target).type
    if not (_kind_of(t) or pa.types.is_null(t) or pa.types.is_temporal(t)):
        raise ParseError(f"target column {target!r} has type {t}; it must hold numbers, booleans, text or dates")
    builder = _Builder(names, target, opts, kinds, lambda k: f"row {k + 1}", trim_target=False)
    rows = decoded = 0
    try:
        for batch in batches:
            rows, decoded = rows + batch.num_rows, decoded + arrow_nbytes(batch)
            _check_decoded(opts, what, rows, len(names), decoded)
            cols = []
            for f, col in zip(batch.schema, batch.columns):
                if pa.types.is_dictionary(col.type):
                    col = col.cast(col.type.value_type)
                if pa.types.is_string_view(col.type):     # polars' Utf8View: text, as string is
                    col = col.cast(pa.string())
                if pa.types.is_null(col.type):
                    col = pa.nulls(len(col), pa.float64() if f.name != target else pa.string())
                elif f.name == target and pa.types.is_temporal(col.type):
                    col = pc.cast(col, pa.string())         # dates as classes, written as a CSV date would be
                cols.append(col)
            builder.add(pa.RecordBatch.from_arrays(cols, names=batch.schema.names))
        X, cols, y = builder.finish()
        text = pa.types.is_string(y.type) or pa.types.is_large_string(y.type)
        y, codes = _target_values(y, False, opts) if not text else _strings(y)
    except BaseException:
        builder.discard()
        raise
    return Table(X=X, feature_names=builder.features, columns=_profiles(cols, opts, names), target=target,
                 y=y, y_codes=codes, n_dropped=builder.dropped, x_file=builder.xfile and builder.xfile.path)


def _ignore_pandas_index(schema: pa.Schema, opts: TableOptions) -> None:
    """Add the columns a pandas-written file marks as its row index (``__index_level_0__``, a ``set_index`` column)
    to ``opts.ignore``, as ``pd.read_parquet`` leaves them out of the data: a row number is no feature (in a sorted
    export it is the label's order). A column named as the target stays."""
    index = [text_key(n) for n in pandas_index_columns(schema)]
    index = tuple(n for n in index if n != opts.target and n not in opts.ignore)
    if index:
        opts.ignore = (*opts.ignore, *index)
        opts.pandas_index = (*opts.pandas_index, *index)


def _check_decoded(opts: TableOptions, what: str, rows: int, width: int, decoded: int) -> None:
    """413 when a Parquet or Arrow file holds more than MLP_MAX_UPLOAD_BYTES once decoded: its arrays (rows x
    columns x 4 bytes of float32) or its decompressed columns, as an .npz is refused by its members' shapes. A few
    kilobytes of compressed constants can otherwise stand for gigabytes."""
    limit = opts.max_decoded_bytes
    if limit is None:
        return
    arrays = rows * width * 4
    if arrays > limit or decoded > limit:
        size = (f"{rows:,} rows x {width:,} columns: {arrays:,} bytes of arrays" if arrays > limit
                else f"{decoded:,} bytes of column data")
        raise TooLarge(f"the {what} file holds {size} once decoded, more than the limit of {limit:,} bytes "
                       f"(MLP_MAX_UPLOAD_BYTES); nothing is stored")


def read_parquet(path: Path, opts: TableOptions) -> Table:
    """Read a Parquet file row group by row group, after checking what its footer declares against the limit."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(str(path))
        schema = pf.schema_arrow
        _ignore_pandas_index(schema, opts)                  # not read at all
        cols = [n for n in schema.names if n not in opts.ignore]
        meta, keep = pf.metadata, set(cols)
        declared = sum(rg.column(j).total_uncompressed_size for rg in map(meta.row_group, range(meta.num_row_groups))
                       for j in range(rg.num_columns) if rg.column(j).path_in_schema.split(".")[0] in keep)
        _check_decoded(opts, "Parquet", meta.num_rows, len(cols), declared)
        return _read_batches(schema, pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=cols), opts,
                             "Parquet")
    except (pa.ArrowException, OSError) as e:
        raise ParseError(f"not a valid Parquet file ({str(e).splitlines()[0]})") from None


def read_arrow(path: Path, opts: TableOptions) -> Table:
    """Read an Arrow IPC file (Feather v2) or stream, batch by batch, memory-mapped."""
    import pyarrow.ipc as ipc

    with open(path, "rb") as f:
        if f.read(4) == b"FEA1":
            raise ParseError("Feather v1 files are not read; save it as Feather v2 (pyarrow.feather.write_feather, "
                             "pandas' DataFrame.to_feather) or as Parquet")
    try:
        with pa.memory_map(str(path)) as source:
            stream = arrow_ipc.stream_part(source.read_buffer())     # a file is read as its stream
            try:
                declared = arrow_ipc.declared_bytes(stream)          # before any batch is decompressed
            except ValueError as e:
                raise ParseError(f"not a valid Arrow IPC / Feather v2 file ({e})") from None
            _check_decoded(opts, "Arrow", 0, 0, declared)
            reader = ipc.open_stream(pa.BufferReader(stream))       # memory-mapped, batch by batch
            return _read_batches(reader.schema, iter(reader), opts, "Arrow")
    except (pa.ArrowException, OSError) as e:
        raise ParseError(f"not a valid Arrow IPC / Feather v2 file ({str(e).splitlines()[0]})") from None


__all__ = ["TableOptions", "Table", "read_csv", "read_parquet", "read_arrow", "NA_TOKENS", "DELIMITERS",
           "MAX_CATEGORIES"]
