"""Every example in queries/ runs as-is on the demo stream and says something true."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app

QUERIES = sorted((Path(__file__).resolve().parents[2] / "queries").glob("*.sql"))


def _run(path: Path, rows: int = 30_000) -> list[dict]:
    result = CliRunner().invoke(app, ["run", str(path), "--source", f"demo:ticker?rows={rows}"])
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_there_are_at_least_six_examples() -> None:
    assert len(QUERIES) >= 6


@pytest.mark.parametrize("path", QUERIES, ids=lambda p: p.stem)
def test_example_runs_on_the_demo_stream(path: Path) -> None:
    rows = _run(path)
    assert rows, f"{path.name} produced no rows"
    assert "Run: duckstream run" in path.read_text(), "each example says how to run it"


def test_ticker_kpis_are_consistent() -> None:
    rows = _run(QUERIES[0].with_name("ticker_kpis.sql"))
    for r in rows:
        assert r["low"] <= r["open"] <= r["high"] and r["low"] <= r["close"] <= r["high"]
        assert r["low"] <= r["vwap"] <= r["high"]
    minutes = {r["window_start"] for r in rows}
    assert len(minutes) >= 5  # 30,000 trades at 100 a second: five minutes and a bit


def test_price_spike_alarms_exceed_the_threshold() -> None:
    rows = _run(QUERIES[0].with_name("price_spike_alarm.sql"))
    assert all(abs(r["move_pct"]) > 5 for r in rows)
    assert {r["alarm"] for r in rows} <= {"SPIKE UP", "SPIKE DOWN"}


def test_volume_alarms_are_three_times_the_average() -> None:
    rows = _run(QUERIES[0].with_name("volume_spike_alarm.sql"))
    assert all(r["biggest_trade"] > 3 * r["avg_trade"] * 0.99 for r in rows)


def test_cumulative_volume_only_grows_within_a_day() -> None:
    rows = _run(QUERIES[0].with_name("day_to_date_volume.sql"))
    by_sector: dict[str, list[tuple[str, int]]] = {}
    for r in rows:
        by_sector.setdefault(r["sector"], []).append((r["as_of"], r["volume_to_date"]))
    for series in by_sector.values():
        volumes = [v for _, v in sorted(series)]
        assert volumes == sorted(volumes)


def test_sector_changes_converge_to_the_totals() -> None:
    rows = _run(QUERIES[0].with_name("sector_changes.sql"), rows=5_000)
    last = {}
    for r in rows:
        assert r["op"] in ("insert", "update")
        last[r["sector"]] = r
    assert sum(r["trades"] for r in last.values()) == 5_000


KDA_APPS = sorted((Path(__file__).resolve().parents[2] / "queries" / "kda").glob("*.sql"))


def _run_command(path: Path) -> list[str]:
    """The ``-- Run: duckstream run ...`` command in an application's header (with its ``\\``
    continuation lines), as arguments."""
    import shlex

    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("-- Run: duckstream run"))
    text = lines[start].removeprefix("-- Run:")
    i = start
    while text.rstrip().endswith("\\"):
        i += 1
        text = text.rstrip()[:-1] + " " + lines[i].removeprefix("--")
    return shlex.split(text)[1:]  # without "duckstream"


def test_there_are_kda_applications() -> None:
    assert len(KDA_APPS) >= 4


@pytest.mark.parametrize("path", KDA_APPS, ids=lambda p: p.stem)
def test_kda_application_runs_as_its_header_says(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = path.parents[2]
    monkeypatch.chdir(root)  # the commands name files from the project's root
    args = [
        f"error_stream={tmp_path / 'errors.jsonl'}" if a.startswith("error_stream=") else a for a in _run_command(path)
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.strip().startswith("{")]
    assert rows, f"{path.name} produced no rows"
    assert all(key == key.upper() or not key.isascii() for row in rows for key in row), "KDA names are upper case"
