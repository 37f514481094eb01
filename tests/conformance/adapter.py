"""Maps a conformance case (``cases/NNN_*/case.json``) onto a duckstream program and CLI options.

The cases come from Flink, RisingWave, Spark and Arroyo test suites (see ``cases/UPSTREAM.md``;
each ``case.json`` names its source file and test). Their models map onto duckstream like this:

- ``watermark`` (Flink, Arroyo): a window fires when ``max_ts - delay >= end - 1ms``. duckstream
  fires when ``watermark >= end`` with ``watermark = max_ts - delay'``, so ``delay' = delay - 1ms``;
  allowed lateness carries over as is (``--allowed-lateness``).
- ``none``: nothing is ever late: a watermark delay of 100 years, windows flushed at end of input.
- ``batch_watermark`` (Spark, RisingWave micro-batches): outside duckstream's per-row model.
- ``session_end: last_event`` reports ``window_end - gap`` (duckstream's sessions end at last + gap).
- ``emit: changes`` runs ``EMIT CHANGES`` and compares the converged table.

Usable from the shared checker too:
``python ../shared/conformance/check.py --engine "python tests/conformance/adapter.py {case} {input}"``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

MS = {"D": 86_400_000, "H": 3_600_000, "M": 60_000, "S": 1_000}
_DUR = re.compile(r"^(-)?P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def duration_ms(text: str | None) -> int:
    """An ISO-8601 duration (days to seconds) in milliseconds."""
    if not text:
        return 0
    m = _DUR.match(text.strip())
    if not m:
        raise ValueError(f"bad duration {text!r}")
    neg, d, h, mi, s = m.groups()
    ms = float(d or 0) * MS["D"] + float(h or 0) * MS["H"] + float(mi or 0) * MS["M"] + float(s or 0) * MS["S"]
    return -round(ms) if neg else round(ms)


def q(name: str) -> str:
    """A quoted identifier (case columns include SQL keywords such as "count" and "value")."""
    return '"' + name.replace('"', '""') + '"'


def interval(ms: int) -> str:
    """``INTERVAL 'n' MILLISECOND`` (negative values negate the interval)."""
    return f"INTERVAL '{ms}' MILLISECOND" if ms >= 0 else f"-INTERVAL '{-ms}' MILLISECOND"


def column_types(rows: list[dict[str, Any]]) -> dict[str, str]:
    """SQL types for the payload columns, from the values in the input."""
    types: dict[str, str] = {}
    for row in rows:
        for key, value in row.items():
            if key in ("ts", "_batch") or value is None:
                types.setdefault(key, "") if key not in ("ts", "_batch") else None
                continue
            if isinstance(value, bool):
                kind = "BOOLEAN"
            elif isinstance(value, int):
                kind = "BIGINT"
            elif isinstance(value, float):
                kind = "DOUBLE"
            else:
                kind = "VARCHAR"
            old = types.get(key, "")
            if old in ("", kind):
                types[key] = kind
            elif {old, kind} == {"BIGINT", "DOUBLE"}:
                types[key] = "DOUBLE"
            else:
                types[key] = "VARCHAR"
    return {k: (v or "VARCHAR") for k, v in types.items()}


def aggregate_sql(agg: dict[str, Any]) -> str:
    """One aggregate of a case as SQL."""
    fn, arg = agg["fn"], agg.get("arg")
    col = q(arg) if arg else "*"
    if fn == "count":
        text = f"COUNT({col})"
    elif fn == "count_distinct":
        text = f"COUNT(DISTINCT {col})"
    elif fn in ("sum", "min", "max", "avg"):
        text = f"{fn.upper()}({col})"
    else:
        raise ValueError(f"unknown aggregate {fn}")
    if fn == "avg" and agg.get("result_type") == "int_trunc":
        text = f"CAST(TRUNC({text}) AS BIGINT)"
    return f"{text} AS {q(agg['name'])}"


def translate(case: dict[str, Any], rows: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """(program text, extra CLI options) for a case."""
    w, t = case["window"], case.get("time") or {}
    model = t.get("lateness_model", "none")
    if model == "batch_watermark":
        raise ValueError("batch_watermark cases are outside duckstream's per-row watermark model")
    if model not in ("watermark", "none"):
        raise ValueError(f"lateness model {model} is not mapped")
    delay = duration_ms(t.get("watermark_delay")) - 1 if model == "watermark" else 100 * 365 * MS["D"]
    watermark = f"ts - {interval(delay)}" if delay >= 0 else f"ts + {interval(-delay)}"
    types = column_types(rows)
    cols = ", ".join(f"{q(k)} {v}" for k, v in types.items())
    create = f"CREATE TABLE t (ts TIMESTAMP(3), {cols + ', ' if cols else ''}WATERMARK FOR ts AS {watermark});"
    kind, keys = w["kind"], case.get("group_by") or []
    offset = f", {interval(duration_ms(w.get('offset')))}" if w.get("offset") else ""
    size, slide = interval(duration_ms(w.get("size"))), interval(duration_ms(w.get("slide")))
    if kind == "tumbling":
        tvf = f"TUMBLE(TABLE t, DESCRIPTOR(ts), {interval(duration_ms(w['size']))}{offset})"
    elif kind == "hopping":
        tvf = f"HOP(TABLE t, DESCRIPTOR(ts), {slide}, {size}{offset})"
    elif kind == "cumulate":
        tvf = f"CUMULATE(TABLE t, DESCRIPTOR(ts), {slide}, {size}{offset})"
    elif kind == "session":
        part = f" PARTITION BY ({', '.join(q(k) for k in keys)})" if keys else ""
        tvf = f"SESSION(TABLE t{part}, DESCRIPTOR(ts), {interval(duration_ms(w['gap']))})"
    else:
        raise ValueError(f"unknown window kind {kind}")
    window_end = "window_end"
    if kind == "session" and w.get("session_end") == "last_event":
        window_end = f"window_end - {interval(duration_ms(w['gap']))} AS window_end"
    items = ["window_start", window_end, *(q(k) for k in keys), *(aggregate_sql(a) for a in case["aggregates"])]
    sql = f"SELECT {', '.join(items)}\nFROM TABLE({tvf})"
    filters = []
    if case.get("filter"):
        filters.append(f"({case['filter']})")
    if case.get("null_group_keys") == "drop":
        filters += [f"{q(k)} IS NOT NULL" for k in keys]
    if filters:
        sql += f"\nWHERE {' AND '.join(filters)}"
    sql += f"\nGROUP BY window_start, window_end{''.join(', ' + q(k) for k in keys)}"
    if case.get("having"):
        sql += f"\nHAVING {case['having']}"
    if case["emit"] == "changes":
        sql += "\nEMIT CHANGES"
    options = []
    lateness = duration_ms(w.get("allowed_lateness"))
    if lateness:
        options += ["--allowed-lateness", f"{lateness}ms"]
    if t.get("end_of_input") == "no_flush":
        options.append("--no-flush")
    return f"{create}\n{sql};\n", options


def converge(rows: list[dict[str, Any]], keys: list[str]) -> list[dict[str, Any]]:
    """The final table of an ``EMIT CHANGES`` changelog (the converged rows the cases expect)."""
    table: dict[str, dict[str, Any]] = {}
    for row in rows:
        ident = json.dumps([row.get("window_start"), row.get("window_end"), *(row.get(k) for k in keys)])
        if row.get("op") == "delete":
            table.pop(ident, None)
        else:
            table[ident] = {k: v for k, v in row.items() if k != "op"}
    return list(table.values())


def main(argv: list[str]) -> int:
    """CLI for the shared checker: ``adapter.py CASE_JSON INPUT_JSONL`` prints result rows."""
    import subprocess
    import tempfile

    case = json.loads(Path(argv[0]).read_text())
    rows = [json.loads(line) for line in Path(argv[1]).read_text().splitlines() if line.strip()]
    program, options = translate(case, rows)
    root = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "case.sql"
        path.write_text(program)
        proc = subprocess.run(
            [sys.executable, str(root / "cli.py"), "run", str(path), "--source", f"t={argv[1]}", *options],
            capture_output=True,
            text=True,
        )
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        return proc.returncode
    out = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    if case["emit"] == "changes":
        out = converge(out, case.get("group_by") or [])
    for row in out:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
