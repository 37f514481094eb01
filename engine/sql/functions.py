"""KDA's SQL function library, lowered to DuckDB SQL at plan time.

``lower_functions(tree)`` rewrites the calls of the Kinesis Data Analytics SQL Reference that
DuckDB does not have, or has with another meaning, into DuckDB SQL and the ``kda_*`` macros of
``engine.runtime.functions``:

- numeric: ``FLOOR/CEIL(ts TO unit)``, ``STEP(ts BY INTERVAL ...)`` (epoch-aligned) and
  ``STEP(n BY m)``; ``MOD``, ``LOG10``, ``POWER`` and the rest mean what DuckDB says;
- string: ``INITCAP`` (space-delimited words), ``OVERLAY``, ``SUBSTRING`` with SQL's start rules and
  ``SUBSTRING(s FROM 'regex')``, ``TRIM`` (one character), ``REGEX_REPLACE``, ``SIMILAR TO [ESCAPE]``,
  ``U&'\\0009'`` literals;
- date-time: ``CURRENT_*``/``LOCAL*`` as UTC timestamps, ``CURRENT_ROW_TIMESTAMP``,
  ``EXTRACT(SECOND ...)`` with milliseconds, ``TSDIFF``, ``UNIX_TIMESTAMP``, ``TO_TIMESTAMP`` (ms),
  ``CHAR_TO_TIMESTAMP/DATE/TIME`` and ``TIMESTAMP/DATE/TIME_TO_CHAR`` (Java patterns translated
  here), ``(t1 - t2) DAY TO SECOND``;
- ``ANY``/``EVERY`` aggregates, ``MONOTONIC``, ``CAST(x AS VARCHAR(n))`` (too long: an error row);
- log parsing into a STRUCT of ``COLUMN1..n``: ``REGEX_LOG_PARSE``, ``FAST_REGEX_LOG_PARSE``,
  ``W3C_LOG_PARSE``, ``VARIABLE_COLUMN_LOG_PARSE``, ``FIXED_COLUMN_LOG_PARSE``, ``SYS_LOG_PARSE``;
  ``t.r.COLUMN1`` reads a field.

Literal patterns (regular expressions, date formats, SIMILAR TO patterns) are translated and
checked here, so a bad one is a one-line ``PlanError`` at its position. The rewrite is idempotent:
its output holds only DuckDB functions and ``kda_*`` calls, which it leaves alone. A
``STEP``/``FLOOR``/``CEIL`` of ``ROWTIME`` that is (or repeats) a ``GROUP BY`` key is left as it is
for the KDA front end, which turns it into a window.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

import duckdb
from sqlglot import exp

from engine.errors import PlanError
from engine.sql.dialect import Duckstream, IntervalQualifier, Step, position

_TS_UNITS = ("YEAR", "MONTH", "DAY", "HOUR", "MINUTE", "SECOND")
# RANDOM_CUT_FOREST[_WITH_EXPLANATION], TOP_K_ITEMS_TUMBLING, COUNT_DISTINCT_ITEMS_TUMBLING: see
# engine.plan.table_functions
UNSUPPORTED_TABLE_FUNCTIONS = ("HOTSPOTS", "GROUP_RANK")


def lower_functions(tree: exp.Expr, kda: bool = True) -> exp.Expr:
    """Rewrite KDA function calls in ``tree`` (a statement) into DuckDB SQL; returns a new tree.

    Functions DuckDB does not have are KDA's in every program; where KDA and DuckDB give the same
    name different meanings (``SUBSTRING`` with a start below 1, ``SIMILAR TO``, one-argument
    ``TO_TIMESTAMP``, ``EXTRACT(SECOND ...)``, ``CAST`` to a too-short ``VARCHAR(n)``), KDA's
    meaning holds only in a KDA program (``kda``), DuckDB's elsewhere.

    Raises ``PlanError`` (with line:column) for a bad literal pattern or an unsupported function.
    """
    tree = tree.copy()
    keep = _window_keys(tree)
    return _rewrite(tree, keep, kda)


def _rewrite(node: exp.Expr, keep: set[int], kda: bool) -> exp.Expr:
    for key, value in list(node.args.items()):
        if isinstance(value, exp.Expr):
            node.set(key, _rewrite(value, keep, kda))
        elif isinstance(value, list):
            node.set(key, [_rewrite(v, keep, kda) if isinstance(v, exp.Expr) else v for v in value])
    if id(node) in keep or (not kda and type(node) in _KDA_ONLY):
        return node
    rule = _RULES.get(type(node))
    if rule is None:
        return node
    out = rule(node)
    if out is not node and not out.meta and node.meta:
        out.meta.update(node.meta)  # keep the call's position for later messages
    return out


# ---------------------------------------------------------------------------- helpers


def _err(node: exp.Expr, message: str, hint: str | None = None) -> PlanError:
    line, col = position(node)
    return PlanError(message, line, col, hint=hint)


def _call(name: str, *args: exp.Expr) -> exp.Expr:
    return exp.Anonymous(this=name, expressions=list(args))


def _lit(value: str | int) -> exp.Expr:
    return exp.Literal.string(value) if isinstance(value, str) else exp.Literal.number(value)


def _text(node: exp.Expr | None) -> str | None:
    """The value of a string literal, or None."""
    if isinstance(node, exp.Literal) and node.is_string:
        return str(node.this)
    return None


def _literal_arg(call: exp.Expr, arg: exp.Expr | None, fname: str, what: str) -> str:
    text = _text(arg)
    if text is None:
        raise _err(arg if arg is not None else call, f"{fname}: the {what} must be a quoted literal")
    return text


def _args(node: exp.Expr, fname: str, low: int, high: int) -> list[exp.Expr]:
    args = list(node.expressions)
    if not low <= len(args) <= high:
        want = str(low) if low == high else f"{low} to {high}"
        raise _err(node, f"{fname} takes {want} arguments, not {len(args)}")
    return args


def _is_rowtime(node: exp.Expr) -> bool:
    return isinstance(node, exp.Column) and node.name.upper() == "ROWTIME"


def _time_key(node: exp.Expr) -> bool:
    """STEP(ROWTIME BY ...), FLOOR(ROWTIME TO ...) or CEIL(ROWTIME TO ...)."""
    if isinstance(node, Step):
        return _is_rowtime(node.this)
    if isinstance(node, (exp.Floor, exp.Ceil)) and node.args.get("to") is not None:
        return _is_rowtime(node.this)
    return False


def _window_keys(tree: exp.Expr) -> set[int]:
    """ids of ROWTIME bucket calls that are GROUP BY keys, or repeat one in their SELECT."""
    keep: set[int] = set()
    for select in tree.find_all(exp.Select):
        group = select.args.get("group")
        if group is None:
            continue
        keys = [n for n in group.walk() if _time_key(n)]
        keep.update(id(k) for k in keys)
        for item in select.expressions:
            for node in item.walk():
                if _time_key(node) and any(node == k for k in keys):
                    keep.add(id(node))
    return keep


# ---------------------------------------------------------------------------- numeric


def _floor_ceil(node: exp.Expr) -> exp.Expr:
    to = node.args.get("to")
    if to is None:
        return node
    unit = to.name.upper()
    fname = "FLOOR" if isinstance(node, exp.Floor) else "CEIL"
    if unit not in _TS_UNITS:
        raise _err(to, f"{fname}(... TO {unit}): the unit must be one of {', '.join(_TS_UNITS)}")
    if isinstance(node, exp.Floor):
        return _call("date_trunc", _lit(unit.lower()), node.this)
    return _call("kda_ceil_to", node.this, _lit(unit.lower()))


def _step(node: Step) -> exp.Expr:
    size = node.expression
    if isinstance(size, exp.Interval) or (isinstance(size, exp.Paren) and isinstance(size.this, exp.Interval)):
        epoch = exp.cast(exp.Literal.string("1970-01-01"), exp.DataType.Type.TIMESTAMP)
        return _call("time_bucket", size, node.this, epoch)
    return _call("kda_step", node.this, size)


# ---------------------------------------------------------------------------- strings


def _initcap(node: exp.Initcap) -> exp.Expr:
    return _call("kda_initcap", node.this)


def _overlay(node: exp.Overlay) -> exp.Expr:
    args = [node.this, node.expression, node.args["from_"]]
    if node.args.get("for_") is not None:
        args.append(node.args["for_"])
    return _call("kda_overlay", *args)


def _substring(node: exp.Substring) -> exp.Expr:
    start, length = node.args.get("start"), node.args.get("length")
    pattern = _text(start)
    if pattern is not None:
        if length is not None:
            raise _err(node, "SUBSTRING(s FROM 'regex') takes no FOR length")
        return _call("kda_substring_regex", node.this, _lit(java_regex(pattern, start, "SUBSTRING")))
    if start is None:
        return node
    return _call("kda_substr", node.this, start, *([length] if length is not None else []))


def _trim(node: exp.Trim) -> exp.Expr:
    char = node.expression
    text = _text(char)
    if char is not None and text is not None and len(text) != 1:
        raise _err(char, f"TRIM removes one character, not '{text}'", hint="give a single character")
    return node


def _regex_replace(node: exp.Anonymous) -> exp.Expr:
    s, pattern, repl, start, occurrence = _args(node, "REGEX_REPLACE", 5, 5)
    text = _text(pattern)
    if text is not None:
        pattern = _lit(java_regex(text, pattern, "REGEX_REPLACE"))
    rtext = _text(repl)
    if rtext is not None:
        repl = _lit(_java_replacement(rtext, repl))
    return _call("kda_regex_replace", s, pattern, repl, start, occurrence)


def _java_replacement(text: str, node: exp.Expr) -> str:
    """Java's replacement syntax ($1, \\$) -> RE2's (\\1, $)."""
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            out.append("\\\\" if nxt == "\\" else nxt)
            i += 2
        elif ch == "$":
            m = re.match(r"\$(\d)", text[i:])
            if m is None:
                raise _err(
                    node,
                    "REGEX_REPLACE: '$' in the replacement must be followed by a group number",
                    hint="write \\$ for a dollar sign",
                )
            out.append("\\" + m.group(1))
            i += 2
        elif ch == "\\":
            out.append("\\\\")
            i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _similar(node: exp.Expr, escape: exp.Expr | None = None) -> exp.Expr:
    assert isinstance(node, exp.SimilarTo)
    if escape is None and isinstance(node.parent, exp.Escape) and node.arg_key == "this":
        return node  # the ESCAPE around it translates it
    pattern = node.expression
    esc = None
    if escape is not None:
        esc = _text(escape)
        if esc is None or len(esc) != 1:
            raise _err(escape, "SIMILAR TO ... ESCAPE takes one quoted character")
    text = _text(pattern)
    if text is None:
        if esc is not None:
            raise _err(pattern, "SIMILAR TO with ESCAPE needs a quoted pattern")
        return _call("regexp_full_match", node.this, _call("kda_similar_regex", pattern))
    return _call("regexp_full_match", node.this, _lit(similar_to_regex(text, esc, pattern)))


def _escape(node: exp.Escape) -> exp.Expr:
    if isinstance(node.this, exp.SimilarTo):
        return _similar(node.this, node.expression)
    return node


def similar_to_regex(pattern: str, escape: str | None, node: exp.Expr | None = None) -> str:
    """A SQL ``SIMILAR TO`` pattern as an RE2 regex for a whole-string match."""
    out, i, in_class = ["(?s)"], 0, False
    while i < len(pattern):
        ch = pattern[i]
        if escape is not None and ch == escape:
            if i + 1 >= len(pattern):
                raise _err(node or exp.Null(), "SIMILAR TO: the pattern ends with its escape character")
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if in_class:
            if ch == "]":
                in_class = False
            out.append("\\\\" if ch == "\\" else ch)
        elif ch == "[":
            in_class = True
            out.append(ch)
        elif ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        elif ch in "|*+?{}(),":
            out.append(ch)
        else:
            out.append(re.escape(ch))
        i += 1
    regex = "".join(out)
    _check_regex(regex, node, "SIMILAR TO")
    return regex


def _unicode_string(node: exp.UnicodeString) -> exp.Expr:
    text = str(node.this)
    escape = _text(node.args.get("escape")) or "\\"

    def char(m: re.Match[str]) -> str:
        if m.group(0) == escape * 2:
            return escape
        return chr(int(m.group(1) or m.group(2), 16))

    e = re.escape(escape)
    try:
        value = re.sub(rf"{e}{e}|{e}\+([0-9A-Fa-f]{{6}})|{e}([0-9A-Fa-f]{{4}})", char, text)
    except ValueError:
        raise _err(node, f"U&'{text}': not a valid Unicode escape") from None
    return exp.Literal.string(value)


# ---------------------------------------------------------------------------- regular expressions


_POSIX = {
    "Lower": "lower",
    "Upper": "upper",
    "ASCII": "ascii",
    "Alpha": "alpha",
    "Digit": "digit",
    "Alnum": "alnum",
    "Punct": "punct",
    "Graph": "graph",
    "Print": "print",
    "Blank": "blank",
    "Cntrl": "cntrl",
    "XDigit": "xdigit",
    "Space": "space",
}


def java_regex(pattern: str, node: exp.Expr | None, fname: str) -> str:
    """A java.util.regex pattern as RE2 (what DuckDB runs); refuses what RE2 cannot do."""
    out, i, in_class = [], 0, 0
    where = node if node is not None else exp.Null()
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            m = re.match(r"\\[pP]\{(?:Is)?(\w+)\}", pattern[i:])
            if m and m.group(1) in _POSIX:
                name = _POSIX[m.group(1)]
                neg = "^" if pattern[i + 1] == "P" else ""
                out.append(f"[:{neg}{name}:]" if in_class else f"[[:{neg}{name}:]]")
                i += len(m.group(0))
                continue
            if nxt.isdigit() and nxt != "0" and not in_class:
                raise _err(where, f"{fname}: back-references (\\{nxt}) are not supported by the regex engine (RE2)")
            if nxt == "Q":
                end = pattern.find("\\E", i + 2)
                quoted = pattern[i + 2 :] if end < 0 else pattern[i + 2 : end]
                out.append(re.escape(quoted))
                i = len(pattern) if end < 0 else end + 2
                continue
            out.append({"Z": "$", "h": "[ \\t]"}.get(nxt, "\\" + nxt))
            i += 2
            continue
        if in_class:
            if ch == "[":
                in_class += 1
            elif ch == "]":
                in_class -= 1
            out.append(ch)
            i += 1
            continue
        if ch == "[":
            in_class = 1
            out.append(ch)
            if pattern[i + 1 : i + 2] == "^":
                out.append("^")
                i += 1
            if pattern[i + 1 : i + 2] == "]":  # a leading ] is a literal
                out.append("\\]")
                i += 1
            i += 1
            continue
        if ch == "(" and pattern.startswith("(?", i):
            for look, what in (
                ("(?=", "lookahead"),
                ("(?!", "lookahead"),
                ("(?<=", "lookbehind"),
                ("(?<!", "lookbehind"),
                ("(?>", "atomic groups"),
            ):
                if pattern.startswith(look, i):
                    raise _err(where, f"{fname}: {what} ({look}...) is not supported by the regex engine (RE2)")
            if pattern.startswith("(?<", i):
                out.append("(?P<")
                i += 3
                continue
        if ch in "*+?}" and pattern[i + 1 : i + 2] == "+":
            raise _err(where, f"{fname}: possessive quantifiers ({ch}+) are not supported by the regex engine (RE2)")
        out.append(ch)
        i += 1
    regex = "".join(out)
    _check_regex(regex, node, fname)
    return regex


@lru_cache(maxsize=1)
def _regex_con() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


@lru_cache(maxsize=256)
def _regex_problem(regex: str) -> str | None:
    try:
        _regex_con().execute("SELECT regexp_matches('', ?)", [regex]).fetchall()
    except duckdb.Error as err:
        message = str(err).split("\n")[0]
        return message.split(": ", 1)[1] if ": " in message else message
    return None


def _check_regex(regex: str, node: exp.Expr | None, fname: str) -> None:
    problem = _regex_problem(regex)
    if problem is not None:
        raise _err(node if node is not None else exp.Null(), f"{fname}: bad pattern: {problem}")


def capture_groups(regex: str) -> int:
    """How many capturing groups an RE2 pattern has."""
    count, i, in_class = 0, 0, False
    while i < len(regex):
        ch = regex[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            if regex[i + 1 : i + 2] == "^":
                i += 1
            if regex[i + 1 : i + 2] == "]":
                i += 1
            elif regex[i + 1 : i + 3] == "[:":  # [[:alpha:]...]
                end = regex.find(":]", i + 3)
                i = end + 1 if end > 0 else i
        elif ch == "(" and (not regex.startswith("(?", i) or regex.startswith("(?P<", i)):
            count += 1
        i += 1
    return count


def _lazy(regex: str) -> str:
    """Every quantifier made lazy (FAST_REGEX_LOG_PARSE parses as little as it can at each step)."""
    out, i, in_class = [], 0, False
    while i < len(regex):
        ch = regex[i]
        if ch == "\\":
            out.append(regex[i : i + 2])
            i += 2
            continue
        out.append(ch)
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch in "*+?}" and not (ch == "?" and i > 0 and regex[i - 1] == "(") and regex[i + 1 : i + 2] != "?":
            out.append("?")
        i += 1
    return "".join(out)


# ---------------------------------------------------------------------------- date-time


def _now(node: exp.Expr) -> exp.Expr:
    return _call("kda_now")


def _today(node: exp.Expr) -> exp.Expr:
    return exp.cast(_call("kda_now"), exp.DataType.Type.DATE)


def _time_now(node: exp.Expr) -> exp.Expr:
    return exp.cast(_call("kda_now"), exp.DataType.Type.TIME)


def _column(node: exp.Column) -> exp.Expr:
    ident = node.this
    if (
        isinstance(ident, exp.Identifier)
        and not ident.quoted
        and not node.table
        and ident.name.upper() == "CURRENT_ROW_TIMESTAMP"
    ):
        return _call("kda_current_row_timestamp")
    if node.args.get("db") is not None and node.args.get("catalog") is None and not isinstance(ident, exp.Star):
        # t.r.COLUMN1: field COLUMN1 of the row-valued column r of t
        base = exp.Column(this=node.args["table"], table=node.args["db"])
        base.meta.update(node.meta)
        return exp.Dot(this=base, expression=node.this)
    return node


def _extract(node: exp.Extract) -> exp.Expr:
    if node.name.upper() == "SECOND":
        return _call("kda_extract_second", node.expression)
    return node


def _unix_to_time(node: exp.UnixToTime) -> exp.Expr:
    if any(node.args.get(k) is not None for k in ("scale", "zone", "hours", "minutes", "format", "target_type")):
        return node
    return _call("kda_to_timestamp", node.this)  # KDA's TO_TIMESTAMP takes epoch milliseconds


def _interval_qualifier(node: IntervalQualifier) -> exp.Expr:
    sub = node.this.this if isinstance(node.this, exp.Paren) else node.this
    assert isinstance(sub, exp.Sub)
    end, start = sub.this, sub.expression
    last = node.args.get("to") or node.args["unit"]
    if last in ("YEAR", "MONTH"):
        amount = _call("date_diff", _lit(last.lower()), start, end)
        return _call(f"to_{last.lower()}s", amount)
    ms = _call("date_diff", _lit("millisecond"), start, end)
    if last == "SECOND":
        return _call("to_milliseconds", ms)
    per = {"MINUTE": 60_000, "HOUR": 3_600_000, "DAY": 86_400_000}[last]
    whole = exp.cast(_call("trunc", exp.Div(this=ms, expression=_lit(per))), exp.DataType.Type.BIGINT)
    return _call(f"to_{last.lower()}s", whole)


_JAVA_FIELDS: dict[str, Callable[[int, bool], str]] = {
    "y": lambda n, p: "%y" if n == 2 else "%Y",
    "M": lambda n, p: {1: "%-m", 2: "%m", 3: "%b"}.get(n, "%B"),
    "d": lambda n, p: "%-d" if n == 1 else "%d",
    "H": lambda n, p: "%-H" if n == 1 else "%H",
    "h": lambda n, p: "%-I" if n == 1 else "%I",
    "m": lambda n, p: "%-M" if n == 1 else "%M",
    "s": lambda n, p: "%-S" if n == 1 else "%S",
    "S": lambda n, p: "%g",
    "a": lambda n, p: "%p",
    "E": lambda n, p: "%a" if n <= 3 else "%A",
    "D": lambda n, p: "%j",
    "z": lambda n, p: "%z" if p else "UTC",
    "Z": lambda n, p: "%z" if p else "+0000",
    "X": lambda n, p: "%z" if p else "Z",
}


def java_datetime_format(pattern: str, parse: bool, node: exp.Expr | None, fname: str) -> str:
    """A java.text.SimpleDateFormat pattern as a DuckDB strptime/strftime format.

    Timestamps are UTC: formatting writes ``z`` as ``UTC``, ``Z`` as ``+0000`` and ``X`` as ``Z``.
    """
    out, i = [], 0
    where = node if node is not None else exp.Null()
    while i < len(pattern):
        ch = pattern[i]
        if ch == "'":
            end = pattern.find("'", i + 1)
            if end < 0:
                raise _err(where, f"{fname}: unterminated quote in the format '{pattern}'")
            out.append("'" if end == i + 1 else pattern[i + 1 : end].replace("%", "%%"))
            i = end + 1
            continue
        if ch.isascii() and ch.isalpha():
            n = len(re.match(rf"{ch}+", pattern[i:]).group(0))  # type: ignore[union-attr]
            field = _JAVA_FIELDS.get(ch)
            if field is None:
                raise _err(
                    where,
                    f"{fname}: the pattern letter '{ch}' is not supported in '{pattern}'",
                    hint="use y M d H h m s S a E D z Z X, and quote literal text ('T')",
                )
            out.append(field(n, parse))
            i += n
            continue
        out.append("%%" if ch == "%" else ch)
        i += 1
    return "".join(out)


def _char_to(node: exp.Anonymous, target: str) -> exp.Expr:
    fname = node.name.upper()
    fmt_node, value = _args(node, fname, 2, 2)
    pattern = _literal_arg(node, fmt_node, fname, "format")
    fmt = java_datetime_format(pattern, True, fmt_node, fname)
    zoned = "%z" in fmt
    if zoned:  # Java reads UTC, GMT and Z as zones; strptime wants an offset
        value = _call("regexp_replace", value, _lit("(?:UTC|GMT|Z)$"), _lit("+0000"))
    if target != "TIME" and "%Y" not in fmt and "%y" not in fmt:  # Java's missing year is 1970
        fmt = "%Y " + fmt
        value = exp.DPipe(this=_lit("1970 "), expression=value)
    parsed = _call("try_strptime", value, _lit(fmt))
    if zoned:
        parsed = _call("kda_utc", parsed)
    if target == "TIMESTAMP":
        return parsed if zoned else exp.cast(parsed, exp.DataType.Type.TIMESTAMP)
    return exp.cast(parsed, exp.DataType.Type.DATE if target == "DATE" else exp.DataType.Type.TIME)


def _to_char(node: exp.Anonymous, source: str) -> exp.Expr:
    fname = node.name.upper()
    fmt_node, value = _args(node, fname, 2, 2)
    fmt = java_datetime_format(_literal_arg(node, fmt_node, fname, "format"), False, fmt_node, fname)
    if source == "TIME":
        value = exp.Add(this=exp.cast(_lit("1970-01-01"), exp.DataType.Type.DATE), expression=value)
    text = _call("strftime", value, _lit(fmt))
    if source == "TIMESTAMP":  # KDA: TIMESTAMP_TO_CHAR(fmt, NULL) is the string 'null'
        return exp.Coalesce(this=text, expressions=[_lit("null")])
    return text


# ---------------------------------------------------------------------------- log parsing


def _names(count: int) -> list[str]:
    return [f"COLUMN{i}" for i in range(1, count + 1)]


def _parse_struct(s: exp.Expr, regex: str, names: list[str]) -> exp.Expr:
    array = exp.Array(expressions=[_lit(n) for n in names])
    return _call("kda_regex_log_parse", s, _lit(regex), array)


def _regex_log_parse(node: exp.Anonymous) -> exp.Expr:
    args = _args(node, "REGEX_LOG_PARSE", 2, 2)
    pattern = _literal_arg(node, args[1], "REGEX_LOG_PARSE", "regular expression")
    regex = java_regex(pattern, args[1], "REGEX_LOG_PARSE")
    groups = capture_groups(regex)
    if groups == 0:
        raise _err(args[1], "REGEX_LOG_PARSE: the pattern has no capture group, so there are no columns")
    return _parse_struct(args[0], regex, _names(groups))


def _fast_regex_log_parse(node: exp.Anonymous) -> exp.Expr:
    args = _args(node, "FAST_REGEX_LOG_PARSE", 2, 2)
    pattern = _literal_arg(node, args[1], "FAST_REGEX_LOG_PARSE", "pattern")
    regex = java_regex(pattern, args[1], "FAST_REGEX_LOG_PARSE")
    groups = capture_groups(regex)
    if groups == 0:
        raise _err(args[1], "FAST_REGEX_LOG_PARSE: the pattern has no group, so there are no columns")
    whole = f"^(?:{_lazy(regex)})$"  # every character must be accounted for
    _check_regex(whole, args[1], "FAST_REGEX_LOG_PARSE")
    return _parse_struct(args[0], whole, _names(groups))


W3C_FORMATS = {
    "COMMON": '%h %l %u %t "%r" %>s %b',
    "COMMON WITH VHOST": '%v %h %l %u %t "%r" %>s %b',
    "NCSA EXTENDED": '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"',
    "REFERER": "%{Referer}i -> %U",
    "AGENT": "%{User-agent}i",
}
_W3C_SPEC = re.compile(r"%[<>]?(?:!?\d+(?:,\d+)*)?(?:\{[^}]*\}|\[[^\]]*\])?([a-zA-Z%])")
_W3C_NUMERIC = set("bBDTIOkpPs")


def w3c_regex(fmt: str) -> tuple[str, list[bool]]:
    """An Apache log format as a regex with one group per specifier, and which groups are numbers."""
    out, numeric, pos = ["^"], [], 0
    for m in _W3C_SPEC.finditer(fmt):
        out.append(re.escape(fmt[pos : m.start()]))
        pos = m.end()
        letter = m.group(1)
        if letter == "%":
            out.append("%")
            continue
        quoted = m.start() > 0 and fmt[m.start() - 1] == '"'
        if letter == "t":
            out.append(r"(\[[^\]]*\])")
        elif quoted:
            out.append(r'((?:[^"\\]|\\.)*)')
        else:
            out.append(r"(\S*)")
        numeric.append(letter in _W3C_NUMERIC)
    out.append(re.escape(fmt[pos:]))
    return "".join(out), numeric


def _w3c_log_parse(node: exp.Anonymous) -> exp.Expr:
    args = _args(node, "W3C_LOG_PARSE", 2, 2)
    name = _literal_arg(node, args[1], "W3C_LOG_PARSE", "format")
    key = " ".join(name.upper().split())
    if key == "IIS":
        raise _err(args[1], "W3C_LOG_PARSE: the IIS format is not supported yet", hint="give its fields as a format")
    fmt = W3C_FORMATS.get(key, name)
    regex, numeric = w3c_regex(fmt)
    if not numeric:
        raise _err(args[1], f"W3C_LOG_PARSE: '{name}' is neither a known format nor has % specifiers")
    _check_regex(regex, args[1], "W3C_LOG_PARSE")
    names = _names(len(numeric))
    parsed = _parse_struct(args[0], regex, names)
    fields = []
    for field, number in zip(names, numeric):
        value: exp.Expr = exp.Dot(this=parsed.copy(), expression=exp.to_identifier(field, quoted=True))
        if number:
            value = exp.TryCast(this=value, to=exp.DataType.build("BIGINT"))
        fields.append(exp.PropertyEQ(this=exp.to_identifier(field, quoted=True), expression=value))
    return exp.Case(
        ifs=[
            exp.If(
                this=exp.Not(this=exp.Is(this=parsed.copy(), expression=exp.Null())), true=_call("struct_pack", *fields)
            )
        ]
    )


_COLUMN_DEF = re.compile(
    r"""^\s*("(?:[^"]|"")+"|[A-Za-z_][\w$]*)\s+TYPE\s+(.+?)(\s+NOT\s+NULL)?
        (?:\s+START\s+(\d+)(?:\s+FOR\s+(\d+))?)?\s*$""",
    re.IGNORECASE | re.VERBOSE | re.DOTALL,
)


def _column_defs(text: str, node: exp.Expr, fname: str, fixed: bool) -> list[tuple[str, exp.DataType, int, int | None]]:
    parts: list[str] = []
    depth, cur = 0, list[str]()
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    out = []
    for part in parts:
        m = _COLUMN_DEF.match(part)
        if m is None or (fixed and m.group(4) is None) or (not fixed and m.group(4) is not None):
            shape = "name TYPE type START n [FOR len]" if fixed else "name TYPE type"
            raise _err(node, f"{fname}: cannot read column '{part.strip()}' (expected {shape})")
        name = m.group(1)
        name = name[1:-1].replace('""', '"') if name.startswith('"') else name
        try:
            dtype = exp.DataType.build(m.group(2), dialect=Duckstream)
        except Exception:
            raise _err(node, f"{fname}: unknown type '{m.group(2)}' for column {name}") from None
        out.append((name, dtype, int(m.group(4) or 0), int(m.group(5)) if m.group(5) else None))
    return out


def _typed(value: exp.Expr, dtype: exp.DataType) -> exp.Expr:
    """A parsed field as its declared type; a VARCHAR(n) field keeps its first n characters."""
    if dtype.is_type(*exp.DataType.TEXT_TYPES):
        size = dtype.meta.get("size")
        return _call("left", value, _lit(int(size))) if size is not None else value
    return exp.cast(_call("trim", value), dtype)


def _variable_column_log_parse(node: exp.Anonymous) -> exp.Expr:
    fname = "VARIABLE_COLUMN_LOG_PARSE"
    args = _args(node, fname, 3, 5)
    s, columns, delim = args[:3]
    text = _text(columns)
    if text is not None:
        defs = [(n, t) for n, t, _, _ in _column_defs(text, columns, fname, fixed=False)]
    elif isinstance(columns, exp.Literal) and int(columns.this) > 0:
        defs = [(n, exp.DataType.build("VARCHAR")) for n in _names(int(columns.this))]
    else:
        raise _err(columns, f"{fname}: the columns must be a number or a quoted list 'name TYPE type, ...'")
    if len(args) == 3:
        parts = _call("string_split", s, delim)
    else:
        quote = args[4] if len(args) == 5 else exp.Null()
        parts = _call("kda_split_quoted", s, delim, args[3], quote)
    fields = [
        exp.PropertyEQ(
            this=exp.to_identifier(name, quoted=True),
            expression=_typed(_call("list_extract", parts.copy(), _lit(i)), dtype),
        )
        for i, (name, dtype) in enumerate(defs, start=1)
    ]
    return exp.Case(
        ifs=[
            exp.If(this=exp.Not(this=exp.Is(this=s.copy(), expression=exp.Null())), true=_call("struct_pack", *fields))
        ]
    )


def _fixed_column_log_parse(node: exp.Anonymous) -> exp.Expr:
    fname = "FIXED_COLUMN_LOG_PARSE"
    s, columns = _args(node, fname, 2, 2)
    text = _literal_arg(node, columns, fname, "column list")
    fields = []
    for name, dtype, start, length in _column_defs(text, columns, fname, fixed=True):
        piece = _call("substring", s.copy(), _lit(start + 1), *([_lit(length)] if length is not None else []))
        fields.append(exp.PropertyEQ(this=exp.to_identifier(name, quoted=True), expression=_typed(piece, dtype)))
    return exp.Case(
        ifs=[
            exp.If(this=exp.Not(this=exp.Is(this=s.copy(), expression=exp.Null())), true=_call("struct_pack", *fields))
        ]
    )


def _sys_log_parse(node: exp.Anonymous) -> exp.Expr:
    (s,) = _args(node, "SYS_LOG_PARSE", 1, 1)
    return _call("kda_sys_log_parse", s)


# ---------------------------------------------------------------------------- aggregates, misc


def _any(node: exp.Any) -> exp.Expr:
    parent = node.parent
    if isinstance(parent, exp.Binary) or isinstance(node.this, (exp.Query, exp.Subquery)):
        return node  # x = ANY (subquery)
    return exp.LogicalOr(this=node.this)


def _cast(node: exp.Cast) -> exp.Expr:
    if type(node) is not exp.Cast:
        return node
    size = node.to.meta.get("size")  # VARCHAR(n): see engine.sql.dialect._text_type
    if size is None:
        return node
    to = exp.DataType.build("VARCHAR")
    return _call("kda_varchar", exp.Cast(this=node.this, to=to), _lit(int(size)))


def _anonymous(node: exp.Anonymous) -> exp.Expr:
    name = str(node.this).upper()
    if name in UNSUPPORTED_TABLE_FUNCTIONS:
        raise _err(node, f"{name} is not supported yet")
    rule = _CALLS.get(name)
    return rule(node) if rule is not None else node


def _monotonic(node: exp.Anonymous) -> exp.Expr:
    (arg,) = _args(node, "MONOTONIC", 1, 1)
    return arg


def _tsdiff(node: exp.Anonymous) -> exp.Expr:
    return _call("kda_tsdiff", *_args(node, "TSDIFF", 2, 2))


def _unix_timestamp(node: exp.Anonymous) -> exp.Expr:
    return _call("epoch_ms", *_args(node, "UNIX_TIMESTAMP", 1, 1))


def _every(node: exp.Anonymous) -> exp.Expr:
    (arg,) = _args(node, "EVERY", 1, 1)
    return exp.LogicalAnd(this=arg)


_CALLS: dict[str, Callable[[exp.Anonymous], exp.Expr]] = {
    "REGEX_REPLACE": _regex_replace,
    "TSDIFF": _tsdiff,
    "UNIX_TIMESTAMP": _unix_timestamp,
    "CHAR_TO_TIMESTAMP": lambda n: _char_to(n, "TIMESTAMP"),
    "CHAR_TO_DATE": lambda n: _char_to(n, "DATE"),
    "CHAR_TO_TIME": lambda n: _char_to(n, "TIME"),
    "TIMESTAMP_TO_CHAR": lambda n: _to_char(n, "TIMESTAMP"),
    "DATE_TO_CHAR": lambda n: _to_char(n, "DATE"),
    "TIME_TO_CHAR": lambda n: _to_char(n, "TIME"),
    "MONOTONIC": _monotonic,
    "EVERY": _every,
    "REGEX_LOG_PARSE": _regex_log_parse,
    "FAST_REGEX_LOG_PARSE": _fast_regex_log_parse,
    "W3C_LOG_PARSE": _w3c_log_parse,
    "VARIABLE_COLUMN_LOG_PARSE": _variable_column_log_parse,
    "FIXED_COLUMN_LOG_PARSE": _fixed_column_log_parse,
    "SYS_LOG_PARSE": _sys_log_parse,
}

# KDA's meaning of a name DuckDB also has (see lower_functions)
_KDA_ONLY = frozenset({exp.Substring, exp.SimilarTo, exp.Escape, exp.UnixToTime, exp.Extract, exp.Cast})
_RULES: dict[type, Callable[..., exp.Expr]] = {  # each rule takes its own node type
    exp.Floor: _floor_ceil,
    exp.Ceil: _floor_ceil,
    Step: _step,
    exp.Initcap: _initcap,
    exp.Overlay: _overlay,
    exp.Substring: _substring,
    exp.Trim: _trim,
    exp.SimilarTo: _similar,
    exp.Escape: _escape,
    exp.UnicodeString: _unicode_string,
    exp.CurrentTimestamp: _now,
    exp.Localtimestamp: _now,
    exp.CurrentDate: _today,
    exp.CurrentTime: _time_now,
    exp.Localtime: _time_now,
    exp.Column: _column,
    exp.Extract: _extract,
    exp.UnixToTime: _unix_to_time,
    IntervalQualifier: _interval_qualifier,
    exp.Any: _any,
    exp.Cast: _cast,
    exp.Anonymous: _anonymous,
}
