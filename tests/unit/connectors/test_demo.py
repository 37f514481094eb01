"""The demo ticker: schema, determinism, resume, and what alarms can find."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from connectors import open_source
from connectors.demo import BLOCK_ROWS, SCHEMA
from engine.formats.decode import Decoder
from engine.types import TS_TYPE


def read(uri: str, max_rows: int, resume: dict | None = None, limit: int | None = None) -> pa.Table:
    source = open_source(uri, "ticker")
    source.open(resume)
    batches = []
    total = 0
    while (batch := source.poll(max_rows, 0.0)) is not None:
        batches.append(batch)
        total += batch.num_rows
        if limit is not None and total >= limit:
            break
    return pa.Table.from_batches(batches)


def test_demo_schema_and_bounded_rows() -> None:
    source = open_source("demo:ticker?rows=10", "ticker")
    assert source.kind == "typed" and source.bounded and source.schema() == SCHEMA
    table = read("demo:ticker?rows=10", 4)
    assert table.num_rows == 10
    assert table.schema == SCHEMA.append(pa.field("offset", pa.int64())).append(pa.field("arrival_time", TS_TYPE))
    assert table.column("offset").to_pylist() == list(range(10))
    assert not open_source("demo:ticker", "t").bounded


def test_demo_same_seed_same_rows_other_seed_other_rows() -> None:
    a = read("demo:ticker?rows=3000&seed=7", 1000)
    b = read("demo:ticker?rows=3000&seed=7", 777)
    c = read("demo:ticker?rows=3000&seed=8", 1000)
    assert a.equals(b)
    assert not a.equals(c)


@pytest.mark.parametrize("k", [0, 1, 5000, BLOCK_ROWS - 1, BLOCK_ROWS, 2 * BLOCK_ROWS + 17])
def test_demo_resume_at_k_equals_rows_from_k(k: int) -> None:
    n = 2 * BLOCK_ROWS + 100
    whole = read(f"demo:ticker?rows={n}", 4096)
    resumed = read(f"demo:ticker?rows={n}", 999, resume={"ticker": str(k)})
    assert resumed.equals(whole.slice(k))


def test_demo_offsets_report_next_row() -> None:
    source = open_source("demo:ticker", "ticker")
    source.open({"ticker": "10"})
    source.poll(5, 0.0)
    assert source.offsets() == {"ticker": "15"}


def test_demo_values_look_like_a_ticker() -> None:
    n = 20 * BLOCK_ROWS
    table = read(f"demo:ticker?rows={n}&rate=100", 50_000)
    assert pc.min(table["PRICE"]).as_py() > 0
    symbols = set(table["TICKER_SYMBOL"].to_pylist())
    assert 15 <= len(symbols) <= 25 and {"AMZN", "AAPL", "MSFT"} <= symbols
    sectors = {s: set() for s in table["SECTOR"].to_pylist()}
    for symbol, sector in zip(table["TICKER_SYMBOL"].to_pylist(), table["SECTOR"].to_pylist(), strict=True):
        sectors[sector].add(symbol)
    assert len({sym for group in sectors.values() for sym in group}) == len(symbols)  # one sector per symbol
    assert set(sectors) >= {"TECHNOLOGY", "ENERGY", "FINANCIAL", "HEALTHCARE", "RETAIL"}
    # CHANGE is the price minus the same symbol's previous price.
    rows = table.select(["TICKER_SYMBOL", "PRICE", "CHANGE"]).to_pylist()
    last: dict[str, float] = {}
    for row in rows:
        previous = last.get(row["TICKER_SYMBOL"])
        if previous is not None:
            assert row["CHANGE"] == pytest.approx(row["PRICE"] - previous, abs=0.006)
        last[row["TICKER_SYMBOL"]] = row["PRICE"]
    # ~0.2% spikes of 8-15%, ~0.5% volume bursts, ~10% late events of up to 2 s.
    ratio = pc.abs(pc.divide(table["CHANGE"], pc.subtract(table["PRICE"], table["CHANGE"])))
    spikes = pc.sum(pc.greater(ratio, 0.07)).as_py() / n
    assert 0.002 <= spikes <= 0.006  # a spike and the step back after it
    arrival = pc.add(pa.scalar(1_714_557_600_000_000), pc.multiply(table["offset"], 10_000)).cast(pa.timestamp("us"))
    delay = pc.subtract(arrival.cast(pa.int64()), table["EVENT_TIME"].cast(pa.int64()))
    late = pc.sum(pc.greater(delay, 0)).as_py() / n
    assert 0.08 <= late <= 0.11
    assert pc.max(delay).as_py() <= 2_000_000 and pc.min(delay).as_py() >= 0
    bursts = pc.sum(pc.greater(table["VOLUME"], 1000)).as_py() / n
    assert 0.003 <= bursts <= 0.01


def test_demo_conforms_to_a_declared_schema() -> None:
    table = read("demo:ticker?rows=100", 100)
    declared = pa.schema(
        [("ticker_symbol", pa.string()), ("price", pa.decimal128(8, 2)), ("event_time", pa.timestamp("us"))]
    )
    rows, errors = Decoder("ticker", declared, None, time_column="event_time").conform(table.to_batches()[0])
    assert rows.num_rows == 100 and errors.num_rows == 0
