"""The project's own exceptions.

Every mistake a user can make (in a program, an option, a URI) raises a subclass of
``DuckstreamError`` carrying where it happened. The CLI catches ``DuckstreamError`` in one
place and prints ``str(err)`` on one line; anything else is a bug and gets a traceback.
"""

from __future__ import annotations


class DuckstreamError(Exception):
    """Base of every error that is the user's to fix (or a runtime failure we can name).

    ``where`` is a location prefix such as ``queries/alarms.sql:7:12`` or ``--source``.
    ``hint`` is an optional short suggestion appended to the message.
    """

    exit_code = 2

    def __init__(self, message: str, where: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class SqlError(DuckstreamError):
    """A syntax error in a program, with 1-based line and column.

    ``path`` names the file; ``where`` is built as ``path:line:col``.
    """

    def __init__(
        self,
        message: str,
        line: int | None = None,
        col: int | None = None,
        path: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.line, self.col, self.path = line, col, path
        super().__init__(message, where=_where(path, line, col), hint=hint)

    def located(self, path: str) -> SqlError:
        """The same error, naming the file it came from."""
        err = type(self)(self.message, self.line, self.col, path, self.hint)
        return err


class PlanError(SqlError):
    """A program that parses but cannot run: unknown stream or column, bad window, ..."""


class ConnectorError(DuckstreamError):
    """A bad URI or option, or a source/sink that failed past its retry budget."""


class RecordError(DuckstreamError):
    """A bad record under ``--strict`` (the run stops at the first one)."""

    exit_code = 1


def _where(path: str | None, line: int | None, col: int | None) -> str | None:
    parts = [p for p in (path, line, col) if p is not None]
    return ":".join(str(p) for p in parts) if parts else None
