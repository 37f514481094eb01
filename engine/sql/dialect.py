"""Our sqlglot dialect: standard SQL plus Flink- and KDA-style streaming syntax.

Registered with sqlglot as ``"duckstream"``. What it adds to the stock parser:

- window table functions ``TUMBLE | HOP | CUMULATE | SESSION (TABLE t [PARTITION BY k], DESCRIPTOR(ts), ...)``
  parsed into ``WindowTVF`` (the stock parser reads ``TABLE t, ...`` as a query that swallows the
  other arguments, and ``SESSION(`` as a keyword);
- ``WATERMARK FOR ts AS <expr>`` inside ``CREATE TABLE``;
- ``CREATE [OR REPLACE] STREAM`` (a synonym of ``CREATE TABLE``) and ``CREATE PUMP``;
- a trailing ``EMIT CHANGES | FINAL`` on a query (``Emit``; without care ``EMIT`` is read as an alias);
- KDA's ``SELECT STREAM``, ``STEP(t BY i)``, ``WINDOWED BY STAGGER (...)`` and ``CURSOR(query)``.

Traps (sqlglot 30): a ``FUNCTION_PARSERS`` result gets no position, so ``_parse_function_call``
stamps the name token's; ``meta["col"]`` is the *last* column of a token, so the first column is
``col - (end - start)`` (see ``position``); a function parser must leave its ``)`` to the caller.
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp, generator, tokens
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.helper import seq_get
from sqlglot.tokens import TokenType


class WindowTVF(exp.Expression, exp.Func):
    """KIND(TABLE t [PARTITION BY k | (k, ...)], DESCRIPTOR(ts), <params> [, offset]).

    ``this``: the source table; ``timecol``: the DESCRIPTOR column; ``expressions``: the params.
    """

    arg_types = {"kind": True, "this": True, "partition_by": False, "timecol": True, "expressions": True}
    PARAMS = {"TUMBLE": ("size",), "HOP": ("slide", "size"), "CUMULATE": ("step", "size"), "SESSION": ("gap",)}

    def param(self, name: str) -> exp.Expr | None:
        """The parameter called ``name`` (``size``, ``slide``, ``step``, ``gap``, ``offset``) or None."""
        names = (*self.PARAMS[self.args["kind"]], "offset")
        return dict(zip(names, self.expressions, strict=False)).get(name)


class Step(exp.Expression, exp.Func):
    """KDA STEP(<time> BY <interval>): start of the interval-wide bucket holding <time>."""

    arg_types = {"this": True, "expression": True}


class IntervalQualifier(exp.Expression):
    """KDA's ``(t1 - t2) <qualifier>``: a difference of datetimes as an interval of the given fields.

    ``this``: the parenthesised subtraction; ``unit``: the leading field (``DAY``, ``MINUTE``, ...);
    ``to``: the trailing field of ``DAY TO SECOND`` and the like, or None.
    """

    arg_types = {"this": True, "unit": True, "to": False}


class Cursor(exp.Expression, exp.Func):
    """KDA CURSOR(<query>): a stream argument to a table function."""


class Stagger(exp.Expression):
    """WINDOWED BY STAGGER (PARTITION BY <exprs> RANGE <interval>), in Select.args['group']."""

    arg_types = {"expressions": True, "range": True}


class CreatePump(exp.Expression):
    """CREATE [OR REPLACE] PUMP name [STOPPED] AS INSERT INTO ... SELECT ..."""

    arg_types = {"this": True, "expression": True, "replace": False, "stopped": False}


class Emit(exp.Expression):
    """A continuous query with an explicit emit mode: <query> EMIT CHANGES | FINAL."""

    arg_types = {"this": True, "kind": True}


class TableWindow(exp.Expression):
    """KDA's window on a joined stream, kept in its ``exp.Table``'s ``window`` arg.

    ``FROM s OVER (RANGE INTERVAL '1' MINUTE PRECEDING) AS o`` (``spec``, a ``WindowSpec``) or
    ``FROM s OVER w AS o`` (``this``: the name of a ``WINDOW w AS (...)`` clause).
    """

    arg_types = {"this": False, "spec": False, "partition_by": False, "order": False}


def position(node: exp.Expr) -> tuple[int | None, int | None]:
    """1-based (line, column) of the first character of ``node`` (the earliest of its parts)."""
    best: tuple[int, int] | None = None
    for sub in node.walk():
        meta = sub.meta if isinstance(sub, exp.Expr) else {}
        if "line" in meta:
            col = meta["col"]
            if "start" in meta and "end" in meta:
                col = col - (meta["end"] - meta["start"])
            here = (meta["line"], max(col, 1))
            best = here if best is None or here < best else best
    return best if best is not None else (None, None)


class Duckstream(DuckDB):
    """Streaming SQL (Flink window TVFs + KDA streams and pumps) on top of DuckDB's SQL.

    Built on sqlglot's DuckDB dialect so that every DuckDB function and operator a user writes
    (``date_diff``, ``regexp_extract``, ``//``, ``^``, list literals, ...) means what DuckDB says.
    """

    class Tokenizer(DuckDB.Tokenizer):
        KEYWORDS = {**DuckDB.Tokenizer.KEYWORDS, "WINDOWED BY": TokenType.GROUP_BY}
        IDENTIFIERS = ['"', "`"]
        UNICODE_STRINGS = [("U&'", "'"), ("u&'", "'")]  # KDA's U&'\0009' (a tab), not U & '...'

    class Parser(DuckDB.Parser):  # type: ignore[valid-type,misc]  # sqlglot builds dialect classes dynamically
        FUNC_TOKENS = {*DuckDB.Parser.FUNC_TOKENS, TokenType.SESSION}
        SUPPORTS_NTH_VALUE_FROM_MODIFIER = True  # KDA's NTH_VALUE(x, n) FROM FIRST | FROM LAST
        FUNCTIONS = {
            **DuckDB.Parser.FUNCTIONS,
            "TABLE": lambda args: exp.TableFromRows(this=seq_get(args, 0)),
        }
        FUNCTION_PARSERS = {
            **DuckDB.Parser.FUNCTION_PARSERS,
            **{k: (lambda self, k=k: self._parse_window_tvf(k)) for k in WindowTVF.PARAMS},  # type: ignore[misc]
            "STEP": lambda self: self._parse_step(),
            "CURSOR": lambda self: self._closed(Cursor(this=self._parse_select())),
        }
        CONSTRAINT_PARSERS = {
            **DuckDB.Parser.CONSTRAINT_PARSERS,
            "WATERMARK": lambda self: self._parse_watermark(),
        }
        SCHEMA_UNNAMED_CONSTRAINTS = {*DuckDB.Parser.SCHEMA_UNNAMED_CONSTRAINTS, "WATERMARK"}
        TYPE_CONVERTERS = {**DuckDB.Parser.TYPE_CONVERTERS, exp.DType.TEXT: lambda t: _text_type(t)}

        def _expect(self, ok: object, message: str, token: tokens.Token | None = None) -> None:
            if not ok:
                self.raise_error(message, token or self._curr)

        def _closed(self, node: exp.Expr) -> exp.Expr:
            self._expect(self._match(TokenType.R_PAREN, advance=False), "expected ')'")
            return self.expression(node)

        def _parse_function_call(self, *args: Any, **kwargs: Any) -> Any:
            token = self._curr
            node = super()._parse_function_call(*args, **kwargs)
            if isinstance(node, exp.Expr) and "line" not in node.meta and token is not None:
                node.update_positions(token)
            return node

        def _parse_window_tvf(self, name: str) -> exp.Expr:
            self._expect(self._match(TokenType.TABLE), f"{name} expects TABLE <name> first")
            table, keys = self._parse_table_parts(), None
            if self._match(TokenType.PARTITION_BY):
                column, many = self._parse_column, self._match(TokenType.L_PAREN, advance=False)
                keys = self._parse_wrapped_csv(column) if many else [column()]
                self._expect(all(keys), "expected a column after PARTITION BY")
            self._expect(self._match(TokenType.COMMA), f"expected ',' after TABLE {table.sql()}")
            self._expect(self._match_text_seq("DESCRIPTOR", "("), "expected DESCRIPTOR(<time column>)")
            timecol = self._parse_column()
            self._match_r_paren()
            params = []
            while self._match(TokenType.COMMA):
                params.append(self._parse_bitwise())
            self._expect(self._match(TokenType.R_PAREN, advance=False), f"expected ',' or ')' in {name}(...)")
            wanted = WindowTVF.PARAMS[name]
            counts = {len(wanted), len(wanted) + (name != "SESSION")}
            optional = "" if name == "SESSION" else " [, offset]"
            self._expect(len(params) in counts, f"{name} takes {', '.join(wanted)}{optional} after DESCRIPTOR(...)")
            node = WindowTVF(kind=name, this=table, partition_by=keys, timecol=timecol, expressions=params)
            return self._closed(node)

        def _parse_step(self) -> exp.Expr:
            this = self._parse_bitwise()
            self._expect(self._match_text_seq("BY"), "expected BY in STEP(<time> BY <interval>)")
            return self._closed(Step(this=this, expression=self._parse_bitwise()))

        _QUALIFIER_FIELDS = ("YEAR", "MONTH", "DAY", "HOUR", "MINUTE", "SECOND")

        def _parse_paren(self) -> Any:
            node = super()._parse_paren()
            word = self._curr.text.upper() if self._curr else ""
            if isinstance(node, exp.Paren) and isinstance(node.this, exp.Sub) and word in self._QUALIFIER_FIELDS:
                token = self._curr  # (t1 - t2) DAY [(p)] [TO SECOND [(p)]]: an interval, not an alias
                self._advance()
                unit, to = word, None
                self._parse_qualifier_precision()
                if self._match_text_seq("TO"):
                    to = self._curr.text.upper() if self._curr else ""
                    self._expect(to in self._QUALIFIER_FIELDS, "expected HOUR, MINUTE or SECOND after TO")
                    self._advance()
                    self._parse_qualifier_precision()
                return self.expression(IntervalQualifier(this=node, unit=unit, to=to), token=token)
            return node

        def _parse_qualifier_precision(self) -> None:
            if self._match(TokenType.L_PAREN):
                self._parse_csv(self._parse_number)
                self._match_r_paren()

        def _parse_watermark(self) -> exp.Expr:
            token = self._prev
            self._expect(self._match(TokenType.FOR), "expected FOR after WATERMARK")
            this = self._parse_column()
            self._expect(self._match(TokenType.ALIAS), "expected AS <expression> in WATERMARK FOR")
            node = exp.WatermarkColumnConstraint(this=this, expression=self._parse_bitwise())
            return self.expression(node, token=token)

        def _parse_create(self) -> exp.Expr:
            create, index = self._prev, self._index
            replace = self._match_text_seq("OR", "REPLACE")
            if self._match_text_seq("STREAM"):
                this = self._parse_table_parts(schema=True)
                schema = self._parse_schema(this=this)
                props = self._parse_properties()
                description = self._parse_description()
                node = exp.Create(kind="STREAM", this=schema, replace=replace, properties=props)
                if description is not None:
                    node.meta["description"] = description
                return self.expression(node, token=create)
            if self._match_text_seq("PUMP"):
                name = self._parse_table_parts(schema=True)
                stopped = self._match_text_seq("STOPPED")
                self._parse_description()
                self._expect(self._match(TokenType.ALIAS), "expected AS INSERT INTO ... SELECT after the pump name")
                start, body = self._curr, self._parse_statement()
                self._expect(isinstance(body, exp.Insert), "a pump body must be INSERT INTO ... SELECT", start)
                pump = CreatePump(this=name, expression=body, replace=replace, stopped=stopped)
                return self.expression(pump, token=create)
            self._retreat(index)
            return super()._parse_create().update_positions(create)

        def _parse_hint(self) -> Any:
            # KDA's SELECT STREAM [DISTINCT]: STREAM comes before DISTINCT, where hints go
            nxt = self._next.token_type if self._next else None
            not_a_column = nxt not in (TokenType.COMMA, TokenType.FROM, TokenType.DOT)
            if self._curr and self._curr.text.upper() == "STREAM" and not_a_column:
                self._stream_at = {*getattr(self, "_stream_at", set()), self._index}
                self._advance()
            return super()._parse_hint()

        def _parse_select_query(self, *args: Any, **kwargs: Any) -> Any:
            start = self._index
            node = super()._parse_select_query(*args, **kwargs)
            if isinstance(node, exp.Select) and start + 1 in getattr(self, "_stream_at", ()):
                node.set("operation_modifiers", [exp.var("STREAM"), *(node.args.get("operation_modifiers") or [])])
            return node

        def _parse_insert(self, *args: Any, **kwargs: Any) -> Any:
            if self._curr and self._curr.text.upper() == "EXPEDITED":  # KDA's INSERT EXPEDITED INTO: a hint
                self._advance()
            return super()._parse_insert(*args, **kwargs)

        def _parse_description(self) -> str | None:
            """KDA's optional ``DESCRIPTION '<text>'`` after a stream's columns or a pump's name."""
            if not (self._curr and self._curr.text.upper() == "DESCRIPTION"):
                return None
            self._advance()
            text = self._parse_string()
            self._expect(text is not None, "expected a quoted text after DESCRIPTION")
            return text.name if text is not None else None

        def _parse_group(self, skip_group_by_token: bool = False) -> Any:
            if not (self._curr and self._curr.text.split()[0].upper() == "WINDOWED"):
                return super()._parse_group(skip_group_by_token)
            start = self._curr
            self._advance()
            self._expect(self._match_text_seq("STAGGER"), "expected STAGGER after WINDOWED BY")
            self._expect(self._match(TokenType.L_PAREN), "expected '(' after STAGGER")
            self._expect(self._match(TokenType.PARTITION_BY), "expected PARTITION BY in STAGGER")
            keys = self._parse_csv(self._parse_assignment)
            self._expect(self._match_text_seq("RANGE"), "expected RANGE <interval> in STAGGER")
            node = Stagger(expressions=keys, range=self._parse_bitwise())
            self._match_r_paren()
            return self.expression(node, token=start)

        def _at_emit(self) -> bool:
            words = [t.text.upper() if t else "" for t in (self._curr, self._next)]
            return words[0] == "EMIT" and words[1] in ("CHANGES", "FINAL")

        def _parse_query_modifiers(self, this: Any) -> Any:
            this = super()._parse_query_modifiers(this)
            if isinstance(this, exp.Query) and self._at_emit():  # e.g. inside CREATE VIEW ... AS
                self._advance(2)
                this.meta["emit"] = self._prev.text.upper()
            return this

        def _parse_table_alias(self, alias_tokens: Any = None) -> Any:
            return None if self._at_emit() else super()._parse_table_alias(alias_tokens)

        def _parse_statement(self) -> Any:
            stmt = super()._parse_statement()
            if isinstance(stmt, (exp.Query, exp.Insert)) and self._at_emit():
                token = self._curr
                self._advance(2)
                kind = self._prev.text.upper()
                if isinstance(stmt, exp.Insert):
                    emit = self.expression(Emit(this=stmt.expression, kind=kind), token=token)
                    stmt.set("expression", emit)
                else:
                    stmt = self.expression(Emit(this=stmt, kind=kind), token=token)
            return stmt

        def _parse_table_parts(self, *args: Any, **kwargs: Any) -> Any:
            table = super()._parse_table_parts(*args, **kwargs)
            over = self._match(TokenType.OVER, advance=False)
            if isinstance(table, exp.Table) and over and not kwargs.get("schema"):
                table.set("window", self._parse_table_window())
            return table

        def _parse_table_window(self) -> exp.Expr:
            """``OVER (<window spec>)`` or ``OVER <name>`` after a table name (KDA's windowed joins)."""
            token = self._curr
            window = self._parse_window(exp.var("__table"))  # a Window needs a ``this``
            self._expect(isinstance(window, exp.Window), "expected (<window>) or a window name after OVER", token)
            assert isinstance(window, exp.Window)
            named = window.args.get("spec") or window.args.get("alias")
            self._expect(named, "expected RANGE or ROWS in OVER (...)", token)
            node = TableWindow(
                this=None if window.args.get("spec") else window.args.get("alias"),
                spec=window.args.get("spec"),
                partition_by=window.args.get("partition_by"),
                order=window.args.get("order"),
            )
            return self.expression(node, token=token)

    class Generator(DuckDB.Generator):  # type: ignore[valid-type,misc]  # as above
        TRANSFORMS = {
            **DuckDB.Generator.TRANSFORMS,
            WindowTVF: lambda self, e: _window_tvf_sql(self, e),
            Step: lambda self, e: f"STEP({self.sql(e, 'this')} BY {self.sql(e, 'expression')})",
            IntervalQualifier: lambda self, e: (
                f"{self.sql(e, 'this')} {e.args['unit']}" + (f" TO {e.args['to']}" if e.args.get("to") else "")
            ),
            Stagger: lambda self, e: (
                self.seg("WINDOWED BY STAGGER")
                + f" (PARTITION BY {self.expressions(e, flat=True)} RANGE {self.sql(e, 'range')})"
            ),
            CreatePump: lambda self, e: (
                f"CREATE{' OR REPLACE' if e.args.get('replace') else ''}"
                f" PUMP {self.sql(e, 'this')}{' STOPPED' if e.args.get('stopped') else ''}"
                f" AS {self.sql(e, 'expression')}"
            ),
            Emit: lambda self, e: f"{self.sql(e, 'this')} EMIT {e.args['kind']}",
            TableWindow: lambda self, e: _table_window_sql(self, e),
        }

        def table_sql(self, expression: exp.Table, sep: str = " AS ") -> str:
            window = expression.args.get("window")
            if window is None:
                return str(super().table_sql(expression, sep))
            bare = expression.copy()
            bare.set("window", None)
            bare.set("alias", None)
            alias = self.sql(expression, "alias")
            return f"{super().table_sql(bare, sep)} {self.sql(window)}" + (f"{sep}{alias}" if alias else "")

        def windowspec_sql(self, expression: exp.WindowSpec) -> str:
            if expression.args.get("end") or expression.args.get("exclude"):
                return super().windowspec_sql(expression)
            parts = (self.sql(expression, k) for k in ("kind", "start", "start_side"))
            return " ".join(p for p in parts if p)

        def property_sql(self, expression: exp.Property) -> str:
            if type(expression) is exp.Property and isinstance(expression.this, exp.Literal):
                return f"{self.sql(expression, 'this')} = {self.sql(expression, 'value')}"
            return super().property_sql(expression)


def _text_type(dtype: exp.DataType) -> exp.DataType:
    """VARCHAR(n) stays DuckDB's VARCHAR, its length kept in ``meta["size"]`` (KDA's CAST checks it)."""
    size = dtype.expressions[0] if dtype.expressions else None
    size = size.this if isinstance(size, exp.DataTypeParam) else size
    if isinstance(size, exp.Literal) and size.is_int:
        dtype.meta["size"] = int(size.this)
    dtype.set("expressions", None)
    return dtype


def _window_tvf_sql(self: generator.Generator, e: WindowTVF) -> str:
    table, keys = f"TABLE {self.sql(e, 'this')}", e.args.get("partition_by") or []
    if keys:
        by = self.expressions(e, key="partition_by", flat=True)
        table += f" PARTITION BY {by if len(keys) == 1 else f'({by})'}"
    descriptor = self.func("DESCRIPTOR", e.args["timecol"])
    return self.func(e.args["kind"], table, descriptor, *e.expressions)


def _table_window_sql(self: generator.Generator, e: TableWindow) -> str:
    if e.this is not None:
        return f"OVER {self.sql(e, 'this')}"
    parts = []
    if e.args.get("partition_by"):
        parts.append(f"PARTITION BY {self.expressions(e, key='partition_by', flat=True)}")
    if e.args.get("order"):
        parts.append(self.sql(e, "order").strip())
    parts.append(self.sql(e, "spec"))
    return f"OVER ({' '.join(p for p in parts if p)})"
