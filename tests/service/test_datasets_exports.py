"""Files as common tools export them: pandas' row index in Parquet/Arrow, NA tokens with spaces around them in a CSV
target, Excel's ``sep=`` line, whitespace-only lines, a row index written by pandas/R in a CSV, a trailing delimiter,
German numbers with thousands dots. Each by status code and values or ``detail``."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pytest

from service.datasets import tabular
from tests.service.test_datasets_tabular import err, ok, stored, up
from tests.service.test_datasets_text_rules import train

PARQUET = "application/vnd.apache.parquet"
ARROW = "application/vnd.apache.arrow.stream"


def pandas_file(df: pd.DataFrame, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "parquet":
        df.to_parquet(buf)                                  # pandas' defaults: a non-range index is stored
    else:
        feather.write_feather(pa.Table.from_pandas(df), buf, compression="uncompressed")
    return buf.getvalue()


def noise_frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 40
    df = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n),
                       "y": np.where(rng.random(n) < 0.5, "a", "b")})
    df = df.sort_values("y").reset_index(drop=True)
    return df[df.index != 7]                                # a row filter: the index is no RangeIndex any more


# -- pandas' row index in Parquet/Arrow ----------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_the_pandas_index_of_a_parquet_or_arrow_file_is_no_feature(app, client, fmt):
    df = noise_frame()
    body = ok(up(client, pandas_file(df, fmt), f"t.{fmt}", "application/octet-stream", target="y"))
    assert body["feature_names"] == ["x1", "x2"]
    assert body["columns"][-1] == {"name": "__index_level_0__", "type": "ignored",
                                   "reason": "the row index pandas wrote with the data (read back as the index, "
                                             "not as a column)"}
    _, X, _ = stored(app, body["id"])
    np.testing.assert_array_equal(X, df[["x1", "x2"]].to_numpy(np.float32))
    # without a target field the last data column is the target, not the index pandas wrote after it
    assert ok(up(client, pandas_file(df, fmt), f"t.{fmt}", "application/octet-stream"))["target"] == "y"


def test_a_named_pandas_index_is_ignored_and_a_range_index_has_no_column(client):
    df = noise_frame().reset_index(drop=True)
    df.insert(0, "id", [f"c{i}" for i in range(len(df))])
    named = ok(up(client, pandas_file(df.set_index("id"), "parquet"), "t.parquet", target="y"))
    assert named["feature_names"] == ["x1", "x2"]
    assert [c["name"] for c in named["columns"] if c["type"] == "ignored"] == ["id"]
    plain = ok(up(client, pandas_file(df.drop(columns="id"), "parquet"), "t.parquet", target="y"))
    assert plain["feature_names"] == ["x1", "x2"]
    assert all(c["type"] == "numeric" for c in plain["columns"])
    # named as the target, an index column is the target
    assert ok(up(client, pandas_file(df.set_index("y"), "parquet"), "t.parquet", target="y"))["target"] == "y"


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_a_pandas_index_in_a_parquet_or_arrow_predict_body_is_left_out(client, wait_job, fmt):
    rows = "".join(f"{i},{(i * 7) % 11},{'p' if i % 3 else 'q'}\n" for i in range(30))
    model = train(client, wait_job, ok(up(client, ("num,other,y\n" + rows).encode())), 2)
    url = f"/v1/models/{model}/predict"
    df = pd.DataFrame({"num": [3.0, 60.0, 9.0], "other": [1.0, 2.0, 5.0]})
    want = client.post(url, json={"records": df.to_dict("records")})
    assert want.status_code == 200, want.text
    sub = df[df.num < 50]                                   # index [0, 2]: stored as __index_level_0__
    body = pandas_file(sub, fmt) if fmt == "parquet" else _arrow_stream(sub)
    r = client.post(url, content=body, headers={"content-type": PARQUET if fmt == "parquet" else ARROW})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == [want.json()["predictions"][0], want.json()["predictions"][2]]


def _arrow_stream(df: pd.DataFrame) -> bytes:
    table = pa.Table.from_pandas(df)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


# -- an NA token with spaces around it in a CSV target --------------------------------------------------------------

PADDED = [" NA", "NA ", '" NA "', " NULL ", " ? ", "\u00a0NA", "  "]


@pytest.mark.parametrize("cell", PADDED)
@pytest.mark.parametrize("sep", [",", ";"])
def test_a_padded_na_token_in_a_csv_target_is_a_missing_value(client, cell, sep):
    lines = [f"a{sep}y"] + [f"{i}{sep}{i % 2}" for i in range(18)]
    lines.insert(19, f"5{sep}{cell}")                          # file line 20
    csv = ("\n".join(lines) + "\n").encode()
    assert err(up(client, csv)) == ("line 20, column 2 ('y'): missing target value; fill it in, or drop such rows "
                                    "with the form field drop_missing_target=true")
    body = ok(up(client, csv, drop_missing_target="true"))
    assert body["classes"] == [0, 1] and body["n_dropped"] == 1


def test_a_padded_na_token_among_text_labels_is_missing_too(client):
    csv = "a,y\n" + "".join(f"{i},{'pq'[i % 2]}\n" for i in range(10)) + "3, NA \n"
    body = ok(up(client, csv.encode(), drop_missing_target="true"))
    assert body["classes"] == ["p", "q"] and body["n_dropped"] == 1


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_a_parquet_or_arrow_string_target_keeps_na_text_as_a_label(client, fmt):
    # typed files: only nulls and empty strings are missing, in the target as in text features (README)
    df = pd.DataFrame({"a": range(12), "y": ["p", "q", "NA"] * 4})
    assert ok(up(client, pandas_file(df, fmt), f"t.{fmt}", target="y"))["classes"] == ["NA", "p", "q"]
    df["y"] = ["p", "q", ""] * 4
    assert err(up(client, pandas_file(df, fmt), f"t.{fmt}", target="y")).startswith(
        "row 3, column 2 ('y'): missing target value")


# -- Excel's sep= line, lines of spaces, unnamed index and trailing delimiter --------------------------------------

ROWS = "".join(f"{i};{i % 5},5;{'pq'[i % 2]}\n" for i in range(20))


@pytest.mark.parametrize("crlf", [False, True])
def test_an_excel_sep_line_names_the_delimiter_and_is_skipped(app, client, crlf):
    text = "sep=;\na;b;y\n" + ROWS
    body = ok(up(client, (text.replace("\n", "\r\n") if crlf else text).encode()))
    plain = ok(up(client, ("a;b;y\n" + ROWS).encode()))
    assert body["feature_names"] == ["a", "b"] and body["columns"] == plain["columns"]
    np.testing.assert_array_equal(stored(app, body["id"])[1], stored(app, plain["id"])[1])
    assert err(up(client, b"sep=;\n")) == "line 1: a 'sep=' line and no header line after it"


def test_lines_of_spaces_are_blank_lines(app, client):
    text = "a,b,y\n   \n" + "".join(f"{i},{i % 3},{'pq'[i % 2]}\n" for i in range(10)) + " \t \n\t\n"
    body = ok(up(client, text.encode()))
    _, X, _ = stored(app, body["id"])
    assert X.shape == (10, 2)
    # a real short row still names its line (blank lines counted)
    assert err(up(client, (text + "1\n").encode())) == "line 15: expected 3 columns (as in the header), found 1"


def test_lines_of_spaces_past_the_first_segment_are_blank_lines(app, client, monkeypatch):
    monkeypatch.setattr(tabular, "SEGMENT_BYTES", 64)
    rows = [" \t " if i % 7 == 3 else f"{i},{i % 3},{'pq'[i % 2]}" for i in range(60)]
    body = ok(up(client, ("a,b,y\n" + "\n".join(rows) + "\n").encode()))
    _, X, _ = stored(app, body["id"])
    np.testing.assert_array_equal(X[:, 0], [i for i in range(60) if i % 7 != 3])


@pytest.mark.parametrize("header", [",a,b,y", '"","a","b","y"'])
def test_a_row_index_column_written_by_pandas_or_r_is_named_as_such(client, header):
    csv = header + "\n" + "".join(f'"{i + 1}",{i},{i % 3},{"pq"[i % 2]}\n' for i in range(10))
    assert err(up(client, csv.encode())) == (
        "line 1: header column 1 has no name; the first column has no name, as the row index written by pandas' "
        "to_csv() or R's write.csv() has: write the file with index=False (pandas) or row.names=FALSE (R), or "
        "name that column and leave it out with the form field ignore")


def test_a_trailing_delimiter_is_named_as_the_cause(client):
    csv = "a,b,y,\n" + "".join(f"{i},{i % 3},{'pq'[i % 2]},\n" for i in range(10))
    assert err(up(client, csv.encode())) == (
        "line 1: header column 4 has no name; the last column has no name: the header line ends with the "
        "delimiter (as when every line ends with one); remove the trailing delimiter, or name the column")


def test_csv_predict_bodies_read_sep_lines_space_lines_and_name_an_index_column(client, wait_job):
    model = train(client, wait_job, ok(up(client, ("a;b;y\n" + ROWS).encode())), 2)
    url = f"/v1/models/{model}/predict"
    csv = {"content-type": "text/csv"}
    want = client.post(url, json={"records": [{"a": 3, "b": 1.5}, {"a": 8, "b": 0.5}]})
    assert want.status_code == 200, want.text
    for text in ("sep=;\na;b\n3;1,5\n8;0,5\n", "a,b\n  \n3,1.5\n\t\n8,0.5\n", "sep=,\r\na,b\r\n3,1.5\r\n \r\n8,0.5\r\n"):
        r = client.post(url, content=text.encode(), headers=csv)
        assert r.status_code == 200, (text, r.text)
        assert r.json() == want.json(), text
    r = client.post(url, content=b",a,b\n0,3,1.5\n1,8,0.5\n", headers=csv)
    assert err(r).startswith("the CSV body's header column 1 has no name; the first column has no name, as the "
                             "row index written by pandas' to_csv()")


# -- German numbers: thousands dots and decimal commas --------------------------------------------------------------

GERMAN = "Einwohner;Anteil;y\n999;0,5;ja\n1.234;0,25;nein\n12.500;0,75;ja\n850;0,1;nein\n12.345.678;1,5;ja\n-2.000;2;nein\n"


def test_thousands_dots_beside_decimal_commas_are_read_at_their_magnitude(app, client):
    body = ok(up(client, GERMAN.encode()))
    assert [c["type"] for c in body["columns"]] == ["numeric", "numeric"]
    _, X, _ = stored(app, body["id"])
    np.testing.assert_array_equal(X, np.array([[999, 0.5], [1234, 0.25], [12500, 0.75], [850, 0.1],
                                               [12345678, 1.5], [-2000, 2]], np.float32))
    # the same with the fields given, and past the first segment
    same = ok(up(client, GERMAN.encode(), decimal=",", thousands="."))
    np.testing.assert_array_equal(stored(app, same["id"])[1], X)


def test_thousands_dots_past_the_first_segment(app, client, monkeypatch):
    monkeypatch.setattr(tabular, "SEGMENT_BYTES", 64)
    rows = [f"{i if i < 40 else f'{i}.{i:03d}'};{i % 4},5;{'pq'[i % 2]}" for i in range(50)]
    body = ok(up(client, ("n;r;y\n" + "\n".join(rows) + "\n").encode()))
    _, X, _ = stored(app, body["id"])
    assert body["columns"][0]["type"] == "numeric"
    np.testing.assert_array_equal(X[:, 0], [i if i < 40 else i * 1000 + i for i in range(50)])


def test_the_thousands_field(app, client):
    us = "a,b,y\n" + "".join(f'"{i},{i:03d}.5",{i},{"pq"[i % 2]}\n' for i in range(1, 11))
    body = ok(up(client, us.encode(), thousands=","))
    np.testing.assert_array_equal(stored(app, body["id"])[1][:, 0], [i * 1000 + i + 0.5 for i in range(1, 11)])
    assert err(up(client, GERMAN.encode(), thousands="x")) == (
        "thousands must be one character such as . , ' or space (or point, comma, space, apostrophe), got 'x'")
    assert err(up(client, GERMAN.encode(), thousands=".", decimal=".")) == (
        "thousands '.' is also the decimal mark; set the form field decimal")


def test_a_csv_predict_body_reads_german_numbers_as_the_upload(client, wait_job):
    model = train(client, wait_job, ok(up(client, GERMAN.encode())), 2)
    url = f"/v1/models/{model}/predict"
    want = client.post(url, json={"records": [{"Einwohner": 1234, "Anteil": 0.25}, {"Einwohner": 850, "Anteil": 2}]})
    assert want.status_code == 200, want.text
    r = client.post(url, content="Einwohner;Anteil\n1.234;0,25\n850;2\n".encode(),
                    headers={"content-type": "text/csv"})
    assert r.status_code == 200, r.text
    assert r.json() == want.json()


def test_a_stata_dot_is_a_missing_value(client):
    rows = [f"{'.' if i == 4 else i}, {'.' if i == 6 else 'pq'[i % 2]},{'yes' if i % 2 else 'no'}" for i in range(20)]
    cols = ok(up(client, ("n,c,y\n" + "\n".join(rows) + "\n").encode()))["columns"]
    assert (cols[0]["type"], cols[0]["missing"], cols[0]["min"], cols[0]["max"]) == ("numeric", 1, 0.0, 19.0)
    assert (cols[1]["type"], cols[1]["missing"]) == ("categorical", 1)
