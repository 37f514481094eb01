"""A program must not reach the file system or the environment through DuckDB.

Each hostile statement sits inside an otherwise valid streaming program. It must fail at plan time
with a one-line ``DuckstreamError``, or run and turn the attempt into error rows; it must never
hand back a file's contents or an environment variable, and never create a file. Secrets are
planted where a leak would show: files under ``tmp_path`` (including ``.tmp/``, the directory
DuckDB allows by default as its spill directory, relative to the working directory, which the
tests set to ``tmp_path``) and an environment variable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.errors import DuckstreamError
from engine.plan.planner import compile_program
from engine.testing import run_program, run_sql

ROOT = Path(__file__).resolve().parents[2]
MARKER = "DUCKSTREAM-FUZZ-SECRET-7f3a"
ENV_NAME = "DUCKSTREAM_FUZZ_SECRET"
PASSWD_LINE = "root:x:0:0"
HEAD = "CREATE TABLE t (ts TIMESTAMP, k VARCHAR, WATERMARK FOR ts AS ts);\n"
ROWS = [{"ts": "2024-05-01T10:00:00Z", "k": "a"}, {"ts": "2024-05-01T10:00:30Z", "k": "b"}]
TXT = ".tmp/secret.txt"


@dataclass(frozen=True)
class Hostile:
    """A hostile program body; ``rows_mean_leak``: any output row at all proves the read worked."""

    sql: str
    rows_mean_leak: bool = False
    creates: str | None = None  # a path (relative to tmp_path) that must not exist afterwards


HOSTILE = {
    "read_csv_etc_passwd": Hostile("SELECT * FROM read_csv('/etc/passwd');"),
    "read_csv_file": Hostile("SELECT * FROM read_csv('{dir}/secret.csv');"),
    "read_parquet": Hostile("SELECT * FROM read_parquet('{dir}/secret.parquet');"),
    "read_text": Hostile("SELECT * FROM read_text('{dir}/secret.txt');"),
    "read_text_spill_dir": Hostile(f"SELECT * FROM read_text('{TXT}');"),
    "glob_root": Hostile("SELECT * FROM glob('/*');"),
    "replacement_scan": Hostile("SELECT * FROM '{dir}/secret.csv';"),
    "getenv_select": Hostile(f"SELECT k, getenv('{ENV_NAME}') AS e FROM t;"),
    "getenv_where": Hostile(f"SELECT k FROM t WHERE getenv('{ENV_NAME}') = '{MARKER}';", rows_mean_leak=True),
    "copy_table_to": Hostile("COPY t TO '{dir}/copied.csv';", creates="copied.csv"),
    "copy_query_to_spill_dir": Hostile("COPY (SELECT k FROM t) TO '.tmp/copied.csv';", creates=".tmp/copied.csv"),
    "attach": Hostile("ATTACH '{dir}/attached.db' AS x;", creates="attached.db"),
    "attach_spill_dir": Hostile("ATTACH '.tmp/attached.db' AS x;", creates=".tmp/attached.db"),
    "install": Hostile("INSTALL httpfs;"),
    "load": Hostile("LOAD httpfs;"),
    "load_file": Hostile("LOAD '{dir}/evil.duckdb_extension';"),
    "export_database": Hostile("EXPORT DATABASE '{dir}/exported';", creates="exported"),
    "set_external_access": Hostile("SET enable_external_access = true;"),
    "pragma": Hostile("PRAGMA enable_external_access;"),
    "subquery_read_text": Hostile("SELECT k, (SELECT content FROM read_text('{dir}/secret.txt')) AS c FROM t;"),
    "subquery_read_text_spill_dir": Hostile(f"SELECT k, (SELECT content FROM read_text('{TXT}')) AS c FROM t;"),
    "subquery_read_text_spill_dir_absolute": Hostile(
        "SELECT k, (SELECT content FROM read_text('{dir}/" + TXT + "')) AS c FROM t;"
    ),
    "subquery_read_blob_spill_dir": Hostile(f"SELECT k, (SELECT content FROM read_blob('{TXT}')) AS c FROM t;"),
    "subquery_read_csv": Hostile("SELECT k, (SELECT max(secret) FROM read_csv('{dir}/secret.csv')) AS c FROM t;"),
    "subquery_read_parquet": Hostile(
        "SELECT k, (SELECT max(secret) FROM read_parquet('{dir}/secret.parquet')) AS c FROM t;"
    ),
    "subquery_glob": Hostile("SELECT k, (SELECT string_agg(file, ',') FROM glob('{dir}/*')) AS c FROM t;"),
    "subquery_glob_spill_dir": Hostile("SELECT k, (SELECT string_agg(file, ',') FROM glob('.tmp/*')) AS c FROM t;"),
    "subquery_in_where": Hostile(
        f"SELECT k FROM t WHERE (SELECT content FROM read_text('{TXT}')) LIKE 'DUCKSTREAM%';", rows_mean_leak=True
    ),
    "subquery_in_list": Hostile(
        f"SELECT k FROM t WHERE '{MARKER}\n' IN (SELECT content FROM read_text('{TXT}'));", rows_mean_leak=True
    ),
    "cast_error_message": Hostile(f"SELECT k, CAST((SELECT content FROM read_text('{TXT}')) AS INT) AS c FROM t;"),
    "query_function": Hostile(
        f"SELECT k, (SELECT * FROM query('SELECT content FROM read_text(''{TXT}'')')) AS c FROM t;"
    ),
    "cte": Hostile("WITH s AS (SELECT content FROM read_text('{dir}/secret.txt')) SELECT * FROM s;"),
    "view": Hostile("CREATE VIEW v AS SELECT content FROM read_text('{dir}/secret.txt');\nSELECT * FROM v;"),
    "union": Hostile("SELECT k FROM t UNION ALL SELECT content FROM read_text('{dir}/secret.txt');"),
    "join": Hostile("SELECT k, s.content FROM t, read_text('{dir}/secret.txt') AS s;"),
    "window_over_file": Hostile(
        "SELECT window_start, COUNT(*) AS n\n"
        "FROM TABLE(TUMBLE(TABLE read_csv('{dir}/secret.csv'), DESCRIPTOR(ts), INTERVAL '1' MINUTE))\n"
        "GROUP BY window_start, window_end;"
    ),
    "insert_into_sink": Hostile(
        f"CREATE TABLE out (c VARCHAR);\nINSERT INTO out SELECT (SELECT content FROM read_text('{TXT}')) FROM t;"
    ),
}
# The CLI costs a process start each: a spread of the cases above, run side by side.
CLI_CASES = [
    "read_csv_etc_passwd",
    "getenv_select",
    "copy_table_to",
    "attach",
    "install",
    "load",
    "subquery_read_text_spill_dir",
    "cast_error_message",
]


@pytest.fixture
def secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Plant the secret in files and the environment; run from ``tmp_path``."""
    (tmp_path / ".tmp").mkdir()
    (tmp_path / ".tmp" / "secret.txt").write_text(MARKER + "\n")
    (tmp_path / "secret.txt").write_text(MARKER + "\n")
    (tmp_path / "secret.csv").write_text(f"ts,secret\n2024-05-01T10:00:00Z,{MARKER}\n")
    pq.write_table(pa.table({"ts": ["2024-05-01T10:00:00Z"], "secret": [MARKER]}), tmp_path / "secret.parquet")
    monkeypatch.setenv(ENV_NAME, MARKER)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _program(name: str, directory: Path) -> str:
    return HEAD + HOSTILE[name].sql.replace("{dir}", str(directory))


def _leaks(text: str) -> bool:
    return MARKER in text or PASSWD_LINE in text


def _assert_nothing_created(name: str, directory: Path) -> None:
    created = HOSTILE[name].creates
    if created:
        assert not (directory / created).exists(), f"the program created {created}"


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_program_is_refused_or_reads_nothing(name: str, secrets: Path) -> None:
    sql = _program(name, secrets)
    try:
        compile_program(sql)
    except DuckstreamError as err:
        message = str(err)
        assert "\n" not in message and not _leaks(message), message
        _assert_nothing_created(name, secrets)
        return
    # It planned: running it may only give rows without the secret, or error rows.
    try:
        rows = run_sql(sql, inputs={"t": [ROWS]}, output=None if "INSERT" not in sql else "out")
    except DuckstreamError as err:
        assert "\n" not in str(err) and not _leaks(str(err))
        rows = []
    assert not _leaks(repr(rows)), f"the program read a secret: {rows}"
    if HOSTILE[name].rows_mean_leak:
        assert rows == [], f"rows came out, so the secret was read: {rows}"
    sinks, errors, _ = run_program(compile_program(sql), {"t": [ROWS]})
    everything = repr([s.rows() for s in sinks.values()]) + repr(errors.rows())
    assert not _leaks(everything), f"the secret shows in the output or the error rows: {everything}"
    _assert_nothing_created(name, secrets)


def test_hostile_programs_through_the_cli_exit_2_with_one_line_or_read_nothing(secrets: Path) -> None:
    data = secrets / "t.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    env = {**os.environ, ENV_NAME: MARKER, "PYTHONPATH": str(ROOT)}
    runs = {}
    for name in CLI_CASES:
        program = secrets / f"{name}.sql"
        program.write_text(_program(name, secrets))
        runs[name] = subprocess.Popen(
            [sys.executable, str(ROOT / "cli.py"), "run", str(program), "--source", f"t={data}"],
            cwd=secrets,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    failures = []
    for name, proc in runs.items():
        out, err = proc.communicate(timeout=120)
        lines = err.strip().splitlines()
        if _leaks(out + err):
            failures.append(f"{name}: the secret was printed: {out + err!r}")
        elif proc.returncode == 2:
            if len(lines) != 1 or "Traceback" in err:
                failures.append(f"{name}: exit 2 but stderr is not one line: {err!r}")
        elif proc.returncode != 0 or "Traceback" in err:
            failures.append(f"{name}: exit {proc.returncode}: {err.strip()[-300:]!r}")
        elif HOSTILE[name].rows_mean_leak and out.strip():
            failures.append(f"{name}: rows came out, so the secret was read: {out!r}")
        created = HOSTILE[name].creates
        if created and (secrets / created).exists():
            failures.append(f"{name}: the program created {created}")
    assert not failures, "\n".join(failures)
