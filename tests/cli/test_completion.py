"""The REPL's context-aware completion (``engine.completion``), without a terminal."""

from __future__ import annotations

from engine.completion import Catalog, complete

COLUMNS = {"trades": ["SYM", "PRICE", "TS"], "quotes": ["SYM", "BID"], "live": ["A"]}


def _catalog() -> Catalog:
    return Catalog(
        streams=lambda: list(COLUMNS),
        columns=lambda name: COLUMNS.get(name, []),
        functions=lambda: {"round", "sum"},
        pumps=lambda: ["P1"],
        keywords=("SELECT", "FROM", "LIKE", "LIMIT"),
        dot_commands=(".mode", ".maxrows", ".chart"),
        modes=("table", "changes"),
    )


def test_completion_offers_streams_after_from_and_columns_after_a_qualifier() -> None:
    assert complete("SELECT * FROM li", "", _catalog()) == ("li", ["live"])
    assert complete("SELECT * FROM trades t JOIN q", "", _catalog()) == ("q", ["quotes"])
    assert complete("SELECT t.P", " FROM trades AS t", _catalog()) == ("P", ["PRICE"])
    assert complete("SELECT q.", " FROM trades t JOIN quotes q ON t.SYM = q.SYM", _catalog())[1] == ["SYM", "BID"]
    assert complete("STOP ", "", _catalog()) == ("", ["P1"])
    assert complete("DROP PUMP p", "", _catalog()) == ("p", ["P1"])


def test_completion_in_expressions_prefers_the_statements_streams() -> None:
    word, offered = complete("SELECT ", " FROM quotes", _catalog())
    assert word == "" and offered[:2] == ["SYM", "BID"] and "PRICE" not in offered and "round" in offered
    assert complete("SELECT B", "", _catalog()) == ("B", ["BID"])  # no stream named yet: every stream's columns
    assert complete("SELECT x FROM trades WHERE r", "", _catalog()) == ("r", ["round"])
    assert complete("SELECT 1; SELECT * FROM trades WHERE P", "", _catalog()) == ("P", ["PRICE"])


def test_completion_of_dot_commands_and_their_arguments() -> None:
    assert complete(".ma", "", _catalog()) == (".ma", [".maxrows"])
    assert complete(".mode ch", "", _catalog()) == ("ch", ["changes"])
    assert complete("SELECT * FROM trades WHERE SYM LI", "", _catalog()) == ("LI", ["LIKE", "LIMIT", "live"])
