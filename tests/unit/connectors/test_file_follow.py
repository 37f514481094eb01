"""Following a growing file (``follow=true``): real appends between polls, no sleeping."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors import open_source
from engine.errors import ConnectorError


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as out:
        out.write(data)


def payloads(batch: pa.RecordBatch | None) -> list[bytes]:
    assert batch is not None, "a followed file never ends"
    return batch.column("payload").to_pylist()


def offsets(batch: pa.RecordBatch | None) -> list[int]:
    assert batch is not None
    return batch.column("offset").to_pylist()


def test_follow_picks_up_appended_lines_and_waits_for_a_partial_one(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": 2}\n{"a"')
    source = open_source(f"{path}?follow=true", "s")
    assert source.bounded is False and source.format == "json"
    source.open(None)
    first = source.poll(10, 0.0)
    assert payloads(first) == [b'{"a": 1}', b'{"a": 2}'] and offsets(first) == [0, 1]
    assert payloads(source.poll(10, 0.0)) == []  # at the end: empty, not None, the half line waits
    assert source.offsets() == {str(path): "2"}
    append(path, b": 3}")
    assert payloads(source.poll(10, 0.0)) == []  # still no newline
    append(path, b'\n{"a": 4}\n\n{"a": 5}\r\n')
    batch = source.poll(2, 0.0)
    assert payloads(batch) == [b'{"a": 3}', b'{"a": 4}'] and offsets(batch) == [2, 3]
    batch = source.poll(10, 0.0)
    assert payloads(batch) == [b"", b'{"a": 5}'] and offsets(batch) == [4, 5]
    assert source.offsets() == {str(path): "6"}
    source.close()


def test_follow_resumes_from_offsets_like_the_bounded_mode(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(f'{{"i": {i}}}\n' for i in range(5)))
    source = open_source(str(path), "s", {"follow": "true"})
    source.open({str(path): "3"})
    batch = source.poll(100, 0.0)
    assert offsets(batch) == [3, 4] and payloads(batch)[0] == b'{"i": 3}'
    append(path, b'{"i": 5}\n')
    assert offsets(source.poll(100, 0.0)) == [5]
    # a resume point beyond what the file holds now: the missing lines are skipped as they arrive
    source.open({str(path): "8"})
    assert payloads(source.poll(100, 0.0)) == []
    assert source.offsets() == {str(path): "8"}
    append(path, b'{"i": 6}\n{"i": 7}\n{"i"')
    assert payloads(source.poll(100, 0.0)) == []
    append(path, b': 8}\n{"i": 9}\n')
    batch = source.poll(100, 0.0)
    assert payloads(batch) == [b'{"i": 8}', b'{"i": 9}'] and offsets(batch) == [8, 9]


def test_follow_csv_declared_in_with(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("a,b\n1,2\n")
    source = open_source(None, "s", {"connector": "file", "path": str(path), "follow": "true", "header": "true"})
    assert source.format == "csv" and not source.bounded
    assert source.sample(10) == [b"a,b", b"1,2"]
    append(path, b"3,")
    assert source.sample(10) == [b"a,b", b"1,2"]  # a line still being written is not sampled
    source.open(None)
    assert payloads(source.poll(10, 0.0)) == [b"a,b", b"1,2"]
    append(path, b"4\n")
    assert payloads(source.poll(10, 0.0)) == [b"3,4"]


def test_follow_never_waits_for_the_timeout(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("")
    source = open_source(f"{path}?follow=1", "s")
    source.open(None)
    started = time.monotonic()
    for _ in range(3):
        assert payloads(source.poll(10, 5.0)) == []
    assert time.monotonic() - started < 1.0


def test_follow_refuses_a_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n')
    source = open_source(f"{path}?follow=true", "s")
    source.open(None)
    assert len(payloads(source.poll(10, 0.0))) == 2
    path.write_text('{"a": 3}\n')
    with pytest.raises(ConnectorError, match="was truncated while it was being followed"):
        source.poll(10, 0.0)


def test_follow_is_for_json_and_csv_only(tmp_path: Path) -> None:
    pq.write_table(pa.table({"x": [1]}), tmp_path / "in.parquet")
    with pytest.raises(ConnectorError, match="cannot follow a parquet file"):
        open_source(f"{tmp_path / 'in.parquet'}?follow=true", "s")
    with gzip.open(tmp_path / "in.jsonl.gz", "wb") as handle:
        handle.write(b"{}\n")
    with pytest.raises(ConnectorError, match="cannot follow a gzip file"):
        open_source(f"{tmp_path / 'in.jsonl.gz'}?follow=true", "s")
    with pytest.raises(ConnectorError, match="is not true or false"):
        open_source(f"{tmp_path / 'in.jsonl'}?follow=maybe", "s")


def test_without_follow_the_file_ends(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n{"a"')
    source = open_source(f"{path}?follow=false", "s")
    assert source.bounded
    source.open(None)
    assert payloads(source.poll(10, 0.0)) == [b'{"a": 1}', b'{"a"']
    assert source.poll(10, 0.0) is None
