"""Charts drawn on the server as inline SVG: this module works out the geometry (in the SVG's own units, scaled to
the page's width by a viewBox), `templates/dashboard/_chart.html` draws it, autoescaped. No JavaScript, nothing
from elsewhere; each chart has a title and description and each mark a tooltip, and the page shows the numbers
as a table too."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 640
PLOT_TOP = 10
PLOT_LEFT = 44
AXIS_ROOM = 22  # below the plot: the day labels
ROW = 26  # a horizontal bar's row


@dataclass(frozen=True)
class Mark:
    """A rectangle, its tooltip and its CSS class (the series)."""

    x: float
    y: float
    width: float
    height: float
    tooltip: str
    series: str


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str
    anchor: str = "middle"  # SVG text-anchor


@dataclass(frozen=True)
class Chart:
    key: str  # the id prefix of its title and description
    title: str
    description: str
    height: float
    marks: tuple[Mark, ...]
    labels: tuple[Label, ...]
    gridlines: tuple[Label, ...]  # y of each line, and its value as text at the left
    legend: tuple[tuple[str, str], ...]  # (series, what it is)
    width: float = WIDTH


def nice_ceiling(value: float) -> int:
    """The axis maximum: at least 1, rounded up to 1, 2 or 5 times a power of ten."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def stacked_columns(*, key: str, title: str, description: str, columns: Sequence[tuple[str, Sequence[float]]],
                    series: Sequence[tuple[str, str]], height: float = 200) -> Chart:
    """Vertical bars, one per column (a day), each a stack of the series' values from the bottom up."""
    top = nice_ceiling(max((sum(values) for _, values in columns), default=0))
    plot_height = height - PLOT_TOP - AXIS_ROOM
    slot = (WIDTH - PLOT_LEFT) / max(len(columns), 1)
    gap = min(slot * 0.2, 6)
    marks, labels = [], []
    every = max(1, math.ceil(len(columns) / 10))  # at most about ten day labels
    for i, (name, values) in enumerate(columns):
        x = PLOT_LEFT + i * slot + gap / 2
        base = PLOT_TOP + plot_height
        for (serie, what), value in zip(series, values, strict=True):
            if value:
                h = plot_height * value / top
                base -= h
                marks.append(Mark(round(x, 2), round(base, 2), round(slot - gap, 2), round(h, 2),
                                  f"{name}: {value} {what}", serie))
        if i % every == 0:
            labels.append(Label(round(x + (slot - gap) / 2, 2), height - 6, name))
    gridlines = tuple(Label(PLOT_LEFT - 6, round(PLOT_TOP + plot_height * (1 - f), 2), _number(top * f), "end")
                      for f in (0, 0.5, 1) if float(top * f).is_integer())
    return Chart(key, title, description, height, tuple(marks), tuple(labels), gridlines,
                 tuple((s, what) for s, what in series) if len(series) > 1 else ())


def horizontal_bars(*, key: str, title: str, description: str, rows: Sequence[tuple[str, int]],
                    series: str = "primary") -> Chart:
    """One bar per row, longest first as given, its label on the left and its value at its end."""
    label_room, value_room = 170, 48
    top = max((value for _, value in rows), default=0) or 1
    span = WIDTH - label_room - value_room
    marks, labels = [], []
    for i, (name, value) in enumerate(rows):
        y = PLOT_TOP + i * ROW
        w = span * value / top
        marks.append(Mark(label_room, y, round(w, 2), ROW - 8, f"{name}: {value}", series))
        labels.append(Label(label_room - 8, y + ROW / 2, _clip(name), "end"))
        labels.append(Label(round(label_room + w + 6, 2), y + ROW / 2, str(value), "start"))
    return Chart(key, title, description, PLOT_TOP * 2 + max(len(rows), 1) * ROW, tuple(marks), tuple(labels), (), ())


def proportion_rows(*, key: str, title: str, description: str,
                    rows: Sequence[tuple[str, Sequence[tuple[str, str, int]]]]) -> Chart:
    """100 % bars, one per row, split into (series, name, count) segments; each row's total is its own 100 %."""
    label_room = 110
    span = WIDTH - label_room - 8
    marks, labels, legend = [], [], {}
    for i, (name, segments) in enumerate(rows):
        y = PLOT_TOP + i * (ROW + 8)
        total = sum(count for _, _, count in segments)
        labels.append(Label(label_room - 8, y + ROW / 2, f"{name} (n={total})", "end"))
        x = float(label_room)
        for serie, part, count in segments:
            legend.setdefault(serie, part)
            if total and count:
                w = span * count / total
                marks.append(Mark(round(x, 2), y, round(w, 2), ROW, f"{name} {part}: {count} of {total}"
                                  f" ({100 * count / total:.1f} %)", serie))
                x += w
    return Chart(key, title, description, PLOT_TOP * 2 + max(len(rows), 1) * (ROW + 8), tuple(marks),
                 tuple(labels), (), tuple(legend.items()))


def _number(value: float) -> str:
    return f"{value:g}"


def _clip(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
