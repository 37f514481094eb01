"""A line chart for the terminal, drawn with braille characters: the REPL's ``.chart``.

``LineChart`` holds points (series key, x in microseconds since the epoch, y) and renders itself
as a rich renderable: a title, a y axis labelled with its top, middle and bottom values, one
braille line per series (each character cell holds 2 x 4 dots, so a 60-column plot has 120 x
positions), an x axis labelled with its first and last times (UTC), and a legend. At most
``max_series`` series are kept: the first keys seen; later keys are counted in ``dropped``, and
the caller says so (the REPL's status line). When there are more x values than dot columns, the
latest ones are shown.

Traps: a point's x is a time, not an index, so irregular windows (sessions) keep their spacing;
a series with one point is drawn as a dot; all-equal y values get a range of +-1 around them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text

MAX_SERIES = 5
COLORS = ("cyan", "magenta", "yellow", "green", "red", "blue", "white")
_BRAILLE = 0x2800
# the bit of the dot at (x, y) within a cell, y from the top
_DOT = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))


def _time_text(us: int, with_date: bool = False) -> str:
    when = datetime.fromtimestamp(us / 1e6, tz=timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S")


def number_text(value: float) -> str:
    """A short label for an axis value (``1234.5``, ``0.001``, ``2.5e+07``)."""
    if value == int(value) and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.6g}"


class LineChart:
    """Series of (x, y) points drawn as braille lines (see the module docstring)."""

    def __init__(self, title: str, x_name: str, height: int = 12, max_series: int = MAX_SERIES) -> None:
        self.title, self.x_name, self.height, self.max_series = title, x_name, max(3, height), max_series
        self.series: dict[str, dict[int, float]] = {}  # key -> x -> y, keys in the order first seen
        self.dropped: set[str] = set()

    def put(self, key: str, x_us: int, y: float) -> None:
        """Set the point of ``key`` at ``x_us`` (a later value for the same x replaces it)."""
        points = self.series.get(key)
        if points is None:
            if len(self.series) >= self.max_series:
                self.dropped.add(key)
                return
            points = self.series[key] = {}
        points[x_us] = y

    def remove(self, key: str, x_us: int) -> None:
        """Forget the point of ``key`` at ``x_us`` (a retracted result)."""
        self.series.get(key, {}).pop(x_us, None)

    @property
    def points(self) -> int:
        """How many points the chart holds."""
        return sum(len(p) for p in self.series.values())

    def lines(self, width: int) -> list[Text]:
        """The chart as lines of at most ``width`` characters."""
        title = Text(self.title, style="bold")
        xs = sorted({x for points in self.series.values() for x in points})
        if not xs:
            return [title, Text("(waiting for rows)", style="dim")]
        ys_all = [y for points in self.series.values() for y in points.values()]
        labels_w = max(len(number_text(v)) for v in (min(ys_all), max(ys_all), (min(ys_all) + max(ys_all)) / 2))
        plot_w = max(8, width - labels_w - 2)
        xs = xs[-plot_w * 2 :]  # the latest x values that fit, one per dot column at most
        x0, x1 = xs[0], xs[-1]
        shown = {k: sorted((x, y) for x, y in p.items() if x >= x0) for k, p in self.series.items()}
        ys = [y for pts in shown.values() for _, y in pts] or [0.0]
        y0, y1 = min(ys), max(ys)
        if y0 == y1:
            y0, y1 = y0 - 1, y1 + 1
        dots_w, dots_h = plot_w * 2, self.height * 4
        bits: dict[tuple[int, int], int] = {}
        owner: dict[tuple[int, int], int] = {}

        def dot(px: int, py: int, index: int) -> None:
            cell = (py // 4, px // 2)
            bits[cell] = bits.get(cell, 0) | _DOT[px % 2][py % 4]
            owner[cell] = index

        for index, points in enumerate(shown.values()):
            pixels = [
                (
                    round((x - x0) / (x1 - x0) * (dots_w - 1)) if x1 > x0 else 0,
                    round((y1 - y) / (y1 - y0) * (dots_h - 1)),
                )
                for x, y in points
            ]
            if len(pixels) == 1:
                dot(*pixels[0], index)
            for (ax, ay), (bx, by) in zip(pixels, pixels[1:]):
                for px, py in _segment(ax, ay, bx, by):
                    dot(px, py, index)
        out = [title]
        mid_row = self.height // 2
        row_labels = {0: number_text(y1), mid_row: number_text((y0 + y1) / 2), self.height - 1: number_text(y0)}
        for row in range(self.height):
            line = Text(row_labels.get(row, "").rjust(labels_w) + (" ┤" if row in row_labels else " │"))
            for col in range(plot_w):
                cell = (row, col)
                if cell in bits:
                    line.append(chr(_BRAILLE + bits[cell]), style=COLORS[owner[cell] % len(COLORS)])
                else:
                    line.append(" ")
            out.append(line)
        out.append(Text(" " * labels_w + " └" + "─" * plot_w))
        same_day = _time_text(x0, True)[:10] == _time_text(x1, True)[:10]
        left, right = _time_text(x0), _time_text(x1)
        gap = max(1, plot_w - len(left) - len(right))
        caption = f"{self.x_name} (UTC{', ' + _time_text(x0, True)[:10] if same_day else ''})"
        out.append(Text(" " * (labels_w + 2) + left + " " * gap + right))
        out.append(Text(" " * (labels_w + 2) + caption, style="dim"))
        legend = Text(" " * (labels_w + 2))
        for index, key in enumerate(self.series):
            if index:
                legend.append("   ")
            legend.append("━━ ", style=COLORS[index % len(COLORS)])
            legend.append(key)
        if self.dropped:
            legend.append(f"   (+{len(self.dropped)} more not drawn)", style="dim")
        out.append(legend)
        return out

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """Render to the console's width."""
        yield from self.lines(options.max_width)


def _segment(ax: int, ay: int, bx: int, by: int) -> Iterable[tuple[int, int]]:
    """The dots of a straight line from (ax, ay) to (bx, by), both ends included (Bresenham)."""
    dx, dy = abs(bx - ax), -abs(by - ay)
    sx, sy = (1 if ax < bx else -1), (1 if ay < by else -1)
    err = dx + dy
    while True:
        yield ax, ay
        if ax == bx and ay == by:
            return
        e2 = 2 * err
        if e2 >= dy:
            err += dy
            ax += sx
        if e2 <= dx:
            err += dx
            ay += sy


__all__ = ["MAX_SERIES", "LineChart", "number_text"]
