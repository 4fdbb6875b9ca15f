"""CSV dialect detection shared by uploads and predict bodies: encoding from the BOM, delimiter, decimal mark and the
NA tokens, so a file reads the same way whichever route it is sent to (service/models/ may not import
service/datasets/: trained models stand on their own, so the rules live here).
"""

from __future__ import annotations

import codecs
import csv
import re

from service.bodies import ParseError

# The csv module refuses fields over 128 KiB by default (a long header name or free-text cell in a sample being
# sniffed would be a 500): what it reads here is already bounded by the upload and body limits.
csv.field_size_limit(2**31 - 1)

# Cells read as missing by default: pandas.read_csv's default na_values, plus '?', '-' and '.' (Stata's and SAS's
# missing numeric value; a lone '.' is no plausible category) (the one list: uploads,
# CSV predict bodies and the text values of JSON records/split bodies all read it; the form field na_values
# replaces it for an upload)
NA_TOKENS = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
             "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null", "?", "-", ".")
# pyarrow's CSV reader infers integers from hexadecimal text ('0x10' -> 16; pandas and pyarrow's float parsing
# read it as text): a sample holding this is checked for such columns
HEX_INTEGER = re.compile(rb"0[xX][0-9a-fA-F]")
# Binary formats by their first bytes: a file sent under a CSV name (or as a CSV body) is named, not read as text
MAGIC = ((b"\x1f\x8b", "gzip (bytes 1f 8b)", "name it .csv.gz"),
         (b"PAR1", "Parquet (bytes PAR1)", "name it .parquet"),
         (b"ARROW1", "Arrow IPC (bytes ARROW1)", "name it .arrow"),
         (b"PK\x03\x04", "a zip archive (bytes PK)", "an .npz is read when named .npz; a spreadsheet (.xlsx) must "
                                                     "be saved as CSV first"))
DELIMITERS = (",", ";", "\t", "|")
COMMA_NUMBER = re.compile(r"[+-]?[0-9]+,[0-9]+(?:[eE][+-]?[0-9]+)?")
# a number written with '.' grouping thousands, as Excel de-DE writes one ('1.234', '12.345.678', '-1.234,5'): under
# ';' such a cell does not decide the decimal mark, and with ',' as the mark its column is read at its magnitude
_DOT_GROUPED = re.compile(r"[+-]?[0-9]{1,3}(?:\.[0-9]{3})+")
_DOT_GROUPED_COMMA = re.compile(r"[+-]?[0-9]{1,3}(?:\.[0-9]{3})+,[0-9]+")
_POINT_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


# Excel's first line naming the delimiter ('sep=;', 'sep=,', 'sep=<tab>'), written by its "CSV" exports for locales
# whose list separator is not ','
SEP_LINE = re.compile(r'"?sep=([^\r\n"])"?')
# a line holding only spaces or tabs (a spreadsheet's or editor's blank line), with or without its '\r'
_SPACE_LINE = re.compile(rb"(?m)^[ \t]+(?=\r?$)")


def sep_line(line: str) -> str | None:
    """The delimiter an Excel ``sep=;`` line names, or None when ``line`` is no such line."""
    m = SEP_LINE.fullmatch(line.rstrip("\r\n"))
    return m.group(1) if m else None


def blank_space_lines(data):
    """``data`` (UTF-8 CSV bytes or a memoryview of them) with lines holding only spaces or tabs made empty, so the
    reader skips them as blank lines (line numbers unchanged); ``data`` itself when it has none. Called when
    pyarrow has refused the text (such a line is one field where the header has 2 or more), so files without
    them pay nothing. (Inside a quoted multi-line field, a line of only spaces loses them: the cost of not
    parsing quotes here.)"""
    whole = bytes(data) if not isinstance(data, (bytes, bytearray)) else data
    if whole.find(b" ") < 0 and whole.find(b"\t") < 0:
        return data
    out = _SPACE_LINE.sub(b"", whole)
    return data if out == whole else out


def unnamed_column_hint(names: list[str], width_of_rows: list[int] | None = None) -> str | None:
    """Why a header has an empty name, when it looks like a known export: a first unnamed column is the row index
    pandas' ``to_csv()`` or R's ``write.csv()`` writes; an unnamed last column is a delimiter ending every line.
    None otherwise."""
    if len(names) < 2:
        return None
    if names[0] == "" and "" not in names[1:]:
        return ("the first column has no name, as the row index written by pandas' to_csv() or R's write.csv() "
                "has: write the file with index=False (pandas) or row.names=FALSE (R), or name that column and "
                "leave it out with the form field ignore")
    if names[-1] == "" and "" not in names[:-1]:
        return ("the last column has no name: the header line ends with the delimiter (as when every line ends "
                "with one); remove the trailing delimiter, or name the column")
    return None


def detect_encoding(head: bytes, given: str | None) -> tuple[str, int]:
    """(Python codec name, BOM length) from the BOM (UTF-8, UTF-32, UTF-16), else ``given`` (a form field or
    ``charset=``), else UTF-8; ParseError for a ``given`` that is unknown or not a text encoding."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8", 3
    if head.startswith(codecs.BOM_UTF32_LE) or head.startswith(codecs.BOM_UTF32_BE):
        return "utf-32", 0                       # before UTF-16: UTF-32 LE's BOM begins with UTF-16 LE's
    if head.startswith(codecs.BOM_UTF16_LE) or head.startswith(codecs.BOM_UTF16_BE):
        return "utf-16", 0                       # the codec reads the BOM itself
    if given:
        if not known_codec(given):
            raise ParseError(f"encoding: unknown encoding {given!r} (e.g. utf-8, cp1252, latin-1, utf-16)")
        name = codecs.lookup(given).name
        if not text_encoding(name):
            raise ParseError(f"encoding: {given!r} is not a text encoding (e.g. utf-8, cp1252, latin-1, utf-16)")
        return name, 0
    return "utf-8", 0


def binary_format(head: bytes | memoryview) -> tuple[str, str] | None:
    """(what the bytes look like, what to do) when ``head`` starts with a binary format's magic bytes (gzip,
    Parquet, Arrow IPC, zip/.npz), else None."""
    head = bytes(head[:8])
    for magic, what, hint in MAGIC:
        if head.startswith(magic):
            return what, hint
    return None


def hex_integer_columns(table, text: bytes | memoryview) -> list[str]:
    """Names of ``table``'s integer columns when ``text`` (the CSV bytes pyarrow read it from) holds hexadecimal
    integers (``0x10``): pyarrow's CSV reader reads those as numbers, which pandas and pyarrow's own float
    parsing read as text. Checked only when the table has integer columns: first a memchr for ``x``/``X``
    (~0.7 ms per 8 MB; a memoryview's whole buffer), then, when one is there, the pattern (~15 ms per 8 MB)."""
    import pyarrow as pa

    ints = [f.name for f in table.schema if pa.types.is_integer(f.type)]
    if not ints:
        return []
    whole = text.obj if isinstance(text, memoryview) else text
    if not isinstance(whole, (bytes, bytearray)):
        whole = bytes(text)
    if whole.find(b"x") < 0 and whole.find(b"X") < 0:
        return []
    return ints if HEX_INTEGER.search(text) else []


def arrow_nbytes(batch) -> int:
    """A pyarrow record batch's bytes; for view types (string_view, binary_view: polars' default), which
    ``nbytes`` cannot measure, the size of its buffers."""
    import pyarrow as pa

    try:
        return batch.nbytes
    except (pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return batch.get_total_buffer_size()


def pandas_index_columns(schema) -> list[str]:
    """Names of the columns a pandas-written Parquet/Arrow file (``df.to_parquet()``, ``pa.Table.from_pandas``)
    marks as its row index in the schema's ``pandas`` metadata (``index_columns``): ``__index_level_0__`` or a
    named index (``df.set_index("id")``). ``pd.read_parquet`` reads them back as the index, not as columns, so
    they are no data column here either. A RangeIndex is stored as a dict there (no column): skipped. [] for a
    file without (or with unreadable) pandas metadata."""
    try:
        meta = schema.pandas_metadata or {}
        cols = meta.get("index_columns") or []
    except (ValueError, AttributeError, TypeError):         # metadata that is not JSON: not pandas'
        return []
    present = set(schema.names)
    return [c for c in cols if isinstance(c, str) and c in present]


def drop_pandas_index(table):
    """``table`` without the columns its pandas metadata marks as the row index (see ``pandas_index_columns``)."""
    index = pandas_index_columns(table.schema)
    return table.drop_columns(index) if index else table


def encoding_label(encoding: str) -> str:
    """How an encoding is named in error details: 'UTF-8', else the codec's name."""
    return "UTF-8" if encoding in ("utf-8", "utf8") else encoding


def known_codec(name: str) -> bool:
    """Whether Python knows a codec of this name (of any kind)."""
    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True


def text_encoding(name: str) -> bool:
    """Whether the codec ``name`` decodes bytes to text (not rot13, base64, zlib: codecs of another kind)."""
    try:
        b"a".decode(name)                        # (b"".decode does not ask)
    except LookupError:
        return False
    except UnicodeError:                         # a text encoding in which one byte is not a whole character
        pass
    return True


def sniff_delimiter(lines: list[str]) -> str:
    """The candidate of DELIMITERS that splits the header into the most columns while every sampled row agrees
    with it (``,`` when none splits it)."""
    best, best_key = ",", (-1, -1)
    for d in DELIMITERS:
        try:
            rows = list(csv.reader(lines, delimiter=d))
        except csv.Error:
            continue
        rows = [r for r in rows if r]
        if not rows:
            continue
        width = len(rows[0])
        if width < 2:
            continue
        agree = sum(len(r) == width for r in rows[1:])
        key = (agree == len(rows) - 1, width)
        if key > best_key:
            best, best_key = d, key
    return best


def sniff_decimal(rows: list[list[str]], delimiter: str) -> tuple[str, bool]:
    """The decimal mark: ``,`` when the delimiter is ``;`` and the sampled data cells hold at least one number
    written with a decimal comma (``2,5``, ``-1,5e3``) and none written with a decimal point (``2.5``); ``.``
    otherwise. And whether the sample decided it: under ``;`` with neither kind of number in the sample, a reader
    may let the first decimal comma further down make it ``,``."""
    if delimiter != ";":
        return ".", True
    cells = [c.strip() for r in rows for c in r]
    if any(_POINT_NUMBER.fullmatch(c) and not _DOT_GROUPED.fullmatch(c) for c in cells):
        return ".", True                                    # ('1.234' may be 1234 written with a thousands dot)
    if any(COMMA_NUMBER.fullmatch(c) or _DOT_GROUPED_COMMA.fullmatch(c) for c in cells):
        return ",", True
    return ".", False


def thousands_of(decimal: str, thousands: str | None) -> str | None:
    """The thousands separator to look for: the one given (form field ``thousands``), else ``.`` when the decimal
    mark is ``,`` (German/European numbers: ``1.234,5``), else none."""
    if thousands is not None:
        return thousands or None
    return "." if decimal == "," else None


def grouped_cell(value: str, decimal: str, thousands: str | None) -> bool:
    """Whether a cell is a number with its thousands grouped by ``thousands_of(decimal, thousands)``."""
    sep = thousands_of(decimal, thousands)
    return sep is not None and re.fullmatch(_grouped_pattern(sep, decimal), value.strip()) is not None


def _grouped_pattern(sep: str, decimal: str) -> str:
    s, d = re.escape(sep), re.escape(decimal)
    return rf"^\s*[+-]?(?:[0-9]{{1,3}}(?:{s}[0-9]{{3}})+|[0-9]+)(?:{d}[0-9]+)?\s*$"


def _ungrouped(t, decimal: str, thousands: str | None):
    """A trimmed text column with the thousands separators removed when one of its values holds the separator and
    every value is a number written with that grouping (``1.234``, ``12.345.678``, ``999``, ``1.234,5``); else
    unchanged (a column that merely holds a ``.`` stays as it is)."""
    import pyarrow.compute as pc

    sep = thousands_of(decimal, thousands)
    if sep is None or not pc.any(pc.match_substring(t, sep)).as_py():
        return t
    if not pc.all(pc.match_substring_regex(t, _grouped_pattern(sep, decimal))).as_py():
        return t
    return pc.replace_substring(t, sep, "")


def blank_as_null(col, na_values=NA_TOKENS):
    """A pyarrow text column trimmed, with the cells that are then empty or an NA token as nulls (``'  '``,
    ``' NA '``): how a CSV's cells are read, at upload and in a predict body."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = pc.utf8_trim_whitespace(col)
    return pc.if_else(pc.is_in(t, value_set=pa.array([*na_values, ""], pa.string())), pa.scalar(None, t.type), t)


def _float_text(col, na_values, decimal: str, thousands: str | None):
    """A text column as the text pyarrow's float cast reads: trimmed, blank and NA cells null, grouped thousands
    ungrouped, a decimal comma as a point; with the mark ``,`` a cell holding ``.`` (2.5) is text, no number."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = _ungrouped(blank_as_null(col, na_values), decimal, thousands)
    if decimal == ",":
        t = pc.if_else(pc.match_substring(t, "."), pa.scalar(_NOT_A_NUMBER, pa.string()),
                       pc.replace_substring(t, ",", "."))
    return t


_NOT_A_NUMBER = "not a number"      # what _float_text makes of 2.5 when the decimal mark is ','


def text_as_values(col, na_values=NA_TOKENS, decimal: str = ".", thousands: str | None = None):
    """('numeric', float64) or ('boolean', bool) for a pyarrow text column whose cells, trimmed, are all numbers,
    or all true/false, once cells that are empty after trimming or an NA token are missing (``blank_as_null``);
    None for text. pyarrow types a column with one ``'  '`` cell as text: a column of numbers must not become
    categorical for it. Numbers with grouped thousands (``1.234`` with the decimal mark ``,``, or the separator
    ``thousands``) are read at their magnitude when every value of the column is written so."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = _float_text(col, na_values, decimal, thousands)
    if decimal == "," and pc.any(pc.equal(t, _NOT_A_NUMBER)).as_py():
        return None                                         # 2.5 is text when the decimal mark is ','
    head = t.slice(0, 1000)
    for kind, to in (("numeric", pa.float64()), ("boolean", pa.bool_())):
        try:
            pc.cast(head, to)                               # text fails here, on a few values (a failing cast
            return kind, pc.cast(t, to)                     # of a whole column costs ~1 us per value)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    return None


def first_not_number(col, na_values=NA_TOKENS, decimal: str = ".",
                     thousands: str | None = None) -> tuple[int, str] | None:
    """(row index, cell as written) of the first cell of a pyarrow text column that is neither missing (blank, an
    NA token) nor a number as ``text_as_values`` reads numbers; None when there is none. Blocks of 1,024 cells are
    cast at once and only the failing block cell by cell."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = _float_text(col, na_values, decimal, thousands)
    for start in range(0, len(t), 1024):
        block = t.slice(start, 1024)
        try:
            pc.cast(block, pa.float64())
            continue
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        for k in range(len(block)):
            try:
                pc.cast(block.slice(k, 1), pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return start + k, col[start + k].as_py()
    return None

