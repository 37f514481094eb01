"""``duckstream test PATH``: cases pass and fail, diffs, exit codes, --update, --quick, the clock."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from cli import app

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = """CREATE TABLE t (ts TIMESTAMP, k VARCHAR, WATERMARK FOR ts AS ts);
SELECT k, window_start, COUNT(*) AS n
FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY k, window_start, window_end;
"""
ROWS = '{"ts": "2024-05-01T10:00:05Z", "k": "a"}\n{"ts": "2024-05-01T10:00:50Z", "k": "a"}\n'
CASE = """-- program: prog.sql
-- input: t from t.jsonl
-- expect: output
{"k": "a", "window_start": "2024-05-01T10:00:00Z", "n": N}
"""


def _invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["test", *args])
    return result.exit_code, result.stdout, result.stderr


def _project(tmp_path: Path, n: int = 2) -> Path:
    (tmp_path / "prog.sql").write_text(PROGRAM)
    (tmp_path / "t.jsonl").write_text(ROWS)
    case = tmp_path / "prog.case"
    case.write_text(CASE.replace("N", str(n)))
    return case


def test_the_example_queries_pass() -> None:
    code, out, _ = _invoke(str(ROOT / "queries"))
    programs = [p.stem for p in (ROOT / "queries").glob("*.sql")]
    programs = sorted(programs + [f"kda_{p.stem}" for p in (ROOT / "queries" / "kda").glob("*.sql")])
    assert code == 0, out
    passed = sorted(Path(line.split()[1]).stem for line in out.splitlines() if line.startswith("PASS "))
    assert passed == programs  # one case per example program, all passing
    assert f"{len(programs)} passed, 0 failed" in out.splitlines()[-1]


def test_a_passing_case_file(tmp_path: Path) -> None:
    code, out, _ = _invoke(str(_project(tmp_path)))
    assert code == 0
    assert out.startswith(f"PASS {tmp_path / 'prog.case'} (")
    assert "1 passed, 0 failed" in out


def test_a_failing_case_shows_the_rows_that_differ(tmp_path: Path) -> None:
    _project(tmp_path, n=3)
    code, out, _ = _invoke(str(tmp_path))
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("FAIL ")
    assert '    - output result: {"k": "a", "window_start": "2024-05-01T10:00:00Z", "n": 3}' in lines
    assert any(line.startswith("    + output result:") and '"n": 2' in line for line in lines)
    assert "  also failed: one batch, row by row" in out
    assert "0 passed, 1 failed" in lines[-1]


def test_update_rewrites_the_expected_output(tmp_path: Path) -> None:
    case = _project(tmp_path, n=7)
    code, out, _ = _invoke(str(case), "--update")
    assert code == 0, out
    text = case.read_text()
    assert '"n": 2' in text and '"n": 7' not in text
    assert text.startswith("-- program: prog.sql\n-- input: t from t.jsonl\n")
    assert _invoke(str(case))[0] == 0


def test_an_unreadable_case_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    _project(tmp_path)
    (tmp_path / "sub").mkdir()
    bad = tmp_path / "sub" / "bad.case"
    bad.write_text("-- program: ../prog.sql\n-- input: t from missing.jsonl\n-- expect: output\n")
    code, out, err = _invoke(str(tmp_path))
    assert code == 2
    assert err.strip() == f"error: {bad}:2: no such file: {tmp_path / 'sub' / 'missing.jsonl'}"
    assert "PASS" in out and "1 passed, 0 failed, 1 unreadable" in out  # the other cases still ran


def test_a_missing_path_is_a_one_line_error(tmp_path: Path) -> None:
    code, _, err = _invoke(str(tmp_path / "nope"))
    assert code == 2
    assert err.strip() == f"error: PATH: no such file or directory: {tmp_path / 'nope'}"


def test_quick_runs_only_the_case_s_own_batches(tmp_path: Path) -> None:
    # an EMIT CHANGES changelog depends on batch boundaries: without '-- converge:' only the
    # file's own split can match it
    (tmp_path / "c.case").write_text(
        """CREATE TABLE t (ts TIMESTAMP, k VARCHAR, WATERMARK FOR ts AS ts);
SELECT k, COUNT(*) AS n FROM t GROUP BY k EMIT CHANGES;
-- input: t
{"ts": "2024-05-01T10:00:05Z", "k": "a"}
-- batch
{"ts": "2024-05-01T10:00:06Z", "k": "a"}
-- expect: output
{"op": "insert", "k": "a", "n": 1}
{"op": "update", "k": "a", "n": 2}
"""
    )
    assert _invoke(str(tmp_path), "--quick")[0] == 0
    code, out, _ = _invoke(str(tmp_path))
    assert code == 1
    assert "  one batch:" in out


def test_a_wait_moves_the_clock_for_the_idle_timeout(tmp_path: Path) -> None:
    # no-flush: the window closes only if the quiet source's watermark follows the clock
    case = """CREATE TABLE t (ts TIMESTAMP, k VARCHAR, WATERMARK FOR ts AS ts);
SELECT k, window_start, COUNT(*) AS n
FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY k, window_start, window_end;
-- options: idle-timeout=5s, no-flush
-- input: t
{"ts": "2024-05-01T10:00:05Z", "k": "a"}
{"ts": "2024-05-01T10:00:50Z", "k": "a"}
-- wait: WAIT
-- expect: output
{"k": "a", "window_start": "2024-05-01T10:00:00Z", "n": 2}
"""
    (tmp_path / "long.case").write_text(case.replace("WAIT", "30s"))  # 10:00:50 + 30 s > 10:01:00
    (tmp_path / "short.case").write_text(case.replace("WAIT", "8s"))  # 10:00:58 < 10:01:00
    code, out, _ = _invoke(str(tmp_path))
    assert code == 1
    assert f"PASS {tmp_path / 'long.case'}" in out
    assert f"FAIL {tmp_path / 'short.case'}" in out


def test_an_expected_error_is_located_in_the_program_file(tmp_path: Path) -> None:
    (tmp_path / "bad.sql").write_text(PROGRAM.splitlines()[0] + "\nSELECT kk FROM t;\n")
    case = tmp_path / "bad.case"
    case.write_text("-- program: bad.sql\n-- input: t\n-- expect: error at 2:8 containing 'unknown column'\n")
    code, out, _ = _invoke(str(case))
    assert code == 0 and out.startswith("PASS "), out
    case.write_text("-- program: bad.sql\n-- input: t\n-- expect: error at 1:8\n")
    code, out, _ = _invoke(str(case))
    assert code == 1
    assert f"error at 2:8, expected 1:8: {tmp_path / 'bad.sql'}:2:8: unknown column" in out


def test_a_case_with_a_program_file_holds_no_sql(tmp_path: Path) -> None:
    _project(tmp_path)
    (tmp_path / "prog.case").write_text("-- program: prog.sql\nSELECT 1;\n-- input: t\n-- expect: output\n")
    code, _, err = _invoke(str(tmp_path))
    assert code == 2
    assert err.strip() == f"error: {tmp_path / 'prog.case'}: a case with '-- program:' holds no SQL of its own"
