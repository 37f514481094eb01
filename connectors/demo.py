"""``demo:ticker``: a simulated stock ticker, like the Kinesis Data Analytics demo stream.

Columns: ``TICKER_SYMBOL`` (20 symbols with fixed sectors), ``SECTOR``, ``CHANGE`` (price minus the
symbol's previous price), ``PRICE`` (a per-symbol random walk, 2 decimals, always > 0),
``VOLUME`` and ``EVENT_TIME``.

Time is simulated, not waited for: event *k* arrives at ``2024-05-01T10:00:00Z + k / rate``
seconds (to the millisecond below), and about 10% of events carry an event time 0-2 s before
their arrival, so the stream is slightly out of order. Times are whole milliseconds. About 0.2%
of events are price spikes (±8-15% for that one event) and about 0.5% volume bursts (10x: volumes
are 100-1000, bursts above 1000), so alarm queries have something to find. Rows come as fast as
the engine polls.

Options (URI query or WITH): ``rows`` (stop after this many; default: never), ``seed`` (default
42) and ``rate`` (events per simulated second, default 100).

Determinism: rows are generated in fixed blocks of ``BLOCK_ROWS``, each from its own random
generator seeded by ``(seed, block)``. A symbol's price walks from one *anchor* price to the next
across a block (a Brownian bridge), and anchors are a deterministic function of
``(seed, block)``. So any row can be regenerated without the rows before it, and resuming at
offset *k* gives exactly rows *k*, *k+1*, … of an uninterrupted run.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pyarrow as pa

from connectors.options import Options
from engine.errors import ConnectorError
from engine.types import TS_TYPE, Offsets

BLOCK_ROWS = 8192
START_US = 1_714_557_600_000_000  # 2024-05-01T10:00:00Z
_OFFSETS_KEY = "ticker"

# symbol, sector, opening price
_SYMBOLS = [
    ("AAPL", "TECHNOLOGY", 170.0),
    ("MSFT", "TECHNOLOGY", 410.0),
    ("INTC", "TECHNOLOGY", 31.0),
    ("CRM", "TECHNOLOGY", 290.0),
    ("ORCL", "TECHNOLOGY", 125.0),
    ("AMZN", "RETAIL", 180.0),
    ("TGT", "RETAIL", 150.0),
    ("WMT", "RETAIL", 60.0),
    ("COST", "RETAIL", 720.0),
    ("BAC", "FINANCIAL", 38.0),
    ("JPM", "FINANCIAL", 195.0),
    ("WAS", "FINANCIAL", 42.0),
    ("DFG", "FINANCIAL", 55.0),
    ("XOM", "ENERGY", 118.0),
    ("CVX", "ENERGY", 160.0),
    ("NFS", "ENERGY", 24.0),
    ("PFE", "HEALTHCARE", 28.0),
    ("JNJ", "HEALTHCARE", 150.0),
    ("QXZ", "HEALTHCARE", 84.0),
    ("ABC", "HEALTHCARE", 66.0),
]
_N = len(_SYMBOLS)
_TICKERS = pa.array([s for s, _, _ in _SYMBOLS], pa.string())
_SECTORS = pa.array([s for _, s, _ in _SYMBOLS], pa.string())
_LOG_OPEN = np.log(np.array([p for _, _, p in _SYMBOLS]))
# Each row's symbol, volume and price step come from one 64-bit random word through lookup tables:
# bits 0-11 pick the symbol (a few trade more than others: weights 1/sqrt(rank)), bits 12-21 the
# volume (log-uniform 100 .. 1000; bursts are above), bits 22-37 the step (uniform).
_WEIGHTS = 1.0 / np.sqrt(np.arange(1, _N + 1))
_SHARES = np.floor(_WEIGHTS / _WEIGHTS.sum() * 4096).astype(int)
_SHARES[0] += 4096 - _SHARES.sum()
_PICK = np.repeat(np.arange(_N, dtype=np.uint8), _SHARES)
_VOLUMES = np.round(100 * 10 ** (np.arange(1024) / 1024)).astype(np.int64)
_ANCHOR_WAVES = ((0.04, 7.0), (0.08, 61.0), (0.12, 997.0))  # (log amplitude, period in blocks)
_STEP_WIDTH = 0.0015 * math.sqrt(3)  # log-price steps uniform in ±this (standard deviation 0.15%)
_SPIKE_RATE, _SPIKE_MIN, _SPIKE_MAX = 0.002, 0.08, 0.15
_BURST_RATE, _BURST_FACTOR = 0.005, 10
_LATE_RATE, _MAX_DELAY_MS = 0.10, 2_000

SCHEMA = pa.schema(
    [
        ("TICKER_SYMBOL", pa.string()),
        ("SECTOR", pa.string()),
        ("CHANGE", pa.float64()),
        ("PRICE", pa.float64()),
        ("VOLUME", pa.int64()),
        ("EVENT_TIME", TS_TYPE),
    ]
)


# Batches also carry each event's simulated arrival time (what KDA programs see as ROWTIME).
_BATCH_SCHEMA = SCHEMA.append(pa.field("offset", pa.int64())).append(pa.field("arrival_time", TS_TYPE))


class DemoSource:
    """The simulated ticker, a typed source (see the module docstring for what it generates)."""

    kind: Literal["raw", "typed"] = "typed"
    format: str | None = None

    def __init__(self, name: str, options: Options, generator: str = "ticker") -> None:
        """Take ``rows``, ``seed`` and ``rate``; no generation yet.

        Args:
            name: the stream name.
            options: as above.
            generator: the demo stream (only ``ticker`` exists).

        Raises:
            ConnectorError: for an unknown generator or a bad option.
        """
        if generator not in ("", "ticker"):
            raise ConnectorError(f"unknown demo stream {generator!r} (known: ticker)", where=options.where)
        self.name = name
        self.where = options.where
        rows = options.take_optional("rows")
        self.rows: int | None = None if rows is None else _non_negative(rows, "rows", options.where)
        self.seed = options.take_int("seed", 42, minimum=0)
        self.rate = options.take_float("rate", 100.0, minimum_exclusive=0.0)
        self.bounded = self.rows is not None
        self._ms_per_event = 1000 / self.rate
        phases = np.random.default_rng([self.seed, 2**32]).uniform(0, 2 * math.pi, size=(len(_ANCHOR_WAVES), _N))
        self._phases = phases
        self._next = 0
        self._block_index = -1
        self._cached: dict[str, np.ndarray] = {}

    @classmethod
    def from_uri(cls, name: str, target: str | None, options: Options) -> DemoSource:
        """The registry's factory: ``target`` names the generator (``ticker``)."""
        generator = target if target is not None else options.take("generator", "ticker")
        return cls(name, options, generator.strip().lower())

    def open(self, resume: Offsets | None) -> None:
        """Continue at ``resume["ticker"]`` (the next row index), or at row 0.

        Raises:
            ConnectorError: if the resume offset is not a row number.
        """
        text = (resume or {}).get(_OFFSETS_KEY, "0")
        if not text.isdigit():
            raise ConnectorError(f"resume offset {text!r} for the demo is not a row number", where=self.where)
        self._next = int(text)

    def poll(self, max_rows: int, timeout_s: float) -> pa.RecordBatch | None:
        """The next rows (never waits); None after ``rows`` rows when bounded."""
        stop = self._next + max_rows
        if self.rows is not None:
            if self._next >= self.rows:
                return None
            stop = min(stop, self.rows)
        pieces: list[dict[str, np.ndarray]] = []
        position = self._next
        while position < stop:
            block_index, within = divmod(position, BLOCK_ROWS)
            take = min(BLOCK_ROWS - within, stop - position)
            pieces.append({k: v[within : within + take] for k, v in self._block(block_index).items()})
            position += take
        columns = {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]} if len(pieces) > 1 else pieces[0]
        batch = _to_arrow(columns, self._next)
        self._next = stop
        return batch

    def _block(self, index: int) -> dict[str, np.ndarray]:
        if index != self._block_index:
            self._cached = self._generate(index)
            self._block_index = index
        return self._cached

    def _log_anchor(self, block: int) -> np.ndarray:
        """Each symbol's log price at the start of ``block``: the same however it is reached."""
        log_price: np.ndarray = _LOG_OPEN.copy()
        for (amplitude, period), phase in zip(_ANCHOR_WAVES, self._phases, strict=True):
            log_price += amplitude * np.sin(2 * math.pi * block / period + phase)
        return log_price

    def _generate(self, block: int) -> dict[str, np.ndarray]:
        """Block ``block``'s rows as numpy columns: the same for the same (seed, block), always."""
        rng = np.random.default_rng([self.seed, block])
        n = BLOCK_ROWS
        word = rng.bit_generator.random_raw(n)
        symbol = _PICK[word & 4095]
        volume = _VOLUMES[(word >> 12) & 1023]
        steps = ((word >> 22) & 0xFFFF).astype(np.float64) * (2 * _STEP_WIDTH / 0xFFFF) - _STEP_WIDTH
        spikes = rng.integers(0, n, rng.binomial(n, _SPIKE_RATE))
        spike_sign = np.where(rng.random(len(spikes)) < 0.5, -1.0, 1.0)
        spike_size = rng.uniform(_SPIKE_MIN, _SPIKE_MAX, len(spikes)) * spike_sign
        volume[rng.integers(0, n, rng.binomial(n, _BURST_RATE))] *= _BURST_FACTOR
        late = rng.integers(0, n, rng.binomial(n, _LATE_RATE))
        delay = rng.integers(0, _MAX_DELAY_MS, len(late), endpoint=True) * 1000

        # Per symbol, a Brownian bridge from this block's anchor to the next one, in log space.
        # Work in symbol order (rows grouped by symbol, in row order within a symbol); per-symbol
        # values are spread over their rows with np.repeat.
        order = np.argsort(symbol, kind="stable")
        counts = np.bincount(symbol, minlength=_N)
        starts = np.cumsum(counts) - counts
        walk = np.cumsum(steps[order])
        before = np.concatenate(([0.0], walk))
        group_total = before[starts + counts] - before[starts]
        rank = np.arange(1, n + 1) - np.repeat(starts, counts)  # 1-based position among the symbol's trades
        share = rank / np.repeat(counts, counts)
        here, there = self._log_anchor(block), self._log_anchor(block + 1)
        log_price = (
            np.repeat(here, counts)
            + share * np.repeat(there - here - group_total, counts)
            + walk
            - np.repeat(before[starts], counts)
        )
        last = starts + counts - 1
        last = last[counts > 0]
        log_price[last] = np.repeat(there, counts)[last]  # exactly the next block's anchor
        price = np.maximum(np.round(np.exp(log_price), 2), 0.01)
        position = np.empty(n, dtype=np.intp)
        position[order] = np.arange(n)  # row -> place in symbol order
        spiked = position[spikes]
        keep = rank[spiked] != np.repeat(counts, counts)[spiked]  # the anchor trade is never a spike
        spiked, spike_size = spiked[keep], spike_size[keep]
        price[spiked] = np.maximum(np.round(price[spiked] * (1 + spike_size), 2), 0.01)
        previous = np.empty(n)
        previous[1:] = price[:-1]
        first = starts[counts > 0]
        previous[first] = np.maximum(np.round(np.exp(here[counts > 0]), 2), 0.01)
        change = np.round(price - previous, 2)

        if float(self._ms_per_event).is_integer():
            arrival_ms = np.arange(block * n, (block + 1) * n, dtype=np.int64) * int(self._ms_per_event)
        else:
            arrival_ms = np.floor(np.arange(block * n, (block + 1) * n, dtype=np.float64) * self._ms_per_event)
        event_time = START_US + arrival_ms.astype(np.int64) * 1000
        event_time[late] -= delay
        in_row_order = price[position]
        change_in_order = change[position]
        return {
            "symbol": symbol,
            "change": change_in_order,
            "price": in_row_order,
            "volume": volume,
            "time": event_time,
            "arrival": START_US + arrival_ms.astype(np.int64) * 1000,
        }

    def schema(self) -> pa.Schema:
        """The ticker's columns (without ``offset``)."""
        return SCHEMA

    def sample(self, max_rows: int) -> list[bytes]:
        """A typed source has no raw records to sample: always ``[]``."""
        return []

    def offsets(self) -> Offsets:
        """``{"ticker": next row index}``."""
        return {_OFFSETS_KEY: str(self._next)}

    def close(self) -> None:
        """Drop the cached block."""
        self._cached = {}
        self._block_index = -1


def _to_arrow(columns: dict[str, np.ndarray], first_offset: int) -> pa.RecordBatch:
    symbol = pa.array(columns["symbol"])
    n = len(symbol)
    return pa.record_batch(
        [
            pa.DictionaryArray.from_arrays(symbol, _TICKERS).dictionary_decode(),
            pa.DictionaryArray.from_arrays(symbol, _SECTORS).dictionary_decode(),
            pa.array(columns["change"]),
            pa.array(columns["price"]),
            pa.array(columns["volume"]),
            pa.array(columns["time"], TS_TYPE),
            pa.array(np.arange(first_offset, first_offset + n, dtype=np.int64)),
            pa.array(columns["arrival"], TS_TYPE),
        ],
        schema=_BATCH_SCHEMA,
    )


def _non_negative(text: str, key: str, where: str) -> int:
    if not text.strip().isdigit():
        raise ConnectorError(f"option {key!r}: {text!r} is not a whole number", where=where)
    return int(text)
