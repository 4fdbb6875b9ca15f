"""Look inside an uploaded ``.npz`` before anything is decompressed: what every member declares, and whether that
is a consistent, plain zip of ``.npy`` files.

An ``.npz`` is a zip, so a 1 MB upload can declare gigabytes (a compression bomb), or an ``.npy`` header can
declare 10^13 elements (an allocation bomb). ``declared_bytes`` reads only the zip directory and each member's
``.npy`` header (a few hundred bytes decompressed per member) and returns the bytes the arrays would take, so the
caller refuses the upload (413) before ``np.load`` allocates or inflates anything. Archives numpy could not have
written (encrypted members, compression methods other than stored/deflate, a header that declares more data than
the member holds) are "not a valid .npz" (422).
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from service.bodies import ParseError

MAX_MEMBERS = 16
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}


def check_magic(path: str | Path) -> None:
    """ParseError unless the file starts as a zip does (a bare ``.npy`` is named as such)."""
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic == b"\x93NUMPY":
        raise ParseError("not an .npz archive (a bare .npy array was uploaded); save with np.savez(f, X=X, y=y)")
    if magic[:4] != b"PK\x03\x04":
        raise ParseError("not a valid .npz file (expected a zip archive written by np.savez)")


def declared_bytes(path: str | Path) -> int:
    """Total bytes of the arrays the archive's members declare (shape x itemsize); ParseError when not valid."""
    check_magic(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ParseError(f"not a valid .npz file ({exc})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise ParseError(f"not a valid .npz file ({len(infos)} members; at most {MAX_MEMBERS} arrays)")
        total = 0
        for info in infos:
            total += _member_bytes(zf, info)
    return total


def _member_bytes(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> int:
    name = info.filename
    if info.flag_bits & 0x1:
        raise ParseError(f"not a valid .npz file (member {name!r} is encrypted)")
    if info.compress_type not in _METHODS:
        raise ParseError(f"not a valid .npz file (member {name!r} uses compression method {info.compress_type}; "
                         "np.savez writes stored or deflate)")
    if not name.endswith(".npy"):
        return 0  # np.load ignores members that are not arrays of the archive (never read)
    try:
        with zf.open(info) as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh, max_header_size=10_000)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh, max_header_size=10_000)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            header_len = fh.tell()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise ParseError(f"not a valid .npz file (member {name!r}: {exc})") from None
    if dtype.hasobject:
        raise ParseError(f"array {name[:-4]!r} holds Python objects (pickled data), which is never loaded; "
                         "save numeric (or string label) arrays")
    if any(d < 0 for d in shape):
        raise ParseError(f"not a valid .npz file (member {name!r} declares shape {list(shape)})")
    nbytes = math.prod(shape) * dtype.itemsize
    if header_len + nbytes != info.file_size:
        raise ParseError(f"not a valid .npz file (member {name!r} declares shape {list(shape)} of {dtype}, "
                         f"{nbytes:,} bytes, but holds {max(info.file_size - header_len, 0):,})")
    return nbytes
