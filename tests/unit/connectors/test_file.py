"""File source and sink on real files under tmp_path."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors import open_sink, open_source
from engine.errors import ConnectorError
from engine.formats.decode import Decoder
from engine.types import RAW_SCHEMA, Epoch


def read_all(source, max_rows: int = 2) -> list[pa.RecordBatch]:
    batches = []
    while (batch := source.poll(max_rows, 0.0)) is not None:
        batches.append(batch)
    return batches


def test_file_source_lines_offsets_and_eof(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"a": 1}\r\n\n{"a": 2}\n   \n{"a": 3}')
    source = open_source(str(path), "s")
    assert source.kind == "raw" and source.format == "json" and source.bounded
    source.open(None)
    batches = read_all(source)
    assert all(b.schema == RAW_SCHEMA for b in batches)
    table = pa.Table.from_batches(batches)
    assert table.column("payload").to_pylist() == [b'{"a": 1}', b"", b'{"a": 2}', b"   ", b'{"a": 3}']
    assert table.column("offset").to_pylist() == [0, 1, 2, 3, 4]
    assert source.offsets() == {str(path): "5"}
    assert source.poll(10, 0.0) is None
    source.close()


def test_file_source_resumes_after_offset(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(f'{{"i": {i}}}\n' for i in range(10)))
    source = open_source(f"file:{path}", "s")
    source.open({str(path): "7"})
    table = pa.Table.from_batches(read_all(source, 100))
    assert table.column("offset").to_pylist() == [7, 8, 9]
    assert table.column("payload").to_pylist()[0] == b'{"i": 7}'


def test_file_source_missing_file_fails_at_open_not_construction(tmp_path: Path) -> None:
    source = open_source(str(tmp_path / "nope.jsonl"), "s", where="--source")
    with pytest.raises(ConnectorError, match=r"^--source: file not found: .*nope.jsonl$"):
        source.open(None)
    with pytest.raises(ConnectorError, match="file not found"):
        source.sample(5)


def test_file_source_sample_does_not_move_the_position(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("a,b\n1,2\n3,4\n")
    source = open_source(str(path), "s")
    source.open(None)
    assert source.sample(2) == [b"a,b", b"1,2"]
    assert source.poll(10, 0).column("payload").to_pylist() == [b"a,b", b"1,2", b"3,4"]
    assert source.sample(10) == [b"a,b", b"1,2", b"3,4"]


def test_file_source_csv_options_from_uri(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_text("1;x\n")
    source = open_source(f"{path}?format=csv&header=false&delimiter=;", "s")
    assert source.format == "csv" and source.csv_options == {"delimiter": ";", "header": False}


def test_file_source_reads_gzip(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(b'{"a": 1}\n{"a": 2}\n')
    source = open_source(str(path), "s")
    source.open(None)
    assert pa.Table.from_batches(read_all(source)).num_rows == 2


def test_file_source_large_file_in_small_polls(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    lines = [json.dumps({"i": i, "pad": "x" * (i % 50)}) for i in range(50_000)]
    path.write_text("\n".join(lines) + "\n")
    source = open_source(str(path), "s")
    source.open(None)
    table = pa.Table.from_batches(read_all(source, 7_000))
    assert table.num_rows == 50_000
    assert table.column("payload").to_pylist()[-1] == lines[-1].encode()
    assert table.column("offset").to_pylist() == list(range(50_000))


def test_file_source_csv_decodes_end_to_end(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("ts,temp\n2024-05-01T10:00:00Z,1.5\n\n2024-05-01T10:00:01Z,oops\n")
    source = open_source(str(path), "readings")
    schema = pa.schema([("ts", pa.timestamp("us")), ("temp", pa.float64())])
    decoder = Decoder("readings", schema, source.format, time_column="ts", csv_options=source.csv_options)
    source.open(None)
    rows, errors = decoder.decode(source.poll(100, 0))
    assert rows.column("temp").to_pylist() == [1.5]
    assert errors.column("source_offset").to_pylist() == ["readings:3"]


def test_parquet_source_is_typed_with_row_offsets_and_resume(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    table = pa.table({"x": list(range(100)), "y": [str(i) for i in range(100)]})
    pq.write_table(table, path, row_group_size=30)
    source = open_source(str(path), "s")
    assert source.kind == "typed" and source.format is None
    assert source.schema() == table.schema
    assert source.sample(3) == []
    source.open(None)
    got = pa.Table.from_batches(read_all(source, 40))
    assert got.column("offset").to_pylist() == list(range(100))
    assert got.drop_columns(["offset"]).equals(table)
    source.open({str(path): "65"})
    resumed = pa.Table.from_batches(read_all(source, 1000))
    assert resumed.column("x").to_pylist() == list(range(65, 100))
    assert resumed.column("offset").to_pylist() == list(range(65, 100))
    assert source.offsets() == {str(path): "100"}


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "parquet"])
def test_file_sink_writes_commits_and_aborts(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / "out" / f"result.{suffix}"
    schema = pa.schema([("ts", pa.timestamp("us")), ("n", pa.int64()), ("s", pa.string())])
    sink = open_sink(str(path), "out")
    sink.open(schema, None)
    first = pa.table({"ts": pa.array([1714557600_000000], pa.timestamp("us")), "n": [1], "s": ["a,b"]}, schema=schema)
    second = pa.table({"ts": pa.array([1714557600_500000], pa.timestamp("us")), "n": [2], "s": ["c"]}, schema=schema)
    sink.write(Epoch(1), first)
    sink.commit(Epoch(1))
    sink.commit(Epoch(1))  # committing twice changes nothing
    sink.write(Epoch(2), second)
    sink.abort(Epoch(2))
    sink.write(Epoch(3), second)
    sink.commit(Epoch(3))
    sink.close()
    if suffix == "jsonl":
        assert path.read_text().splitlines() == [
            '{"ts":"2024-05-01T10:00:00Z","n":1,"s":"a,b"}',
            '{"ts":"2024-05-01T10:00:00.500Z","n":2,"s":"c"}',
        ]
    elif suffix == "csv":
        assert path.read_text().splitlines() == [
            "ts,n,s",
            '2024-05-01T10:00:00Z,1,"a,b"',
            "2024-05-01T10:00:00.500Z,2,c",
        ]
    else:
        assert pq.read_table(path).equals(pa.concat_tables([first, second]))


def test_file_sink_close_drops_uncommitted_and_open_truncates(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text("old\n")
    schema = pa.schema([("n", pa.int64())])
    sink = open_sink(str(path), "out")
    sink.open(schema, None)
    assert path.read_text() == ""
    sink.write(Epoch(1), pa.table({"n": [1]}))
    sink.commit(Epoch(1))
    sink.write(Epoch(2), pa.table({"n": [2]}))
    sink.close()
    assert path.read_text() == '{"n":1}\n'


def test_file_sink_csv_header_is_written_once_even_without_rows(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    sink = open_sink(f"{path}?header=true", "out")
    sink.open(pa.schema([("a", pa.int64()), ("b", pa.string())]), None)
    sink.commit(Epoch(1))
    sink.close()
    assert path.read_text() == "a,b\n"


def test_file_sink_rejects_gzip_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ConnectorError, match="gzip"):
        open_sink(str(tmp_path / "x.jsonl.gz"), "o")
    with pytest.raises(ConnectorError, match="'xml' is not one of"):
        open_sink(str(tmp_path / "x.jsonl") + "?format=xml", "o")
