"""Public helpers for testing programs: in-memory sources and sinks, and ``run_sql``.

Users test their ``.sql`` the way we test ours::

    >>> from engine.testing import run_sql
    >>> sql = '''
    ... CREATE TABLE t (ts TIMESTAMP, k VARCHAR, WATERMARK FOR ts AS ts);
    ... SELECT k, window_start, COUNT(*) AS n
    ... FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
    ... GROUP BY k, window_start, window_end'''
    >>> rows = [{"ts": "2024-05-01T10:00:05Z", "k": "a"}, {"ts": "2024-05-01T10:00:50Z", "k": "a"}]
    >>> run_sql(sql, inputs={"t": [rows]})
    [{'k': 'a', 'window_start': datetime.datetime(2024, 5, 1, 10, 0), 'n': 2}]
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pyarrow as pa

from engine.plan.logical import Program
from engine.plan.planner import PlanOptions, compile_program
from engine.runtime.checkpoint import CheckpointStore, program_fingerprint
from engine.runtime.loop import Runner, RunOptions, RunStats
from engine.types import RAW_SCHEMA, Epoch, Offsets


class ListSource:
    """A raw source over payloads in memory; each inner list is handed out as one batch.

    Positions are the number of payloads handed out, so ``open({"list": "k"})`` resumes at k.
    """

    kind: Literal["raw", "typed"] = "raw"
    bounded: bool = True
    format: str | None

    def __init__(self, name: str, batches: Sequence[Sequence[bytes]], fmt: str = "json") -> None:
        self.name, self.format = name, fmt
        self.batches = [list(b) for b in batches]
        self.position = 0
        self.next_batch = 0

    def open(self, resume: Offsets | None) -> None:
        self.position = int(resume["list"]) if resume else 0
        seen, self.next_batch = 0, 0
        while self.next_batch < len(self.batches) and seen + len(self.batches[self.next_batch]) <= self.position:
            seen += len(self.batches[self.next_batch])
            self.next_batch += 1

    def poll(self, max_rows: int, timeout_s: float) -> pa.RecordBatch | None:
        if self.next_batch >= len(self.batches):
            return None
        start = sum(len(b) for b in self.batches[: self.next_batch])
        payloads = self.batches[self.next_batch][self.position - start :]
        self.next_batch += 1
        n = len(payloads)
        offsets = list(range(self.position, self.position + n))
        self.position += n
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        return pa.RecordBatch.from_arrays(
            [
                pa.array(payloads, pa.large_binary()),
                pa.array(offsets, pa.int64()),
                pa.array([now] * n, pa.timestamp("us")),
            ],
            schema=RAW_SCHEMA,
        )

    def schema(self) -> pa.Schema | None:
        return None

    def sample(self, max_rows: int) -> list[bytes]:
        return [p for b in self.batches for p in b][:max_rows]

    def offsets(self) -> Offsets:
        return {"list": str(self.position)}

    def close(self) -> None:
        pass


class ListSink:
    """A sink that keeps every committed table in memory (``rows()`` gives them as dicts)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.staged: dict[int, list[pa.Table]] = {}
        self.committed: list[pa.Table] = []

    def open(self, schema: pa.Schema, last_committed: Epoch | None, state: dict | None = None) -> None:
        self.schema = schema

    def prepare(self, epoch: Epoch) -> dict | None:
        return None

    def write(self, epoch: Epoch, batch: pa.Table) -> None:
        self.staged.setdefault(epoch, []).append(batch)

    def commit(self, epoch: Epoch) -> None:
        for e in sorted(k for k in self.staged if k <= epoch):
            self.committed.extend(self.staged.pop(e))

    def abort(self, epoch: Epoch) -> None:
        self.staged.pop(epoch, None)

    def close(self) -> None:
        pass

    def rows(self) -> list[dict[str, Any]]:
        """Every committed row, in order."""
        return [row for t in self.committed for row in t.to_pylist()]


def _payload(row: Mapping[str, Any] | bytes | str) -> bytes:
    if isinstance(row, bytes):
        return row
    if isinstance(row, str):
        return row.encode()
    return json.dumps(dict(row), default=_json_default).encode()


def _json_default(value: object) -> object:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.isoformat() + "Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def run_program(
    program: Program,
    inputs: Mapping[str, Sequence[Sequence[Mapping[str, Any] | bytes | str]]],
    options: RunOptions | None = None,
    checkpoint_dir: str | None = None,
) -> tuple[dict[str, ListSink], ListSink, RunStats]:
    """Run a compiled program over in-memory batches; returns (sinks by output name, errors, stats).

    With ``checkpoint_dir`` the run resumes from the checkpoint there, if any, and saves its own;
    with ``options.stop_after_batches`` it stops after that many batches, right after a
    checkpoint, as a crash would leave it.
    """
    sources = {}
    for key in program.sources:
        name = program.streams[key].name
        batches = next((v for k, v in inputs.items() if k.lower() == key), None)
        if batches is None:
            raise KeyError(f"no input given for stream {name!r}")
        sources[key] = ListSource(name, [[_payload(r) for r in b] for b in batches])
    sinks = {o.stream: ListSink(o.name) for o in program.outputs}
    errors = ListSink("errors")
    opts = options or RunOptions(idle_timeout_us=None, sleep=lambda s: None)
    store = CheckpointStore(checkpoint_dir, program_fingerprint(program.text)) if checkpoint_dir else None
    stats = Runner(program, sources, sinks, errors, opts, checkpoints=store).run()
    by_name = {o.name: sinks[o.stream] for o in program.outputs}
    return by_name, errors, stats


def run_sql(
    sql: str,
    inputs: Mapping[str, Sequence[Sequence[Mapping[str, Any] | bytes | str]]],
    output: str | None = None,
    allowed_lateness_us: int = 0,
    flush: bool = True,
) -> list[dict[str, Any]]:
    """Compile ``sql``, feed ``inputs`` ({stream: [batch, ...]}, rows as dicts), return output rows.

    With several outputs, ``output`` names the one to return (``result`` for a lone SELECT,
    the INSERT target's name otherwise).
    """
    program = compile_program(sql, options=PlanOptions(allowed_lateness_us=allowed_lateness_us))
    sinks, _, _ = run_program(program, inputs, RunOptions(idle_timeout_us=None, flush=flush, sleep=lambda s: None))
    if output is None:
        if len(sinks) != 1:
            raise ValueError(f"the program has outputs {sorted(sinks)}: say which with output=")
        output = next(iter(sinks))
    return sinks[output].rows()
