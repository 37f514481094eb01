"""KPL de-aggregation (``connectors._kpl``) against blobs built by an independent protobuf writer.

``aggregate`` below is the test suite's own writer (the KPL's wire format, written from the
protobuf encoding rules, not from the reader); the Kinesis source tests use it too.
"""

from __future__ import annotations

import hashlib

import pytest

from connectors._kpl import MAGIC, SubRecord, deaggregate, is_aggregated


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def aggregate(
    records: list[tuple[str, bytes]],
    hash_keys: list[str | None] | None = None,
    tags: bool = False,
    corrupt_digest: bool = False,
) -> bytes:
    """A KPL-aggregated record holding ``records`` ((partition key, data) pairs).

    Args:
        records: the user records.
        hash_keys: an explicit hash key per record (None: none).
        tags: give every record a tag (readers must skip them).
        corrupt_digest: write a wrong MD5 (readers must then take the blob as one record).

    Returns:
        The bytes to put as one Kinesis record.
    """
    key_table: list[str] = []
    hash_table: list[str] = []
    body = bytearray()
    for i, (key, data) in enumerate(records):
        if key not in key_table:
            key_table.append(key)
        record = _field(1, key_table.index(key))
        hash_key = hash_keys[i] if hash_keys else None
        if hash_key is not None:
            if hash_key not in hash_table:
                hash_table.append(hash_key)
            record += _field(2, hash_table.index(hash_key))
        record += _field(3, data)
        if tags:
            record += _field(4, _field(1, b"tag") + _field(2, b"value"))
        body += _field(3, record)
    header = b"".join(_field(1, k.encode()) for k in key_table) + b"".join(_field(2, h.encode()) for h in hash_table)
    message = header + bytes(body)
    digest = hashlib.md5(message).digest()
    if corrupt_digest:
        digest = bytes(b ^ 0xFF for b in digest)
    return MAGIC + message + digest


def test_kpl_writer_matches_hand_encoded_bytes() -> None:
    # AggregatedRecord{partition_key_table: ["k"], records: [{partition_key_index: 0, data: "hi"}]}
    message = bytes.fromhex("0a016b") + bytes.fromhex("1a06" + "0800" + "1a026869")
    expected = MAGIC + message + hashlib.md5(message).digest()
    assert aggregate([("k", b"hi")]) == expected
    assert deaggregate(expected) == [SubRecord("k", None, b"hi")]


def test_kpl_deaggregates_in_order_with_each_records_partition_key() -> None:
    records = [("a", b'{"n": 1}'), ("b", b'{"n": 2}'), ("a", b""), ("c", bytes(range(256)) * 40)]
    blob = aggregate(records, hash_keys=[None, "123", None, "456"], tags=True)
    assert is_aggregated(blob)
    assert deaggregate(blob) == [
        SubRecord("a", None, b'{"n": 1}'),
        SubRecord("b", "123", b'{"n": 2}'),
        SubRecord("a", None, b""),
        SubRecord("c", "456", bytes(range(256)) * 40),
    ]


def test_kpl_empty_aggregate_holds_no_record() -> None:
    assert deaggregate(aggregate([])) == []


def test_kpl_many_records_and_large_varints() -> None:
    records = [(f"key-{i % 300}", f"value {i}".encode()) for i in range(2000)]
    assert [(r.partition_key, r.data) for r in deaggregate(aggregate(records)) or []] == records


@pytest.mark.parametrize(
    "blob",
    [
        b'{"plain": "json"}',
        MAGIC,  # too short for a digest
        MAGIC + b"\x00" * 15,
        aggregate([("k", b"v")], corrupt_digest=True),
    ],
)
def test_kpl_not_aggregated_gives_none(blob: bytes) -> None:
    assert deaggregate(blob) is None


def _with_digest(message: bytes) -> bytes:
    return MAGIC + message + hashlib.md5(message).digest()


@pytest.mark.parametrize(
    "message",
    [
        bytes.fromhex("1a02") + bytes.fromhex("1a00"),  # a record without a partition key index
        bytes.fromhex("0a016b") + bytes.fromhex("1a02" + "0800"),  # a record without data
        bytes.fromhex("0a016b") + bytes.fromhex("1a05" + "0805" + "1a0100"),  # key index past the table
        bytes.fromhex("0a016b") + bytes.fromhex("1a07" + "0800" + "1003" + "1a0100"),  # hash key index past the table
        bytes.fromhex("0a056b"),  # truncated string
        bytes.fromhex("0aff"),  # truncated varint
        bytes.fromhex("0a02ffff") + bytes.fromhex("1a040800" + "1a00"),  # a key that is not UTF-8
        bytes.fromhex("0b"),  # wire type 3 (a group)
        bytes.fromhex("00"),  # field number 0
        bytes.fromhex("0a") + b"\xff" * 11,  # overlong varint
    ],
)
def test_kpl_malformed_protobuf_with_good_digest_is_one_ordinary_record(message: bytes) -> None:
    assert deaggregate(_with_digest(message)) is None


def test_kpl_skips_unknown_fields_of_every_wire_type() -> None:
    fixed32, fixed64 = bytes.fromhex("4d01020304"), bytes.fromhex("510102030405060708")  # fields 9 and 10
    record = _field(1, 0) + _field(3, b"x") + _field(9, 7) + fixed32 + fixed64
    message = _field(1, b"k") + _field(7, b"ignored") + _field(3, record) + _field(8, 5)
    assert deaggregate(_with_digest(message)) == [SubRecord("k", None, b"x")]
