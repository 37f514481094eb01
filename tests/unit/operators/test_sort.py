"""KDA's streaming ORDER BY: sorted within each ROWTIME bucket, in any batch split."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from engine.casefile import load_case, run_case, splits_for

CASE = Path(__file__).resolve().parents[2] / "golden" / "cases" / "kda_front_order_by_within_second.case"


@pytest.mark.parametrize("index", range(5))
def test_rows_leave_sorted_within_their_second_in_every_split(index: int) -> None:
    case = load_case(CASE)
    splits = splits_for(case, seed=7)
    label, batches, waits = splits[index % len(splits)]
    rows = run_case(case, batches, waits=waits).outputs["DESTINATION_SQL_STREAM"]
    assert [r["K"] for r in rows] == ["b", "c", "a", "d"], label


def test_order_by_must_start_with_a_rowtime_bucket(tmp_path: Path) -> None:
    from engine.errors import PlanError
    from engine.plan.planner import compile_program

    program = (
        'CREATE OR REPLACE STREAM "D" (k VARCHAR(4));\n'
        'CREATE PUMP p AS INSERT INTO "D"\n'
        "SELECT STREAM k FROM s ORDER BY k;"
    )
    with pytest.raises(PlanError) as info:
        compile_program(program, "p.sql", lambda name: pa.schema([("K", pa.string())]))
    assert "must start with an ascending ROWTIME bucket" in str(info.value)
    assert "p.sql:3:33" in str(info.value)
