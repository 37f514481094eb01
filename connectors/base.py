"""The two small protocols every connector implements.

A source is built from a URI plus options and does no I/O until ``open``. It hands out either
*raw* rows (bytes to decode, ``kind == "raw"``, schema ``engine.types.RAW_SCHEMA``) or *typed*
rows (``kind == "typed"``: Arrow columns plus ``offset``), never Python objects.
A sink receives typed rows (hidden ``__`` columns already removed) within epochs.

Raw CSV sources also carry ``csv_options`` (``{"delimiter": ",", "header": True}``) for the
decoder; read it with ``getattr(source, "csv_options", None)``, as it is not part of the protocol.
Build connectors with ``connectors.open_source``/``open_sink``.
"""

from __future__ import annotations

from typing import Literal, Protocol

import pyarrow as pa

from engine.errors import ConnectorError
from engine.types import Epoch, Offsets


class Source(Protocol):
    """Where records come from: a file, stdin, the demo generator."""

    name: str  # stable: keys offsets, metrics and error rows
    kind: Literal["raw", "typed"]
    format: str | None  # "json" | "csv" for raw sources; None for typed ones
    bounded: bool  # True if poll() eventually returns None (a file, stdin, demo with rows=N)

    def open(self, resume: Offsets | None) -> None:
        """Start reading just after ``resume``, or at the configured start if None.

        Derive every bit of position state from ``resume``, never from ``__init__``.
        """

    def poll(self, max_rows: int, timeout_s: float) -> pa.RecordBatch | None:
        """Rows ready now (at most ``max_rows``), an empty batch if none, None once exhausted.

        Never sleeps longer than ``timeout_s``.
        """

    def schema(self) -> pa.Schema | None:
        """For typed sources: the Arrow schema of the rows (without ``offset``). Raw: None."""

    def sample(self, max_rows: int) -> list[bytes]:
        """For raw sources: up to ``max_rows`` payloads from the start, for schema discovery.

        Must not change the position that ``open``/``poll`` use.
        """

    def offsets(self) -> Offsets:
        """Position *after* the last row poll() returned. Goes into the checkpoint."""

    def close(self) -> None:
        """Release resources. May not be called on a crash: nothing correct may depend on it."""


class Sink(Protocol):
    """Where result and error rows go: a file, stdout.

    Exactly-once protocol, driven by the runtime at each checkpoint (between batches):

    1. ``prepare(n)`` makes everything written for epoch ``n`` durable *but invisible* (flushed
       and fsynced under a staging name) and returns a small picklable dict (or None) that the
       runtime stores in checkpoint ``n``;
    2. the runtime writes checkpoint ``n`` atomically;
    3. ``commit(n)`` makes epoch ``n`` visible. It must be idempotent and must also work on a fresh
       sink object after a crash (given the state from ``prepare``, via ``open``).

    On start, ``open(schema, last_committed, state)`` receives the newest checkpoint's epoch and the
    dict ``prepare`` returned for it (None on a first start). The sink must then (re)commit that
    epoch if its commit may not have finished, and remove everything staged for later epochs or
    written after it, so that readers see exactly the epochs up to ``last_committed``.
    Output names must be a pure function of (sink, epoch, part), never of the wall clock.
    """

    name: str

    def open(self, schema: pa.Schema, last_committed: Epoch | None, state: dict | None = None) -> None:
        """Get ready to write rows of ``schema`` (see the class docstring for recovery)."""

    def write(self, epoch: Epoch, batch: pa.Table) -> None:
        """Stage rows for ``epoch``; readers must not see them before ``commit``."""

    def prepare(self, epoch: Epoch) -> dict | None:
        """Make epoch ``epoch``'s rows durable but invisible; return state for the checkpoint."""

    def commit(self, epoch: Epoch) -> None:
        """Make ``epoch`` visible. Committing an epoch twice is a no-op."""

    def abort(self, epoch: Epoch) -> None:
        """Throw away whatever ``epoch`` staged."""

    def close(self) -> None:
        """Release resources. May not be called on a crash: nothing correct may depend on it."""


def check_epoch_grows(epoch: Epoch, last_committed: Epoch | int | None, where: str) -> None:
    """Rows for an epoch at or before the last committed one are a runtime bug a sink refuses.

    Raises:
        ConnectorError: naming both epochs.
    """
    if last_committed is not None and epoch <= last_committed:
        raise ConnectorError(
            f"rows for epoch {epoch}, but epoch {last_committed} is already committed",
            where=where,
            hint="epochs must grow: after a restart go on with last_committed + 1",
        )
