"""Server-rendered SVG charts for the dashboard pages: plain data in, one inline ``<svg>`` out.

Standard library only, no Django: a page puts the string into its template as it
is, so everything user-provided (test names, job labels, branches, shas, run
labels, urls) is escaped here, once, and the output is always well-formed XML.

Every chart is ``role="img"`` with a ``<title>`` (its name) and a ``<desc>`` that
states the data in words, so a screen reader, a text browser or someone who cannot
tell the outcome colours apart gets what the picture shows. Styling hooks are CSS
classes (``series``, ``axis``, ``outcome-failed``...). The default colours are
presentation attributes rather than a ``<style>`` element: any rule of the page's
stylesheet overrides a presentation attribute, whereas a ``<style>`` inside inline
SVG applies to the whole page. Text and axes use ``currentColor`` so that they
follow the page's text colour, dark themes included.

The ``viewBox`` is ``width`` x ``height`` units and ``preserveAspectRatio`` keeps
the proportions (text is never stretched); ``fluid=True`` makes the chart fill its
container's width, its height following. Text is 11 units high, so pass a
``width`` close to the width the chart will be shown at (e.g. 360 for a phone
column) for text of about 11 px.

Output is deterministic, same input, same string, with coordinates rounded to
one decimal, so rendered pages can be cached and compared.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from urllib.parse import urlsplit

__all__ = [
    "Mark",
    "Series",
    "TimelineRow",
    "line_chart",
    "outcome_timeline",
    "score_chart",
    "sparkline",
]

Moment = date | datetime
Point = tuple[Moment, float]
ValueFormat = Callable[[float], str]

FONT_SIZE = 11
# The average glyph width of a sans-serif face at FONT_SIZE: enough to fit labels
# without measuring text, which a server cannot do.
_CHAR_WIDTH = 0.6 * FONT_SIZE
# Okabe-Ito colours: told apart by most colour-blind readers too.
_SERIES_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
_OUTCOMES = ("passed", "flaky", "failed", "error", "skipped")
_OUTCOME_COLOURS = {
    "passed": "#009E73",
    "flaky": "#E69F00",
    "failed": "#D55E00",
    "error": "#CC79A7",
    "skipped": "#999999",
}
_OTHER_COLOUR = "#666666"
_OUTCOME_WORDS = {"flaky": "flaky (passed on rerun)"}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_CLASS_TOKEN = re.compile(r"-?[A-Za-z_][A-Za-z0-9_-]*")
_LINK_SCHEMES = ("", "http", "https")


@dataclass(frozen=True, slots=True)
class Series:
    """One line of a ``line_chart``: its legend name, its points and an extra CSS class."""

    name: str
    points: Sequence[Point]
    css_class: str = ""


@dataclass(frozen=True, slots=True)
class Mark:
    """One result on an ``outcome_timeline``: ``outcome`` is passed, failed, error,
    skipped or flaky (passed after in-run reruns); ``url`` links the mark, e.g. to the run."""

    outcome: str
    at: datetime
    branch: str
    sha: str
    run_label: str
    url: str = ""


@dataclass(frozen=True, slots=True)
class TimelineRow:
    """One row of an ``outcome_timeline``: a job or configuration and its results."""

    label: str
    marks: Sequence[Mark]


# --- public charts ------------------------------------------------------------


def sparkline(
    points: Sequence[Point],
    *,
    title: str,
    width: float = 120,
    height: float = 28,
    value_format: ValueFormat | None = None,
    fluid: bool = False,
) -> str:
    """A tiny line of ``points`` without axes, its last point marked, for table cells.

    The values span the full height, since a sparkline shows the shape of a trend and
    the desc gives the figures; equal values draw a flat line across the middle.
    A single point is drawn as its mark alone; no points give the "no data" state.
    """
    fmt = value_format or _number
    _check_size(width, height)
    data = _clean(points)
    if not data:
        return _empty("sparkline", width, height, title, fluid=fluid)
    pad = 3.0  # room for the last-point mark, which is centred on the edge
    values = [v for _, v in data]
    frame = _Frame(
        left=pad,
        top=pad,
        right=width - pad,
        bottom=height - pad,
        t_lo=_seconds(data[0][0]),
        t_hi=_seconds(data[-1][0]),
        v_lo=min(values),
        v_hi=max(values),
    )
    xy = [(frame.x(_seconds(m)), frame.y(v)) for m, v in data]
    body: list[str] = []
    if len(xy) > 1:
        body.append(
            '<polyline class="sparkline-line" fill="none" stroke="currentColor" '
            f'stroke-width="1.5" stroke-linejoin="round" points="{_points(xy)}"/>'
        )
    last_at, last_value = data[-1]
    body.append(
        f'<circle class="sparkline-last" cx="{_c(xy[-1][0])}" cy="{_c(xy[-1][1])}" r="2">'
        f"<title>{_esc(f'last: {fmt(last_value)} on {_when(last_at)}')}</title></circle>"
    )
    return _svg("sparkline", width, height, title, f"{title}: {_trend(data, fmt)}.", body, fluid)


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    width: float = 640,
    height: float = 220,
    y_label: str = "",
    value_format: ValueFormat | None = None,
    fluid: bool = False,
) -> str:
    """Lines over time, one per series, on a shared time axis, with a legend below.

    The y axis starts at 0 (or below, for negative values) and ends at a round number
    above the highest value, so that heights compare honestly; x ticks name the first,
    middle and last dates. Every point is also a small circle whose tooltip gives
    "name: value on date", for reading exact values off the chart.
    """
    fmt = value_format or _number
    _check_size(width, height)
    cleaned = [(s, _clean(s.points)) for s in series]
    everything = [p for _, data in cleaned for p in data]
    if not everything:
        return _empty("line", width, height, title, fluid=fluid)
    values = [v for _, v in everything]
    ticks = _nice_ticks(min(values), max(values))
    frame = _time_frame(
        width,
        height,
        everything,
        ticks,
        fmt,
        y_label=y_label,
        legend=[s.name for s in series],
    )
    body = _axes(frame, ticks, everything, fmt, y_label=y_label)
    entries: list[tuple[str, str, str]] = []
    for index, (one, data) in enumerate(cleaned):
        colour = _SERIES_COLOURS[index % len(_SERIES_COLOURS)]
        classes = _classes("series", f"series-{index + 1}", one.css_class)
        entries.append((one.name, classes, colour))
        body.append(f'<g class="{classes}" stroke="{colour}" fill="{colour}">')
        xy = [(frame.x(_seconds(m)), frame.y(v)) for m, v in data]
        if len(xy) > 1:
            body.append(
                f'<polyline fill="none" stroke-width="2" stroke-linejoin="round" '
                f'points="{_points(xy)}"/>'
            )
        body.extend(_dots(xy, data, one.name, fmt))
        body.append("</g>")
    body.extend(_legend(entries, frame.left, frame.bottom + 22, width))
    summaries = [f"{one.name}: {_trend(data, fmt) if data else 'no data'}" for one, data in cleaned]
    subject = f"{title} ({y_label})" if y_label else title
    return _svg("line", width, height, title, f"{subject}: {'; '.join(summaries)}.", body, fluid)


def outcome_timeline(
    rows: Sequence[TimelineRow],
    *,
    title: str,
    width: float = 640,
    row_height: float = 18,
    max_marks: int = 400,
    fluid: bool = False,
) -> str:
    """One row of result marks per job or configuration, coloured by outcome.

    All rows share one time axis, from the earliest to the latest result shown, so
    that a failure on several jobs at once lines up across rows; a mark's position is
    its time, not its index. Past ``max_marks`` results in all, only the most recent
    are drawn (the marks would be thinner than a pixel anyway), and the desc says so.
    The desc counts the outcomes of each row, which is the chart's content without
    its colours; each mark's tooltip names outcome, branch, commit, run and time.
    The height follows from the rows: ``row_height`` each plus the axis and legend.
    """
    _check_size(width, row_height)
    if max_marks < 1:
        raise ValueError(f"max_marks must be at least 1, not {max_marks}")
    # Sorted by time, then row and position, so that equal times keep a fixed order.
    timed = sorted(
        (_seconds(mark.at), r, i, mark)
        for r, row in enumerate(rows)
        for i, mark in enumerate(row.marks)
    )
    total = len(timed)
    if not total:
        return _empty("timeline", width, row_height * max(1, len(rows)) + 20, title, fluid=fluid)
    shown = timed[-max_marks:]
    per_row: list[list[Mark]] = [[] for _ in rows]
    for _, r, _, mark in shown:
        per_row[r].append(mark)

    longest = max(len(row.label) for row in rows)
    label_room = min(width * 0.35, longest * _CHAR_WIDTH + 8)
    left, right, top = label_room + 6, width - 8, 4.0
    plot_bottom = top + row_height * len(rows)
    present = _outcome_order(_outcome_key(mark.outcome) for _, _, _, mark in shown)
    entries = [(_outcome_word(o), _outcome_class(o), _outcome_colour(o)) for o in present]
    height = plot_bottom + 24 + 16 * _legend_rows([name for name, _, _ in entries], left, width)
    mark_width = min(6.0, max(2.0, (right - left) / len(shown)))
    # The axis ends one mark short of the edge, so the latest mark is drawn inside.
    frame = _Frame(left, top, right - mark_width, plot_bottom, shown[0][0], shown[-1][0], 0, 1)

    body: list[str] = []
    for r, row in enumerate(rows):
        row_top = top + r * row_height
        middle = _c(row_top + row_height / 2)
        body.append('<g class="timeline-row">')
        body.append(
            f'<line class="row-rule" x1="{_c(left)}" y1="{middle}" x2="{_c(right)}" '
            f'y2="{middle}" stroke="currentColor" stroke-opacity="0.15"/>'
        )
        body.append(_label(row.label, left - 6, row_top + row_height / 2, label_room))
        for mark in per_row[r]:
            body.append(_mark(mark, frame.x(_seconds(mark.at)), row_top, mark_width, row_height))
        body.append("</g>")
    first_at, last_at = shown[0][3].at, shown[-1][3].at
    span = shown[-1][0] - shown[0][0]
    body.append(
        f'<g class="axis axis-x"><text class="tick" x="{_c(left)}" y="{_c(plot_bottom + 14)}">'
        f"{_esc(_tick_text(first_at, span))}</text>"
        f'<text class="tick" x="{_c(right)}" y="{_c(plot_bottom + 14)}" text-anchor="end">'
        f"{_esc(_tick_text(last_at, span))}</text></g>"
    )
    body.extend(_legend(entries, left, plot_bottom + 32, width, swatch="rect"))

    desc = [f"{title}: {len(shown)} results from {_when(first_at)} to {_when(last_at)}."]
    if len(shown) < total:
        desc.append(f"Showing the most recent {len(shown)} of {total} results.")
    for row, marks in zip(rows, per_row, strict=True):
        desc.append(f"{row.label}: {_counts(marks) or 'no results shown'}.")
    return _svg("timeline", width, height, title, " ".join(desc), body, fluid)


def score_chart(
    points: Sequence[tuple[datetime, float]],
    *,
    title: str,
    threshold: float | None = None,
    width: float = 640,
    height: float = 220,
    fluid: bool = False,
) -> str:
    """A test's flakiness score over time as a step line, on a y axis fixed to 0..1.

    Steps, not slopes: a score holds from one evaluation until the next, and a slope
    would show values that were never given. The axis is fixed so that charts of
    different tests compare at a glance; values outside 0..1 are clamped onto it.
    ``threshold`` adds a dashed line labelled "flaky threshold", and the desc says
    how many evaluations reached it.
    """
    _check_size(width, height)
    if threshold is not None and not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, not {threshold}")
    data = [(m, _clamp(v)) for m, v in _clean(points)]
    if not data:
        return _empty("score", width, height, title, fluid=fluid)
    ticks = [0.0, 0.25, 0.5, 0.75, 1.0]
    frame = _time_frame(width, height, data, ticks, _number, y_label="", legend=[])
    body = _axes(frame, ticks, data, _number, y_label="")
    xy = [(frame.x(_seconds(m)), frame.y(v)) for m, v in data]
    steps = [xy[0]]
    for x, y in xy[1:]:
        steps.extend([(x, steps[-1][1]), (x, y)])
    colour = _SERIES_COLOURS[0]
    body.append(f'<g class="series score" stroke="{colour}" fill="{colour}">')
    if len(xy) > 1:
        body.append(
            f'<polyline fill="none" stroke-width="2" stroke-linejoin="round" '
            f'points="{_points(steps)}"/>'
        )
    body.extend(_dots(xy, data, "score", _number))
    body.append("</g>")
    desc = f"{title}: {_trend(data, _number)}."
    if threshold is not None:
        limit = _clamp(threshold)
        at = _c(frame.y(limit))
        # The label sits above the line, or below it when the line runs along the top.
        label_y = frame.y(limit) + (14 if limit > 0.9 else -4)
        body.append(
            f'<g class="threshold" stroke="currentColor"><line x1="{_c(frame.left)}" y1="{at}" '
            f'x2="{_c(frame.right)}" y2="{at}" stroke-dasharray="4 3" stroke-opacity="0.7"/>'
            f'<text x="{_c(frame.right)}" y="{_c(label_y)}" text-anchor="end" '
            f'stroke="none">flaky threshold</text></g>'
        )
        reached = sum(1 for _, v in data if v >= limit)
        desc += (
            f" Flaky threshold {_number(limit)}, reached in {reached} of {len(data)} evaluations."
        )
    return _svg("score", width, height, title, desc, body, fluid)


# --- text and numbers ---------------------------------------------------------


def _esc(text: str) -> str:
    """Text made safe for element content and attribute values alike.

    Characters XML 1.0 cannot carry even escaped (the ANSI colour codes of test
    output, lone surrogates) become U+FFFD: one would make the whole page's SVG
    unparsable.
    """
    return html.escape(_NOT_XML.sub("\ufffd", text), quote=True)


def _c(value: float) -> str:
    """A coordinate: one decimal, without a trailing ".0" or a "-0"."""
    text = f"{value:.1f}"
    text = text.removesuffix(".0")
    return "0" if text == "-0" else text


def _number(value: float) -> str:
    """The default value text: whole numbers as integers, others to two decimals."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _fit(text: str, room: float) -> str:
    """``text`` cut with an ellipsis to about ``room`` units wide."""
    most = max(1, int(room / _CHAR_WIDTH))
    return text if len(text) <= most else text[: most - 1] + "…"


def _classes(*names: str) -> str:
    """The valid class tokens of ``names``; anything else is dropped, not escaped into a class."""
    return " ".join(t for name in names for t in name.split() if _CLASS_TOKEN.fullmatch(t))


def _utc(moment: datetime) -> datetime:
    # Naive datetimes are UTC, as stored; local time would make the output depend on
    # the server's time zone.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _seconds(moment: Moment) -> float:
    """Seconds since the epoch; a date counts as its midnight UTC."""
    if isinstance(moment, datetime):
        return (_utc(moment) - _EPOCH).total_seconds()
    return float((moment - _EPOCH.date()).days * 86400)


def _when(moment: Moment) -> str:
    if isinstance(moment, datetime):
        return _utc(moment).strftime("%Y-%m-%d %H:%M UTC")
    return moment.isoformat()


def _tick_text(moment: Moment, span: float) -> str:
    # Dates alone unless the chart covers under two days, where they would repeat.
    if isinstance(moment, datetime) and span < 2 * 86400:
        return _utc(moment).strftime("%Y-%m-%d %H:%M")
    return (_utc(moment).date() if isinstance(moment, datetime) else moment).isoformat()


def _clean(points: Sequence[Point]) -> list[Point]:
    """The points with a finite value, in time order (stable: equal times keep their order)."""
    kept = [(m, float(v)) for m, v in points if math.isfinite(v)]
    return sorted(kept, key=lambda p: _seconds(p[0]))


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


def _trend(data: Sequence[Point], fmt: ValueFormat) -> str:
    """ "from 3 on 2026-11-01 to 7 on 2026-11-30, highest 9 on 2026-11-20" (the first highest)."""
    (first_at, first), (last_at, last) = data[0], data[-1]
    if len(data) == 1:
        return f"{fmt(first)} on {_when(first_at)}"
    top_at, top = max(data, key=lambda p: p[1])
    return (
        f"from {fmt(first)} on {_when(first_at)} to {fmt(last)} on {_when(last_at)}, "
        f"highest {fmt(top)} on {_when(top_at)}"
    )


def _nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """Ticks from 0 (or below, for negative values) to a round number at or above ``hi``.

    Steps are 1, 2 or 5 times a power of ten, numbers a reader can interpolate between.
    """
    lo, hi = min(0.0, lo), max(0.0, hi)
    if hi == lo:
        hi = lo + 1.0
    raw = (hi - lo) / count
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    # The tolerance keeps float noise (7.000000001 / 2) from adding a tick.
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    return [round(i * step, 10) + 0.0 for i in range(first, last + 1)]


# --- layout -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Frame:
    """A plot area in SVG units and the data ranges it shows.

    An empty range (one time, equal values) maps to the middle of the area.
    """

    left: float
    top: float
    right: float
    bottom: float
    t_lo: float
    t_hi: float
    v_lo: float
    v_hi: float

    def x(self, seconds: float) -> float:
        if self.t_hi == self.t_lo:
            return (self.left + self.right) / 2
        share = (seconds - self.t_lo) / (self.t_hi - self.t_lo)
        return self.left + share * (self.right - self.left)

    def y(self, value: float) -> float:
        if self.v_hi == self.v_lo:
            return (self.top + self.bottom) / 2
        share = (value - self.v_lo) / (self.v_hi - self.v_lo)
        return self.bottom - share * (self.bottom - self.top)


def _check_size(*sizes: float) -> None:
    if not all(math.isfinite(s) and s > 0 for s in sizes):
        raise ValueError(f"chart sizes must be positive numbers, not {sizes}")


def _time_frame(
    width: float,
    height: float,
    data: Sequence[Point],
    ticks: Sequence[float],
    fmt: ValueFormat,
    *,
    y_label: str,
    legend: Sequence[str],
) -> _Frame:
    """The plot area of a chart over time: room on the left for the y tick labels (and
    the y label), below for the x ticks and the rows of a legend of these names."""
    left = max(len(fmt(t)) for t in ticks) * _CHAR_WIDTH + 8 + (16 if y_label else 0)
    bottom = height - 20 - 16 * _legend_rows(legend, left, width)
    top = 8.0
    times = [_seconds(m) for m, _ in data]
    return _Frame(
        left, top, width - 8, max(bottom, top + 10), min(times), max(times), ticks[0], ticks[-1]
    )


def _axes(
    frame: _Frame,
    ticks: Sequence[float],
    data: Sequence[Point],
    fmt: ValueFormat,
    *,
    y_label: str,
) -> list[str]:
    """Grid lines with y tick labels, the x axis with ticks at the first, middle and
    last times of ``data``, and the rotated y label."""
    parts = ['<g class="axis axis-y">']
    for value in ticks:
        y = _c(frame.y(value))
        parts.append(
            f'<line class="grid" x1="{_c(frame.left)}" y1="{y}" x2="{_c(frame.right)}" '
            f'y2="{y}" stroke="currentColor" stroke-opacity="0.15"/>'
            f'<text class="tick" x="{_c(frame.left - 4)}" y="{y}" text-anchor="end" '
            f'dominant-baseline="middle">{_esc(fmt(value))}</text>'
        )
    if y_label:
        middle = (frame.top + frame.bottom) / 2
        parts.append(
            f'<text class="axis-label" x="12" y="{_c(middle)}" text-anchor="middle" '
            f'transform="rotate(-90 12 {_c(middle)})">{_esc(y_label)}</text>'
        )
    parts.append("</g>")

    moments = sorted({_seconds(m): m for m, _ in reversed(data)}.items())
    span = moments[-1][0] - moments[0][0]
    baseline = _c(frame.bottom)
    parts.append(
        f'<g class="axis axis-x"><line x1="{_c(frame.left)}" y1="{baseline}" '
        f'x2="{_c(frame.right)}" y2="{baseline}" stroke="currentColor" stroke-opacity="0.5"/>'
    )
    label_width = len(_tick_text(moments[0][1], span)) * _CHAR_WIDTH + 8  # with a gap
    for seconds, moment, anchor in _x_tick_choice(moments, frame, label_width):
        parts.append(
            f'<text class="tick" x="{_c(frame.x(seconds))}" y="{_c(frame.bottom + 14)}" '
            f'text-anchor="{anchor}">{_esc(_tick_text(moment, span))}</text>'
        )
    parts.append("</g>")
    return parts


def _x_tick_choice(
    moments: Sequence[tuple[float, Moment]], frame: _Frame, label: float
) -> list[tuple[float, Moment, str]]:
    """First, middle and last of the distinct times; the middle is the time nearest the
    midpoint, so its tick sits on data, and is left out when it would overlap the ends."""
    if len(moments) == 1:
        return [(moments[0][0], moments[0][1], "middle")]
    (t_first, first), (t_last, last) = moments[0], moments[-1]
    chosen = [(t_first, first, "start")]
    if len(moments) > 2:
        midpoint = (t_first + t_last) / 2
        t_mid, mid = min(moments[1:-1], key=lambda tm: abs(tm[0] - midpoint))
        x_mid = frame.x(t_mid)
        if frame.left + label <= x_mid - label / 2 and x_mid + label / 2 <= frame.right - label:
            chosen.append((t_mid, mid, "middle"))
    chosen.append((t_last, last, "end"))
    return chosen


def _dots(
    xy: Sequence[tuple[float, float]], data: Sequence[Point], name: str, fmt: ValueFormat
) -> list[str]:
    """A small circle per point, its tooltip "name: value on date"."""
    return [
        f'<circle cx="{_c(x)}" cy="{_c(y)}" r="2.5" stroke="none">'
        f"<title>{_esc(f'{name}: {fmt(value)} on {_when(moment)}')}</title></circle>"
        for (x, y), (moment, value) in zip(xy, data, strict=True)
    ]


def _legend_name(name: str, width: float) -> str:
    # Cut to half the chart, so that one long name cannot push the legend off the side.
    return _fit(name, max(60.0, width / 2 - 30))


def _legend_item_width(name: str, width: float) -> float:
    # The swatch, a gap, the text and a gap to the next item.
    return 14 + 4 + len(_legend_name(name, width)) * _CHAR_WIDTH + 12


def _legend_rows(names: Sequence[str], left: float, width: float) -> int:
    return len(_legend_layout(names, left, width))


def _legend_layout(names: Sequence[str], left: float, width: float) -> list[list[float]]:
    """The x of each legend item, item by item, wrapped into rows that fit the width."""
    rows: list[list[float]] = []
    x = left
    for name in names:
        item = _legend_item_width(name, width)
        if not rows or x + item > width - 8:
            rows.append([])
            x = left
        rows[-1].append(x)
        x += item
    return rows


def _legend(
    entries: Sequence[tuple[str, str, str]],
    left: float,
    top: float,
    width: float,
    *,
    swatch: str = "line",
) -> list[str]:
    """A legend of (name, CSS classes, colour) entries, rows from ``top`` downwards.

    The classes go on the swatch alone: a page rule colouring ``.outcome-failed``
    must not colour the legend's text as well.
    """
    rows = _legend_layout([name for name, _, _ in entries], left, width)
    xs = [(r, x) for r, row in enumerate(rows) for x in row]
    parts = ['<g class="legend">']
    for (name, classes, colour), (r, x) in zip(entries, xs, strict=True):
        y = top + r * 16
        if swatch == "line":
            mark = (
                f'<line class="{classes}" x1="{_c(x)}" y1="{_c(y)}" x2="{_c(x + 14)}" '
                f'y2="{_c(y)}" stroke="{colour}" stroke-width="2"/>'
            )
        else:
            mark = (
                f'<rect class="{classes}" x="{_c(x + 4)}" y="{_c(y - 5)}" width="6" '
                f'height="10" fill="{colour}"/>'
            )
        parts.append(
            f'<g class="legend-item">{mark}<text x="{_c(x + 18)}" y="{_c(y)}" '
            f'dominant-baseline="middle">{_esc(_legend_name(name, width))}</text></g>'
        )
    parts.append("</g>")
    return parts


def _label(text: str, right: float, middle: float, room: float) -> str:
    """A row label ending at ``right``; cut to fit, with the whole text as its tooltip."""
    shown = _fit(text, room)
    tooltip = f"<title>{_esc(text)}</title>" if shown != text else ""
    return (
        f'<text class="row-label" x="{_c(right)}" y="{_c(middle)}" text-anchor="end" '
        f'dominant-baseline="middle">{tooltip}{_esc(shown)}</text>'
    )


def _points(xy: Sequence[tuple[float, float]]) -> str:
    return " ".join(f"{_c(x)},{_c(y)}" for x, y in xy)


def _svg(
    kind: str,
    width: float,
    height: float,
    title: str,
    desc: str,
    body: Sequence[str],
    fluid: bool,
) -> str:
    size = 'width="100%"' if fluid else f'width="{_c(width)}" height="{_c(height)}"'
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-{kind}" role="img" '
        f'aria-label="{_esc(title)}" viewBox="0 0 {_c(width)} {_c(height)}" {size} '
        f'preserveAspectRatio="xMidYMid meet" font-family="system-ui, sans-serif" '
        f'font-size="{FONT_SIZE}" fill="currentColor">'
        f"<title>{_esc(title)}</title><desc>{_esc(desc)}</desc>{''.join(body)}</svg>"
    )


def _empty(kind: str, width: float, height: float, title: str, *, fluid: bool) -> str:
    """The chart's frame saying "no data", so that a page keeps its layout."""
    body = [
        f'<text class="chart-empty" x="{_c(width / 2)}" y="{_c(height / 2)}" '
        f'text-anchor="middle" dominant-baseline="middle" fill-opacity="0.6">no data</text>'
    ]
    return _svg(kind, width, height, title, f"{title}: no data.", body, fluid)


# --- outcomes -----------------------------------------------------------------


def _outcome_key(outcome: str) -> str:
    return outcome.strip().lower() or "unknown"


def _outcome_class(key: str) -> str:
    return f"outcome-{key}" if key in _OUTCOME_COLOURS else "outcome-other"


def _outcome_colour(key: str) -> str:
    return _OUTCOME_COLOURS.get(key, _OTHER_COLOUR)


def _outcome_word(key: str) -> str:
    return _OUTCOME_WORDS.get(key, key)


def _outcome_order(keys: Iterable[str]) -> list[str]:
    """The known outcomes first, in a fixed order, then any others alphabetically."""
    present = set(keys)
    return [o for o in _OUTCOMES if o in present] + sorted(present - set(_OUTCOMES))


def _counts(marks: Sequence[Mark]) -> str:
    """ "12 passed, 2 failed" for the marks of one row."""
    tally: dict[str, int] = {}
    for mark in marks:
        key = _outcome_key(mark.outcome)
        tally[key] = tally.get(key, 0) + 1
    return ", ".join(f"{tally[o]} {_outcome_word(o)}" for o in _outcome_order(tally))


def _link(url: str) -> str | None:
    """``url`` if it is http(s) or relative: other schemes (javascript:, data:) are no links."""
    try:
        scheme = urlsplit(url.strip()).scheme.lower()
    except ValueError:
        return None
    return url if scheme in _LINK_SCHEMES else None


def _mark(mark: Mark, x: float, row_top: float, width: float, row_height: float) -> str:
    """One result's rect, its tooltip naming outcome, branch, commit, run and time;
    inside a link to ``mark.url`` when it has one."""
    key = _outcome_key(mark.outcome)
    words = [_outcome_word(key)]
    if mark.branch:
        words.append(f"on {mark.branch}")
    if mark.sha:
        words.append(f"at {mark.sha[:7]}")
    if mark.run_label:
        words.append(f"(run {mark.run_label})")
    tooltip = f"{' '.join(words)}, {_when(mark.at)}"
    rect = (
        f'<rect class="mark {_outcome_class(key)}" x="{_c(x)}" y="{_c(row_top + 3)}" '
        f'width="{_c(width)}" height="{_c(max(1.0, row_height - 6))}" '
        f'fill="{_outcome_colour(key)}"><title>{_esc(tooltip)}</title></rect>'
    )
    url = _link(mark.url) if mark.url else None
    return f'<a class="mark-link" href="{_esc(url)}">{rect}</a>' if url else rect
