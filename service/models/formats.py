"""Predict without JSON: ``.npy``, Arrow IPC stream, Parquet and CSV bodies; answers as JSON, ``.npy`` or Arrow.

Request bodies (chosen by ``Content-Type``; anything else is the JSON body ``{"inputs": ...}``):

- ``application/x-npy``: one 2-D numeric array (n, input_dim) (``np.save``; never unpickled);
- ``application/vnd.apache.arrow.stream``: an Arrow IPC stream, either input_dim numeric columns (in the
  model's feature order) or one fixed-size-list column of input_dim numbers per row;
- ``application/vnd.apache.parquet`` (also ``application/x-parquet``): a Parquet file, columns as for Arrow;
- ``text/csv``: a header line, then the rows (columns as for Arrow), in any dialect the upload reads (delimiter
  , ; tab |, a UTF-8 or UTF-16 BOM or ``charset=``, the upload's NA tokens).

Answers (chosen by ``Accept``; JSON when absent or ``*/*``; 406 for anything else):

- ``application/json``: the usual ``{"predictions": [...], "probabilities": [[...]]}``;
- ``application/x-npy``: classification -> the probabilities, float32 (n, n_classes) in the order of the
  model's ``classes``; regression -> the values, float32 (n,) or (n, n_outputs);
- ``application/vnd.apache.arrow.stream``: one record batch with ``prediction`` (labels as uploaded, or the
  values) and, for classification, ``probabilities`` (fixed-size list of n_classes float32).
"""

from __future__ import annotations

import codecs
import csv
import io
import math

import numpy as np

from core.preprocessing import text_key
from service import arrow_ipc
from service.bodies import ParseError
from service.dialects import (NA_TOKENS, arrow_nbytes, binary_format, blank_as_null, blank_space_lines,
                              detect_encoding, drop_pandas_index, encoding_label, first_not_number,
                              hex_integer_columns, known_codec, sep_line, sniff_decimal, sniff_delimiter,
                              text_as_values, unnamed_column_hint)
from service.errors import InvalidInput, NotAcceptable, TooLarge, UnsupportedMediaType, echo
from service.models import service

NPY = "application/x-npy"
ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"
CSV = "text/csv"
JSON = "application/json"
BODY_TYPES = {NPY: "npy", ARROW: "arrow", PARQUET: "parquet", "application/x-parquet": "parquet", CSV: "csv"}
ANSWER_TYPES = {JSON: "json", NPY: "npy", ARROW: "arrow"}
_SNIFF_BYTES = 64 << 10      # the start of a CSV body the delimiter is detected from


JSON_TYPES = ("", JSON, "text/plain")   # no Content-Type, JSON (also any */*+json) or text/plain: a JSON body


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header, lower case, without its parameters ("" for none)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def reads_as_json(media: str) -> bool:
    """Whether a body of this media type is read as JSON: none, JSON, any ``+json``, or text/plain."""
    return media in JSON_TYPES or media.endswith("+json")


def body_kind(content_type: str | None) -> str:
    """``npy``, ``arrow``, ``parquet``, ``csv``, or ``json`` (also for no Content-Type); 415 naming the supported
    types for anything else (a TSV, multipart or gzip body is not read as JSON)."""
    media = media_type(content_type)
    if media in BODY_TYPES:
        return BODY_TYPES[media]
    if reads_as_json(media):
        return "json"
    raise UnsupportedMediaType(f"Content-Type {echo(media)[1:-1]} is not supported: send {JSON} (the default), "
                               f"{', '.join(BODY_TYPES)}")


def check_json(content_type: str | None, *, what: str) -> None:
    """415 unless the Content-Type reads as JSON as predict's does (none, JSON, any +json, text/plain): for
    endpoints whose body is JSON only (``what`` names the endpoint in the detail)."""
    media = media_type(content_type)
    if not reads_as_json(media):
        raise UnsupportedMediaType(f"Content-Type {echo(media)[1:-1]} is not supported: {what} reads a JSON body "
                                   f"(send {JSON})")


def charset_of(content_type: str | None) -> str | None:
    """The ``charset=`` parameter of a Content-Type (e.g. ``text/csv; charset=cp1252``), or None."""
    for param in (content_type or "").split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip('"') or None
    return None


def check_encoding(content_encoding: str | None) -> None:
    """415 for a compressed body (Content-Encoding gzip, br, ...): bodies are read as sent."""
    if content_encoding and content_encoding.strip().lower() not in ("identity", ""):
        raise UnsupportedMediaType(f"Content-Encoding {echo(content_encoding)[1:-1]} is not supported: send the "
                                   "body uncompressed (a binary format such as .npy, Arrow or Parquet is compact)")


def answer_kind(accept: str | None) -> str:
    """The answer format the Accept header asks for (first supported media range); 406 when none is."""
    if not accept:
        return "json"
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in ANSWER_TYPES:
            return ANSWER_TYPES[media]
        if media in ("*/*", "application/*", ""):
            return "json"
    raise NotAcceptable(f"cannot answer in {accept!r}: Accept one of {', '.join(ANSWER_TYPES)}")


# ----------------------------------------------------------------------------- bodies -> float32 matrix

def _npy(body: bytes | bytearray, *, limit: int | None = None) -> np.ndarray:
    """A .npy body -> array, zero-copy over the body for plain numeric arrays (never unpickles). The header's
    shape is checked against the bytes that follow it before anything is allocated or reshaped."""
    fh = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    except (ValueError, EOFError) as exc:
        raise InvalidInput(f"the body is not a .npy file: {exc}") from None
    if dtype.hasobject or dtype.kind not in "biuf":
        raise InvalidInput(f"the .npy array must be numeric, got dtype {dtype}")
    if len(shape) not in (1, 2):
        raise InvalidInput(f"the .npy array must be 2-D (n, input_dim), got shape {shape}")
    if any(d < 0 for d in shape):
        raise InvalidInput(f"the .npy header's shape {shape} has a negative dimension")
    need = math.prod(shape) * dtype.itemsize          # Python integers: no overflow, whatever the header says
    offset = fh.tell()
    have = len(body) - offset
    if need > have:
        over = (f"; that is over the body limit of {limit:,} bytes (MLP_MAX_UPLOAD_BYTES)"
                if limit is not None and need > limit else "")
        raise InvalidInput(f"the .npy body is truncated: shape {shape} of {dtype} needs {need:,} bytes of data, "
                           f"got {have:,}{over}")
    if need < have:
        raise InvalidInput(f"the .npy body has {have - need:,} bytes after the data of shape {shape} "
                           f"({need:,} bytes of {dtype}): the header's shape does not match the data")
    if need == 0:
        raise InvalidInput(f"the .npy array of shape {shape} is empty: send at least one row")
    arr = np.frombuffer(body, dtype=dtype, count=need // dtype.itemsize, offset=offset)
    return arr.reshape(shape, order="F" if fortran else "C")


def _table_to_matrix(table, what: str) -> np.ndarray:
    """An Arrow table of numeric columns (or one fixed-size-list column) -> float32 (n, width)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if table.num_columns == 1 and pa.types.is_fixed_size_list(table.schema.field(0).type):
        col = table.column(0).combine_chunks()
        if col.null_count:
            raise InvalidInput(f"{what} column {table.column_names[0]!r} has a missing value at row "
                               f"{pc.index(pc.is_null(col), True).as_py() + 1}")
        width = col.type.list_size
        flat = col.flatten()
        if not (pa.types.is_floating(flat.type) or pa.types.is_integer(flat.type)):
            raise InvalidInput(f"{what} column {table.column_names[0]!r} must hold numbers, got {flat.type}")
        if flat.null_count:
            flat = pc.fill_null(pc.cast(flat, pa.float64()), float("nan"))
        return flat.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, width)
    out = np.empty((table.num_rows, table.num_columns), dtype=np.float32)
    for j, name in enumerate(table.column_names):
        col = table.column(j)
        if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type) or pa.types.is_boolean(col.type)
                or pa.types.is_null(col.type)):
            raise InvalidInput(f"{what} column {name!r} (column {j}) must be numeric, got {col.type}")
        # a missing value becomes NaN: the model's imputer fills it, or predict refuses it naming the cell
        out[:, j] = col.to_numpy(zero_copy_only=False) if not col.null_count else \
            pc.fill_null(pc.cast(col, pa.float64()), float("nan")).to_numpy(zero_copy_only=False)
    return out


def _decoded_over(limit: int, what: str, nbytes: int) -> TooLarge:
    return TooLarge(f"the {what} body decodes to more than {limit:,} bytes ({nbytes:,} so far), the limit "
                    "of a body (MLP_MAX_UPLOAD_BYTES): a compressed body may not hold more than an uncompressed "
                    "one; send fewer rows per request")


def _arrow(body: bytes | bytearray, *, limit: int | None = None):
    """An Arrow IPC stream -> table, read batch by batch so (compressed) batches stop at the decoded-size limit."""
    import pyarrow as pa
    try:
        stream = arrow_ipc.stream_part(pa.py_buffer(body))     # an IPC file is read as its stream
        try:
            declared = arrow_ipc.declared_bytes(stream)        # before any batch is decompressed
        except ValueError as exc:
            raise InvalidInput(f"the body is not an Arrow IPC stream: {exc}") from None
        if limit is not None and declared > limit:
            raise TooLarge(f"the Arrow body declares {declared:,} bytes of column data once decompressed, more "
                           f"than {limit:,} bytes, the limit of a body (MLP_MAX_UPLOAD_BYTES): a compressed body "
                           "may not hold more than an uncompressed one; send fewer rows per request")
        reader = pa.ipc.open_stream(stream)
        batches, total = [], 0
        for batch in reader:
            total += arrow_nbytes(batch)
            if limit is not None and total > limit:
                raise _decoded_over(limit, "Arrow", total)
            batches.append(batch)
        return drop_pandas_index(pa.Table.from_batches(batches, schema=reader.schema))   # as pandas reads it
    except (pa.ArrowException, OSError) as exc:     # ArrowInvalid; OSError for a stream cut inside a batch
        raise InvalidInput(f"the body is not an Arrow IPC stream: {exc}") from None


def _parquet(body: bytes | bytearray, *, limit: int | None = None):
    """A Parquet file -> table; its footer's row count and uncompressed sizes are checked against the limit
    before any column is decoded."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    try:
        pf = pq.ParquetFile(pa.BufferReader(pa.py_buffer(body)))
        md = pf.metadata
        declared = sum(max(md.row_group(i).total_byte_size, 0) for i in range(md.num_row_groups))
        cells = max(md.num_rows, 0) * max(md.num_columns, 1) * 4          # the float32 matrix it becomes
        if limit is not None and max(declared, cells) > limit:
            raise TooLarge(f"the Parquet body declares {md.num_rows:,} rows x {md.num_columns} columns "
                           f"({max(declared, cells):,} bytes decoded), over the limit of {limit:,} bytes of a body "
                           "(MLP_MAX_UPLOAD_BYTES); send fewer rows per request")
        return drop_pandas_index(pf.read())           # the pandas row index: not a column, as pandas reads it
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInput(f"the body is not a Parquet file: {exc}") from None


def _bad_text(body: bytes | bytearray, encoding: str) -> tuple[int, int] | None:
    """(byte offset, line) of the first byte ``encoding`` cannot decode, or None (decoded 1 MiB at a time)."""
    dec = codecs.getincrementaldecoder(encoding)()
    view = memoryview(body)
    step = 1 << 20
    for start in range(0, len(view), step):
        chunk = view[start:start + step]
        try:
            dec.decode(chunk, final=start + step >= len(view))
        except UnicodeDecodeError as exc:
            pos = start - (len(exc.object) - len(chunk)) + exc.start   # the decoder may hold bytes back
            return pos, bytes(view[:pos]).count(b"\n") + 1
    return None


def _csv_encoding(body: bytes | bytearray, charset: str | None) -> tuple[str, int]:
    """(Python codec, BOM length) of a CSV body: its BOM (UTF-8, UTF-16) as the upload detects it, else the
    Content-Type's ``charset=``, else UTF-8; 422 for a charset that is unknown or not a text encoding."""
    try:
        return detect_encoding(bytes(body[:4]), charset)
    except ParseError:
        what = "not a text encoding" if known_codec(charset) else "unknown encoding"
        raise InvalidInput(f"Content-Type charset {echo(charset)}: {what} (e.g. utf-8, cp1252, latin-1)") from None


def _csv_text(body: bytes | bytearray, charset: str | None) -> bytes | bytearray:
    """The CSV body as UTF-8 bytes without a BOM; 422 naming the byte (and line) that is not text."""
    looks = binary_format(body)
    if looks is not None:
        raise InvalidInput(f"the CSV body looks like {looks[0]}, not CSV text: send it with its own Content-Type "
                           f"(application/vnd.apache.parquet, application/vnd.apache.arrow.stream), or uncompressed")
    encoding, bom = _csv_encoding(body, charset)
    if not encoding.startswith(("utf-16", "utf-32")) and b"\x00" in body:
        line = bytes(body[:body.index(b"\x00")]).count(b"\n") + 1
        raise InvalidInput(f"the CSV body holds a NUL byte (line {line}), so it is not {encoding_label(encoding)} "
                           "text; UTF-16 or UTF-32 without a byte-order mark looks like this: name the encoding in the "
                           "Content-Type, e.g. text/csv; charset=utf-16-le")
    if encoding == "utf-8" and bom == 0 and body.isascii():      # ASCII (the usual CSV of numbers) is UTF-8
        return body
    data = memoryview(body)[bom:]
    bad = _bad_text(data, encoding)
    if bad is not None:
        raise InvalidInput(f"the CSV body is not {encoding_label(encoding)} text: byte {data[bad[0]]:#04x} at offset "
                           f"{bad[0] + bom:,} (line {bad[1]:,}) cannot be decoded; name the encoding in the "
                           "Content-Type, e.g. text/csv; charset=cp1252")
    if encoding == "utf-8":
        return body if bom == 0 else bytes(data)
    return bytes(data).decode(encoding).encode("utf-8")


def _csv_dialect(data: bytes | bytearray, delimiter: str | None = None) -> tuple[str, str]:
    """(delimiter, decimal mark) of a CSV body, detected from its first lines as the upload detects them: the
    delimiter among , ; tab | that splits the header widest with every sampled row agreeing, a decimal comma only
    under ``;``."""
    head = bytes(data[:_SNIFF_BYTES])
    lines = head.decode("utf-8", errors="replace").splitlines()
    if len(head) == _SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]                                   # the sample may end inside a line
    sample = [ln for ln in lines if ln.strip()][:50]
    d = delimiter or sniff_delimiter(sample)
    try:
        rows = list(csv.reader(sample, delimiter=d))
    except csv.Error:
        rows = []
    return d, sniff_decimal(rows[1:], d)[0]


def _csv_structure_error(data: bytes | bytearray, delimiter: str) -> str | None:
    """The first structural problem of a CSV body (an unterminated or stray quote, a row with another number of
    fields than the header), naming its line, from Python's csv module; None when there is none."""
    reader = csv.reader(io.StringIO(bytes(data).decode("utf-8"), newline=""), delimiter=delimiter, strict=True)
    width = None
    last = 0
    try:
        for row in reader:
            first, last = last + 1, reader.line_num
            if not row or (len(row) == 1 and not row[0].strip(" \t")):
                continue                                     # blank lines, also of spaces
            if width is None:
                width = len(row)
            elif len(row) != width:
                return f"line {first}: expected {width} columns (as in the header), found {len(row)}"
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            return f"line {last + 1}: unterminated quote: a field opens with \" and is never closed"
        return f"line {last + 1}: {exc}"
    return None


def _csv(body: bytes | bytearray, *, charset: str | None = None, columns=None, drop=frozenset()):
    """A CSV body -> table, read as an upload is: BOM (UTF-8, UTF-16) or ``charset=``, delimiter among , ; tab |,
    the upload's NA tokens as missing values; the model's categorical and boolean columns (and the ``drop``
    columns) as text exactly as written (``01234`` stays ``01234``). 422 naming the byte or line."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    data = _csv_text(body, charset)
    first, end = _first_line(data)
    excel_sep = sep_line(first)
    if excel_sep is not None:                   # Excel's 'sep=;' first line: the delimiter; the header follows
        data = data[end + 1:] if end >= 0 else b""
    d, decimal = _csv_dialect(data, excel_sep)
    quoted = b'"' in data
    if quoted:               # pyarrow reads an unterminated quote to the end of the body: rows would be lost
        problem = _csv_structure_error(data, d)
        if problem is not None:
            raise InvalidInput(f"the CSV body cannot be read: {problem}")
    text_names = {c["name"] for c in (columns.columns if columns is not None else []) if c["type"] != "numeric"}
    text_names |= set(drop)
    # pyarrow types columns by the header's names as written: ' zip' must be read as text too (01234 kept)
    header = _header_names(data, d)
    keys = [text_key(n) for n in header]
    hint = unnamed_column_hint(keys)
    if hint is not None:
        raise InvalidInput(f"the CSV body's header column {keys.index('') + 1} has no name; {hint}")
    spelled = dict(zip(keys, header))
    text_columns = {spelled.get(n, n): pa.string() for n in text_names}
    convert = pcsv.ConvertOptions(column_types=text_columns, null_values=list(NA_TOKENS), strings_can_be_null=True,
                                  quoted_strings_can_be_null=True, timestamp_parsers=[], decimal_point=decimal)
    parse_options = pcsv.ParseOptions(delimiter=d, newlines_in_values=quoted)

    def read():
        nonlocal data
        try:
            return pcsv.read_csv(pa.BufferReader(pa.py_buffer(data)), parse_options=parse_options,
                                 convert_options=convert)
        except pa.ArrowInvalid as exc:      # lines of only spaces or tabs are blank lines, as at upload
            if not str(exc).startswith("CSV parse error") or (spaced := blank_space_lines(data)) is data:
                raise
            data = spaced
            return pcsv.read_csv(pa.BufferReader(pa.py_buffer(data)), parse_options=parse_options,
                                 convert_options=convert)

    try:
        table = read()
        hexed = hex_integer_columns(table, data)
        if hexed:            # '0x29' is text, as the upload reads it (pyarrow's integer inference takes it as 41)
            convert.column_types = {**text_columns, **{n: pa.string() for n in hexed}}
            table = read()
    except (pa.ArrowException, OSError, UnicodeError) as exc:
        problem = None if quoted else _csv_structure_error(data, d)
        raise InvalidInput(f"the CSV body cannot be read: {problem or str(exc).splitlines()[0]}") from None
    table = table.rename_columns([text_key(n) for n in table.column_names])     # header names as the upload's
    numeric = {c["name"] for c in (columns.columns if columns is not None else []) if c["type"] == "numeric"}
    # as the upload reads cells: blank or ' NA ' is missing, and a numeric column with such a cell is numbers
    for j, f in enumerate(table.schema):
        if pa.types.is_string(f.type):
            as_numbers = text_as_values(table.column(j), NA_TOKENS, decimal) if f.name not in text_names else None
            # (with the decimal mark ',', a column of '1.234'-style numbers is read with '.' grouping thousands)
            if as_numbers is None and f.name in numeric:    # name the cell that is no number, not the first one
                bad = first_not_number(table.column(j), NA_TOKENS, decimal)
                if bad is not None:
                    raise InvalidInput(f"CSV: row {bad[0] + 1}, column {f.name!r}: expected a number, got "
                                       f"{echo(bad[1])}")
            col = as_numbers[1] if as_numbers is not None and as_numbers[0] == "numeric" else \
                blank_as_null(table.column(j))
            table = table.set_column(j, f.name, col)
    return table


def _header_names(data: bytes | bytearray, delimiter: str) -> list[str]:
    """The names of a CSV body's first line as written (a header broken by a quoted line break: its first part)."""
    return next(csv.reader([_first_line(data)[0].rstrip("\r")], delimiter=delimiter), [])


def _first_line(data: bytes | bytearray) -> tuple[str, int]:
    """(a CSV body's first line as text, the offset of its line break or -1)."""
    end = data.find(b"\n")
    return bytes(data[: end if end >= 0 else len(data)]).decode("utf-8", errors="replace"), end


WHAT = {"arrow": "Arrow", "parquet": "Parquet", "csv": "CSV"}


def parse(body: bytes | bytearray, kind: str, *, input_dim: int, columns=None, max_bytes: int | None = None,
          charset: str | None = None, drop=frozenset()) -> np.ndarray:
    """A predict body -> float32 (n, input_dim); 422 naming the shape, column or row.

    ``columns`` (the model's ``core.Preprocessor``) maps named table columns (any order; categorical text,
    booleans, nulls) onto the model's raw input columns. ``max_bytes`` bounds what a header may declare (a .npy
    shape, the decoded size of an Arrow or Parquet body); ``charset`` is the CSV body's text encoding; ``drop``
    names columns accepted and left out (the model's ``dropped``: target, ignored columns)."""
    if kind == "json":
        return service.parse_inputs(body, input_dim=input_dim, columns=columns, drop=drop)
    if kind == "npy":
        return _checked(_npy(body, limit=max_bytes), input_dim)
    if kind == "csv":
        table = _csv(body, charset=charset, columns=columns, drop=drop)
        _check_header(table, columns)
    else:
        table = (_arrow if kind == "arrow" else _parquet)(body, limit=max_bytes)
    return parse_table(table, WHAT[kind], input_dim=input_dim, columns=columns, drop=drop)


def _check_header(table, columns) -> None:
    """422 for a CSV body without a header line: its first row was read as the names, and they are all numbers
    that name no column of the model (pandas' unnamed columns 0, 1, 2, ... are names, taken in order)."""
    names = [str(n) for n in table.column_names]
    model_names = {c["name"] for c in columns.columns} if columns is not None else set()
    if set(names) & model_names or names == [str(j) for j in range(len(names))]:
        return
    for n in names:
        try:
            float(n)
        except ValueError:
            return
    listed = ", ".join(repr(c["name"]) for c in columns.columns) if columns is not None else ""
    raise InvalidInput(f"the CSV body needs a header line naming the columns{f' ({listed})' if listed else ''}; "
                       f"its first line {echo(','.join(names))} is all numbers, so it would be read as names and "
                       "lost as a row")


def parse_table(table, what: str, *, input_dim: int, columns=None, drop=frozenset()) -> np.ndarray:
    """An Arrow table -> checked float32 (n, input_dim): numeric columns by name (or in order when no name
    matches), one fixed-size-list column, or (models with categorical/boolean columns, or some trained
    columns left out) values by column name through the model's ``matrix_from_columns``. Columns named in
    ``drop`` (the training target, ignored columns) are left out first."""
    import pyarrow as pa

    table = _as_uploaded(table)
    names = [str(n) for n in table.column_names]
    if drop and not set(names).isdisjoint(drop):
        keep = [j for j, n in enumerate(names) if n not in drop]
        table = table.select(keep)
        names = [names[j] for j in keep]
    twice = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) < len(names) else []
    if twice:
        raise InvalidInput(f"{what}: column(s) {echo(twice)} appear more than once")
    if columns is None or (table.num_columns == 1 and pa.types.is_fixed_size_list(table.schema.field(0).type)):
        return _checked(_table_to_matrix(table, what), input_dim)
    model_names = [c["name"] for c in columns.columns]
    numeric = service.numeric_only(columns)
    if not set(names) & set(model_names) and len(names) == len(model_names):
        if not numeric:
            raise InvalidInput(f"{what} columns {names} are none of the model's columns {model_names}")
        return _checked(_table_to_matrix(table, what), input_dim, names=model_names, what=what)  # in order
    if numeric and set(model_names) <= set(names):
        unknown = [n for n in names if n not in model_names]
        if unknown:
            raise InvalidInput(f"{what}: unknown column(s) {echo(unknown)}; the model's columns are {model_names}")
        return _checked(_table_to_matrix(table.select([names.index(n) for n in model_names]), what), input_dim,
                        names=model_names, what=what)
    values = [table.column(j).to_pylist() for j in range(table.num_columns)]
    rows = [list(r) for r in zip(*values)]
    if not rows:
        raise InvalidInput("inputs has no rows")
    return _checked(service.from_columns(columns, names, rows, where=what), input_dim)


def _as_uploaded(table):
    """Arrow columns typed as the upload types them: dictionary-encoded columns as their values, dates, times and
    durations as their text (the categories an upload of the same file stores), decimals as float64, string views
    as strings."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for j, f in enumerate(table.schema):
        t, col = f.type, None
        if pa.types.is_dictionary(t):
            t, col = t.value_type, pc.cast(table.column(j), t.value_type)
        if pa.types.is_temporal(t) or pa.types.is_string_view(t):
            col = pc.cast(table.column(j) if col is None else col, pa.string())
        elif pa.types.is_decimal(t):
            col = pc.cast(table.column(j) if col is None else col, pa.float64())
        if col is not None:
            table = table.set_column(j, f.name, col)
    return table


def _checked(X: np.ndarray, input_dim: int, *, names: list[str] | None = None, what: str = "") -> np.ndarray:
    """X as C-contiguous float32 (n, input_dim), no infinite cell (named by row and ``names``' column when given)."""
    if X.ndim == 1 and X.shape[0] == input_dim:
        X = X[None, :]
    if X.ndim != 2 or X.shape[1] != input_dim:
        raise InvalidInput(f"inputs must have shape (n, {input_dim}) (the model's input width), got {X.shape}")
    if X.shape[0] == 0:
        raise InvalidInput("inputs has no rows")
    X = np.ascontiguousarray(X, dtype=np.float32)
    if np.isinf(X).any():       # NaN is a missing value: the model imputes it, or predict refuses it
        r, c = (int(v) for v in np.argwhere(np.isinf(X))[0])
        if names is not None and len(names) == X.shape[1]:
            raise InvalidInput(f"{what} row {r + 1}, column {names[c]!r}: {X[r, c]} is not a finite number (or is "
                               "beyond float32's range, about 3.4e38)")
        raise InvalidInput(f"inputs[{r}][{c}] is not a finite number: {X[r, c]}")
    return X


# ----------------------------------------------------------------------------- arrays -> answer

def encode(model: service.LoadedModel, proba: np.ndarray | None, out: np.ndarray, kind: str) -> tuple[bytes, str]:
    """(body, media type) of the answer in ``kind`` (json, npy, arrow)."""
    if kind == "json":
        return service.encode_json(model, proba, out), JSON
    if kind == "npy":
        buf = io.BytesIO()
        np.save(buf, proba if proba is not None else out, allow_pickle=False)
        return buf.getvalue(), NPY
    import pyarrow as pa
    if proba is not None:
        pred = pa.array(model.classes).take(pa.array(out)) if model.classes is not None else pa.array(out)
        k = proba.shape[1]
        cols = {"prediction": pred,
                "probabilities": pa.FixedSizeListArray.from_arrays(pa.array(proba.reshape(-1)), k)}
    elif out.ndim == 2:
        cols = {"prediction": pa.FixedSizeListArray.from_arrays(pa.array(out.reshape(-1)), out.shape[1])}
    else:
        cols = {"prediction": pa.array(out)}
    batch = pa.record_batch(list(cols.values()), names=list(cols))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes(), ARROW


def predict(model: service.LoadedModel, body: bytes | bytearray, kind: str, answer: str, *,
            blocking: bool = True, max_work: int | None = None, max_bytes: int | None = None,
            charset: str | None = None) -> tuple[bytes, str] | None:
    """Parse, predict under the model's lock and encode; with ``blocking=False``, None if the model is busy or
    the work (rows x parameters) is over ``max_work``."""
    X = parse(body, kind, input_dim=model.input_dim, columns=model.columns, max_bytes=max_bytes, charset=charset,
              drop=model.dropped)
    if not blocking and max_work is not None and model.cost(X.shape[0]) > max_work:
        return None
    arrays = service.predict_arrays(model, X, blocking=blocking)
    return None if arrays is None else encode(model, *arrays, answer)
