"""stdin through a real pipe; stdout as JSON, CSV and a rich table."""

from __future__ import annotations

import io
import os
import threading

import pyarrow as pa
import pytest

from connectors import open_sink
from connectors.options import Options
from connectors.stdio import StdinSource, StdoutSink
from engine.types import Epoch


def test_stdin_reads_a_pipe_without_blocking_past_the_timeout() -> None:
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd, "rb", buffering=0) as reader:
        source = StdinSource("s", Options({}, "-"), stream=reader)
        source.open(None)
        batch = source.poll(10, 0.01)
        assert batch is not None and batch.num_rows == 0  # nothing yet: empty batch, not None
        os.write(write_fd, b'{"a": 1}\n{"a": 2}\n{"a"')
        batch = source.poll(10, 1.0)
        assert batch.column("payload").to_pylist() == [b'{"a": 1}', b'{"a": 2}']
        os.write(write_fd, b": 3}")
        os.close(write_fd)
        batch = source.poll(10, 1.0)
        assert batch.column("payload").to_pylist() == [b'{"a": 3}']
        assert batch.column("offset").to_pylist() == [2]
        assert source.poll(10, 0.01) is None
        assert source.offsets() == {"stdin": "3"}


def test_stdin_sample_keeps_lines_for_poll() -> None:
    read_fd, write_fd = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(write_fd, b"a,b\n1,2\n3,4\n"), os.close(write_fd)))
    writer.start()
    with os.fdopen(read_fd, "rb", buffering=0) as reader:
        source = StdinSource("s", Options({"format": "csv"}, "-"), stream=reader)
        assert source.csv_options == {"delimiter": ",", "header": True}
        assert source.sample(2) == [b"a,b", b"1,2"]
        source.open({"stdin": "0"})
        lines = []
        while (batch := source.poll(10, 1.0)) is not None:
            lines += batch.column("payload").to_pylist()
    writer.join()
    assert lines == [b"a,b", b"1,2", b"3,4"]


def test_stdin_without_file_descriptor_reads_lines() -> None:
    source = StdinSource("s", Options({}, "-"), stream=io.BytesIO(b'{"a": 1}\n\n'))
    source.open(None)
    assert source.poll(10, 0).column("payload").to_pylist() == [b'{"a": 1}', b""]
    assert source.poll(10, 0) is None


TABLE = pa.table(
    {
        "window_start": pa.array([1714557600_000000, 1714557600_250000], pa.timestamp("us")),
        "symbol": ["AMZN", None],
        "avg_price": [123.456789123, 2.0],
        "n": [3, 12],
        "__seq": [1, 2],
    }
)


def test_stdout_json_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    sink = StdoutSink("out", Options({}, "-"), stream=out)
    sink.open(TABLE.schema, None)
    sink.write(Epoch(1), TABLE)
    sink.commit(Epoch(1))
    assert out.getvalue().splitlines() == [
        '{"window_start":"2024-05-01T10:00:00Z","symbol":"AMZN","avg_price":123.456789123,"n":3}',
        '{"window_start":"2024-05-01T10:00:00.250Z","symbol":null,"avg_price":2.0,"n":12}',
    ]


def test_stdout_csv_has_one_header() -> None:
    out = io.StringIO()
    sink = open_sink("-?format=csv", "out")
    sink._given = out  # the registry builds it for sys.stdout; tests write to a buffer
    sink.open(TABLE.schema, None)
    sink.write(Epoch(1), TABLE)
    sink.write(Epoch(2), TABLE.slice(0, 1))
    lines = out.getvalue().splitlines()
    assert lines[0] == "window_start,symbol,avg_price,n"
    assert len(lines) == 4


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_stdout_table_on_a_terminal() -> None:
    out = _Terminal()
    sink = StdoutSink("alarms", Options({"max-rows": "1"}, "-"), stream=out)
    sink.open(TABLE.schema, None)
    assert sink.mode == "table"
    sink.write(Epoch(1), TABLE)
    text = out.getvalue()
    assert "alarms" in text and "2024-05-01T10:00:00Z" in text and "123.456789" in text
    assert "__seq" not in text
    assert "1 more rows" in text


def test_stdout_rejects_unknown_format() -> None:
    with pytest.raises(Exception, match="'xml' is not one of"):
        open_sink("-?format=xml", "out")


def test_stdout_prints_at_write_and_prepare_keeps_no_state() -> None:
    out = io.StringIO()
    sink = StdoutSink("out", Options({"format": "json"}, "-"), stream=out)
    sink.open(TABLE.schema, Epoch(4), None)  # a recovery is just a start: nothing to repair
    sink.write(Epoch(5), TABLE.slice(0, 1))
    assert len(out.getvalue().splitlines()) == 1  # at once: stdout is at-least-once across crashes
    assert sink.prepare(Epoch(5)) is None
    sink.commit(Epoch(5))
    sink.commit(Epoch(5))
    sink.commit(Epoch(6))  # an empty epoch
    sink.abort(Epoch(7))
    sink.close()
    assert len(out.getvalue().splitlines()) == 1
