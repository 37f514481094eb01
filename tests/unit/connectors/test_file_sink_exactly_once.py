"""The file sink's exactly-once protocol on real files: normal runs, crashes at every step, recovery.

A crash is simulated by dropping the sink object without ``close()`` and opening a new one, as a
restarted process would, with the checkpoint's epoch and the state ``prepare`` returned for it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors import open_sink
from connectors.file import FileSink
from engine.errors import ConnectorError
from engine.types import Epoch

SCHEMA = pa.schema([("n", pa.int64()), ("s", pa.string())])
FORMATS = ["jsonl", "csv", "parquet"]


def rows(*ns: int) -> pa.Table:
    return pa.table({"n": list(ns), "s": [f"r,{n}" for n in ns]}, schema=SCHEMA)


def new_sink(path: Path) -> FileSink:
    sink = open_sink(str(path), "kpis")
    assert isinstance(sink, FileSink)
    return sink


def output(tmp_path: Path, fmt: str) -> Path:
    return tmp_path / "out" / f"kpis.{fmt}"


def read_back(path: Path, fmt: str) -> list[int]:
    """What a reader of the output sees (every line complete, CSV header once at the top)."""
    if fmt == "parquet":
        if not list(path.glob("*.parquet")):
            return []
        table = pq.read_table(path)
        glob = str(path / "*.parquet").replace("'", "''")
        assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{glob}')").fetchall() == [(table.num_rows,)]
        return table.column("n").to_pylist()
    text = path.read_text()
    assert text == "" or text.endswith("\n"), f"partial last line: {text[-20:]!r}"
    lines = text.splitlines()
    if fmt == "csv":
        assert lines[0] == "n,s"
        return [int(line.split(",")[0]) for line in lines[1:]]
    return [json.loads(line)["n"] for line in lines]


def listing(path: Path, fmt: str) -> list[str]:
    """What ``ls`` shows next to (JSON, CSV) or inside (parquet) the output; no staged file anywhere."""
    place = path if fmt == "parquet" else path.parent
    staging = place / ".duckstream" if fmt == "parquet" else place / f".{path.name}.duckstream"
    assert not staging.exists() or os.listdir(staging) == []
    return sorted(name for name in os.listdir(place) if name != staging.name)


def run_epoch(sink: FileSink, epoch: int, *ns: int) -> dict | None:
    if ns:
        sink.write(Epoch(epoch), rows(*ns))
    state = sink.prepare(Epoch(epoch))
    sink.commit(Epoch(epoch))
    return state


def visible_names(fmt: str, *epochs: int) -> list[str]:
    if fmt == "parquet":
        return [f"part-{e:010d}.parquet" for e in epochs]
    return [f"kpis.{fmt}"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_normal_run_gives_every_row_once_and_leaves_no_staging(tmp_path: Path, fmt: str) -> None:
    path = output(tmp_path, fmt)
    sink = new_sink(path)
    sink.open(SCHEMA, None)
    assert read_back(path, fmt) == []
    run_epoch(sink, 1, 1, 2)
    run_epoch(sink, 2)  # an empty epoch
    sink.write(Epoch(3), rows(3))
    sink.write(Epoch(3), rows(4, 5))
    state = sink.prepare(Epoch(3))
    assert read_back(path, fmt) == [1, 2]  # prepared is not visible
    assert sink.staged_path(3).exists()
    sink.commit(Epoch(3))
    sink.close()
    assert read_back(path, fmt) == [1, 2, 3, 4, 5]
    assert listing(path, fmt) == visible_names(fmt, 1, 3)
    if fmt == "parquet":
        assert state == {"part": "part-0000000003.parquet", "rows": 3}
    else:
        assert state is not None and state["length_after"] == path.stat().st_size


def test_names_are_a_pure_function_of_path_and_epoch(tmp_path: Path) -> None:
    lines = new_sink(tmp_path / "out" / "kpis.jsonl")
    assert lines.staged_path(7) == tmp_path / "out" / ".kpis.jsonl.duckstream" / "epoch-0000000007.staged"
    parts = new_sink(tmp_path / "out" / "kpis.parquet")
    assert parts.staged_path(7) == tmp_path / "out" / "kpis.parquet" / ".duckstream" / "part-0000000007.parquet.staged"
    assert parts.part_path(7) == tmp_path / "out" / "kpis.parquet" / "part-0000000007.parquet"


@pytest.mark.parametrize("fmt", FORMATS)
def test_crash_after_write_before_prepare_loses_the_epoch(tmp_path: Path, fmt: str) -> None:
    path = output(tmp_path, fmt)
    sink = new_sink(path)
    sink.open(SCHEMA, None)
    state = run_epoch(sink, 1, 1, 2)
    sink.write(Epoch(2), rows(3))
    if fmt == "parquet":  # rows wait in memory until prepare; a crashed half-written file looks like this
        sink.staged_path(2).write_bytes(b"PAR1 half a row group")
    assert sink.staged_path(2).exists()
    del sink  # crash
    again = new_sink(path)
    again.open(SCHEMA, Epoch(1), state)
    assert read_back(path, fmt) == [1, 2]
    assert listing(path, fmt) == visible_names(fmt, 1)  # no staging left, not even the hidden dir
    run_epoch(again, 2, 3)  # the replay
    again.close()
    assert read_back(path, fmt) == [1, 2, 3]


@pytest.mark.parametrize("fmt", FORMATS)
def test_crash_after_prepare_before_commit_recommits_once(tmp_path: Path, fmt: str) -> None:
    path = output(tmp_path, fmt)
    sink = new_sink(path)
    sink.open(SCHEMA, None)
    run_epoch(sink, 1, 1)
    sink.write(Epoch(2), rows(2, 3))
    state = sink.prepare(Epoch(2))
    del sink  # crash: checkpoint 2 was written, its commit never ran
    assert read_back(path, fmt) == [1]
    again = new_sink(path)
    again.open(SCHEMA, Epoch(2), state)
    assert read_back(path, fmt) == [1, 2, 3]
    assert listing(path, fmt) == visible_names(fmt, 1, 2)
    again.commit(Epoch(2))  # the runtime may commit the recovered epoch again
    run_epoch(again, 3, 4)
    again.close()
    assert read_back(path, fmt) == [1, 2, 3, 4]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize("appended", ["none", "one byte", "half", "all but one byte", "all"])
def test_crash_in_the_middle_of_commit_is_repaired(tmp_path: Path, fmt: str, appended: str) -> None:
    path = output(tmp_path, fmt)
    sink = new_sink(path)
    sink.open(SCHEMA, None)
    run_epoch(sink, 1, 1)
    sink.write(Epoch(2), rows(2, 3, 4))
    state = sink.prepare(Epoch(2))
    assert state is not None
    staged = sink.staged_path(2).read_bytes()
    cut = {"none": 0, "one byte": 1, "half": len(staged) // 2, "all but one byte": len(staged) - 1}
    with open(path, "ab") as out:  # commit got this far before the crash
        out.write(staged[: cut.get(appended, len(staged))])
    if appended == "all":
        sink.staged_path(2).unlink()  # ... and even deleted the staged file
    del sink
    again = new_sink(path)
    again.open(SCHEMA, Epoch(2), state)
    assert read_back(path, fmt) == [1, 2, 3, 4]
    assert path.stat().st_size == state["length_after"]
    assert listing(path, fmt) == visible_names(fmt)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_commit_cuts_a_half_done_earlier_attempt(tmp_path: Path, fmt: str) -> None:
    path = output(tmp_path, fmt)
    sink = new_sink(path)
    sink.open(SCHEMA, None)
    run_epoch(sink, 1, 1)
    sink.write(Epoch(2), rows(2))
    sink.prepare(Epoch(2))
    with open(path, "ab") as out:
        out.write(b'{"n": 99, "s"')  # an attempt that died halfway
    sink.commit(Epoch(2))
    assert read_back(path, fmt) == [1, 2]


def test_parquet_crash_in_commit_after_the_rename(tmp_path: Path) -> None:
    path = output(tmp_path, "parquet")
    sink = new_sink(path)
    sink.open(SCHEMA, None)
    run_epoch(sink, 1, 1)
    sink.write(Epoch(2), rows(2, 3))
    state = sink.prepare(Epoch(2))
    os.replace(sink.staged_path(2), sink.part_path(2))  # the rename happened, then the crash
    del sink
    again = new_sink(path)
    again.open(SCHEMA, Epoch(2), state)
    assert read_back(path, "parquet") == [1, 2, 3]
    assert listing(path, "parquet") == visible_names("parquet", 1, 2)


@pytest.mark.parametrize("fmt", FORMATS)
def test_committing_twice_or_an_older_epoch_is_a_no_op(tmp_path: Path, fmt: str) -> None:
    path = output(tmp_path, fmt)
    sink = new_sink(path)
    sink.open(SCHEMA, None)
    run_epoch(sink, 1, 1)
    sink.write(Epoch(2), rows(2))
    state = sink.prepare(Epoch(2))
    assert sink.prepare(Epoch(2)) == state  # preparing again changes nothing either
    sink.commit(Epoch(2))
    before = listing(path, fmt), read_back(path, fmt)
    sink.commit(Epoch(2))
    sink.commit(Epoch(1))
    assert (listing(path, fmt), read_back(path, fmt)) == before == (visible_names(fmt, 1, 2), [1, 2])
    # a restarted sink recovering epoch 2 and committing it again
    again = new_sink(path)
    again.open(SCHEMA, Epoch(2), state)
    again.commit(Epoch(2))
    assert (listing(path, fmt), read_back(path, fmt)) == before


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_epochs_cost_no_io(tmp_path: Path, fmt: str) -> None:
    path = output(tmp_path, fmt)
    sink = new_sink(path)
    sink.open(SCHEMA, None)
    state = run_epoch(sink, 1, 1)
    sink.close()
    sink.open(SCHEMA, Epoch(1), state)
    assert not sink.staging_dir.exists()
    stamp = path.stat().st_mtime_ns, listing(path, fmt)
    size = path.stat().st_size
    for epoch in range(2, 50):
        if epoch % 2:
            sink.commit(Epoch(epoch))  # commit without prepare works too
        else:
            assert run_epoch(sink, epoch) in ({"part": None, "rows": 0}, {"length_before": size, "length_after": size})
    assert (path.stat().st_mtime_ns, listing(path, fmt)) == stamp


@pytest.mark.parametrize("fmt", FORMATS)
def test_recovery_removes_later_epochs_staged_and_committed(tmp_path: Path, fmt: str) -> None:
    path = output(tmp_path, fmt)
    sink = new_sink(path)
    sink.open(SCHEMA, None)
    state = run_epoch(sink, 1, 1)
    run_epoch(sink, 2, 2)  # committed, but its checkpoint never made it
    sink.write(Epoch(3), rows(3))
    sink.prepare(Epoch(3))
    del sink
    orphan = new_sink(path).staged_path(7)
    orphan.write_bytes(b"left by an older crash")
    again = new_sink(path)
    again.open(SCHEMA, Epoch(1), state)
    assert read_back(path, fmt) == [1]
    assert listing(path, fmt) == visible_names(fmt, 1)
    assert not again.staging_dir.exists()
    run_epoch(again, 2, 2)
    run_epoch(again, 3, 3)
    again.close()
    assert read_back(path, fmt) == [1, 2, 3]


@pytest.mark.parametrize("fmt", FORMATS)
def test_close_keeps_a_prepared_epoch_for_recovery_and_drops_an_unprepared_one(tmp_path: Path, fmt: str) -> None:
    path = output(tmp_path, fmt)
    sink = new_sink(path)
    sink.open(SCHEMA, None)
    run_epoch(sink, 1, 1)
    sink.write(Epoch(2), rows(2))
    state = sink.prepare(Epoch(2))
    sink.close()  # e.g. the commit raised and the runtime cleaned up
    assert sink.staged_path(2).exists() and read_back(path, fmt) == [1]
    again = new_sink(path)
    again.open(SCHEMA, Epoch(2), state)
    assert read_back(path, fmt) == [1, 2]
    again.write(Epoch(3), rows(3))
    if fmt == "parquet":
        again.prepare(Epoch(3))
        again.abort(Epoch(3))
        again.write(Epoch(4), rows(4))
    again.close()
    assert read_back(path, fmt) == [1, 2]
    assert listing(path, fmt) == visible_names(fmt, 1, 2)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_fresh_start_replaces_earlier_output(tmp_path: Path, fmt: str) -> None:
    path = output(tmp_path, fmt)
    first = new_sink(path)
    first.open(SCHEMA, None)
    run_epoch(first, 1, 1)
    run_epoch(first, 5, 5)
    first.write(Epoch(6), rows(6))
    first.prepare(Epoch(6))
    del first
    if fmt == "parquet":
        (path / "_notes.txt").write_text("kept")  # readers skip names starting with _ or .
    sink = new_sink(path)
    sink.open(SCHEMA, None)
    assert read_back(path, fmt) == []
    assert listing(path, fmt) == (["_notes.txt"] if fmt == "parquet" else [path.name])
    run_epoch(sink, 1, 7)
    sink.close()
    assert read_back(path, fmt) == [7]


@pytest.mark.parametrize("fmt", FORMATS)
def test_epochs_out_of_protocol_are_refused(tmp_path: Path, fmt: str) -> None:
    sink = new_sink(output(tmp_path, fmt))
    with pytest.raises(ConnectorError, match="write before open"):
        sink.write(Epoch(1), rows(1))
    sink.open(SCHEMA, None)
    run_epoch(sink, 1, 1)
    with pytest.raises(ConnectorError, match="epoch 1 is already committed"):
        sink.write(Epoch(1), rows(2))
    sink.write(Epoch(2), rows(2))
    with pytest.raises(ConnectorError, match="epoch 2 is neither committed nor aborted"):
        sink.write(Epoch(3), rows(3))
    with pytest.raises(ConnectorError, match="epoch 2 has staged rows"):
        sink.commit(Epoch(3))
    sink.prepare(Epoch(2))
    with pytest.raises(ConnectorError, match="after it was prepared"):
        sink.write(Epoch(2), rows(2))
    sink.abort(Epoch(2))
    assert not sink.staged_path(2).exists()
    run_epoch(sink, 3, 3)
    sink.close()
    assert read_back(output(tmp_path, fmt), fmt) == [1, 3]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_recovery_refuses_a_file_shorter_than_committed(tmp_path: Path, fmt: str) -> None:
    path = output(tmp_path, fmt)
    sink = new_sink(path)
    sink.open(SCHEMA, None)
    state = run_epoch(sink, 1, 1, 2)
    assert state is not None
    with open(path, "r+b") as out:
        out.truncate(state["length_after"] - 3)
    with pytest.raises(ConnectorError, match="something else changed it"):
        new_sink(path).open(SCHEMA, Epoch(1), state)
    with pytest.raises(ConnectorError, match="holds no state"):
        new_sink(path).open(SCHEMA, Epoch(1), None)
    with pytest.raises(ConnectorError, match="not a file sink's"):
        new_sink(path).open(SCHEMA, Epoch(1), {"part": None})


def test_recovery_refuses_a_missing_committed_part(tmp_path: Path) -> None:
    path = output(tmp_path, "parquet")
    sink = new_sink(path)
    sink.open(SCHEMA, None)
    state = run_epoch(sink, 1, 1)
    sink.part_path(1).unlink()
    with pytest.raises(ConnectorError, match="is missing"):
        new_sink(path).open(SCHEMA, Epoch(1), state)


def test_the_output_must_be_the_right_kind(tmp_path: Path) -> None:
    (tmp_path / "file.parquet").write_text("not a directory")
    with pytest.raises(ConnectorError, match="is a file; a parquet sink writes a directory"):
        new_sink(tmp_path / "file.parquet").open(SCHEMA, None)
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(ConnectorError, match="is a directory"):
        new_sink(tmp_path / "dir.jsonl").open(SCHEMA, None)


def test_readers_ignore_a_prepared_parquet_epoch(tmp_path: Path) -> None:
    path = output(tmp_path, "parquet")
    sink = new_sink(path)
    sink.open(SCHEMA, None)
    run_epoch(sink, 1, 1, 2)
    sink.write(Epoch(2), rows(3))
    sink.prepare(Epoch(2))
    assert pq.read_table(path).column("n").to_pylist() == [1, 2]
    assert read_back(path, "parquet") == [1, 2]
    assert pq.read_table(sink.staged_path(2)).column("n").to_pylist() == [3]  # a complete file, fsynced


def test_parquet_epoch_larger_than_one_row_group(tmp_path: Path) -> None:
    path = output(tmp_path, "parquet")
    sink = new_sink(path)
    sink.open(SCHEMA, None)
    big = pa.table({"n": pa.array(range(70_000), pa.int64()), "s": pa.nulls(70_000, pa.string())})
    sink.write(Epoch(1), big.slice(0, 40_000))
    sink.write(Epoch(1), big.slice(40_000))
    assert sink.staged_path(1).exists()  # the first row group went to disk before prepare
    state = sink.prepare(Epoch(1))
    assert state == {"part": "part-0000000001.parquet", "rows": 70_000}
    sink.commit(Epoch(1))
    sink.close()
    assert pq.read_table(path).column("n").to_pylist() == list(range(70_000))
