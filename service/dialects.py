"""CSV dialect detection shared by uploads and predict bodies: encoding from the BOM, delimiter, decimal mark and the
NA tokens, so a file reads the same way whichever route it is sent to.

service/models/ may not import service/datasets/ (trained models stand on their own), so the rules live here. The
upload (``service/datasets/tabular.py``) still has private copies of these functions; it should import them from
here instead (``tests/service/test_serving_bad_inputs.py`` checks the two agree until it does).
"""

from __future__ import annotations

import codecs
import csv
import re

from service.bodies import ParseError

NA_TOKENS = ("", "NA", "N/A", "NaN", "null", "?", "-")
DELIMITERS = (",", ";", "\t", "|")
_COMMA_NUMBER = re.compile(r"[+-]?[0-9]+,[0-9]+(?:[eE][+-]?[0-9]+)?")
_POINT_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def detect_encoding(head: bytes, given: str | None) -> tuple[str, int]:
    """(Python codec name, BOM length) from the BOM, else ``given`` (a form field or ``charset=``), else UTF-8;
    ParseError for an unknown ``given``."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8", 3
    if head.startswith(codecs.BOM_UTF16_LE) or head.startswith(codecs.BOM_UTF16_BE):
        return "utf-16", 0                       # the codec reads the BOM itself
    if given:
        try:
            name = codecs.lookup(given).name
        except LookupError:
            raise ParseError(f"encoding: unknown encoding {given!r} (e.g. utf-8, cp1252, latin-1, utf-16)") from None
        return name, 0
    return "utf-8", 0


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


def sniff_decimal(rows: list[list[str]], delimiter: str) -> str:
    """The decimal mark: ``,`` when the delimiter is ``;`` and the sampled data cells hold at least one number
    written with a decimal comma (``2,5``, ``-1,5e3``) and none written with a decimal point (``2.5``); ``.``
    otherwise."""
    if delimiter != ";":
        return "."
    cells = [c.strip() for r in rows for c in r]
    if any(_POINT_NUMBER.fullmatch(c) for c in cells):
        return "."
    return "," if any(_COMMA_NUMBER.fullmatch(c) for c in cells) else "."
