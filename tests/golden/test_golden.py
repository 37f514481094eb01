"""Every golden case, run with its own batches, in one batch, row by row and split at random.

All runs must produce the expected rows and error rows (see ``engine/casefile.py`` for the
format). ``pytest --update-golden`` rewrites expected outputs from the case's own split; review
that diff like code.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from engine.casefile import check_case, load_case, render_expected, run_case

CASES = sorted((Path(__file__).parent / "cases").glob("*.case"))


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_golden_case(path: Path, request: pytest.FixtureRequest) -> None:
    case = load_case(path)
    if request.config.getoption("--update-golden") and case.error_at is None:
        path.write_text(render_expected(case, run_case(case)), encoding="utf-8")
        case = load_case(path)
    problems = check_case(case, seed=zlib.crc32(path.name.encode()))
    assert not problems, "\n".join(problems[:30])


def test_golden_suite_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert sum(1 for p in CASES if p.name.startswith("error_")) >= 5
