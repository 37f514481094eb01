"""The windowing conformance cases from Flink, RisingWave, Spark and Arroyo, run through the CLI.

Each case directory keeps its ``case.json`` with the upstream source line (repository, file, test
name, commit). ``adapter.translate`` maps the case's semantic model onto duckstream's options.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from engine.casefile import diff_rows
from tests.conformance.adapter import converge, translate

CASES = Path(__file__).parent / "cases"
ALL = sorted(p.parent for p in CASES.glob("0*/case.json"))
IN_MODEL = [
    p for p in ALL if json.loads((p / "case.json").read_text())["time"].get("lateness_model") != "batch_watermark"
]
OUT_OF_MODEL = [p for p in ALL if p not in IN_MODEL]


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("case_dir", IN_MODEL, ids=lambda p: p.name)
def test_conformance_case_matches_upstream(case_dir: Path, tmp_path: Path) -> None:
    case = json.loads((case_dir / "case.json").read_text())
    assert case["source"], "every case keeps its upstream source line"
    rows = _read_jsonl(case_dir / "input.jsonl")
    program, options = translate(case, rows)
    sql = tmp_path / "case.sql"
    sql.write_text(program)
    result = CliRunner().invoke(app, ["run", str(sql), "--source", f"t={case_dir / 'input.jsonl'}", *options])
    assert result.exit_code == 0, f"{result.stderr}\n{program}"
    out = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    if case["emit"] == "changes":
        out = converge(out, case.get("group_by") or [])
    problems = diff_rows(_read_jsonl(case_dir / "expected.jsonl"), out, partial=True)
    assert not problems, "\n".join([*problems[:20], program])


def test_conformance_covers_every_case_outside_batch_watermark() -> None:
    assert len(ALL) == 18
    assert len(IN_MODEL) == 14


@pytest.mark.parametrize("case_dir", OUT_OF_MODEL, ids=lambda p: p.name)
def test_batch_watermark_cases_are_refused_with_a_reason(case_dir: Path) -> None:
    case = json.loads((case_dir / "case.json").read_text())
    with pytest.raises(ValueError, match="outside duckstream's per-row watermark model"):
        translate(case, _read_jsonl(case_dir / "input.jsonl"))
