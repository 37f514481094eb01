"""Golden case files: a program, its input, and what it must produce, in one ``.case`` file.

Format (sections start with ``-- <key>:`` lines; the SQL comes first)::

    -- about: what the case shows
    CREATE TABLE readings (...);
    SELECT ...;

    -- options: allowed-lateness=10ms, no-flush
    -- converge: device, window_start
    -- input: readings
    {"ts": "2024-05-01T10:00:05Z", "device": "a", "temp": 20}
    -- batch
    {"ts": "2024-05-01T10:00:50Z", "device": "a", "temp": 99}
    -- expect: output
    {"device": "a", "window_start": "2024-05-01T10:00:00Z", ...}
    -- expect: error_stream
    {"reason": "late", "source_offset": "readings:3"}

An expected failure is one line: ``-- expect: error at 4:44 containing 'unknown column'``.
Line and column count from the top of the file, which is what a user sees in their ``.sql``.

``-- batch`` marks where the file's own micro-batches break. The runner also runs the case with
the whole input in one batch, one row per batch, and random splits; all must match (results
never depend on batch boundaries). Outputs that legitimately depend on them (``EMIT CHANGES``
changelogs, corrections under allowed lateness) name their identity columns in ``-- converge:``:
the file's own split must match exactly, other splits must converge to the same final rows.
With several outputs, ``-- expect: output NAME`` names each. Rows match in any order; numbers
with a relative tolerance of 1e-9; timestamps as instants; error rows only on the keys listed.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import DuckstreamError
from engine.plan.planner import PlanOptions, compile_program
from engine.runtime.loop import RunOptions

_DIRECTIVE = re.compile(r"^--\s*(about|options|converge|input|expect|batch)\b:?\s*(.*)$")
_ERROR_AT = re.compile(r"^error at (\d+):(\d+)(?: containing '(.*)')?$")
REL_TOL = 1e-9


@dataclass
class Case:
    """One parsed ``.case`` file."""

    path: str
    sql: str
    inputs: dict[str, list[list[bytes]]] = field(default_factory=dict)
    outputs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    errors: list[dict[str, Any]] | None = None
    error_at: tuple[int, int, str | None] | None = None
    options: dict[str, str] = field(default_factory=dict)
    converge: list[str] = field(default_factory=list)
    about: str = ""


class CaseFormatError(DuckstreamError):
    """A malformed ``.case`` file."""


def parse_case(text: str, path: str = "<case>") -> Case:
    """Read a case file; raises ``CaseFormatError`` naming the line of a malformed part."""
    sql_lines: list[str] = []
    case = Case(path=path, sql="")
    section: tuple[str, str] | None = None
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\n")
        m = _DIRECTIVE.match(line.strip())
        if m:
            key, value = m.group(1), m.group(2).strip()
            sql_lines.append("")
            if key == "about":
                case.about = value
                section = None
            elif key == "options":
                for part in filter(None, (p.strip() for p in value.split(","))):
                    name, _, val = part.partition("=")
                    case.options[name.strip()] = val.strip() or "true"
            elif key == "converge":
                case.converge = [c.strip() for c in value.split(",") if c.strip()]
            elif key == "input":
                if not value:
                    raise CaseFormatError("'-- input:' needs a stream name", where=f"{path}:{n}")
                section = ("input", value)
                case.inputs.setdefault(value, []).append([])
            elif key == "batch":
                if section is None or section[0] != "input":
                    raise CaseFormatError("'-- batch' outside an input section", where=f"{path}:{n}")
                case.inputs[section[1]].append([])
            elif key == "expect":
                err = _ERROR_AT.match(value)
                if err:
                    case.error_at = (int(err.group(1)), int(err.group(2)), err.group(3))
                    section = None
                elif value.startswith("output"):
                    name = value[len("output") :].strip() or ""
                    section = ("output", name)
                    case.outputs.setdefault(name, [])
                elif value == "error_stream":
                    section = ("errors", "")
                    case.errors = case.errors or []
                else:
                    raise CaseFormatError(f"unknown expectation {value!r}", where=f"{path}:{n}")
            continue
        if section is None:
            sql_lines.append(line)
            continue
        sql_lines.append("")
        if not line.strip():
            continue
        kind, name = section
        if kind == "input":
            case.inputs[name][-1].append(line.encode("utf-8"))
        else:
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise CaseFormatError(f"expected rows must be JSON objects: {e}", where=f"{path}:{n}") from None
            (case.outputs[name] if kind == "output" else case.errors).append(row)  # type: ignore[union-attr]
    case.sql = "\n".join(sql_lines)
    if case.error_at is None and not case.outputs and case.errors is None:
        raise CaseFormatError(
            "the case expects nothing: add '-- expect: output' or '-- expect: error at L:C'", where=path
        )
    return case


def load_case(path: str | Path) -> Case:
    """Parse the case file at ``path``."""
    return parse_case(Path(path).read_text(encoding="utf-8"), str(path))


# ---------------------------------------------------------------------- running
@dataclass
class Outcome:
    """What one run of a case produced: output rows by output name, error rows (as JSON values)."""

    outputs: dict[str, list[dict[str, Any]]]
    errors: list[dict[str, Any]]


def _options(case: Case) -> tuple[PlanOptions, RunOptions]:
    lateness = case.options.get("allowed-lateness")
    lateness_us = 0
    if lateness:
        from connectors.options import parse_duration

        lateness_us = parse_duration(lateness, f"{case.path}: allowed-lateness")
    known = {"allowed-lateness", "no-flush"}
    unknown = set(case.options) - known
    if unknown:
        raise CaseFormatError(f"unknown option(s) {', '.join(sorted(unknown))}", where=case.path)
    run = RunOptions(idle_timeout_us=None, flush="no-flush" not in case.options, sleep=lambda s: None)
    return PlanOptions(allowed_lateness_us=lateness_us), run


def run_case(
    case: Case, splits: dict[str, list[list[bytes]]] | None = None, restore_after: int | None = None
) -> Outcome:
    """Run the case's program over ``splits`` (default: the file's own batches).

    With ``restore_after`` = k, the run stops after k batches right after a checkpoint, and a new
    run of the same program resumes from that checkpoint; the outcome is what both committed.
    """
    import tempfile

    from engine.formats.encode import to_json_lines
    from engine.testing import run_program

    plan_opts, run_opts = _options(case)
    program = compile_program(case.sql, case.path, None, plan_opts)
    inputs = splits if splits is not None else case.inputs
    runs = []
    if restore_after is None:
        runs.append(run_program(program, inputs, run_opts))
    else:
        with tempfile.TemporaryDirectory() as where:
            first = RunOptions(**{**run_opts.__dict__, "stop_after_batches": restore_after})
            runs.append(run_program(program, inputs, first, checkpoint_dir=where))
            again = compile_program(case.sql, case.path, None, plan_opts)  # a new process would re-plan
            runs.append(run_program(again, inputs, run_opts, checkpoint_dir=where))
    outputs: dict[str, list[dict[str, Any]]] = {}
    for sinks, _, _ in runs:
        for name, sink in sinks.items():
            rows = outputs.setdefault(name, [])
            for table in sink.committed:
                rows += [json.loads(line) for line in to_json_lines(table).splitlines() if line.strip()]
    err_rows: list[dict[str, Any]] = []
    for table in (t for _, errors, _ in runs for t in errors.committed):
        table = table.drop_columns(["detected_at"])
        for row in table.to_pylist():
            payload = row.get("payload")
            row["payload"] = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
            if isinstance(row.get("event_time"), dt.datetime):
                row["event_time"] = row["event_time"].isoformat() + "Z"
            err_rows.append(row)
    return Outcome(outputs, err_rows)


def splits_for(case: Case, seed: int) -> list[tuple[str, dict[str, list[list[bytes]]]]]:
    """The ways the runner cuts the case's input: one batch, one row per batch, random cuts."""
    rng = random.Random(seed)
    flat = {name: [row for b in batches for row in b] for name, batches in case.inputs.items()}
    ways: list[tuple[str, dict[str, list[list[bytes]]]]] = [
        ("one batch", {n: [rows] for n, rows in flat.items()}),
        ("row by row", {n: [[r] for r in rows] for n, rows in flat.items()}),
    ]
    for i in range(3):
        cut: dict[str, list[list[bytes]]] = {}
        for n, rows in flat.items():
            points = (
                sorted(rng.sample(range(1, len(rows)), k=min(len(rows) - 1, rng.randint(1, 4))))
                if len(rows) > 1
                else []
            )
            bounds = [0, *points, len(rows)]
            cut[n] = [rows[a:b] for a, b in zip(bounds, bounds[1:])]
        ways.append((f"random split #{i + 1}", cut))
    return ways


# ---------------------------------------------------------------------- comparing
def _as_instant(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not re.match(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", value):
        return None
    text = value.replace(" ", "T")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def values_equal(expected: Any, actual: Any) -> bool:
    """Equality with a relative tolerance for numbers and instants for timestamps."""
    if expected is None or actual is None:
        return expected is None and actual is None
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected == actual and type(expected) is type(actual)
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        diff = abs(float(expected) - float(actual))
        return diff <= 1e-12 or diff <= REL_TOL * max(abs(float(expected)), abs(float(actual)))
    if isinstance(expected, str) and isinstance(actual, str):
        a, b = _as_instant(expected), _as_instant(actual)
        if a is not None and b is not None:
            return a == b
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(values_equal(x, y) for x, y in zip(expected, actual))
    if isinstance(expected, dict) and isinstance(actual, dict):
        return set(expected) == set(actual) and all(values_equal(expected[k], actual[k]) for k in expected)
    return bool(expected == actual)


def _row_matches(expected: dict[str, Any], actual: dict[str, Any], partial: bool) -> bool:
    if not partial and set(expected) != set(actual):
        return False
    return all(k in actual and values_equal(v, actual[k]) for k, v in expected.items())


def diff_rows(expected: list[dict[str, Any]], actual: list[dict[str, Any]], partial: bool = False) -> list[str]:
    """Problems between two multisets of rows (empty when they match)."""
    problems: list[str] = []
    if len(expected) != len(actual):
        problems.append(f"expected {len(expected)} rows, got {len(actual)}")
    left = list(range(len(actual)))
    for row in expected:
        hit = next((j for j in left if _row_matches(row, actual[j], partial)), None)
        if hit is None:
            problems.append(f"missing: {json.dumps(row)}")
        else:
            left.remove(hit)
    problems += [f"unexpected: {json.dumps(actual[j])}" for j in left]
    return problems


def converge(rows: list[dict[str, Any]], identity: list[str]) -> list[dict[str, Any]]:
    """The final table a changelog describes: last row per identity, deletes removed, no ``op``."""
    table: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = json.dumps([str(_as_instant(row.get(c)) or row.get(c)) for c in identity])
        if row.get("op") == "delete":
            table.pop(key, None)
        else:
            table[key] = {k: v for k, v in row.items() if k != "op"}
    return list(table.values())


def check_outcome(case: Case, outcome: Outcome, own_split: bool) -> list[str]:
    """Problems of one run against the case's expectations (empty when it passes)."""
    problems: list[str] = []
    for name, expected in case.outputs.items():
        key = name or (next(iter(outcome.outputs)) if len(outcome.outputs) == 1 else "result")
        actual = outcome.outputs.get(key)
        if actual is None:
            return [f"no output named {key!r} (outputs: {', '.join(outcome.outputs)})"]
        if case.converge and not own_split:
            expected, actual = converge(expected, case.converge), converge(actual, case.converge)
        problems += [f"output {key}: {p}" for p in diff_rows(expected, actual)]
    if case.errors is not None:
        problems += [f"error_stream: {p}" for p in diff_rows(case.errors, outcome.errors, partial=True)]
    elif outcome.errors:
        problems.append(f"unexpected error rows: {json.dumps(outcome.errors[0], default=str)}")
    return problems


def check_case(case: Case, seed: int = 0) -> list[str]:
    """Run a case every way the runner knows and return all problems found."""
    if case.error_at is not None:
        line, col, text = case.error_at
        try:
            run_case(case)
        except KeyError:
            return [f"expected an error at {line}:{col}, but the program compiled"]
        except DuckstreamError as err:
            got = (getattr(err, "line", None), getattr(err, "col", None))
            problems = []
            if got != (line, col):
                problems.append(f"error at {got[0]}:{got[1]}, expected {line}:{col}: {err}")
            if text and text not in str(err):
                problems.append(f"error {str(err)!r} does not contain {text!r}")
            return problems
        return [f"expected an error at {line}:{col}, but the program ran"]
    problems = [f"own split: {p}" for p in check_outcome(case, run_case(case), own_split=True)]
    for label, split in splits_for(case, seed):
        problems += [f"{label}: {p}" for p in check_outcome(case, run_case(case, split), own_split=False)]
    batches = sum(len(b) for b in case.inputs.values())
    if batches > 1 or any(len(b) > 1 for bs in case.inputs.values() for b in bs):
        # checkpoint after some batches of a row-by-row run, "crash", restore, finish
        rows = {n: [[r] for b in bs for r in b] for n, bs in case.inputs.items()}
        total = sum(len(v) for v in rows.values())
        at = random.Random(seed).randint(1, max(1, total - 1))
        outcome = run_case(case, rows, restore_after=at)
        problems += [f"restored after {at} batches: {p}" for p in check_outcome(case, outcome, own_split=False)]
    return problems


def render_expected(case: Case, outcome: Outcome) -> str:
    """The case text with its ``-- expect: output`` sections replaced by ``outcome`` (--update-golden)."""
    text = Path(case.path).read_text(encoding="utf-8")
    lines = text.splitlines()
    out: list[str] = []
    skipping = False
    for line in lines:
        m = _DIRECTIVE.match(line.strip())
        if m and m.group(1) == "expect" and m.group(2).startswith("output"):
            name = m.group(2)[len("output") :].strip()
            key = name or next(iter(outcome.outputs))
            out.append(line)
            out += [json.dumps(r) for r in outcome.outputs.get(key, [])]
            skipping = True
            continue
        if m:
            skipping = False
        if not skipping:
            out.append(line)
    return "\n".join(out) + "\n"
