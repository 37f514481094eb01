"""``duckstream test PATH``: run ``.case`` files (a program, its input, its expected output).

The format is the golden case format of ``engine/casefile.py``; a user's case usually points at
the real program and an input file next to it::

    -- about: per-minute KPIs of two tickers
    -- program: ticker_kpis.sql
    -- input: trades from ticker_kpis.trades.jsonl
    -- expect: output
    {"window_start": "2024-05-01T10:00:00Z", "ticker": "AAPL", "trades": 3, ...}

Each case runs as the project's golden runner runs its own: with the file's batches, in one
batch, row by row, in random splits (seeded by the file name, so a failure repeats) and
stopped at a checkpoint and restored; ``quick`` runs the file's batches only. Processing time
(idle timeout) comes from a manual clock that moves only during ``-- wait:`` spells.

Output: one line per case (``PASS``/``FAIL``, path, seconds), the differences of a failure
(``-`` an expected row that is missing, ``+`` a row that was not expected), and a summary
``N passed, M failed``. The exit code is 0 when every case passed, 1 when one failed and 2 when
a case file cannot be read (its error names the file and line). ``update`` rewrites each case's
expected output from what its own batches produce, as ``pytest --update-golden`` does; review
that diff like code.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine.casefile import CaseFormatError, check_runs, load_case, render_expected, run_case
from engine.errors import DuckstreamError

MAX_DIFF_LINES = 40


@dataclass
class CaseResult:
    """What one case file gave: ``failures`` holds (how it ran, problems) per failing run."""

    path: Path
    seconds: float = 0.0
    failures: list[tuple[str, list[str]]] = field(default_factory=list)
    unreadable: str | None = None  # the one-line error of a case file that cannot be parsed

    @property
    def passed(self) -> bool:
        return self.unreadable is None and not self.failures


def find_cases(path: Path) -> list[Path]:
    """``path`` itself if it is a file, else every ``*.case`` below it (sorted).

    Raises:
        DuckstreamError: if ``path`` does not exist or holds no case.
    """
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DuckstreamError(f"no such file or directory: {path}", where="PATH")
    found = sorted(p for p in path.rglob("*.case") if p.is_file())
    if not found:
        raise DuckstreamError(f"no .case files under {path}", where="PATH")
    return found


def run_case_file(path: Path, quick: bool = False, update: bool = False) -> CaseResult:
    """Run one case file every way (see the module docstring) and collect what failed."""
    result = CaseResult(path)
    started = time.perf_counter()
    try:
        case = load_case(path)
        if update and case.error_at is None:
            path.write_text(render_expected(case, run_case(case)), encoding="utf-8")
            case = load_case(path)
        for label, problems in check_runs(case, seed=zlib.crc32(path.name.encode()), quick=quick):
            if problems:
                result.failures.append((label, problems))
    except CaseFormatError as err:
        result.unreadable = str(err)
    except DuckstreamError as err:
        result.failures.append(("run", [str(err)]))
    except KeyError as err:  # the program reads a stream the case gives no input for
        result.failures.append(("run", [str(err.args[0]) if err.args else "missing input"]))
    result.seconds = time.perf_counter() - started
    return result


def format_failure(result: CaseResult) -> list[str]:
    """The readable differences of a failed case: the first failing run in full, the rest named."""
    label, problems = result.failures[0]
    lines = [f"  {label}:"]
    for problem in problems[:MAX_DIFF_LINES]:
        where, sep, rest = problem.partition(": ")
        if sep and where.startswith(("output ", "error_stream")):
            if rest.startswith("missing: "):
                lines.append(f"    - {where}: {rest[len('missing: ') :]}")
                continue
            if rest.startswith("unexpected: "):
                lines.append(f"    + {where}: {rest[len('unexpected: ') :]}")
                continue
        lines.append(f"    {problem}")
    if len(problems) > MAX_DIFF_LINES:
        lines.append(f"    ... and {len(problems) - MAX_DIFF_LINES} more")
    if any(p.startswith(("output ", "error_stream")) for p in problems):
        lines.append("    (- expected but not produced, + produced but not expected)")
    others = [name for name, _ in result.failures[1:]]
    if others:
        lines.append(f"  also failed: {', '.join(others)}")
    return lines


def run_tests(
    path: Path,
    quick: bool = False,
    update: bool = False,
    echo: Callable[[str], None] = print,
    complain: Callable[[str], None] = print,
) -> int:
    """Run every case under ``path``; report through ``echo`` (and unreadable files through
    ``complain``); return the exit code (0 all passed, 1 a case failed, 2 a file is unreadable)."""
    started = time.perf_counter()
    results = []
    for case_path in find_cases(path):
        result = run_case_file(case_path, quick=quick, update=update)
        results.append(result)
        if result.unreadable is not None:
            complain(f"error: {result.unreadable}")
            continue
        verdict = "PASS" if result.passed else "FAIL"
        echo(f"{verdict} {case_path} ({result.seconds:.2f} s)")
        if not result.passed:
            for line in format_failure(result):
                echo(line)
    passed = sum(r.passed for r in results)
    unreadable = sum(r.unreadable is not None for r in results)
    failed = len(results) - passed - unreadable
    summary = f"{passed} passed, {failed} failed"
    if unreadable:
        summary += f", {unreadable} unreadable"
    echo(f"{summary} in {time.perf_counter() - started:.1f} s")
    return 2 if unreadable else 1 if failed else 0
