"""Live metrics of a run: what ``run --progress`` shows and ``run --metrics-port`` serves.

The ``Runner`` feeds one ``Metrics`` object once per batch (never per row) and at every
checkpoint; readers on other threads (the HTTP server, the status line) take a consistent copy
with ``snapshot``. Names follow Prometheus conventions (``duckstream_`` prefix, base units,
``_total`` for counters, labels only of low cardinality: stream, output and error reason). No
label or value ever holds a URI, so credentials in a source's URI never reach the metrics.

Traps: a source that has ended moves its watermark to "the end of time"; the last finite one
stays reported; ``state_rows`` is sampled at most once a second and at checkpoints, so it lags a
little; ``bytes_in`` is the Arrow size of the payloads a raw source handed out (close to the
bytes read) or of the rows of a typed source.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from engine.types import MAX_TIME, MIN_TIME

STATE_SAMPLE_S = 1.0  # how often, at most, the state size is measured


@dataclass
class MetricsSnapshot:
    """A consistent copy of the metrics at one moment (see ``Metrics``)."""

    records_in: dict[str, int] = field(default_factory=dict)  # source stream -> records
    bytes_in: dict[str, int] = field(default_factory=dict)
    rows_out: dict[str, int] = field(default_factory=dict)  # output name -> rows
    errors: dict[str, int] = field(default_factory=dict)  # reason -> error rows
    watermark_us: dict[str, int] = field(default_factory=dict)  # source stream -> event-time watermark
    lag_ms: dict[str, float] = field(default_factory=dict)  # source stream -> behind its head
    progress: dict[str, tuple[int, int]] = field(default_factory=dict)  # source stream -> (done, size)
    bounded: bool = False  # every source is bounded and knows its size
    batches: int = 0
    state_rows: int = 0
    state_bytes: int = 0
    checkpoints: int = 0
    checkpoint_seconds_total: float = 0.0
    last_checkpoint_seconds: float = 0.0
    elapsed_s: float = 0.0

    @property
    def late_rows(self) -> int:
        return self.errors.get("late", 0)

    @property
    def fraction_done(self) -> float | None:
        """Share of the input read (0..1) when every source knows its size, else None."""
        if not self.bounded or not self.progress:
            return None
        done = sum(d for d, _ in self.progress.values())
        size = sum(s for _, s in self.progress.values())
        return min(done / size, 1.0) if size else 1.0


class Metrics:
    """The counters of one run, written by the runner's thread and read from any other."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._started = clock()
        self._last_state_sample: float | None = None
        self._data = MetricsSnapshot()

    def update(
        self,
        records_in: Mapping[str, int],
        bytes_in: Mapping[str, int],
        rows_out: Mapping[str, int],
        errors: Mapping[str, int],
        watermark_us: Mapping[str, int],
        lag_ms: Mapping[str, float],
        progress: Mapping[str, tuple[int, int] | None],
        batches: int,
    ) -> None:
        """Take the runner's current counts (small dicts keyed by names users wrote)."""
        marks = {k: v for k, v in watermark_us.items() if MIN_TIME < v < MAX_TIME}
        sized = {k: v for k, v in progress.items() if v is not None}
        with self._lock:
            d = self._data
            d.records_in, d.bytes_in, d.rows_out = dict(records_in), dict(bytes_in), dict(rows_out)
            d.errors, d.lag_ms, d.batches = dict(errors), dict(lag_ms), batches
            d.watermark_us.update(marks)
            d.progress = sized
            d.bounded = len(sized) == len(progress) > 0

    def state_due(self) -> bool:
        """Whether the state size should be measured now (at most once a second)."""
        now = self._clock()
        if self._last_state_sample is not None and now - self._last_state_sample < STATE_SAMPLE_S:
            return False
        self._last_state_sample = now
        return True

    def set_state(self, rows: int, nbytes: int) -> None:
        with self._lock:
            self._data.state_rows, self._data.state_bytes = rows, nbytes

    def checkpointed(self, seconds: float) -> None:
        """One checkpoint was saved; it took ``seconds``."""
        with self._lock:
            self._data.checkpoints += 1
            self._data.checkpoint_seconds_total += seconds
            self._data.last_checkpoint_seconds = seconds

    def snapshot(self) -> MetricsSnapshot:
        with self._lock:
            d = self._data
            return MetricsSnapshot(
                **{
                    **d.__dict__,
                    **{k: dict(getattr(d, k)) for k in ("records_in", "bytes_in", "rows_out", "errors")},
                    "watermark_us": dict(d.watermark_us),
                    "lag_ms": dict(d.lag_ms),
                    "progress": dict(d.progress),
                    "elapsed_s": self._clock() - self._started,
                }
            )


# ---------------------------------------------------------------------- Prometheus text
def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> list[str]:
    lines = [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        number = repr(float(value)) if isinstance(value, float) else str(value)
        lines.append(f"{name}{labels} {number}")
    return lines


def _by(label: str, values: Mapping[str, float]) -> list[tuple[str, float]]:
    return [(f'{{{label}="{_label(k)}"}}', v) for k, v in sorted(values.items())]


def prometheus_text(s: MetricsSnapshot) -> str:
    """The snapshot in the Prometheus text exposition format (version 0.0.4)."""
    C, G = "counter", "gauge"
    families: list[tuple[str, str, str, list[tuple[str, float]]]] = [
        ("duckstream_records_in_total", C, "Records read, per source stream.", _by("stream", s.records_in)),
        ("duckstream_bytes_in_total", C, "Bytes read, per source stream.", _by("stream", s.bytes_in)),
        ("duckstream_rows_out_total", C, "Rows written, per output.", _by("output", s.rows_out)),
        ("duckstream_error_rows_total", C, "Rows sent to the error stream, per reason.", _by("reason", s.errors)),
        ("duckstream_late_rows_total", C, "Rows that arrived behind the watermark.", [("", s.late_rows)]),
        (
            "duckstream_watermark_seconds",
            G,
            "Event-time watermark per source stream (seconds since the epoch).",
            _by("stream", {k: v / 1e6 for k, v in s.watermark_us.items()}),
        ),
        (
            "duckstream_source_lag_seconds",
            G,
            "How far a source stream is behind its head (Kinesis MillisBehindLatest / 1000).",
            _by("stream", {k: v / 1000 for k, v in s.lag_ms.items()}),
        ),
        (
            "duckstream_state_rows",
            G,
            "Rows in operator state (open windows x keys, buffers).",
            [("", s.state_rows)],
        ),
        ("duckstream_state_bytes", G, "Bytes held in operator state.", [("", s.state_bytes)]),
        ("duckstream_batches_total", C, "Micro-batches processed.", [("", s.batches)]),
        ("duckstream_checkpoints_total", C, "Checkpoints saved.", [("", s.checkpoints)]),
        (
            "duckstream_checkpoint_duration_seconds",
            G,
            "How long the last checkpoint took.",
            [("", s.last_checkpoint_seconds)],
        ),
        ("duckstream_checkpoint_seconds_total", C, "Time spent checkpointing.", [("", s.checkpoint_seconds_total)]),
    ]
    lines = [line for family in families for line in _family(*family)]
    return "\n".join(lines) + "\n"


class _Handler(BaseHTTPRequestHandler):
    metrics: Metrics

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        if self.path.split("?")[0] != "/metrics":
            self.send_error(404, "only /metrics is served")
            return
        body = prometheus_text(self.metrics.snapshot()).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not news
        pass


@contextmanager
def serve_metrics(metrics: Metrics, port: int, host: str = "127.0.0.1") -> Iterator[ThreadingHTTPServer]:
    """Serve ``/metrics`` on ``host:port`` from a daemon thread until the block ends.

    Raises:
        OSError: if the port cannot be bound (the caller turns it into a one-line error).
    """
    handler = type("MetricsHandler", (_Handler,), {"metrics": metrics})
    server = ThreadingHTTPServer((host, port), handler)
    thread = threading.Thread(target=server.serve_forever, name="duckstream-metrics", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ---------------------------------------------------------------------- status line
def status_line(s: MetricsSnapshot) -> str:
    """One line for humans: records/s, rows out, errors, watermark, lag."""
    from engine.operators.base import fmt_us

    records = sum(s.records_in.values())
    rate = records / s.elapsed_s if s.elapsed_s > 0 else 0.0
    parts = [f"{records:,} records in ({rate:,.0f}/s)", f"{sum(s.rows_out.values()):,} rows out"]
    errors = sum(s.errors.values())
    parts.append(f"{errors:,} errors" + (f" ({s.late_rows:,} late)" if s.late_rows else ""))
    if s.watermark_us:
        parts.append("watermark " + ", ".join(f"{k} {fmt_us(v)}" for k, v in sorted(s.watermark_us.items())))
    if s.lag_ms:
        parts.append("lag " + ", ".join(f"{k} {v / 1000:,.1f} s" for k, v in sorted(s.lag_ms.items())))
    return " | ".join(parts)


__all__ = ["Metrics", "MetricsSnapshot", "prometheus_text", "serve_metrics", "status_line"]
