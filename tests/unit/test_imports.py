"""Every module of the project imports on its own, first (no import cycle that only shows when
some other module happened to be imported before)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
from sqlglot.dialects.dialect import Dialect

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for package in ("engine", "connectors")
    for p in (ROOT / package).rglob("*.py")
) + ["cli"]


@pytest.mark.parametrize("name", MODULES)
def test_module_imports_first(name: str) -> None:
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] in ("engine", "connectors", "cli")}
    dialects = dict(Dialect.classes)  # importing engine.sql.dialect anew registers a new "duckstream"
    for key in saved:
        del sys.modules[key]
    try:
        importlib.import_module(name)
    finally:
        for key in [k for k in sys.modules if k.split(".")[0] in ("engine", "connectors", "cli")]:
            del sys.modules[key]
        sys.modules.update(saved)
        Dialect.classes.clear()
        Dialect.classes.update(dialects)
