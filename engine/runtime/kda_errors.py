"""``error_stream`` as KDA wrote it: the engine's error rows in KDA's columns.

KDA's error stream has ``ERROR_TIME``, ``ERROR_LEVEL``, ``ERROR_NAME``, ``MESSAGE``,
``DATA_ROWTIME``, ``DATA_ROW`` (the offending row, hex-encoded) and ``PUMP_NAME``. duckstream adds
``REASON`` (its reason code, see ``engine.types.REASONS``) and ``SOURCE_OFFSET`` (where the record
was in its source). ``--sink error_stream=URI`` writes error rows this way; ``--errors URI``
keeps the engine's own columns.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from engine.types import TS_TYPE, Epoch

KDA_ERROR_SCHEMA = pa.schema(
    [
        ("ERROR_TIME", TS_TYPE),
        ("ERROR_LEVEL", pa.string()),
        ("ERROR_NAME", pa.string()),
        ("MESSAGE", pa.string()),
        ("DATA_ROWTIME", TS_TYPE),
        ("DATA_ROW", pa.string()),
        ("PUMP_NAME", pa.string()),
        ("REASON", pa.string()),
        ("SOURCE_OFFSET", pa.string()),
    ]
)
ERROR_NAMES = {
    "decode": "Parse_Error",
    "type": "Type_Conversion_Error",
    "missing_time": "Missing_Rowtime",
    "late": "Late_Row",
    "future": "Future_Row",
    "eval": "Evaluation_Error",
    "too_large": "Row_Too_Large",
    "sink_encode": "Output_Encoding_Error",
}


def pump_of(step_id: str | None, pumps: dict[str, str]) -> str | None:
    """The pump whose query a step belongs to (steps of a pump's query start with its prefix)."""
    if not step_id:
        return None
    if step_id in pumps:
        return pumps[step_id]
    return pumps.get(step_id.split("/", 1)[0])


def kda_errors(errors: pa.Table, pumps: dict[str, str]) -> pa.Table:
    """Error rows (``engine.types.ERROR_SCHEMA``) in KDA's ``error_stream`` columns."""
    reasons = errors["reason"].to_pylist()
    payloads = errors["payload"].to_pylist()
    return pa.table(
        {
            "ERROR_TIME": errors["detected_at"],
            "ERROR_LEVEL": pa.array(["ERROR"] * errors.num_rows, pa.string()),
            "ERROR_NAME": pa.array([ERROR_NAMES.get(r or "", r) for r in reasons], pa.string()),
            "MESSAGE": errors["message"],
            "DATA_ROWTIME": _data_rowtimes(errors),
            "DATA_ROW": pa.array([p.hex() if p is not None else None for p in payloads], pa.string()),
            "PUMP_NAME": pa.array([pump_of(s, pumps) for s in errors["step_id"].to_pylist()], pa.string()),
            "REASON": errors["reason"],
            "SOURCE_OFFSET": errors["source_offset"],
        },
        schema=KDA_ERROR_SCHEMA,
    )


def _data_rowtimes(errors: pa.Table) -> pa.Array:
    """Each error row's ROWTIME: its event time, else the ROWTIME in its payload when the payload
    is a row of a KDA stream (errors found after decoding carry the row as JSON), or the end of the
    window whose result could not be computed (the ROWTIME that result would have had)."""
    import json

    from engine.formats.timestamps import parse_timestamp

    out: list[int | None] = []
    for when, payload in zip(errors["event_time"].cast(pa.int64()).to_pylist(), errors["payload"].to_pylist()):
        if when is None and payload:
            try:
                row = json.loads(payload)
                text = row.get("ROWTIME", row.get("window_end"))  # a window's result: its end
                when = parse_timestamp(text) if isinstance(text, str) else None
            except (ValueError, AttributeError, UnicodeDecodeError):
                when = None
        out.append(when)
    return pa.array(out, pa.int64()).cast(TS_TYPE)


class KdaErrorSink:
    """A sink that receives the engine's error rows and writes them in KDA's columns."""

    def __init__(self, sink: Any, pumps: dict[str, str]) -> None:
        self.sink, self.pumps = sink, pumps

    def open(self, schema: pa.Schema, last_committed: Epoch | None, state: dict | None = None) -> None:
        """Open the wrapped sink for KDA's columns."""
        del schema
        self.sink.open(KDA_ERROR_SCHEMA, last_committed, state)

    def write(self, epoch: Epoch, batch: pa.Table) -> None:
        """Write error rows, converted."""
        self.sink.write(epoch, kda_errors(batch, self.pumps))

    def __getattr__(self, name: str) -> Any:  # prepare, commit, abort, close, due, flush, ...
        return getattr(self.sink, name)
