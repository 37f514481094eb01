"""EXPLAIN: a plan as text a person can read, down to the DuckDB SQL each operator runs."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.syntax import Syntax
from rich.text import Text

from engine.formats.types import sql_type_name
from engine.plan.logical import Program, SessionAggSpec, WindowAggSpec


def _fmt_us(us: int) -> str:
    for unit, size in (("d", 86_400_000_000), ("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000), ("ms", 1_000)):
        if us and us % size == 0:
            return f"{us // size}{unit}"
    return f"{us}us"


def describe(program: Program) -> str:
    """The plan as plain text (what ``render`` shows, without colour)."""
    lines: list[str] = []
    lines.append("sources:")
    for key in program.sources:
        s = program.streams[key]
        cols = ", ".join(f"{f.name} {sql_type_name(f.type)}" for f in s.schema)
        time = (
            f"; event time {s.time_column}, watermark {s.time_column} - {_fmt_us(s.delay_us)}"
            if s.time_column
            else "; no event time"
        )
        origin = f" (connector {s.connector})" if s.connector else (" (schema discovered)" if not s.declared else "")
        lines.append(f"  {s.name}{origin}: {cols}{time}")
    lines.append("operators:")
    for spec in program.operators:
        head = (
            f"  [{spec.step_id}] {spec.kind}: {program.streams[spec.input].name} -> {program.streams[spec.output].name}"
        )
        if isinstance(spec, WindowAggSpec):
            head += f" ({spec.window}"
            if spec.window != "global":
                head += f" size {_fmt_us(spec.size_us)}"
                if spec.window != "tumble":
                    head += f" {'slide' if spec.window == 'hop' else 'step'} {_fmt_us(spec.slide_us)}"
            head += f", {spec.mode} state, EMIT {spec.emit.upper()}"
            if spec.allowed_lateness_us:
                head += f", allowed lateness {_fmt_us(spec.allowed_lateness_us)}"
            head += ")"
        if isinstance(spec, SessionAggSpec):
            head += f" (gap {_fmt_us(spec.gap_us)}, EMIT {spec.emit.upper()})"
        lines.append(head)
        for label, sql in spec.sql_parts():
            lines.append(f"      {label}: {sql}")
    lines.append("outputs:")
    for out in program.outputs:
        s = program.streams[out.stream]
        lines.append(f"  {out.name}: {', '.join(f'{f.name} {sql_type_name(f.type)}' for f in s.schema)}")
    return "\n".join(lines)


def render(program: Program) -> Group:
    """The plan as rich renderables: one panel per operator with its SQL highlighted."""
    parts: list[RenderableType] = [Text("sources", style="bold")]
    for key in program.sources:
        s = program.streams[key]
        cols = ", ".join(f"{f.name} {sql_type_name(f.type)}" for f in s.schema)
        time = (
            f"  event time {s.time_column} (watermark - {_fmt_us(s.delay_us)})" if s.time_column else "  no event time"
        )
        parts.append(Text(f"  {s.name}: {cols}\n{time}"))
    for spec in program.operators:
        body: list[RenderableType] = [
            Text(f"{program.streams[spec.input].name} -> {program.streams[spec.output].name}")
        ]
        for label, sql in spec.sql_parts():
            body.append(Text(label, style="dim"))
            body.append(Syntax(sql, "sql", word_wrap=True, theme="ansi_dark", background_color="default"))
        parts.append(Panel(Group(*body), title=f"{spec.step_id} · {spec.kind}", title_align="left"))
    parts.append(Text("outputs", style="bold"))
    for out in program.outputs:
        s = program.streams[out.stream]
        parts.append(Text(f"  {out.name}: {', '.join(f'{f.name} {sql_type_name(f.type)}' for f in s.schema)}"))
    return Group(*parts)
