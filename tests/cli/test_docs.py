"""docs/cli.md is the --help of every command, and stays so (``pytest --update-golden`` rewrites it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
COMMANDS = ["run", "explain", "check", "test", "repl"]
ENV = {"COLUMNS": "100", "TERM": "dumb", "NO_COLOR": "1", "_TYPER_FORCE_DISABLE_TERMINAL": "1"}


def render() -> str:
    parts = [
        "# Command line reference",
        "",
        "Generated from `--help`; `pytest tests/cli/test_docs.py --update-golden` rewrites it.",
        "",
    ]
    for command in [None, *COMMANDS]:
        args = [command, "--help"] if command else ["--help"]
        text = CliRunner().invoke(app, args, env=ENV, terminal_width=100).stdout
        text = "\n".join(line.rstrip() for line in text.splitlines()).strip()
        parts += [f"## duckstream {command or ''}".rstrip(), "", "```", text, "```", ""]
    return "\n".join(parts)


def test_cli_reference_is_current(request: pytest.FixtureRequest) -> None:
    text = render()
    if request.config.getoption("--update-golden"):
        DOC.write_text(text, encoding="utf-8")
    assert DOC.read_text(encoding="utf-8") == text, "docs/cli.md is stale: run pytest --update-golden"


def test_installed_console_script_answers() -> None:
    script = Path(sys.executable).parent / "duckstream"
    found = str(script) if script.exists() else shutil.which("duckstream")
    assert found, "the duckstream console script is not installed (pip install -e .)"
    proc = subprocess.run([found, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "run" in proc.stdout
