"""Streams joined with reference tables (KDA's reference data): plan checks, results, reloads."""

from __future__ import annotations

import pyarrow as pa
import pytest

from engine.errors import PlanError
from engine.plan.planner import PlanOptions, compile_program
from engine.runtime.loop import Runner, RunOptions
from engine.testing import ListSink, ListSource, _payload

STREAM = "CREATE TABLE trades (ts TIMESTAMP, sym VARCHAR, qty INT, WATERMARK FOR ts AS ts);\n"
COMPANIES = pa.table({"ticker": ["AMZN", "MSFT"], "company": ["Amazon", "Microsoft"], "lot": [10, 0]})


class Loader:
    """A reference table whose next reload returns the next version."""

    def __init__(self, *versions: pa.Table) -> None:
        self.versions = list(versions)
        self.loads = 0

    def table(self) -> pa.Table:
        return self.versions[0]

    def reload(self) -> pa.Table:
        self.loads += 1
        version = self.versions[min(self.loads, len(self.versions) - 1)]
        if "ticker" not in version.column_names:
            from engine.errors import ConnectorError

            raise ConnectorError("companies.csv no longer has column 'ticker'; keeping the old table")
        return version


def _compile(sql: str, tables: dict[str, pa.Table]) -> object:
    return compile_program(
        STREAM + sql,
        "app.sql",
        options=PlanOptions(reference=lambda name: tables[name.lower()].schema if name.lower() in tables else None),
    )


def _run(sql: str, batches: list[list[dict]], loader: Loader, reload_after: int | None = None) -> tuple[list, list]:
    program = _compile(sql, {"companies": loader.table()})
    source = ListSource("trades", [[_payload(r) for r in b] for b in batches])
    sink, errors = ListSink("result"), ListSink("errors")
    runner = Runner(
        program,
        {"trades": source},
        {program.outputs[0].stream: sink},
        errors,
        RunOptions(idle_timeout_us=None, sleep=lambda s: None),
        references={"companies": loader},
    )
    warnings: list[str] = []
    runner.on_warning = warnings.append
    if reload_after is not None:
        inner = source.poll

        def poll(max_rows: int, timeout_s: float) -> pa.RecordBatch | None:
            if source.next_batch == reload_after:
                runner.request_reload()
            return inner(max_rows, timeout_s)

        source.poll = poll  # type: ignore[method-assign]
    runner.run()
    return sink.rows(), errors.rows() + [{"warning": w} for w in warnings]


ROWS = [
    {"ts": "2024-01-01T00:00:01Z", "sym": "AMZN", "qty": 5},
    {"ts": "2024-01-01T00:00:02Z", "sym": "IBM", "qty": 7},
    {"ts": "2024-01-01T00:00:03Z", "sym": "MSFT", "qty": 9},
]


def test_inner_and_left_joins() -> None:
    inner, _ = _run(
        "SELECT t.sym, c.company, qty FROM trades AS t JOIN companies AS c ON t.sym = c.ticker",
        [ROWS],
        Loader(COMPANIES),
    )
    assert inner == [
        {"sym": "AMZN", "company": "Amazon", "qty": 5},
        {"sym": "MSFT", "company": "Microsoft", "qty": 9},
    ]
    left, _ = _run(
        "SELECT sym, company FROM trades LEFT JOIN companies ON trades.sym = companies.ticker",
        [ROWS],
        Loader(COMPANIES),
    )
    assert left == [
        {"sym": "AMZN", "company": "Amazon"},
        {"sym": "IBM", "company": None},
        {"sym": "MSFT", "company": "Microsoft"},
    ]


def test_a_joined_view_can_be_windowed_downstream() -> None:
    sql = """
    CREATE VIEW named AS SELECT t.ts, c.company, t.qty FROM trades t JOIN companies c ON t.sym = c.ticker;
    SELECT company, window_start, SUM(qty) AS qty
    FROM TABLE(TUMBLE(TABLE named, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY company, window_start, window_end
    """
    rows, _ = _run(sql, [ROWS, ROWS], Loader(COMPANIES))
    assert sorted((r["company"], r["qty"]) for r in rows) == [("Amazon", 10), ("Microsoft", 18)]


def test_a_row_that_fails_in_the_join_goes_to_the_error_stream_alone() -> None:
    rows, errors = _run(
        "SELECT sym, qty / lot AS lots FROM trades t JOIN companies c ON t.sym = c.ticker", [ROWS], Loader(COMPANIES)
    )
    assert rows == [{"sym": "AMZN", "lots": 0.5}]
    assert [(e["reason"], e["source_offset"]) for e in errors] == [("eval", "trades:2")]


def test_reload_takes_effect_from_the_next_batch_and_a_bad_version_keeps_the_old() -> None:
    renamed = pa.table({"ticker": ["AMZN"], "company": ["Amazon.com"], "lot": [1]})
    sql = "SELECT sym, company FROM trades t JOIN companies c ON t.sym = c.ticker"
    rows, _ = _run(sql, [ROWS[:1], ROWS[:1]], Loader(COMPANIES, renamed), reload_after=0)
    assert [r["company"] for r in rows] == ["Amazon", "Amazon.com"]
    broken = pa.table({"symbol": ["AMZN"]})
    rows, errors = _run(sql, [ROWS[:1], ROWS[:1]], Loader(COMPANIES, broken), reload_after=0)
    assert [r["company"] for r in rows] == ["Amazon", "Amazon"]
    assert "keeping the old table" in errors[-1]["warning"]


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT * FROM trades t JOIN rates r ON t.sym = r.sym", '3:29: unknown stream "rates"'),
        ("SELECT * FROM trades t JOIN trades u ON t.sym = u.sym", "3:24: a join of two streams needs a window"),
        ("SELECT sym FROM trades t RIGHT JOIN companies c ON t.sym = c.ticker", "RIGHT JOIN with a reference table"),
        ("SELECT sym FROM trades t JOIN companies c ON t.sym = c.nope", 'unknown column "nope"'),
        ("SELECT sym FROM trades t JOIN companies c ON t.sym = x.ticker", 'unknown table or alias "x"'),
        (
            "SELECT company, COUNT(*) AS n FROM trades t JOIN companies c ON t.sym = c.ticker GROUP BY company",
            "a join and a window or GROUP BY in one SELECT",
        ),
    ],
)
def test_join_mistakes_are_one_line_errors(sql: str, message: str) -> None:
    with pytest.raises(PlanError) as info:
        _compile("\n" + sql, {"companies": COMPANIES})
    assert message in str(info.value) and "\n" not in str(info.value)
