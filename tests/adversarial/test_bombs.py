"""Decompression and allocation bombs in .npz, .csv.gz, Parquet and Arrow uploads, and labels of unbounded length.

The archive's members are looked at before anything is inflated: their declared shapes x itemsize are summed and
refused over the upload limit or a quota (413); archives numpy could not have written are a 422 "not a valid
.npz"; the stored (decompressed) bytes count against the stored-bytes quota."""

from __future__ import annotations

import gzip
import io
import struct
import zipfile

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings


def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def zero_bomb(rows: int, cols: int, dtype=np.float32) -> bytes:
    """An np.savez_compressed-style archive of a (rows, cols) zero matrix X, written in chunks (the test never
    holds the matrix), plus y."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        with zf.open("X.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_1_0(fh, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                                     "shape": (rows, cols)})
            chunk = bytes(np.dtype(dtype).itemsize * cols * 1024)
            left = rows
            while left:
                n = min(left, 1024)
                fh.write(chunk[: n * np.dtype(dtype).itemsize * cols])
                left -= n
        yb = io.BytesIO()
        np.save(yb, np.zeros(rows, dtype=np.int8))
        zf.writestr("y.npy", yb.getvalue())
    return buf.getvalue()


def upload(c, content: bytes, name: str = "bomb.npz", **fields):
    return c.post("/v1/datasets", files={"file": (name, content, "application/octet-stream")}, data=fields)


def test_compression_bomb_is_a_413_before_it_is_inflated(live_server, watch):
    """1 MB on the wire that declares 512 MB of float32 (10^6 x 128 zeros), under the 200 MB upload limit:
    refused from the members' headers; the server neither inflates it nor grows."""
    bomb = zero_bomb(1_000_000, 128)
    assert len(bomb) < 1_000_000
    srv = live_server(workers=0)
    with srv.client() as http:  # warm-up: the first upload of a process imports the parsers
        assert upload(http, npz_bytes(X=np.ones((4, 2)), y=np.arange(4) % 2)).status_code == 201
    with watch(srv) as w, srv.client() as http:
        for _ in range(3):
            r = upload(http, bomb)
            assert r.status_code == 413, r.text
            assert r.json()["detail"] == ("the .npz holds arrays of 513,000,000 bytes once decompressed, more than "
                                          "the limit of 209,715,200 bytes (MLP_MAX_UPLOAD_BYTES); nothing is stored")
        assert http.get("/v1/datasets").json()["total"] == 1
    w.assert_responsive(w.baseline)
    assert w.peak_rss < 350 * 2**20, f"server RSS {w.peak_rss / 2**20:.0f} MiB"
    leftovers = [p for p in srv.data_dir.rglob("*") if p.is_file() and p.stat().st_size > 100_000
                 and p.name != "mlp.db" and not p.name.startswith("mlp.db")]
    assert leftovers == []


def test_stored_bytes_quota_counts_decompressed_bytes(tmp_path):
    """Under a 1,000,000-byte stored quota, a ~100 KB archive of 2 MB of arrays is refused; a small one is
    accepted and counted by what it stores."""
    app = create_app(Settings(data_dir=tmp_path / "d", workers=0, quota_max_stored_bytes=1_000_000))
    with TestClient(app) as c:
        r = upload(c, zero_bomb(4000, 125))          # 2,000,000 bytes of float32 + 4,000 of y
        assert r.status_code == 413, r.text
        assert r.json()["detail"].startswith("quota exceeded: tenant default stores 0 bytes of data sets; "
                                             "2,004,000 more would pass the limit quota_max_stored_bytes")
        X = np.zeros((1000, 100), np.float32)
        y = np.arange(1000) % 2
        r = upload(c, npz_bytes(X=X, y=y))
        assert r.status_code == 201, r.text
        assert r.json()["size_bytes"] == 1000 * 100 * 4 + 1000 * 8  # the stored arrays, not the ~2 KB upload
        r = upload(c, npz_bytes(X=X, y=y))
        assert r.status_code == 201
        r = upload(c, npz_bytes(X=X, y=y))
        assert r.status_code == 413 and "more would pass the limit quota_max_stored_bytes" in r.json()["detail"]


def _patch_headers(data: bytes, *, flags: int | None = None, method: int | None = None) -> bytes:
    """Set the general-purpose flags / compression method of every member, in local and central headers."""
    b = bytearray(data)
    for sig, flag_off, method_off in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        i = b.find(sig)
        while i >= 0:
            if flags is not None:
                struct.pack_into("<H", b, i + flag_off, struct.unpack_from("<H", b, i + flag_off)[0] | flags)
            if method is not None:
                struct.pack_into("<H", b, i + method_off, method)
            i = b.find(sig, i + 4)
    return bytes(b)


def _huge_header() -> bytes:
    """X.npy's header declares 10^13 float64 elements; the member holds 80 bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        head = io.BytesIO()
        np.lib.format.write_array_header_1_0(head, {"descr": "<f8", "fortran_order": False, "shape": (10**13,)})
        zf.writestr("X.npy", head.getvalue() + bytes(80))
        yb = io.BytesIO()
        np.save(yb, np.zeros(10))
        zf.writestr("y.npy", yb.getvalue())
    return buf.getvalue()


GOOD = npz_bytes(X=np.ones((10, 2)), y=np.arange(10) % 2)


@pytest.mark.parametrize("content,why", [
    (_huge_header(), "member 'X.npy' declares shape [10000000000000] of float64, 80,000,000,000,000 bytes, but "
                     "holds 80"),
    (_patch_headers(GOOD, flags=0x1), "member 'X.npy' is encrypted"),
    (_patch_headers(GOOD, method=98), "member 'X.npy' uses compression method 98"),
    (GOOD[: len(GOOD) // 2], "not a valid .npz file ("),
])
def test_crafted_archives_are_a_422(client, content, why):
    r = upload(client, content)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("not a valid .npz file")
    assert why in r.json()["detail"]


def test_long_feature_name_in_npz_is_a_422(client):
    r = upload(client, npz_bytes(X=np.ones((4, 2)), y=np.arange(4) % 2,
                                 feature_names=np.array(["a" * 2_000_000, "b"])))
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == "feature name 0 is 2,000,000 characters long; at most 256"


def test_long_csv_column_name_and_class_label_are_a_422(client):
    csv = ("x," + "c" * 300 + ",label\n" + "1,2,a\n3,4,b\n").encode()
    r = client.post("/v1/datasets", files={"file": ("t.csv", csv, "text/csv")})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == "feature name 1 is 300 characters long; at most 256"
    r = client.post("/v1/datasets", json={"name": "t", "X": [[1.0], [2.0]], "y": ["L" * 5000, "b"]})
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("class label ") and "5,000 characters long; at most 256" in r.json()["detail"]


# ----------------------------------------------------------------------------- compressed tabular files

def _gz_csv(rows: int) -> bytes:
    """A .csv.gz of ``rows`` rows (6 bytes each): a few KB on the wire."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9) as g:
        g.write(b"a,b,label\n")
        for _ in range(rows // 100_000):
            g.write(b"1,1,0\n2,2,1\n" * 50_000)
    return buf.getvalue()


def _zeros_table(rows: int) -> pa.Table:
    return pa.table({"a": pa.array(np.zeros(rows)), "label": pa.array(np.arange(rows) % 2)})


@pytest.fixture
def limited(tmp_path):
    """The app with MLP_MAX_UPLOAD_BYTES = 2,000,000 (what a compressed file may decode to)."""
    with TestClient(create_app(Settings(data_dir=tmp_path / "d", workers=0, max_upload_bytes=2_000_000))) as c:
        yield c


def test_csv_gz_that_inflates_past_the_limit_is_a_413(limited):
    """2,400,000 bytes of CSV in a few KB of gzip: refused once the inflated text passes the limit, as the same
    CSV sent uncompressed would be; nothing is stored. One that inflates to less is read."""
    bomb = _gz_csv(400_000)
    assert len(bomb) < 20_000
    r = upload(limited, bomb, "bomb.csv.gz")
    assert r.status_code == 413, r.text
    assert r.json()["detail"] == ("the .csv.gz decompresses to more than 2,000,000 bytes, the limit "
                                  "(MLP_MAX_UPLOAD_BYTES); nothing is stored")
    ok = upload(limited, _gz_csv(200_000), "fine.csv.gz")          # 1,200,010 bytes inflated
    assert ok.status_code == 201, ok.text
    assert ok.json()["n_samples"] == 200_000
    assert limited.get("/v1/datasets").json()["total"] == 1


@pytest.mark.parametrize("fmt", ["parquet", "arrow", "arrow-one-batch", "arrow-stream"])
def test_parquet_and_arrow_files_that_decode_past_the_limit_are_a_413(limited, fmt):
    """1,000,000 rows of zeros compress to kilobytes but decode to 8,000,000 bytes of arrays (and 16 MB of
    column data): refused before any batch is decompressed, Parquet from its footer, Arrow from its messages'
    metadata (also one single batch: pyarrow would allocate all of it at once)."""
    table = _zeros_table(1_000_000)
    buf = io.BytesIO()
    if fmt == "parquet":
        pq.write_table(table, buf, compression="zstd")
    elif fmt == "arrow":
        feather.write_feather(table, buf, compression="zstd", chunksize=65_536)
    elif fmt == "arrow-one-batch":
        feather.write_feather(table, buf, compression="zstd", chunksize=1_000_000)
    else:
        with pa.ipc.new_stream(buf, table.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as w:
            w.write_table(table, max_chunksize=65_536)
    assert len(buf.getvalue()) < 200_000
    r = upload(limited, buf.getvalue(), f"bomb.{fmt.split('-')[0]}")
    assert r.status_code == 413, r.text
    if fmt == "parquet":
        assert r.json()["detail"] == ("the Parquet file holds 1,000,000 rows x 2 columns: 8,000,000 bytes of arrays "
                                      "once decoded, more than the limit of 2,000,000 bytes (MLP_MAX_UPLOAD_BYTES); "
                                      "nothing is stored")
    else:   # the buffers' declared (uncompressed) lengths: 1,000,000 rows x 2 float64 columns
        assert r.json()["detail"] == ("the Arrow file holds 16,000,000 bytes of column data once decoded, more than "
                                      "the limit of 2,000,000 bytes (MLP_MAX_UPLOAD_BYTES); nothing is stored")
    small = io.BytesIO()
    pq.write_table(_zeros_table(50_000), small, compression="zstd") if fmt == "parquet" else \
        feather.write_feather(_zeros_table(50_000), small, compression="zstd")
    ok = upload(limited, small.getvalue(), f"fine.{fmt.split('-')[0]}")
    assert ok.status_code == 201, ok.text
    assert limited.get("/v1/datasets").json()["total"] == 1
