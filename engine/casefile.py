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

A case can test a program kept in its own file, and read an input from a file; paths are
relative to the case file (``duckstream test`` runs users' cases this way)::

    -- program: ticker_kpis.sql
    -- input: trades from ticker_kpis.trades.jsonl
    -- input-schema: trades from kinesis_input.json

``-- input-schema: STREAM from FILE`` gives an undeclared source stream a KDA input schema (as
``--input-schema`` does): its columns, and records decoded by its mappings and KDA's conversions.

With ``-- program:`` the case holds no SQL of its own and error positions are the ``.sql``
file's. An input file is one batch (the runner splits it every other way anyway); inline rows
after it join that batch. ``-- options: idle-timeout=5s`` lets a quiet source's
watermark follow processing time, which in a case is a manual clock that stands still while
rows arrive and moves only while every source is quiet: ``-- wait: 30s`` in an input section
makes that source (and so the run) quiet for 30 s before its next batch.

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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import DuckstreamError
from engine.plan.planner import PlanOptions, compile_program
from engine.runtime.loop import RunOptions

_DIRECTIVE = re.compile(r"^--\s*(about|program|options|converge|input-schema|input|expect|batch|wait)\b:?\s*(.*)$")
_INPUT_FROM = re.compile(r"^(\S+)\s+from\s+(.+)$")
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
    program_path: str | None = None  # ``-- program: FILE``: the SQL came from there
    waits: dict[str, dict[int, float]] = field(default_factory=dict)  # stream -> batch index -> quiet seconds
    input_schemas: dict[str, Any] = field(default_factory=dict)  # ``-- input-schema:`` stream -> InputSchema


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
            elif key == "program":
                case.program_path = _program_file(path, n, value, case)
                section = None
            elif key == "input-schema":
                case.input_schemas.update(_input_schema(path, n, value))
                section = None
            elif key == "input":
                if not value:
                    raise CaseFormatError("'-- input:' needs a stream name", where=f"{path}:{n}")
                source = _INPUT_FROM.match(value)
                name = source.group(1) if source else value
                section = ("input", name)
                batches = case.inputs.setdefault(name, [])
                batches.append(_input_file(path, n, source.group(2).strip()) if source else [])
            elif key in ("batch", "wait"):
                if section is None or section[0] != "input":
                    raise CaseFormatError(f"'-- {key}' outside an input section", where=f"{path}:{n}")
                batches = case.inputs[section[1]]
                if key == "wait":
                    seconds = _wait_seconds(path, n, value)
                    if batches[-1]:
                        batches.append([])
                    waits = case.waits.setdefault(section[1], {})
                    waits[len(batches) - 1] = waits.get(len(batches) - 1, 0.0) + seconds
                else:
                    batches.append([])
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
    if case.program_path is not None:
        inline = [ln for ln in sql_lines if ln.strip() and not ln.strip().startswith("--")]
        if inline:
            raise CaseFormatError("a case with '-- program:' holds no SQL of its own", where=path)
        case.sql = Path(case.program_path).read_text(encoding="utf-8")
    if case.error_at is None and not case.outputs and case.errors is None:
        raise CaseFormatError(
            "the case expects nothing: add '-- expect: output' or '-- expect: error at L:C'", where=path
        )
    return case


def _beside(path: str, line: int, name: str, what: str) -> Path:
    """A file named in a case, relative to the case file; it must exist."""
    if not name:
        raise CaseFormatError(f"'-- {what}:' needs a file name", where=f"{path}:{line}")
    target = Path(path).parent / name
    if not target.is_file():
        raise CaseFormatError(f"no such file: {target}", where=f"{path}:{line}")
    return target


def _program_file(path: str, line: int, name: str, case: Case) -> str:
    if case.program_path is not None:
        raise CaseFormatError("a case has one '-- program:'", where=f"{path}:{line}")
    return str(_beside(path, line, name, "program"))


def _input_file(path: str, line: int, name: str) -> list[bytes]:
    """The records of an input file: its non-blank lines."""
    data = _beside(path, line, name, "input").read_bytes()
    return [ln.rstrip(b"\r") for ln in data.split(b"\n") if ln.strip()]


def _input_schema(path: str, line: int, value: str) -> dict[str, Any]:
    """``-- input-schema: STREAM from FILE``: {stream: the file's InputSchema}."""
    from engine.formats.kda_schema import load_input_schema

    named = _INPUT_FROM.match(value)
    if named is None:
        raise CaseFormatError("'-- input-schema:' needs STREAM from FILE", where=f"{path}:{line}")
    file = _beside(path, line, named.group(2).strip(), "input-schema")
    try:
        return {named.group(1): load_input_schema(file)}
    except DuckstreamError as err:
        raise CaseFormatError(str(err), where=f"{path}:{line}") from None


def _with_input_schemas(schemas: dict[str, Any]) -> Any:
    """The planner's schema callback for undeclared streams with an input schema (None if none)."""
    if not schemas:
        return None

    def schema(name: str) -> Any:
        found = next((k for k in schemas if k.lower() == name.lower()), None)
        return schemas[found].arrow_schema() if found is not None else None

    return schema


def _wait_seconds(path: str, line: int, text: str) -> float:
    from connectors.options import parse_duration

    try:
        return parse_duration(text, "wait") / 1e6
    except DuckstreamError as err:
        raise CaseFormatError(
            f"'-- wait:' needs a duration such as 30s: {err.message}", where=f"{path}:{line}"
        ) from None


def load_case(path: str | Path) -> Case:
    """Parse the case file at ``path``."""
    return parse_case(Path(path).read_text(encoding="utf-8"), str(path))


# ---------------------------------------------------------------------- running
@dataclass
class Outcome:
    """What one run of a case produced: output rows by output name, error rows (as JSON values)."""

    outputs: dict[str, list[dict[str, Any]]]
    errors: list[dict[str, Any]]


Batches = dict[str, list[list[bytes]]]  # stream -> micro-batches of payloads
Waits = dict[str, dict[int, float]]  # stream -> batch index -> seconds the source is quiet before it


class ManualClock:
    """Processing time for a case: stands still unless slept (the loop sleeps only when idle)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)


def _options(case: Case) -> tuple[PlanOptions, RunOptions]:
    from connectors.options import parse_duration

    lateness = case.options.get("allowed-lateness")
    lateness_us = parse_duration(lateness, f"{case.path}: allowed-lateness") if lateness else 0
    idle = case.options.get("idle-timeout")
    idle_us = parse_duration(idle, f"{case.path}: idle-timeout") if idle else None
    known = {"allowed-lateness", "no-flush", "idle-timeout", "rowtime-from"}
    unknown = set(case.options) - known
    if unknown:
        raise CaseFormatError(f"unknown option(s) {', '.join(sorted(unknown))}", where=case.path)
    clock = ManualClock()
    run = RunOptions(
        idle_timeout_us=idle_us,
        flush="no-flush" not in case.options,
        batch_interval_s=1.0,
        clock=clock,
        sleep=clock.sleep,
        rowtime_from={"*": case.options["rowtime-from"]} if case.options.get("rowtime-from") else {},
    )
    return PlanOptions(allowed_lateness_us=lateness_us), run


def _waiting_source(name: str, batches: list[list[bytes]], waits: dict[int, float], clock: ManualClock) -> Any:
    """A ``ListSource`` that is quiet (empty polls) for ``waits[i]`` seconds of ``clock`` before batch i."""
    import pyarrow as pa

    from engine.testing import ListSource
    from engine.types import RAW_SCHEMA

    class WaitingSource(ListSource):
        def open(self, resume: Any) -> None:
            super().open(resume)
            self.quiet_until: float | None = None

        def poll(self, max_rows: int, timeout_s: float) -> Any:
            wait = waits.get(self.next_batch)
            if wait:
                if self.quiet_until is None:
                    self.quiet_until = clock() + wait
                if clock() < self.quiet_until:
                    return pa.RecordBatch.from_pylist([], schema=RAW_SCHEMA)
                waits.pop(self.next_batch)
                self.quiet_until = None
            return super().poll(max_rows, timeout_s)

    return WaitingSource(name, batches)


def _run_inputs(
    program: Any,
    inputs: Batches,
    waits: Waits,
    options: RunOptions,
    checkpoint_dir: str | None = None,
    input_schemas: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], Any]:
    """Run ``program`` over in-memory batches with quiet spells; (sinks by output name, error sink)."""
    from engine.runtime.checkpoint import CheckpointStore, program_fingerprint
    from engine.runtime.loop import Runner
    from engine.testing import ListSink

    assert isinstance(options.clock, ManualClock)
    input_schemas = input_schemas or {}
    sources = {}
    for key in program.sources:
        name = program.streams[key].name
        found = next((k for k in inputs if k.lower() == key), None)
        if found is None:
            raise KeyError(f"no input given for stream {name!r}")
        sources[key] = _waiting_source(name, inputs[found], dict(waits.get(found, {})), options.clock)
        given = next((s for k, s in input_schemas.items() if k.lower() == key), None)
        if given is not None:
            sources[key].input_schema = given
    sinks = {o.stream: ListSink(o.name) for o in program.outputs}
    errors = ListSink("errors")
    store = CheckpointStore(checkpoint_dir, program_fingerprint(program.text)) if checkpoint_dir else None
    Runner(program, sources, sinks, errors, options, checkpoints=store).run()
    return {o.name: sinks[o.stream] for o in program.outputs}, errors


def _discovered(case: Case) -> dict[str, Any]:
    """KDA programs: input schemas of the streams they read without declaring them or being given
    one, found from the case's own input rows as the command line finds them from a source's first
    records (KDA's discovery: upper-case names, nested keys flattened, ``COL_`` for reserved words)."""
    from engine.formats.kda_schema import discover_untruncated
    from engine.sql import kda
    from engine.sql.parse import parse_program

    if not kda.is_kda(parse_program(case.sql, case.path)):
        return {}
    given = {k.lower() for k in case.input_schemas}
    found: dict[str, Any] = {}
    for name, batches in case.inputs.items():
        if name.lower() not in given:
            sample = [row for batch in batches for row in batch][:200]
            found[name] = discover_untruncated(sample, f"{case.path}: input {name}")
    return found


def run_case(
    case: Case, splits: Batches | None = None, restore_after: int | None = None, waits: Waits | None = None
) -> Outcome:
    """Run the case's program over ``splits`` (default: the file's own batches and waits).

    With ``restore_after`` = k, the run stops after k batches right after a checkpoint, and a new
    run of the same program resumes from that checkpoint; the outcome is what both committed.
    """
    import tempfile

    from engine.formats.encode import to_json_lines

    plan_opts, run_opts = _options(case)
    where = case.program_path or case.path
    schemas = {**_discovered(case), **case.input_schemas}
    program = compile_program(case.sql, where, _with_input_schemas(schemas), plan_opts)
    inputs = splits if splits is not None else case.inputs
    pauses = waits if waits is not None else (case.waits if splits is None else {})
    runs = []
    if restore_after is None:
        runs.append(_run_inputs(program, inputs, pauses, run_opts, input_schemas=schemas))
    else:
        with tempfile.TemporaryDirectory() as directory:
            first = RunOptions(**{**run_opts.__dict__, "stop_after_batches": restore_after})
            runs.append(_run_inputs(program, inputs, pauses, first, checkpoint_dir=directory, input_schemas=schemas))
            # a new process would re-plan
            again = compile_program(case.sql, where, _with_input_schemas(schemas), plan_opts)
            _, run_opts = _options(case)  # and have a new clock
            runs.append(_run_inputs(again, inputs, pauses, run_opts, checkpoint_dir=directory, input_schemas=schemas))
    outputs: dict[str, list[dict[str, Any]]] = {}
    shown = {o.name for o in program.outputs if not o.optional} | set(case.outputs)
    for sinks, _ in runs:
        for name, sink in sinks.items():
            if name not in shown:
                continue
            rows = outputs.setdefault(name, [])
            for table in sink.committed:
                rows += [json.loads(line) for line in to_json_lines(table).splitlines() if line.strip()]
    err_rows: list[dict[str, Any]] = []
    for table in (t for _, errors in runs for t in errors.committed):
        table = table.drop_columns(["detected_at"])
        for row in table.to_pylist():
            payload = row.get("payload")
            row["payload"] = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
            if isinstance(row.get("event_time"), dt.datetime):
                row["event_time"] = row["event_time"].isoformat() + "Z"
            err_rows.append(row)
    return Outcome(outputs, err_rows)


def _segments(case: Case, name: str) -> list[tuple[float, list[bytes]]]:
    """A stream's input as (seconds quiet before, rows) pieces; a wait always starts a piece."""
    waits = case.waits.get(name, {})
    pieces: list[tuple[float, list[bytes]]] = []
    for i, batch in enumerate(case.inputs[name]):
        if i == 0 or i in waits:
            pieces.append((waits.get(i, 0.0), []))
        pieces[-1][1].extend(batch)
    return pieces


def _recut(case: Case, cut: Any) -> tuple[Batches, Waits]:
    """Every stream's input cut by ``cut(name, rows) -> batches`` between its waits."""
    batches: Batches = {}
    waits: Waits = {}
    for name in case.inputs:
        out: list[list[bytes]] = []
        for seconds, rows in _segments(case, name):
            pieces = cut(name, rows)
            if seconds:
                waits.setdefault(name, {})[len(out)] = seconds
                pieces = pieces or [[]]
            out += pieces
        batches[name] = out
    return batches, waits


def splits_for(case: Case, seed: int) -> list[tuple[str, Batches, Waits]]:
    """The ways the runner cuts the case's input: one batch, one row per batch, random cuts.

    Waits stay where they are: only the rows between two waits are cut differently.
    """
    rng = random.Random(seed)

    def random_cut(name: str, rows: list[bytes]) -> list[list[bytes]]:
        points = (
            sorted(rng.sample(range(1, len(rows)), k=min(len(rows) - 1, rng.randint(1, 4)))) if len(rows) > 1 else []
        )
        bounds = [0, *points, len(rows)]
        return [rows[a:b] for a, b in zip(bounds, bounds[1:])]

    ways: list[tuple[str, Batches, Waits]] = [
        ("one batch", *_recut(case, lambda n, rows: [rows])),
        ("row by row", *_recut(case, lambda n, rows: [[r] for r in rows])),
    ]
    for i in range(3):
        ways.append((f"random split #{i + 1}", *_recut(case, random_cut)))
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


def check_runs(case: Case, seed: int = 0, quick: bool = False) -> Iterator[tuple[str, list[str]]]:
    """Run a case every way the runner knows (only its own batches when ``quick``), yielding
    (how it ran, problems) for each run; a run that fails to compile or run raises."""
    if case.error_at is not None:
        yield "compile", _check_error_at(case)
        return
    yield "own batches", check_outcome(case, run_case(case), own_split=True)
    if quick:
        return
    for label, split, waits in splits_for(case, seed):
        yield label, check_outcome(case, run_case(case, split, waits=waits), own_split=False)
    batches = sum(len(b) for b in case.inputs.values())
    if batches > 1 or any(len(b) > 1 for bs in case.inputs.values() for b in bs):
        # checkpoint after some batches of a row-by-row run, "crash", restore, finish
        rows, waits = _recut(case, lambda n, rows: [[r] for r in rows])
        total = sum(len(b) for bs in rows.values() for b in bs)
        at = random.Random(seed).randint(1, max(1, total - 1))
        outcome = run_case(case, rows, restore_after=at, waits=waits)
        yield f"restored after {at} batches", check_outcome(case, outcome, own_split=False)


def _check_error_at(case: Case) -> list[str]:
    assert case.error_at is not None
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


def check_case(case: Case, seed: int = 0) -> list[str]:
    """Run a case every way the runner knows and return all problems found."""
    problems: list[str] = []
    for label, found in check_runs(case, seed):
        prefix = "" if label == "compile" else f"{'own split' if label == 'own batches' else label}: "
        problems += [prefix + p for p in found]
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
