"""Tabular uploads read with pyarrow: CSV dialects, encodings, NA tokens, .csv.gz, Parquet, Arrow; column typing,
the `columns` profile, labels as written; every error by status code and detail."""

from __future__ import annotations

import codecs
import gzip
import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.auth import DEFAULT_OWNER
from service.datasets import service as datasets_service
from service.settings import Settings
from tests.service.helpers import mlp_spec

import palmerpenguins

PENGUINS_CSV = Path(palmerpenguins.__file__).parent / "data" / "penguins.csv"
MIXED = ("age,plan,member,score,label\n"
         "41,pro,true,0.5,yes\n"
         "35,free,false,NA,no\n"
         ",pro,,1.5,yes\n"
         "29,basic,true,2.5,no\n")


def up(client, content: bytes, filename: str = "data.csv", ctype: str = "text/csv", **fields):
    return client.post("/v1/datasets", files={"file": (filename, content, ctype)}, data=fields)


def stored(app, dataset_id: str):
    with app.state.sessionmaker() as session:
        row = datasets_service.get_or_raise(session, owner=DEFAULT_OWNER, dataset_id=dataset_id)
    X, y = datasets_service.load_arrays(app.state.storage, row, mmap=False)
    return row, X, y


def stored_files(app) -> list[str]:
    root = app.state.storage.root
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != ".readyz")


def ok(r) -> dict:
    assert r.status_code == 201, r.text
    return r.json()


def err(r, status: int = 422) -> str:
    assert r.status_code == status, r.text
    return r.json()["detail"]


# -- the storage representation ------------------------------------------------------------------------------

def test_mixed_columns_are_typed_profiled_and_stored_as_documented(app, client):
    body = ok(up(client, MIXED.encode(), target="label"))
    assert body["feature_names"] == ["age", "plan", "member", "score"] and body["classes"] == ["no", "yes"]
    cols = {c["name"]: c for c in body["columns"]}
    assert cols["age"] == {"name": "age", "type": "numeric", "missing": 1, "min": 29.0, "max": 41.0,
                           "mean": pytest.approx(35.0), "std": pytest.approx(np.std([41, 35, 29]))}
    assert cols["plan"] == {"name": "plan", "type": "categorical", "missing": 0, "n_categories": 3,
                            "categories": ["basic", "free", "pro"],
                            "top": [{"value": "pro", "count": 2}, {"value": "basic", "count": 1},
                                    {"value": "free", "count": 1}]}
    assert cols["member"] == {"name": "member", "type": "boolean", "missing": 1, "true": 2, "false": 1}
    assert cols["score"]["missing"] == 1 and cols["score"]["type"] == "numeric"
    _, X, y = stored(app, body["id"])
    assert X.dtype == np.float32 and X.shape == (4, 4)
    np.testing.assert_array_equal(X, np.array([[41, 2, 1, 0.5], [35, 1, 0, np.nan], [np.nan, 2, np.nan, 1.5],
                                               [29, 0, 1, 2.5]], dtype=np.float32))
    assert y.tolist() == [1, 0, 1, 0]
    assert client.get(f"/v1/datasets/{body['id']}").json()["columns"] == body["columns"]


def test_categorical_and_ignore_fields(app, client):
    csv = b"id,zip,x,label\n1,01234,1.5,a\n2,98765,2.5,b\n3,01234,3.5,a\n"
    body = ok(up(client, csv, categorical="zip", ignore="id"))
    assert body["feature_names"] == ["zip", "x"] and body["n_features"] == 2
    assert body["columns"][0] == {"name": "id", "type": "ignored"}
    assert body["columns"][1]["type"] == "categorical" and body["columns"][1]["categories"] == ["01234", "98765"]
    _, X, _ = stored(app, body["id"])
    np.testing.assert_array_equal(X[:, 0], [0, 1, 0])
    # a JSON array names columns with commas in them
    csv = b'"a,b",c,label\n1,x,0\n2,y,1\n'
    body = ok(up(client, csv, ignore='["a,b"]'))
    assert body["feature_names"] == ["c"]


@pytest.mark.parametrize("fields, detail", [
    ({"ignore": "nope"}, "ignore: column 'nope' not found; the header has: id, zip, x, label"),
    ({"categorical": "nope"}, "categorical: column 'nope' not found; the header has: id, zip, x, label"),
    ({"ignore": "label"}, "ignore: 'label' is the target column; it cannot be ignored"),
    ({"ignore": "id,zip,x"}, "no feature columns are left: every column but the target is in ignore"),
    ({"max_categories": "many"}, "max_categories must be an integer >= 1, got 'many'"),
    ({"drop_missing_target": "maybe"}, "drop_missing_target must be true or false, got 'maybe'"),
    ({"encoding": "klingon"}, "encoding: unknown encoding 'klingon' (e.g. utf-8, cp1252, latin-1, utf-16)"),
    ({"delimiter": "::"}, "delimiter must be one character (e.g. , ; | or tab), got '::'"),
    ({"decimal": ";"}, "decimal must be '.' or ',' (or point, comma), got ';'"),
])
def test_form_field_errors_name_the_field(app, client, fields, detail):
    assert err(up(client, b"id,zip,x,label\n1,01234,1.5,a\n2,98765,2.5,b\n", **fields)) == detail
    assert stored_files(app) == []


def test_too_many_categories_names_the_column_and_suggests_ignore(client):
    csv = b"customer_id,x,label\n" + b"".join(b"c%05d,%d,%d\n" % (i, i, i % 2) for i in range(1500))
    assert err(up(client, csv)) == ("column 1 ('customer_id') has more than 1000 distinct values (text columns are "
                                    "categorical); drop it with the form field ignore=customer_id (e.g. an id or "
                                    "free text), or raise max_categories")
    assert err(up(client, csv, max_categories="10")).startswith("column 1 ('customer_id') has more than 10 ")
    body = ok(up(client, csv, max_categories="2000"))
    col = body["columns"][0]
    assert col["n_categories"] == 1500 and "categories" not in col and len(col["top"]) == 10   # answer stays small
    assert ok(up(client, csv, ignore="customer_id"))["feature_names"] == ["x"]


def test_stored_metadata_keeps_the_full_category_list(app, client):
    csv = b"c,x,label\n" + b"".join(b"v%03d,%d,%d\n" % (i, i, i % 2) for i in range(150))
    body = ok(up(client, csv))
    row, X, _ = stored(app, body["id"])
    assert row.columns[0]["categories"] == [f"v{i:03d}" for i in range(150)]
    np.testing.assert_array_equal(X[:, 0], np.arange(150))


def test_column_limit_and_a_40000_column_duplicate_header(tmp_path):
    with TestClient(create_app(Settings(data_dir=tmp_path / "d", workers=0, max_columns=50_000))) as c:
        names = [f"c{j}" for j in range(40_000)]
        header = ",".join(names + ["c17"]).encode()
        assert err(up(c, header + b"\n" + b",".join([b"1"] * 40_001) + b"\n")) == \
            "header names column 'c17' more than once (names are compared with surrounding spaces trimmed)"
        body = ok(up(c, ",".join(names).encode() + b"\n" + b",".join(b"%d" % (j % 2) for j in range(40_000))
                     + b"\n" + b",".join(b"%d" % ((j + 1) % 2) for j in range(40_000)) + b"\n",
                     task="classification"))
        assert body["n_features"] == 39_999
    with TestClient(create_app(Settings(data_dir=tmp_path / "e", workers=0, max_columns=10))) as c:
        csv = ",".join(f"c{j}" for j in range(11)).encode() + b"\n" + b",".join([b"1"] * 11) + b"\n"
        assert err(up(c, csv)) == "the file has 11 columns, more than the limit of 10 (MLP_MAX_COLUMNS)"


def test_numeric_inf_is_a_422_naming_row_and_column(client):
    assert err(up(client, b"a,b,label\n1,2,x\n3,-inf,y\n")) == \
        "line 3, column 2 ('b'): value is not finite (infinite)"
    table = pa.table({"a": [1.0, float("inf")], "label": ["x", "y"]})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    assert err(up(client, buf.getvalue(), "d.parquet", "application/octet-stream")) == \
        "row 2, column 1 ('a'): value is not finite (infinite)"


# -- CSV dialects --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("delim", [",", ";", "\t", "|"])
def test_delimiter_detected(app, client, delim):
    csv = MIXED.replace(",", delim).encode()
    body = ok(up(client, csv))
    ref = ok(up(client, MIXED.encode()))
    assert body["columns"] == ref["columns"] and body["classes"] == ref["classes"]
    np.testing.assert_array_equal(stored(app, body["id"])[1], stored(app, ref["id"])[1])


def test_delimiter_field_overrides_detection(client):
    # a '|'-separated file whose text holds commas is detected as '|'; the field overrides detection
    csv = b"name|x|label\nSmith, J|1|a\nDoe, K|2|b\nRoe, L|3|a\n"
    assert ok(up(client, csv))["feature_names"] == ["name", "x"]
    body = ok(up(client, b"a,b;c\n1,2;x\n3,4;y\n", delimiter=";"))     # ';' file: 1,2 is a decimal comma
    assert body["feature_names"] == ["a,b"] and body["columns"][0]["mean"] == pytest.approx(2.3)
    assert ok(up(client, b"a\tb\tl\n1\t2\tx\n3\t4\ty\n", delimiter="tab"))["feature_names"] == ["a", "b"]
    assert ok(up(client, b"a\tb\tl\n1\t2\tx\n3\t4\ty\n", delimiter="\t"))["feature_names"] == ["a", "b"]


EURO = "age;plan;score;price;label\n41;pro;0,5;-1,25e2;1,5\n35;free;NA;3;2\n;pro;1,5;4,75;2,25\n"


def test_decimal_commas_detected_in_a_semicolon_file(app, client):
    euro = ok(up(client, EURO.encode(), task="regression"))
    ref = ok(up(client, EURO.replace(",", ".").replace(";", ",").encode(), task="regression"))
    assert [c["type"] for c in euro["columns"]] == ["numeric", "categorical", "numeric", "numeric"]
    assert euro["columns"] == ref["columns"]
    for a, b in zip(stored(app, euro["id"])[1:], stored(app, ref["id"])[1:]):
        np.testing.assert_array_equal(a, b)
    assert stored(app, euro["id"])[2].tolist() == [1.5, 2.0, 2.25]
    # a column mixing 2,5 with text stays categorical, as written
    body = ok(up(client, b"a;b;label\n2,5;1,5;x\ntext;2;y\n"))
    assert body["columns"][0]["type"] == "categorical" and body["columns"][0]["categories"] == ["2,5", "text"]
    assert body["columns"][1]["type"] == "numeric" and body["columns"][1]["max"] == 2.0


@pytest.mark.parametrize("rows", [60, 300_000], ids=["in-the-first-segment", "past-it"])
def test_first_decimal_comma_past_the_sampled_lines_decides_the_mark(app, client, rows):
    """The first 50 lines hold only integers: a later 2,5 still makes ',' the decimal mark (the column stays
    numeric, read again), in the first segment pyarrow reads or in a later one."""
    csv = "a;b;label\n" + "".join(f"{i};{i % 7};x\n" for i in range(rows)) + "2,5;1;y\n3,5;2;x\n"
    body = ok(up(client, csv.encode()))
    assert [c["type"] for c in body["columns"]] == ["numeric", "numeric"]
    X = stored(app, body["id"])[1]
    assert X[-2:].tolist() == [[2.5, 1.0], [3.5, 2.0]] and X[rows - 1, 0] == rows - 1
    text = "a;b;label\n" + "".join(f"{i};{i};x\n" for i in range(60)) + "2,5;1;y\nabc;2;x\n"
    assert ok(up(client, text.encode()))["columns"][0]["type"] == "categorical"     # text: as written
    target = "a;y\n" + "".join(f"{i};{i % 3}\n" for i in range(60)) + "60;2,5\n61;1,5\n"   # only in the target
    body = ok(up(client, target.encode()))
    assert body["task"] == "regression" and stored(app, body["id"])[2][-2:].tolist() == [2.5, 1.5]


@pytest.mark.parametrize("rows", [60, 300_000], ids=["in-the-first-segment", "past-it"])
def test_blank_and_spaced_na_cells_are_missing_in_every_column_type(app, client, rows):
    """A cell holding only spaces, or an NA token with spaces around it, is missing, as an empty cell is: a
    column of numbers or of true/false keeps its type (never silently categorical, never 'too many categories'),
    and a text column gets no '' category."""
    lines = [f"{i},{'x' if i % 2 else 'y'},{'true' if i % 3 else 'false'},{i % 2}" for i in range(rows)]
    lines[rows - 5] = "  ,  ,   ,1"
    lines[rows - 3] = '" NA ", NA ,NA ,0'
    lines[rows - 1] = f"{rows - 1},\tx, true,1"
    body = ok(up(client, ("a,s,b,label\n" + "\n".join(lines) + "\n").encode()))
    cols = {c["name"]: c for c in body["columns"]}
    assert [(c["type"], c["missing"]) for c in cols.values()] == [("numeric", 2), ("categorical", 2), ("boolean", 2)]
    assert cols["s"]["categories"] == ["x", "y"]
    X = stored(app, body["id"])[1]
    assert np.isnan(X[rows - 5]).all() and np.isnan(X[rows - 3]).all()
    assert X[rows - 1].tolist() == [rows - 1, 0, 1]                    # '\tx' is x, ' true' is true
    text = "a,label\n" + "".join(f"{i},x\n" for i in range(60)) + "  ,y\nabc,x\n"
    assert ok(up(client, text.encode()))["columns"][0]["type"] == "categorical"     # real text: as written


def test_long_header_fields_and_cells_are_read_not_a_500(client):
    """Python's csv module stops at 128 KiB fields by default: a long name is the name-length 422, a long cell in a
    ';' file does not defeat delimiter detection, and a 1.5 MB header within the limits is read."""
    assert err(up(client, ("h" * 200_000 + ",label\n1,x\n2,y\n").encode())) == \
        "feature name 0 is 200,000 characters long; at most 256"
    body = ok(up(client, ("a;note;label\n1;" + "w" * 200_000 + ";x\n2;z;y\n").encode(), ignore="note"))
    assert body["feature_names"] == ["a"]
    names = [f"c{j:04d}" + "n" * 249 for j in range(6000)]
    wide = ",".join(names + ["label"]) + "\n" + ",".join(["1"] * 6000 + ["x"]) + "\n" + ",".join(["2"] * 6000 + ["y"])
    assert ok(up(client, (wide + "\n").encode()))["n_features"] == 6000


def test_decimal_field_overrides_detection(client):
    body = ok(up(client, b"a|b|label\n2,5|1|x\n3,5|2|y\n", decimal=","))       # '|' file: no detection
    assert body["columns"][0]["type"] == "numeric" and body["columns"][0]["mean"] == 3.0
    body = ok(up(client, EURO.encode(), decimal="point"))                   # ';' file read with '.' decimals
    assert [c["type"] for c in body["columns"]] == ["numeric", "categorical", "categorical", "categorical"]
    assert err(up(client, b"a,b,label\n1,2,x\n", decimal=",", delimiter=",")) == \
        "decimal ',' is also the delimiter; set the form field delimiter"


def test_quoted_fields_with_delimiters_quotes_and_line_breaks(app, client):
    csv = b'a,note,label\n1,"big, red",x\n2,"say ""hi""",y\n3,"two\nlines",x\n'
    body = ok(up(client, csv))
    assert body["n_samples"] == 3
    assert body["columns"][1]["categories"] == ["big, red", 'say "hi"', "two\nlines"]


def test_unterminated_quote_names_the_line(app, client):
    assert err(up(client, b'a,b,label\n1,2,x\n3,"4,y\n5,6,z\n')) == \
        'line 3: unterminated quote: a field opens with " and is never closed'
    assert err(up(client, b'a,b,label\n1,2,x\n3,4,y\n5,6,"z\n')) == \
        'line 4: unterminated quote: a field opens with " and is never closed'
    assert stored_files(app) == []


@pytest.mark.parametrize("token", ["", "NA", "N/A", "NaN", "null", "?", "-"])
def test_default_na_tokens_are_missing(app, client, token):
    csv = f"a,plan,label\n1,pro,x\n{token},{token},y\n3,free,x\n".encode()
    body = ok(up(client, csv))
    assert [c["missing"] for c in body["columns"]] == [1, 1]
    assert body["columns"][0]["type"] == "numeric" and body["columns"][1]["type"] == "categorical"
    X = stored(app, body["id"])[1]
    assert np.isnan(X[1]).all() and not np.isnan(X[[0, 2]]).any()


def test_na_values_field_replaces_the_tokens(client):
    csv = b"a,plan,label\n1,NA,x\nmissing,pro,y\n3,free,x\n"
    body = ok(up(client, csv, na_values="missing"))
    assert body["columns"][0] == {"name": "a", "type": "numeric", "missing": 1, "min": 1.0, "max": 3.0,
                                  "mean": 2.0, "std": 1.0}
    assert body["columns"][1]["categories"] == ["NA", "free", "pro"]     # 'NA' is a value now
    assert ok(up(client, csv, na_values='["missing", "NA"]'))["columns"][1]["missing"] == 1


# -- encodings and compression -------------------------------------------------------------------------------

TEXT = "name,x,label\nZoë,1,ja\nJosé,2,nein\nŁódź,3,ja\n"


@pytest.mark.parametrize("data", [
    TEXT.encode("utf-8"), codecs.BOM_UTF8 + TEXT.encode("utf-8"), TEXT.encode("utf-16"),
    codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"), codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"),
    TEXT.encode("utf-32"), codecs.BOM_UTF32_BE + TEXT.encode("utf-32-be"),
    codecs.BOM_UTF32_LE + TEXT.encode("utf-32-le")],
    ids=["utf8", "utf8-bom", "utf16", "utf16-be", "utf16-le", "utf32", "utf32-be", "utf32-le"])
def test_encodings_detected(client, data):
    body = ok(up(client, data))
    assert body["feature_names"] == ["name", "x"]
    assert body["columns"][0]["categories"] == ["José", "Zoë", "Łódź"]


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be", "utf-32"])
def test_text_without_a_byte_order_mark_names_the_encoding_it_needs(app, client, encoding):
    """UTF-16/32 without a BOM reads as UTF-8 full of NUL bytes: a 422 naming the line and the field, never
    column names and labels with NULs in them; with the form field it is read."""
    data = TEXT.encode(encoding)
    if encoding == "utf-32":
        data = data[4:]                  # the codec's own BOM removed: native order, no mark
        encoding = "utf-32-le"           # what the bytes are on this (little-endian) machine
    assert err(up(client, data)) == (
        "line 1: the text holds a NUL character (byte 0), so it is not UTF-8; UTF-16 or UTF-32 without a byte-order "
        "mark looks like this: name the encoding in the form field encoding (e.g. utf-16-le, utf-16-be)")
    assert stored_files(app) == []
    assert ok(up(client, data, encoding=encoding))["columns"][0]["categories"] == ["José", "Zoë", "Łódź"]


@pytest.mark.parametrize("rows", [2, 300_000], ids=["in-the-sample", "past-the-first-segment"])
def test_nul_byte_in_the_text_is_a_422_naming_its_line(app, client, rows):
    csv = b"a,b,label\n" + b"1,x,yes\n" * (rows - 1) + b"2,x\x00y,no\n"
    assert err(up(client, csv)) == (
        f"line {rows + 1}: the text holds a NUL character (byte 0), so it is not UTF-8; UTF-16 or UTF-32 without a "
        f"byte-order mark looks like this: name the encoding in the form field encoding (e.g. utf-16-le, utf-16-be)")
    assert stored_files(app) == []


@pytest.mark.parametrize("codec", ["rot13", "base64", "zlib", "hex", "bz2"])
def test_encoding_that_is_not_a_text_encoding_is_a_422(app, client, codec):
    assert err(up(client, b"a,b,label\n1,x,yes\n2,y,no\n", encoding=codec)) == (
        f"encoding: {codec!r} is not a text encoding (e.g. utf-8, cp1252, latin-1, utf-16)")
    assert stored_files(app) == []


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1"])
def test_encoding_field(client, encoding):
    text = "name,x,label\nZoë,1,ja\nJosé,2,nein\n"
    assert err(up(client, text.encode(encoding))) == (
        "the file is not UTF-8 text (byte offset 15); name its encoding in the form field encoding, "
        "e.g. cp1252 or latin-1")
    assert ok(up(client, text.encode(encoding), encoding=encoding))["columns"][0]["categories"] == ["José", "Zoë"]


def test_wrong_encoding_field_and_corrupt_gzip_are_422(app, client):
    assert err(up(client, b"a,b,label\n1,2,x\n3,4,y\n", encoding="utf-16")) == (
        "the file is not utf-16 text; name its encoding in the form field encoding, e.g. cp1252 or latin-1")
    broken = gzip.compress(MIXED.encode())[:-6] + b"xxxxxx"          # the CRC at the end does not match
    assert err(up(client, broken, "data.csv.gz")).startswith("not a valid .gz file (")
    assert stored_files(app) == []


def test_csv_gz(app, client):
    body = ok(up(client, gzip.compress(MIXED.encode()), "data.csv.gz", "application/gzip"))
    assert body["name"] == "data" and body["n_samples"] == 4
    assert err(up(client, b"not gzip at all", "data.csv.gz")).startswith("not a valid .gz file")
    assert stored_files(app) == [f"datasets/{body['id']}/X.npy", f"datasets/{body['id']}/y.npy"]


def test_parquet_and_arrow(app, client):
    table = pacsv.read_csv(io.BytesIO(MIXED.encode()),
                           convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    ref = ok(up(client, MIXED.encode()))
    pbuf, fbuf, sbuf = io.BytesIO(), io.BytesIO(), io.BytesIO()
    pq.write_table(table, pbuf)
    feather.write_feather(table, fbuf)
    with pa.ipc.new_stream(sbuf, table.schema) as w:
        w.write_table(table)
    for content, name in [(pbuf, "d.parquet"), (fbuf, "d.feather"), (fbuf, "d.arrow"), (sbuf, "s.arrow")]:
        body = ok(up(client, content.getvalue(), name, "application/octet-stream"))
        assert body["columns"] == ref["columns"] and body["classes"] == ref["classes"], name
        np.testing.assert_array_equal(stored(app, body["id"])[1], stored(app, ref["id"])[1])
    assert err(up(client, b"PAR1 nope", "d.parquet")).startswith("not a valid Parquet file")
    assert err(up(client, b"nope", "d.arrow")).startswith("not a valid Arrow IPC / Feather v2 file")


@pytest.mark.parametrize("field, value", [("delimiter", ";"), ("na_values", "NA"), ("encoding", "cp1252"),
                                          ("decimal", ",")])
@pytest.mark.parametrize("kind", ["parquet", "arrow"])
def test_csv_only_fields_with_a_typed_file_are_a_422(app, client, field, value, kind):
    """How text is read means nothing to a Parquet or Arrow file: a 422 naming the field, never silently ignored."""
    table = pa.table({"s": pa.array(["NA", "x", "y", "NA"]), "label": pa.array([0, 1, 0, 1])})
    buf = io.BytesIO()
    pq.write_table(table, buf) if kind == "parquet" else feather.write_feather(table, buf)
    assert err(up(client, buf.getvalue(), f"d.{kind}", **{field: value})) == (
        f"form field {field!r} applies to CSV files; a {kind.capitalize()} file's columns are typed and its missing "
        f"values are nulls")
    assert stored_files(app) == []


def test_feather_v1_and_date_targets(client):
    """Feather v1 is named in the 422 with what to save instead; a date target gives classes written as text."""
    v1 = io.BytesIO()
    feather.write_feather(pa.table({"x": [1.0, 2.0], "label": [0, 1]}), v1, version=1)
    assert err(up(client, v1.getvalue(), "old.feather")) == (
        "Feather v1 files are not read; save it as Feather v2 (pyarrow.feather.write_feather, pandas' "
        "DataFrame.to_feather) or as Parquet")
    buf = io.BytesIO()
    days = pa.array(np.array(["2024-01-31", "2024-02-29"] * 3, dtype="datetime64[D]"))
    pq.write_table(pa.table({"x": pa.array(np.arange(6.0)), "when": days}), buf)
    body = ok(up(client, buf.getvalue(), "d.parquet"))
    assert body["task"] == "classification" and body["classes"] == ["2024-01-31", "2024-02-29"]


def test_delimiter_errors_say_what_was_given(client):
    semi = b"a;b;label\n1;2;x\n3;4;y\n"
    assert err(up(client, semi, delimiter="tab")) == (
        "the header row must name at least one feature column and the target column; found 1 column(s) (split on "
        "the delimiter tab given in the form field delimiter; check it)")
    assert err(up(client, semi, delimiter="|")) == (
        "the header row must name at least one feature column and the target column; found 1 column(s) (split on "
        "the delimiter pipe given in the form field delimiter; check it)")
    assert err(up(client, semi, delimiter='"')) == "delimiter cannot be '\"', the quote character of CSV fields"
    assert err(up(client, semi, na_values="[1, 2]")) == \
        "na_values must be comma-separated tokens or a JSON array of strings"


@pytest.mark.parametrize("csv", [b'"a\nb",label\n1,x\n2,y\n', b'x,"my\nlabel"\n1,p\n2,q\n'])
def test_a_header_name_with_a_line_break_is_a_422_not_a_shifted_table(app, client, csv):
    assert err(up(client, csv)) == ("line 1: a column name in the header holds a line break (a quoted field spans "
                                    "lines); column names must be on the header line")
    assert stored_files(app) == []


def test_a_long_file_name_gives_its_first_200_characters_as_the_name(client):
    body = ok(up(client, MIXED.encode(), "x" * 300 + ".csv"))
    assert body["name"] == "x" * 200
    r = up(client, MIXED.encode(), name="y" * 201)
    assert err(r) == "name must be at most 200 characters, got 201"


# -- names in any script -------------------------------------------------------------------------------------

@pytest.mark.parametrize("filename", ["данные.csv", "données.csv", "数据.csv"])
def test_file_names_in_any_script(client, filename):
    body = ok(up(client, MIXED.encode(), filename))
    assert body["name"] == filename[:-4]
    assert client.get(f"/v1/datasets/{body['id']}").json()["name"] == filename[:-4]


def test_rfc5987_filename_and_utf8_form_fields(client):
    boundary = "xyz"
    parts = [
        'Content-Disposition: form-data; name="file"; filename="x.csv"; '
        "filename*=UTF-8''%D0%B4%D0%B0%D0%BD%D0%BD%D1%8B%D0%B5.csv\r\nContent-Type: text/csv\r\n\r\n" + MIXED,
        'Content-Disposition: form-data; name="target"\r\n\r\nlabel',
    ]
    raw = "".join(f"--{boundary}\r\n{p}\r\n" for p in parts) + f"--{boundary}--\r\n"
    r = client.post("/v1/datasets", content=raw.encode(),
                    headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert ok(r)["name"] == "данные"
    body = ok(up(client, "größe,数量,label\n1,2,ja\n3,4,nein\n".encode(), name="données 数据", target="label",
                 categorical="数量"))
    assert body["name"] == "données 数据" and body["feature_names"] == ["größe", "数量"]


def test_browser_escaped_quotes_in_a_file_name(client):
    """A browser sends a file named 'the "best" data.csv' as filename="the %22best%22 data.csv" (WHATWG HTML's
    multipart encoding); curl as filename="the \\"best\\" data.csv"."""
    for disposition in ('filename="the %22best%22 data.csv"', 'filename="the \\"best\\" data.csv"'):
        raw = (f'--xyz\r\nContent-Disposition: form-data; name="file"; {disposition}\r\n'
               f"Content-Type: text/csv\r\n\r\n{MIXED}\r\n--xyz--\r\n")
        r = client.post("/v1/datasets", content=raw.encode(),
                        headers={"content-type": "multipart/form-data; boundary=xyz"})
        assert ok(r)["name"] == 'the "best" data', disposition


# -- labels exactly as written -------------------------------------------------------------------------------

def test_profile_shows_stored_float32_values_as_they_were_written(client):
    """min and max are stored float32 values, shown by their shortest decimal (32.1, not 32.099998474121094)."""
    col = ok(up(client, b"a,label\n32.1,x\n6.56,y\n14.62,x\n"))["columns"][0]
    assert (col["min"], col["max"]) == (6.56, 32.1)
    col = ok(client.post("/v1/datasets", json={"X": [[32.1], [6.56]], "y": [0, 1]}))["columns"][0]
    assert (col["min"], col["max"]) == (6.56, 32.1)


def test_labels_keep_their_text_and_numbers_stay_numbers(client):
    assert ok(up(client, b"x,label\n1,007\n2,07\n3,7\n4,7\n"))["classes"] == ["007", "07", "7"]
    assert ok(up(client, b"x,label\n1,0\n2,1\n3,1\n"))["classes"] == [0, 1]
    assert ok(up(client, b"x,label\n1,0\n2,1\n3,NA\n", drop_missing_target="true"))["classes"] == [0, 1]
    assert ok(up(client, b"x,label\n1,1.5\n2,2.5\n3,0.25\n"))["task"] == "regression"


def _label_csv(labels) -> bytes:
    return ("x,label\n" + "".join(f"{i},{v}\n" for i, v in enumerate(labels))).encode()


def test_integer_labels_past_float64_stay_exact(app, client):
    """Integers float64 cannot hold (past 2**53) are never rounded into another label or merged: int64 while they
    fit, the text past int64 (or when spelled 1e20); regression still reads numbers."""
    body = ok(up(client, _label_csv(["9007199254740993", "9007199254740992"] * 3)))
    assert body["classes"] == [9007199254740992, 9007199254740993]
    assert client.get(f"/v1/datasets/{body['id']}").json()["classes"] == [9007199254740992, 9007199254740993]
    assert stored(app, body["id"])[2].tolist() == [1, 0] * 3
    assert ok(up(client, _label_csv(["12345678901234567890", "1"] * 3)))["classes"] == ["1", "12345678901234567890"]
    assert ok(up(client, _label_csv(["9007199254740993", "1e20"] * 3)))["classes"] == ["1e20", "9007199254740993"]
    assert ok(up(client, _label_csv(["9007199254740993", "2"] * 3), task="regression"))["task"] == "regression"


def test_parquet_labels_are_exactly_as_written_and_nan_is_a_missing_target(client):
    """A typed Parquet string is not trimmed (CSV spaces around a delimiter are); NaN in a float target is how
    pandas writes a missing value: a 422 naming the row, or dropped with drop_missing_target."""
    def parquet(label) -> bytes:
        buf = io.BytesIO()
        pq.write_table(pa.table({"x": pa.array(np.arange(8.0)), "label": pa.array(label)}), buf)
        return buf.getvalue()
    assert ok(up(client, parquet([" a", "a", "a ", "a"] * 2), "t.parquet"))["classes"] == [" a", "a", "a "]
    assert ok(up(client, b"x,label\n1, a\n2,a \n3,b\n"))["classes"] == ["a", "b"]
    nan = parquet([0.0, 1.0, float("nan"), 1.0] * 2)
    assert err(up(client, nan, "t.parquet")) == ("row 3, column 2 ('label'): missing target value; fill it in, or "
                                                 "drop such rows with the form field drop_missing_target=true")
    body = ok(up(client, nan, "t.parquet", drop_missing_target="true"))
    assert body["n_dropped"] == 2 and body["n_samples"] == 6 and body["classes"] == [0, 1]


def test_missing_target_is_a_422_or_dropped_and_counted(app, client):
    csv = b"x,label\n1,0\n2,1\nNA,NA\n4,1\n5,\n6,0\n"
    assert err(up(client, csv)) == ("line 4, column 2 ('label'): missing target value; fill it in, or drop such "
                                    "rows with the form field drop_missing_target=true")
    body = ok(up(client, csv, drop_missing_target="true"))
    assert body["n_samples"] == 4 and body["n_dropped"] == 2 and body["classes"] == [0, 1]
    assert client.get(f"/v1/datasets/{body['id']}").json()["n_dropped"] == 2
    _, X, y = stored(app, body["id"])
    assert X[:, 0].tolist() == [1, 2, 4, 6] and y.tolist() == [0, 1, 1, 0]
    assert err(up(client, b"x,label\n1,NA\n2,\n", drop_missing_target="true")) == \
        "every row has a missing target value (2 dropped); nothing is left"


def test_single_class_target_uploads_and_is_one_clear_422_when_trained_on(client):
    """A one-class set uploads (a validation or scoring set may hold one class); training on it is one 422, before
    any other check (a regression network on a numeric one-class target got 'data set is for classification
    but network does regression' first: the circle the issue names)."""
    yes = ok(up(client, b"x,label\n1,yes\n2,yes\n"))
    assert yes["classes"] == ["yes"] and yes["task"] == "classification"
    three = ok(client.post("/v1/datasets", json={"X": [[1], [2]], "y": [3, 3]}))
    for ds, spec, detail in (
            (yes, mlp_spec(2), "dataset_id: the target has only one class, 'yes'; classification needs at least 2"),
            (three, mlp_spec(1, loss="mse"), "dataset_id: the target has only one class, 3; classification needs at "
                                             "least 2; for a numeric target upload with task=regression")):
        net = client.post("/v1/networks", json=spec).json()
        r = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"]})
        assert err(r) == detail
        r = client.post("/v1/sweeps", json={"dataset_id": ds["id"], "max_trials": 1})
        assert err(r) == detail
    assert ok(up(client, b"x,label\n1,3\n2,3\n", task="regression"))["task"] == "regression"


def test_labels_shaped_n_by_1_are_labels(client):
    body = ok(client.post("/v1/datasets", json={"X": [[0], [1], [2], [3]], "y": [[0], [1], [1], [0]]}))
    assert body["task"] == "classification" and body["classes"] == [0, 1] and body["n_outputs"] == 1
    buf = io.BytesIO()
    np.savez(buf, X=np.arange(8.0).reshape(4, 2), y=np.array([[0], [1], [1], [0]]))
    body = ok(up(client, buf.getvalue(), "d.npz", "application/octet-stream"))
    assert body["task"] == "classification" and body["classes"] == [0, 1]


def test_data_sets_without_metadata_still_read(app, client):
    body = ok(client.post("/v1/datasets", json={"X": [[0.0], [1.0]], "y": [0.5, 1.5]}))
    assert body["columns"] == [{"name": "x0", "type": "numeric", "missing": 0, "min": 0.0, "max": 1.0,
                                "mean": 0.5, "std": 0.5}]
    with app.state.sessionmaker() as session:
        row = datasets_service.get_or_raise(session, owner=DEFAULT_OWNER, dataset_id=body["id"])
        row.columns, row.n_dropped = None, None         # as stored before the profile existed
        session.commit()
    r = client.get(f"/v1/datasets/{body['id']}")
    assert r.status_code == 200 and r.json()["columns"] is None and r.json()["n_dropped"] == 0


# -- Palmer penguins in every format -------------------------------------------------------------------------

def test_penguins_identical_across_formats(app, client):
    raw = PENGUINS_CSV.read_bytes()
    text = raw.decode()
    table = pacsv.read_csv(PENGUINS_CSV, convert_options=pacsv.ConvertOptions(
        null_values=["NA", ""], strings_can_be_null=True))
    pbuf = io.BytesIO()
    pq.write_table(table, pbuf)
    uploads = {
        "csv": (raw, "penguins.csv"),
        "semicolon": (text.replace(",", ";").encode(), "penguins.csv"),
        "utf16": (text.encode("utf-16"), "penguins.csv"),
        "gz": (gzip.compress(raw), "penguins.csv.gz"),
        "parquet": (pbuf.getvalue(), "penguins.parquet"),
    }
    answers = {k: ok(up(client, data, name, "application/octet-stream", target="species"))
               for k, (data, name) in uploads.items()}
    ref = answers["csv"]
    assert ref["n_samples"] == 344 and ref["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert ref["feature_names"] == ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm",
                                    "body_mass_g", "sex", "year"]
    cols = {c["name"]: c for c in ref["columns"]}
    assert cols["island"]["categories"] == ["Biscoe", "Dream", "Torgersen"]
    assert cols["sex"]["categories"] == ["female", "male"] and cols["sex"]["missing"] == 11
    assert cols["bill_length_mm"]["missing"] == 2 and cols["bill_length_mm"]["type"] == "numeric"
    _, X0, y0 = stored(app, ref["id"])
    for k, body in answers.items():
        for key in ("columns", "classes", "feature_names", "n_samples", "task"):
            assert body[key] == ref[key], (k, key)
        _, X, y = stored(app, body["id"])
        np.testing.assert_array_equal(X, X0, err_msg=k)
        np.testing.assert_array_equal(y, y0, err_msg=k)


def _mixed_file(path: Path, rows: int = 3000) -> None:
    """A mixed file with text (spaces, NA tokens, blanks), numbers, booleans and a text target."""
    rng = np.random.default_rng(7)
    plans = np.array(["pro", " pro", "free", "basic ", "NA", "", "  ", "?", "élite"])
    lines = ["age,plan,member,score,label"]
    for i in range(rows):
        age = "" if rng.random() < 0.05 else str(int(rng.integers(18, 90)))
        score = "N/A" if rng.random() < 0.05 else f"{rng.standard_normal():.4f}"
        member = ["true", "false", ""][int(rng.integers(0, 3))]
        lines.append(f"{age},{plans[rng.integers(0, len(plans))]},{member},{score},{['yes', 'no', 'maybe'][i % 3]}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _same_arrays(a, b) -> None:
    """Bit for bit the same X (NaN for missing included), y, classes and profile; the mean and std to 1e-12 (merged
    per segment by Chan's formulas, so they depend on where the segments were cut)."""
    assert a.X.shape == b.X.shape == (3000, 4)
    assert np.array_equal(a.X.view(np.uint32), b.X.view(np.uint32))
    assert np.array_equal(a.y, b.y) and a.classes == b.classes
    for p, q in zip(a.columns, b.columns, strict=True):
        assert {k: v for k, v in p.items() if k not in ("mean", "std")} == \
            {k: v for k, v in q.items() if k not in ("mean", "std")}
        if p["type"] == "numeric":
            assert (p["mean"], p["std"]) == pytest.approx((q["mean"], q["std"]), rel=1e-12)


def test_segments_and_blocks_give_the_same_arrays_as_one_read(monkeypatch, tmp_path):
    """A file read as many segments, each of many pyarrow blocks (chunked columns walked chunk by chunk), gives
    bit for bit the arrays and profile of the same file read as one segment of one block."""
    from service.datasets import tabular
    from service.datasets.parsing import parse_table

    path = tmp_path / "mixed.csv"
    _mixed_file(path)
    whole = parse_table(path, target="label")
    monkeypatch.setattr(tabular, "SEGMENT_BYTES", 8192)
    monkeypatch.setattr(tabular, "BLOCK_BYTES", 512)
    cut = parse_table(path, target="label")
    _same_arrays(whole, cut)
    assert whole.classes == ["maybe", "no", "yes"]
    assert whole.columns[1]["categories"] == ["basic", "free", "pro", "élite"]


@pytest.mark.parametrize("ending", [b"\n", b"", b"\n   ", b"\n\n\n", b"\n\n "])
def test_a_csv_read_while_it_arrives_gives_the_arrays_of_the_whole_file(monkeypatch, tmp_path, ending):
    """Segments mapped from a spool that grows in 1,000-byte writes (in another thread), from the complete file and
    read through gzip (copied, not mapped) give the same arrays, whatever follows the last line break."""
    import threading

    from service.datasets import tabular
    from service.datasets.parsing import parse_table
    from service.datasets.spool import Spool

    monkeypatch.setattr(tabular, "SEGMENT_BYTES", 4096)
    path = tmp_path / "mixed.csv"
    _mixed_file(path)
    data = path.read_bytes()[:-1] + ending
    path.write_bytes(data)
    gz = tmp_path / "mixed.csv.gz"
    gz.write_bytes(gzip.compress(data))
    part = tmp_path / "part.csv"
    part.write_bytes(b"")
    spool = Spool(part, expected=len(data))

    def arrive() -> None:
        with open(part, "ab", buffering=0) as f:
            for i in range(0, len(data), 1000):
                f.write(data[i:i + 1000])
                spool.grew(min(i + 1000, len(data)))
        spool.end("done")

    writer = threading.Thread(target=arrive)
    writer.start()
    arrived = parse_table(spool, target="label")
    writer.join()
    _same_arrays(arrived, parse_table(path, target="label"))
    _same_arrays(arrived, parse_table(gz, kind="csv.gz", target="label"))


def test_a_spool_that_fails_stops_the_parse(tmp_path):
    from service.datasets.parsing import parse_table
    from service.datasets.spool import Spool, UploadAborted

    part = tmp_path / "part.csv"
    part.write_bytes(b"a,b,label\n1,2,x\n")
    spool = Spool(part)
    spool.grew(len(part.read_bytes()))
    spool.end("failed")
    with pytest.raises(UploadAborted):
        parse_table(spool, target="label")


@pytest.mark.parametrize("later", [["z", "zz"], ["a", "m", "z"], ["n", "b"]])
def test_categories_met_in_later_segments_keep_the_sorted_codes(monkeypatch, tmp_path, later):
    """X holds each category's rank among all of the column's categories sorted, also when a category first met
    in a later segment sorts before (ranks of earlier rows change: written again at the end) or after the others."""
    from service.datasets import tabular
    from service.datasets.parsing import parse_table

    rows = [f"{i},m,{i % 2}" if i < 400 else f"{i},{later[i % len(later)]},{i % 2}" for i in range(800)]
    path = tmp_path / "late.csv"
    path.write_text("a,cat,label\n" + "\n".join(rows) + "\n")
    whole = parse_table(path)
    monkeypatch.setattr(tabular, "SEGMENT_BYTES", 1024)
    cut = parse_table(path)
    cats = sorted({"m", *later})
    assert whole.columns[1]["categories"] == cut.columns[1]["categories"] == cats
    expect = [cats.index("m" if i < 400 else later[i % len(later)]) for i in range(800)]
    assert whole.X[:, 1].tolist() == cut.X[:, 1].tolist() == expect
