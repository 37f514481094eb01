"""Schema drift: a new field is ignored by a declared schema and kept (in ``_extra``) by a
schema-less one; a missing field is NULL; a retyped field is a ``type`` error row."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
from typer.testing import CliRunner

from cli import app
from engine.formats.decode import Decoder
from engine.formats.encode import to_json_lines

SCHEMA = pa.schema([("ts", pa.timestamp("us")), ("level", pa.string()), ("code", pa.int32())])


def _raw(lines: list[bytes]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {
            "payload": pa.array(lines, pa.large_binary()),
            "offset": pa.array(range(len(lines)), pa.int64()),
            "arrival_time": pa.array([0] * len(lines), pa.timestamp("us")),
        }
    )


LINES = [
    b'{"ts": "2024-01-01T00:00:00Z", "level": "info", "code": 1}',
    b'{"ts": "2024-01-01T00:00:01Z", "level": "warn", "code": 2, "host": "a", "tags": {"x": [1]}}',
    b'{"ts": "2024-01-01T00:00:02Z", "code": 3}',
    b'{"ts": "2024-01-01T00:00:03Z", "level": "error", "code": "three"}',
    b'{"ts": "2024-01-01T00:00:04Z", "level": "info", "code": 5, "host": null, "_extra": 1}',
]


def _decode(schema: pa.Schema, lines: list[bytes], slow: bool) -> tuple[list[dict], list[dict]]:
    decoder = Decoder("logs", schema, "json", time_column="ts")
    if slow:
        decoder.record_by_record_upto = 10**9  # else the whole-batch reader goes first
    rows, errors = decoder.decode(_raw(lines))
    return rows.drop_columns(["__seq"]).to_pylist(), errors.to_pylist()


def test_declared_schema_ignores_new_fields_nulls_missing_ones_and_refuses_retyped_ones() -> None:
    for slow in (False, True):
        rows, errors = _decode(SCHEMA, LINES * 50, slow)
        assert [r["code"] for r in rows[:4]] == [1, 2, 3, 5]
        assert rows[2]["level"] is None
        assert set(rows[1]) == {"ts", "level", "code"}
        assert len(errors) == 50 and {e["reason"] for e in errors} == {"type"}
        assert errors[0]["message"] == 'column "code": "three" is not an INT'


def test_schema_less_streams_keep_new_fields_in_extra_the_same_way_in_both_decoders() -> None:
    schema = SCHEMA.append(pa.field("_extra", pa.string()))
    fast, _ = _decode(schema, LINES * 50, slow=False)
    slow, _ = _decode(schema, LINES * 50, slow=True)
    assert fast == slow
    assert [r["_extra"] for r in slow[:4]] == [None, '{"host":"a","tags":{"x":[1]}}', None, '{"host":null,"_extra":1}']
    # JSON output puts the kept fields back into the record
    table = pa.Table.from_pylist(slow[:2], schema=schema)
    lines = [json.loads(line) for line in to_json_lines(table).splitlines()]
    assert lines[1] == {"ts": "2024-01-01T00:00:01Z", "level": "warn", "code": 2, "host": "a", "tags": {"x": [1]}}


def test_a_schema_less_file_passes_new_fields_through_the_cli(tmp_path: Path) -> None:
    # the first 200 records (the discovery sample) lack "region"; later ones have it
    records = [{"ts": f"2024-01-01T00:{i // 60:02d}:{i % 60:02d}Z", "v": i} for i in range(300)]
    for i in range(250, 300):
        records[i]["region"] = "eu" if i % 2 else "us"
    data = tmp_path / "events.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    program = tmp_path / "pass.sql"
    program.write_text("SELECT * FROM events WHERE v >= 249")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["run", str(program), "-s", f"events={data}", "-o", str(out)])
    assert result.exit_code == 0, result.output
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert got == records[249:]
    csv_out = tmp_path / "out.csv"
    result = CliRunner().invoke(app, ["run", str(program), "-s", f"events={data}", "-o", str(csv_out)])
    assert result.exit_code == 0, result.output
    lines = csv_out.read_text().splitlines()
    assert lines[0] == "ts,v,_extra" and lines[2].endswith(',"{""region"":""us""}"')
