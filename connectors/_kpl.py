"""KPL-aggregated Kinesis records: recognise them and split them into their user records.

The Kinesis Producer Library packs many user records into one Kinesis record::

    F3 89 9A C2 | protobuf AggregatedRecord | MD5 of the protobuf bytes (16 bytes)

    message AggregatedRecord {
      repeated string partition_key_table     = 1;
      repeated string explicit_hash_key_table = 2;
      repeated Record records                 = 3;
    }
    message Record {
      required uint64 partition_key_index     = 1;
      optional uint64 explicit_hash_key_index = 2;
      required bytes  data                    = 3;
      repeated Tag    tags                    = 4;   // {required string key = 1; optional string value = 2}
    }

This module reads that with a few lines of protobuf wire-format decoding (no protobuf dependency).
Like the KCL, anything that merely *looks* aggregated (the magic is there but the MD5 does not
match, or the protobuf is malformed or names a key-table entry that does not exist) is **not** an
error: ``deaggregate`` returns None and the caller hands the record on unchanged, so a bad payload
reaches the decoder and its error stream instead of stopping the pipeline. Unlike the KCL, no
sub-record is dropped for an explicit hash key outside the shard's range (after a reshard): every
sub-record is delivered.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

MAGIC = b"\xf3\x89\x9a\xc2"
DIGEST_BYTES = 16
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5
_MAX_VARINT_BYTES = 10


class SubRecord(NamedTuple):
    """One user record of an aggregated Kinesis record."""

    partition_key: str
    explicit_hash_key: str | None
    data: bytes


class _Malformed(Exception):
    """The bytes are not the protobuf we expect (never leaves this module)."""


def is_aggregated(data: bytes) -> bool:
    """Whether ``data`` starts like a KPL-aggregated record (the MD5 is not checked here).

    Args:
        data: a Kinesis record's payload.

    Returns:
        True if it has the magic prefix and room for the digest.
    """
    return len(data) >= len(MAGIC) + DIGEST_BYTES and data.startswith(MAGIC)


def deaggregate(data: bytes) -> list[SubRecord] | None:
    """The user records inside a KPL-aggregated record, in order.

    Args:
        data: a Kinesis record's payload.

    Returns:
        The sub-records (possibly none, for an aggregate that holds no record), or None when
        ``data`` is not a valid aggregated record (no magic, MD5 mismatch, malformed protobuf):
        the caller then treats it as one ordinary record, as the KCL does.
    """
    if not is_aggregated(data):
        return None
    body, digest = data[len(MAGIC) : -DIGEST_BYTES], data[-DIGEST_BYTES:]
    if hashlib.md5(body, usedforsecurity=False).digest() != digest:
        return None
    try:
        return _aggregated_record(memoryview(body))
    except _Malformed:
        return None


def _aggregated_record(buf: memoryview) -> list[SubRecord]:
    keys: list[str] = []
    hash_keys: list[str] = []
    raw_records: list[memoryview] = []
    for number, wire, value in _fields(buf):
        if wire != _LENGTH or number not in (1, 2, 3):
            continue  # an unknown field: protobuf readers skip those
        assert isinstance(value, memoryview)
        if number == 1:
            keys.append(_text(value))
        elif number == 2:
            hash_keys.append(_text(value))
        else:
            raw_records.append(value)
    return [_record(raw, keys, hash_keys) for raw in raw_records]


def _record(buf: memoryview, keys: list[str], hash_keys: list[str]) -> SubRecord:
    key_index: int | None = None
    hash_key_index: int | None = None
    data: bytes | None = None
    for number, wire, value in _fields(buf):
        if number == 1 and wire == _VARINT:
            key_index = int(value) if isinstance(value, int) else None
        elif number == 2 and wire == _VARINT:
            hash_key_index = int(value) if isinstance(value, int) else None
        elif number == 3 and wire == _LENGTH:
            data = bytes(value) if isinstance(value, memoryview) else None
        # field 4 (tags) and unknown fields are skipped
    if key_index is None or data is None or key_index >= len(keys):
        raise _Malformed("a record without a valid partition key index or data")
    hash_key = None
    if hash_key_index is not None:
        if hash_key_index >= len(hash_keys):
            raise _Malformed("an explicit hash key index past the table")
        hash_key = hash_keys[hash_key_index]
    return SubRecord(keys[key_index], hash_key, data)


def _fields(buf: memoryview) -> list[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) for each field of one message: an int for varint and
    fixed-width fields, the bytes (a view) for length-delimited ones."""
    fields: list[tuple[int, int, int | memoryview]] = []
    pos, end = 0, len(buf)
    while pos < end:
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise _Malformed("field number 0")
        value: int | memoryview
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
        elif wire == _FIXED64 or wire == _FIXED32:
            width = 8 if wire == _FIXED64 else 4
            if pos + width > end:
                raise _Malformed("truncated fixed-width field")
            value = int.from_bytes(buf[pos : pos + width], "little")
            pos += width
        elif wire == _LENGTH:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise _Malformed("truncated length-delimited field")
            value = buf[pos : pos + length]
            pos += length
        else:
            raise _Malformed(f"wire type {wire}")  # groups (3, 4) and reserved types
        fields.append((number, wire, value))
    return fields


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it."""
    result, shift = 0, 0
    for i in range(pos, min(pos + _MAX_VARINT_BYTES, len(buf))):
        byte = buf[i]
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i + 1
        shift += 7
    raise _Malformed("truncated or overlong varint")


def _text(value: memoryview) -> str:
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise _Malformed("a string that is not UTF-8") from None
