"""Options taken as read; durations; the URI registry."""

from __future__ import annotations

import pytest

from connectors import STREAM_KEYS, open_sink, open_source, parse_uri
from connectors.demo import DemoSource
from connectors.file import FileSink, FileSource
from connectors.options import Options, parse_duration
from connectors.stdio import StdinSource, StdoutSink
from engine.errors import ConnectorError


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("250ms", 250_000),
        ("0.5s", 500_000),
        ("10s", 10_000_000),
        ("5m", 300_000_000),
        ("1h", 3_600_000_000),
        ("2d", 172_800_000_000),
        ("3", 3_000_000),
        ("1.5", 1_500_000),
        ("100us", 100),
        (" 2 MIN ", 120_000_000),
        ("0", 0),
    ],
)
def test_parse_duration(text: str, micros: int) -> None:
    assert parse_duration(text, "--batch-interval") == micros


@pytest.mark.parametrize("text", ["5x", "", "-1s", "1.2.3s", "s", "1 s s"])
def test_parse_duration_rejects_with_located_hint(text: str) -> None:
    with pytest.raises(ConnectorError) as info:
        parse_duration(text, "--batch-interval")
    assert str(info.value) == f'--batch-interval: "{text}" is not a duration (write 250ms, 0.5s, 10s, 5m, 1h)'


def test_options_take_and_finish() -> None:
    options = Options({"Rows": "10", "flag": "yes", "every": "250ms", "mode": "CSV", "name": "x"}, "demo:ticker")
    assert options.take_int("rows") == 10
    assert options.take_bool("flag", False) is True
    assert options.take_duration("every", "1s") == 250_000
    assert options.take_choice("mode", ("json", "csv")) == "csv"
    assert options.take("missing", "dflt") == "dflt"
    assert "name" in options
    with pytest.raises(ConnectorError, match=r"^demo:ticker: unknown option 'name'$"):
        options.finish()


def test_options_errors_name_the_option() -> None:
    with pytest.raises(ConnectorError, match="missing required option 'path'"):
        Options({}, "w").take("path")
    with pytest.raises(ConnectorError, match="option 'rows': 'ten' is not an integer"):
        Options({"rows": "ten"}, "w").take_int("rows")
    with pytest.raises(ConnectorError, match="option 'rows': 0 is less than 1"):
        Options({"rows": "0"}, "w").take_int("rows", minimum=1)
    with pytest.raises(ConnectorError, match="'maybe' is not true or false"):
        Options({"header": "maybe"}, "w").take_bool("header", True)
    with pytest.raises(ConnectorError, match="given twice"):
        Options({"a": "1", "A": "2"}, "w")


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("data.jsonl", ("file", "data.jsonl", {})),
        (
            "file:dir/data.csv?header=false&delimiter=%3B",
            ("file", "dir/data.csv", {"header": "false", "delimiter": ";"}),
        ),
        ("file:///abs/x.jsonl", ("file", "/abs/x.jsonl", {})),
        ("-", ("-", None, {})),
        ("-?format=csv", ("-", None, {"format": "csv"})),
        ("demo:ticker?rows=5", ("demo", "ticker", {"rows": "5"})),
        ("C:data.csv", ("file", "C:data.csv", {})),
    ],
)
def test_parse_uri(uri: str, expected: tuple) -> None:
    assert parse_uri(uri, "--source") == expected


def test_open_source_picks_the_connector(tmp_path) -> None:
    assert isinstance(open_source(str(tmp_path / "a.jsonl"), "s"), FileSource)
    assert isinstance(open_source("-", "s"), StdinSource)
    assert isinstance(open_source("demo:ticker", "s"), DemoSource)
    source = open_source(None, "s", {"connector": "file", "path": "x.tsv", "allowed-lateness": "5s"})
    assert isinstance(source, FileSource) and source.csv_options == {"delimiter": "\t", "header": True}
    assert isinstance(open_source(None, "s", {"connector": "demo", "rows": "3"}), DemoSource)
    assert isinstance(open_sink("out.parquet", "o"), FileSink)
    assert isinstance(open_sink("-", "o"), StdoutSink)
    assert isinstance(open_sink(None, "o", {"connector": "stdout", "format": "json"}), StdoutSink)
    assert "allowed-lateness" in STREAM_KEYS


def test_open_source_rejects_unknown_scheme_and_options() -> None:
    with pytest.raises(ConnectorError, match=r"^--source: unknown source connector 'kafka' \(known: -, demo, file, "):
        open_source("kafka://clicks", "s", where="--source")
    with pytest.raises(ConnectorError, match="unknown option 'hedaer'"):
        open_source("data.csv?hedaer=false", "s")
    with pytest.raises(ConnectorError, match=r"^q.sql:3:1: unknown option 'bogus'"):
        open_source(None, "s", {"connector": "file", "path": "x.csv", "bogus": "1"}, where="q.sql:3:1")
    with pytest.raises(ConnectorError, match="give a URI or a 'connector' option"):
        open_source(None, "s", {"path": "x.csv"})
    with pytest.raises(ConnectorError, match="from its name"):
        open_source("data.txt", "s")
    with pytest.raises(ConnectorError, match="given twice"):
        open_source("data.csv?header=false", "s", {"header": "true"})
    with pytest.raises(ConnectorError, match="unknown demo stream 'bonds'"):
        open_source("demo:bonds", "s")
