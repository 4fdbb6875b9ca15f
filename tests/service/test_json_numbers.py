"""Big JSON arrays of numbers read without Python floats (service/bodies.numbers_at): the same float32 rows,
bit for bit, as orjson + numpy read them, and the same 422/400 for everything the fast path leaves to orjson."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

import numpy as np
import orjson
import pytest

from service.bodies import FAST_MIN_BYTES, numbers_at, parse_json
from service.errors import InvalidInput
from service.models import service
from service.v2 import protocol

D = 8            # row width of the /v1 bodies here
N = 400          # rows: about 30 kB of numbers, above FAST_MIN_BYTES


def tricky_numbers(rng: np.random.Generator, count: int) -> list[str]:
    """JSON number texts that are hard to round: float32 midpoints written out exactly and a hair either side,
    long decimals, integers beyond 2**53, subnormals, exponents in every spelling, -0."""
    fixed = ["0", "-0", "-0.0", "0e0", "1E5", "1e+5", "1e-5", "-1.5E-3", "1e-45", "-1e-45", "1e-46", "7e-46",
             "1.4e-45", "4.9e-324", "2.2250738585072011e-308", "3.4028234e38", "-3.4028234663852886e38",
             "16777217", "-16777217", "9007199254740993", "1152921573326323713", "18446744073709551615",
             "-9223372036854775808", "1.00000005960464477539062499", "1.000000059604644775390625",
             "1.000000059604644775390625000001", "0.1", "123456789", "1", "-1", "42"]
    out = list(fixed)
    f32 = rng.standard_normal(count).astype(np.float32) * np.float32(10.0) ** rng.integers(-30, 30, count)
    up = np.nextafter(f32, np.float32(np.inf))
    for a, b in zip(f32.tolist(), up.tolist()):
        mid = Decimal(a) / 2 + Decimal(b) / 2                      # exact: the float32 tie point
        hair = Decimal(10) ** (mid.adjusted() - 40)
        out += [f"{mid:e}", f"{mid + hair:e}", f"{mid - hair:e}"]      # all digits, in exponent form
    out += [repr(float(v)) for v in rng.standard_normal(count) * 10.0 ** rng.uniform(-40, 38, count)]
    out += [orjson.dumps(np.float32(v), option=orjson.OPT_SERIALIZE_NUMPY).decode()
            for v in rng.standard_normal(count).astype(np.float32)]
    for _ in range(count):                                         # 20-25 digits, random point and exponent
        digits = "".join(rng.choice(list("0123456789"), int(rng.integers(20, 26))))
        cut = int(rng.integers(1, len(digits)))
        out.append(f"{'-' if rng.random() < 0.5 else ''}{int(digits[:cut])}.{digits[cut:]}e{int(rng.integers(-50, 30))}")
    out += [str(int(v)) for v in rng.integers(-2**63, 2**63 - 1, count, dtype=np.int64)]
    out += [str(2**53 + int(k)) for k in rng.integers(-1000, 1000, count)]
    return out


def rows_text(cells: list[str], width: int, sep: str = ",") -> str:
    rows = [cells[i:i + width] for i in range(0, len(cells) - len(cells) % width, width)]
    return "[" + sep.join("[" + sep.join(r) + "]" for r in rows) + "]"


def v1_reference(body: bytes, width: int = D):
    """What the predict route read before the fast path: orjson's parse, then numpy (or its 422)."""
    try:
        return service.inputs_from_doc(parse_json(body), input_dim=width)
    except InvalidInput as exc:
        return f"422 {exc.detail}"


def v1_now(body: bytes, width: int = D):
    try:
        return service.parse_inputs(body, input_dim=width)
    except InvalidInput as exc:
        return f"422 {exc.detail}"


def same(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def test_tricky_numbers_read_bit_for_bit_as_orjson_and_numpy_read_them():
    rng = np.random.default_rng(0)
    cells = [c for c in tricky_numbers(rng, 3000) if abs(float(c)) < 3.4e38]
    rng.shuffle(cells)
    for sep in (",", ", ", " ,\n\t"):
        body = ('{"inputs": ' + rows_text(cells, D, sep) + "}").encode()
        assert len(body) >= FAST_MIN_BYTES
        got = service._numeric_inputs(body, input_dim=D, columns=None)
        assert got is not None                                     # the fast path read it
        ref = v1_reference(body)
        assert same(got, ref) and same(v1_now(body), ref)
        assert got.shape == (len(cells) // D, D)


def _big(inner_rows: str) -> bytes:
    """A body whose rows are ``inner_rows`` then enough ordinary rows to be over FAST_MIN_BYTES."""
    pad = ",".join(["[" + ",".join(["0.125"] * D) + "]"] * N)
    return ('{"inputs": [' + inner_rows + "," + pad + "]}").encode()


ROW = ",".join(["1.5"] * D)
LEFT_TO_ORJSON = {
    "huge value (float32 inf)": _big(f"[{ROW}],[1,2,1e300,4,5,6,7,8]"),
    "beyond float64": _big(f"[{ROW}],[1,2,1e400,4,5,6,7,8]"),
    "integer beyond 64 bits": _big("[123456789012345678901234567890,2,3,4,5,6,7,8]"),
    "integer below -2**63": _big("[-9223372036854775809,2,3,4,5,6,7,8]"),
    "ragged rows": _big(f"[{ROW}],[1,2,3]"),
    "null": _big("[1,2,null,4,5,6,7,8]"),
    "boolean": _big("[1,2,true,4,5,6,7,8]"),
    "numeric string": _big('[1,2,"3.25",4,5,6,7,8]'),
    "word": _big('[1,2,"three",4,5,6,7,8]'),
    "object": _big('[1,2,{"a":1},4,5,6,7,8]'),
    "deeper nesting": _big("[[1],2,3,4,5,6,7,8]"),
    "empty and long lists cancelling out": _big("[[],2,[3,4],5,6,7,8,9]"),
    "NaN": _big("[1,2,NaN,4,5,6,7,8]"),
    "wrong width": ('{"inputs": ' + rows_text(["0.0625"] * (8 * N), 5) + "}").encode(),
    "flat list": ('{"inputs": [' + ",".join(["0.0625"] * (8 * N)) + "]}").encode(),
    "extra field": _big(f"[{ROW}]")[:-1] + b', "x": 1}',
    "duplicate key": _big(f"[{ROW}]")[:-1] + b', "inputs": 5}',
    "the placeholder text in the body": _big(f"[{ROW}]")[:-1] + b', "x": "#numbers#"}',
    "byte order mark": b"\xef\xbb\xbf" + _big(f"[{ROW}]"),
    "trailing text": _big(f"[{ROW}]") + b" x",
    "escaped key": _big(f"[{ROW}]").replace(b'"inputs"', b'"\\u0069nputs"'),
    "inputs nested elsewhere": b'{"x": {"inputs": ' + _big(f"[{ROW}]")[11:] + b', "inputs": "\\u0023numbers#"}',
    "no rows, padded": b'{"inputs": [' + b" " * FAST_MIN_BYTES + b"]}",
    "empty rows": ('{"inputs": [' + ",".join(["[]"] * 9000) + "]}").encode(),
    "not an object": _big(f"[{ROW}]")[11:-1],
}


@pytest.mark.parametrize("case", list(LEFT_TO_ORJSON))
def test_bodies_the_fast_path_leaves_to_orjson_answer_as_before(case):
    body = LEFT_TO_ORJSON[case]
    assert len(body) >= FAST_MIN_BYTES
    assert service._numeric_inputs(body, input_dim=D, columns=None) is None
    ref = v1_reference(body)
    assert same(v1_now(body), ref), (v1_now(body), ref)


def test_the_answers_left_to_orjson_are_the_usual_422s():
    expect = {
        "huge value (float32 inf)": "422 inputs[1][2] is not a finite number: 1e+300",
        "ragged rows": "422 inputs[1] has 3 values but inputs[0] has 8 (ragged rows)",
        "null": "422 inputs[0][2] is not a finite number: null",
        "word": "422 inputs[0][2] is not a number: 'three'",
        "wrong width": "422 inputs rows must have 8 values (the model's input width), got 5",
        "no rows, padded": "422 inputs is empty: send at least one row",
    }
    for case, detail in expect.items():
        assert v1_now(LEFT_TO_ORJSON[case]) == detail, case
    assert v1_now(LEFT_TO_ORJSON["beyond float64"]).startswith("422 the body is not valid JSON")
    assert v1_now(LEFT_TO_ORJSON["extra field"]).startswith("422 unknown field(s) ['x']")


def test_numbers_at_reads_flat_and_nested_arrays_at_a_path():
    values = np.arange(6000, dtype=np.float64) / 8
    doc = {"id": "a", "inputs": [{"name": "input", "shape": [1500, 4], "datatype": "FP32", "data": values}],
           "outputs": [{"name": "label"}]}
    flat = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    nested = orjson.dumps({**doc, "inputs": [{**doc["inputs"][0], "data": values.reshape(1500, 4)}]},
                          option=orjson.OPT_SERIALIZE_NUMPY)
    for body, shape in ((flat, (6000,)), (nested, (1500, 4))):
        rest, got = numbers_at(body, ("inputs", 0, "data"))
        assert got.shape == shape and np.array_equal(got.reshape(-1), values)
        assert rest == {**doc, "inputs": [{**doc["inputs"][0], "data": "#numbers#"}]}
        assert numbers_at(body, ("inputs", 1, "data")) is None          # the array is not at that path
        assert numbers_at(body, ("outputs", 0, "data")) is None
    assert numbers_at(flat[:FAST_MIN_BYTES - 1], ("inputs", 0, "data")) is None  # small bodies: orjson alone


# ----------------------------------------------------------------------------- OIP v2 JSON tensors

MODEL = SimpleNamespace(input_dim=D, model_id="m")


def v2_body(data, datatype: str = "FP32", shape=None, **extra) -> bytes:
    text = data if isinstance(data, str) else orjson.dumps(data).decode()
    head = {"name": "input", "shape": shape or [N, D], "datatype": datatype}
    t = orjson.dumps(head).decode()[:-1] + ', "data": ' + text + "}"
    rest = "".join(f', "{k}": {orjson.dumps(v).decode()}' for k, v in extra.items())
    return ('{"id": "7", "inputs": [' + t + ']' + rest + ', "outputs": [{"name": "probabilities"}]}').encode()


def v2_reference(body: bytes):
    try:
        return protocol.input_matrix(orjson.loads(body), memoryview(b""), MODEL)
    except InvalidInput as exc:
        return f"400 {exc.detail}"


def v2_now(body: bytes):
    try:
        return protocol.input_matrix(*protocol.split_body(body, None), MODEL)
    except InvalidInput as exc:
        return f"400 {exc.detail}"


def v2_same(a, b) -> bool:         # NaN (a JSON null in an OIP tensor) is a missing value there, not an error
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
@pytest.mark.parametrize("layout", ["flat", "nested"])
def test_oip_json_tensors_read_bit_for_bit_as_before(datatype, layout):
    rng = np.random.default_rng(1)
    cells = [c for c in tricky_numbers(rng, 500) if abs(float(c)) < 3.4e38][:N * D]
    text = "[" + ",".join(cells) + "]" if layout == "flat" else rows_text(cells, D, ", ")
    body = v2_body(text, datatype)
    assert protocol.split_body(body, None)[0]["inputs"][0]["data"].dtype == np.float64   # the fast path read it
    ref = v2_reference(body)
    assert v2_same(v2_now(body), ref) and not isinstance(ref, str)


ROWS = [[1.0625] * D] * N
OIP_LEFT_TO_ORJSON = {
    "INT64": v2_body(ROWS, "INT64"),
    "FP16": v2_body(ROWS, "FP16"),
    "BYTES": v2_body([["1.0625"] * D] * N, "BYTES"),
    "null (missing value)": v2_body([[None] + [1.0625] * (D - 1)] + ROWS[1:]),
    "huge value": v2_body([[1e300] + [1.0625] * (D - 1)] + ROWS[1:]),
    "ragged nested rows": v2_body([[1.0625] * (D + 1), [1.0625] * (D - 1)] + ROWS[2:]),
    "size not the shape's": v2_body(ROWS[1:]),
    "deeper rectangular nesting": v2_body([[[v] for v in r] for r in ROWS]),
    "escaped placeholder, numbers elsewhere": v2_body('"\\u0023numbers#"', parameters={"data": [0.0625] * (N * D)}),
    "placeholder text as data, numbers elsewhere": v2_body('"#numbers#"', parameters={"data": [0.0625] * (N * D)}),
    "placeholder in another field": v2_body(ROWS, parameters={"note": "#numbers#"}),
}


@pytest.mark.parametrize("case", list(OIP_LEFT_TO_ORJSON))
def test_oip_tensors_the_fast_path_leaves_to_orjson_answer_as_before(case):
    body = OIP_LEFT_TO_ORJSON[case]
    assert len(body) >= FAST_MIN_BYTES
    ref = v2_reference(body)
    assert v2_same(v2_now(body), ref), (v2_now(body), ref)


def test_oip_answers_left_to_orjson_are_the_usual_400s():
    assert v2_now(OIP_LEFT_TO_ORJSON["huge value"]) == "400 inputs[0][0] is not a finite number: inf"
    assert v2_now(OIP_LEFT_TO_ORJSON["size not the shape's"]) == \
        f"400 input 'input': data has {(N - 1) * D} elements but shape [{N}, {D}] needs {N * D}"
    assert v2_now(OIP_LEFT_TO_ORJSON["escaped placeholder, numbers elsewhere"]) == \
        "400 input 'input' needs 'data' (a flat or nested list) or binary_data_size"
    assert np.isnan(v2_now(OIP_LEFT_TO_ORJSON["null (missing value)"])[0, 0])
