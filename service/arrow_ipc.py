"""How many bytes an Arrow IPC stream or file decodes to, read from its messages' metadata before any batch is
decompressed: a few kilobytes of zstd can stand for gigabytes, and pyarrow allocates a compressed buffer's whole
declared size when it decodes the batch.

The format (https://arrow.apache.org/docs/format/Columnar.html#serialization-and-interprocess-communication-ipc):
a stream is a sequence of encapsulated messages; each message's metadata is a flatbuffer ``Message`` whose header
is a ``Schema``, ``DictionaryBatch`` or ``RecordBatch`` (``format/Message.fbs``), and a record batch lists its body
buffers as (offset, length) pairs. With ``BodyCompression``, each buffer of the body starts with its uncompressed
length as a little-endian int64 (-1: stored uncompressed). A file is ``ARROW1``, padding, the same stream, and a
footer; it is read here as its stream (the footer's block offsets are not followed).
"""

from __future__ import annotations

import struct

_DICTIONARY_BATCH, _RECORD_BATCH = 2, 3       # MessageHeader union tags
FILE_MAGIC = b"ARROW1"


def stream_part(data):
    """The stream of an Arrow IPC file (after ``ARROW1`` and its padding), or ``data`` itself (a stream)."""
    if data.size >= 8 and data.slice(0, 6).to_pybytes() == FILE_MAGIC:
        return data.slice(8)
    return data


def _table(md: bytes, pos: int) -> tuple[int, tuple]:
    vtable = pos - struct.unpack_from("<i", md, pos)[0]
    size = struct.unpack_from("<H", md, vtable)[0]
    return pos, struct.unpack_from(f"<{max(size - 4, 0) // 2}H", md, vtable + 4)


def _field(table: tuple[int, tuple], i: int) -> int | None:
    pos, offsets = table
    return pos + offsets[i] if i < len(offsets) and offsets[i] else None


def _deref(md: bytes, at: int) -> int:
    return at + struct.unpack_from("<I", md, at)[0]


def _batch_bytes(md: bytes, body) -> int:
    """Decoded bytes of one message's body: 0 for a schema; the sum of its buffers' (uncompressed) lengths."""
    root = _table(md, struct.unpack_from("<I", md, 0)[0])
    tag_at, header_at = _field(root, 1), _field(root, 2)
    tag = md[tag_at] if tag_at is not None else 0
    if header_at is None or tag not in (_DICTIONARY_BATCH, _RECORD_BATCH):
        return 0
    batch = _table(md, _deref(md, header_at))
    if tag == _DICTIONARY_BATCH:                 # DictionaryBatch { id, data: RecordBatch, isDelta }
        data_at = _field(batch, 1)
        if data_at is None:
            return 0
        batch = _table(md, _deref(md, data_at))
    buffers_at, compressed = _field(batch, 2), _field(batch, 3) is not None
    if buffers_at is None:
        return 0
    vec = _deref(md, buffers_at)
    total = 0
    for k in range(struct.unpack_from("<I", md, vec)[0]):
        offset, length = struct.unpack_from("<qq", md, vec + 4 + 16 * k)
        if compressed and length >= 8:
            declared = struct.unpack_from("<q", body, offset)[0]
            total += length - 8 if declared == -1 else max(declared, 0)
        else:
            total += max(length, 0)
    return total


def declared_bytes(stream) -> int:
    """Bytes the batches of an Arrow IPC stream (a ``pyarrow.Buffer``) decode to, summed over its messages.

    Raises ValueError for metadata that is not a valid message (offsets out of range); pyarrow's own errors
    (``pyarrow.ArrowInvalid``) for a stream it cannot frame."""
    import pyarrow as pa

    total = 0
    for message in pa.ipc.MessageReader.open_stream(pa.BufferReader(stream)):
        try:
            total += _batch_bytes(message.metadata.to_pybytes(), message.body if message.body is not None else b"")
        except (struct.error, IndexError) as exc:
            raise ValueError(f"a message's metadata is not valid ({exc})") from None
    return total
