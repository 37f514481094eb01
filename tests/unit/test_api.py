"""The embedding API (``engine.compile`` -> ``CompiledProgram``): the same rows as a file run
(``engine.testing.run_sql``), whatever the input's form and batch split, across snapshot/restore,
with threads; plus the documentation's examples, which are run here."""

from __future__ import annotations

import datetime as dt
import doctest
import json
import re
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import engine
import engine.api
from engine.errors import DuckstreamError, PlanError, RecordError
from engine.testing import run_program, run_sql

TUMBLE = """
CREATE TABLE t (ts TIMESTAMP, k VARCHAR, v INT, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND);
SELECT k, window_start, window_end, COUNT(*) AS n, SUM(v) AS total
FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY k, window_start, window_end
"""

FILTER = """
CREATE TABLE t (ts TIMESTAMP, k VARCHAR, v INT, WATERMARK FOR ts AS ts);
SELECT k, v * 2 AS v2, ts FROM t WHERE v > 3
"""

T0 = dt.datetime(2024, 5, 1, 10, 0, 0)


def _rows(n: int = 400) -> list[dict[str, Any]]:
    """Deterministic rows, a little out of order, with one late row and a few bad ones."""
    rows: list[dict[str, Any]] = []
    for i in range(n):
        jitter = -3 if i % 7 == 0 else 0
        ts = T0 + dt.timedelta(seconds=1.3 * i + jitter)
        rows.append({"ts": ts.isoformat() + "Z", "k": "abc"[i % 3], "v": i % 10})
    rows[50]["v"] = "not a number"  # a type error
    rows[120]["ts"] = (T0 - dt.timedelta(hours=1)).isoformat() + "Z"  # late
    del rows[200]["ts"]  # missing time
    return rows


def _split(rows: list[Any], size: int) -> list[list[Any]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def _api_run(sql: str, batches: list[list[dict[str, Any]]], flush: bool = True) -> list[dict[str, Any]]:
    program = engine.compile(sql)
    for batch in batches:
        program.push("t", batch)
    if flush:
        program.flush()
    return program.poll().to_pylist()


def _key(row: dict[str, Any]) -> str:
    return json.dumps(row, default=str, sort_keys=True)


@pytest.mark.parametrize("sql", [TUMBLE, FILTER], ids=["tumble", "filter"])
def test_same_rows_as_run_sql(sql: str) -> None:
    rows = _rows()
    batches = _split(rows, 37)
    expected = run_sql(sql, inputs={"t": batches})
    assert expected
    assert _api_run(sql, batches) == expected
    # another batch split gives the same rows (in the same order for the filter)
    other = _api_run(sql, _split(rows, 1) if sql == FILTER else [rows])
    assert sorted(map(_key, other)) == sorted(map(_key, expected))


def test_errors_are_rows_like_a_file_run() -> None:
    rows = _rows()
    _, file_errors, _ = run_program(engine.compile(TUMBLE), {"t": [rows]})
    program = engine.compile(TUMBLE)
    program.push("t", rows)
    program.flush()
    errors = program.poll_errors()
    keep = ["stream", "step_id", "reason", "message", "payload", "source_offset", "event_time"]

    def same(table: pa.Table) -> list[dict[str, Any]]:  # dicts become JSON in another spelling
        return [{**row, "payload": json.loads(row["payload"])} for row in table.select(keep).to_pylist()]

    assert same(errors) == same(pa.concat_tables(file_errors.committed))
    assert [r["reason"] for r in errors.to_pylist()] == ["type", "late", "missing_time"]
    assert errors["source_offset"].to_pylist() == ["t:50", "t:120", "t:200"]
    assert program.positions() == {"t": len(rows)}


def _clean_rows() -> list[dict[str, Any]]:
    return [
        {"ts": T0 + dt.timedelta(seconds=7 * i), "k": "ab"[i % 2], "v": i}
        for i in range(40)  # datetimes: JSON needs them as text, Arrow and pandas keep them typed
    ]


def test_dicts_arrow_pandas_and_json_lines_give_the_same_rows() -> None:
    pd = pytest.importorskip("pandas")
    rows = _clean_rows()
    table = pa.Table.from_pylist(rows)
    text = "\n".join(json.dumps({**r, "ts": r["ts"].isoformat()}) for r in rows) + "\n"
    forms: dict[str, Any] = {
        "dicts": rows,
        "one dict at a time": None,
        "arrow table": table,
        "record batch": table.to_batches()[0],
        "pandas": pd.DataFrame(rows),
        "json text": text,
        "json bytes": text.encode(),
        "json lines": text.splitlines(),
    }
    results = {}
    for name, records in forms.items():
        program = engine.compile(TUMBLE)
        if records is None:
            for row in rows:
                program.push("t", row)
        else:
            program.push("t", records)
        program.flush()
        results[name] = program.poll().to_pylist()
        assert program.poll_errors().num_rows == 0, name
    assert results["dicts"]
    for name, got in results.items():
        assert got == results["dicts"], name


def test_arrow_columns_are_matched_by_name_and_cast_with_errors_as_rows() -> None:
    table = pa.table({"V": ["1", "x", "5"], "k": ["a", "b", "c"], "ts": ["2024-05-01T10:00:00Z"] * 3, "extra": [1] * 3})
    program = engine.compile(FILTER)
    program.push("t", table)
    assert program.poll().to_pylist() == [{"k": "c", "v2": 10, "ts": dt.datetime(2024, 5, 1, 10, 0)}]
    [error] = program.poll_errors().to_pylist()
    assert error["reason"] == "type" and error["source_offset"] == "t:1"


def test_callbacks_and_iterators() -> None:
    program = engine.compile(TUMBLE)
    got: list[pa.Table] = []
    errors: list[pa.Table] = []
    program.on_output("result", got.append)
    program.on_error(errors.append)
    program.push("t", _rows())
    program.flush()
    assert sum(t.num_rows for t in got) == len(run_sql(TUMBLE, inputs={"t": [_rows()]}))
    assert all(not name.startswith("__") for t in got for name in t.column_names)
    assert sum(t.num_rows for t in errors) == 3
    assert program.poll().num_rows == 0  # rows went to the callback, not the buffer
    assert program.poll_errors().num_rows == 0

    program = engine.compile(FILTER)
    program.push("t", _rows())
    program.close()
    assert list(program.results()) == run_sql(FILTER, inputs={"t": [_rows()]})  # ends: closed and drained
    with pytest.raises(DuckstreamError, match="closed"):
        program.push("t", _rows())

    program = engine.compile(FILTER)
    assert list(program.results(timeout=0.05)) == []  # nothing came in time


def test_advance_time_closes_windows_of_an_idle_stream() -> None:
    program = engine.compile(TUMBLE)
    program.push(
        "t", [{"ts": "2024-05-01T10:00:10Z", "k": "a", "v": 1}, {"ts": "2024-05-01T10:00:20Z", "k": "a", "v": 2}]
    )
    assert program.poll().num_rows == 0  # the window [10:00, 10:01) is open
    program.advance_time("t", "2024-05-01T10:00:59Z")
    assert program.poll().num_rows == 0
    program.advance_time("T", dt.datetime(2024, 5, 1, 10, 1))  # names are case-insensitive
    assert program.poll().to_pylist() == [
        {"k": "a", "window_start": T0, "window_end": T0 + dt.timedelta(minutes=1), "n": 2, "total": 3}
    ]
    program.advance_time("t", 0)  # never backwards
    program.push("t", {"ts": "2024-05-01T10:00:30Z", "k": "a", "v": 5})
    assert program.poll_errors()["reason"].to_pylist() == ["late"]


def test_flush_closes_every_window_and_later_rows_are_late() -> None:
    program = engine.compile(TUMBLE)
    program.push("t", _clean_rows())
    before = program.poll().num_rows
    assert program.state_size()[0] > 0
    program.flush()
    assert program.poll().num_rows > 0 and before > 0
    assert program.state_size()[0] == 0
    program.push("t", {"ts": "2024-05-01T12:00:00Z", "k": "a", "v": 1})
    assert program.poll_errors()["reason"].to_pylist() == ["late"]


@pytest.mark.parametrize("sql", [TUMBLE, FILTER], ids=["tumble", "filter"])
def test_snapshot_and_restore_mid_stream_equal_an_uninterrupted_run(sql: str) -> None:
    rows = _rows()
    batches = _split(rows, 50)
    expected = _api_run(sql, batches)
    first = engine.compile(sql)
    taken: list[dict[str, Any]] = []
    for batch in batches[:3]:
        first.push("t", batch)
    taken += first.poll(None).to_pylist()  # rows taken before the snapshot...
    first.push("t", batches[3])  # ... and rows still buffered, which the snapshot keeps
    blob = first.snapshot()
    first.push("t", batches[4])  # work after the snapshot is lost with the "crashed" program
    second = engine.compile(sql)
    second.restore(blob)
    assert second.positions() == {"t": 200}
    for batch in batches[4:]:
        second.push("t", batch)
    second.flush()
    assert taken + second.poll().to_pylist() == expected


def test_checkpoint_dir_resumes(tmp_path: Path) -> None:
    rows = _rows()
    expected = _api_run(TUMBLE, [rows])
    first = engine.compile(TUMBLE, checkpoint_dir=tmp_path / "ckpt")
    with pytest.raises(DuckstreamError, match="checkpoint_dir"):
        engine.compile(TUMBLE).checkpoint()
    first.push("t", rows[:150])
    out = first.poll().to_pylist()
    assert first.checkpoint() == 1
    second = engine.compile(TUMBLE, checkpoint_dir=tmp_path / "ckpt")
    start = second.positions()["t"]
    assert start == 150
    second.push("t", rows[start:])
    second.flush()
    assert out + second.poll().to_pylist() == expected
    with pytest.raises(DuckstreamError, match="different program"):
        engine.compile(FILTER, checkpoint_dir=tmp_path / "ckpt")


def test_restore_refuses_another_program_or_garbage() -> None:
    blob = engine.compile(TUMBLE).snapshot()
    with pytest.raises(DuckstreamError, match="different program"):
        engine.compile(FILTER).restore(blob)
    with pytest.raises(DuckstreamError, match="not a duckstream snapshot"):
        engine.compile(FILTER).restore(b"nonsense")


def test_a_producer_thread_and_a_consumer_thread() -> None:
    rows = _rows(3000)
    batches = _split(rows, 25)
    expected = run_sql(FILTER, inputs={"t": batches})
    program = engine.compile(FILTER)
    got: list[dict[str, Any]] = []

    def consume() -> None:
        got.extend(program.results())

    consumer = threading.Thread(target=consume)
    consumer.start()

    def produce() -> None:
        for batch in batches:
            program.push("t", batch)
        program.flush()
        program.close()

    producer = threading.Thread(target=produce)
    producer.start()
    producer.join(30)
    consumer.join(30)
    assert not consumer.is_alive()
    assert got == expected


def test_clear_errors() -> None:
    program = engine.compile(TUMBLE)
    with pytest.raises(DuckstreamError, match=r"^unknown stream 'readings' \(sources: 't'\)$"):
        program.push("readings", {"k": "a"})
    with pytest.raises(DuckstreamError, match=r"^no output named 'x' \(outputs: 'result'\)$"):
        program.poll("x")
    with pytest.raises(PlanError, match=r"^q\.sql:2:\d+: unknown column"):
        engine.compile("CREATE TABLE t (k VARCHAR);\nSELECT nope FROM t", path="q.sql")
    with pytest.raises(TypeError, match="push"):
        program.push("t", 42)  # type: ignore[arg-type]
    with pytest.raises(DuckstreamError, match="not an ISO-8601 timestamp"):
        program.advance_time("t", "yesterday")


def test_strict_raises_at_the_first_bad_record_and_takes_nothing_of_its_push() -> None:
    program = engine.compile(FILTER, strict=True)
    with pytest.raises(RecordError, match=r"bad record at t:1: type"):
        program.push("t", [{"ts": "2024-05-01T10:00:00Z", "k": "a", "v": 9}, {"ts": "2024-05-01T10:00:00Z", "v": "x"}])
    assert program.positions() == {"t": 0}
    assert program.poll().num_rows == 0


def test_schemas_for_undeclared_streams_and_several_outputs() -> None:
    sql = "SELECT k FROM s WHERE v > 1;\nSELECT k, v FROM s WHERE v <= 1"
    program = engine.compile(sql, schemas={"S": pa.schema([("k", pa.string()), ("v", pa.int64())])})
    assert isinstance(program, engine.Program)  # still a plan, for existing callers
    program.push("s", [{"k": "a", "v": 2}, {"k": "b", "v": 0}])
    assert program.poll("result_1").to_pylist() == [{"k": "a"}]
    assert program.poll("RESULT_2").to_pylist() == [{"k": "b", "v": 0}]
    with pytest.raises(DuckstreamError, match="several outputs"):
        program.poll()


def test_reference_tables() -> None:
    sql = """
    CREATE TABLE t (k VARCHAR, v INT);
    SELECT t.k, t.v, d.label FROM t JOIN dims d ON t.k = d.k"""
    program = engine.compile(sql, references={"dims": pa.table({"k": ["a"], "label": ["A"]})})
    program.push("t", {"k": "a", "v": 1})
    program.set_reference("dims", pa.table({"k": ["a"], "label": ["A2"]}))
    program.push("t", {"k": "a", "v": 2})
    assert program.poll().to_pylist() == [{"k": "a", "v": 1, "label": "A"}, {"k": "a", "v": 2, "label": "A2"}]


def test_pandas_output_and_a_clear_error_without_pandas(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pandas")
    program = engine.compile(FILTER)
    program.push("t", _clean_rows())
    frame = program.poll_pandas()
    assert list(frame.columns) == ["k", "v2", "ts"] and len(frame) == 36
    import builtins

    real_import = builtins.__import__

    def no_pandas(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pandas":
            raise ImportError("no pandas here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(DuckstreamError, match=r"pandas is not installed \(pip install 'duckstream\[pandas\]'\)"):
        program.poll_pandas()


def test_docstring_examples() -> None:
    for module in (engine, engine.api):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted and not result.failed, module.__name__


ROOT = Path(__file__).resolve().parents[2]


def _python_blocks(doc: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", (ROOT / doc).read_text(), flags=re.S | re.M)


@pytest.mark.parametrize("doc", ["docs/api.md", "README.md"])
def test_every_python_block_of_the_docs_runs(doc: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = _python_blocks(doc)
    assert len(blocks) >= (5 if doc == "docs/api.md" else 1)
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    for n, block in enumerate(blocks, 1):
        namespace: dict[str, Any] = {"__name__": f"doc_block_{n}"}
        try:
            exec(compile(block, f"{doc} python block {n}", "exec"), namespace)  # noqa: S102
        except Exception as err:
            raise AssertionError(f"{doc} python block {n} failed: {err!r}\n{block}") from err
