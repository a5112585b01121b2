"""Server-rendered SVG charts for the staff pages: no JavaScript, no CDN, nothing the strict CSP blocks.

Every chart is an `<svg role="img">` with a `<title>` and a `<desc>` (and an aria-label), drawn only with SVG
presentation attributes (fill, stroke, x, y…), never a `style` attribute, followed by the same figures as an HTML
table for screen readers and for reading exact values. Values are plain numbers (money in minor units); the caller
passes `fmt` to say how a value reads in the table and the hover titles. Geometry is computed with Decimal and
rounded to 0.1 px so the same data always gives the same markup (the tests compare it).

- `bar_chart`: one bar per label, series stacked; positive values stack up from the zero axis, negative ones down
  (MRR movements: new / expansion / reactivation above, contraction / churn below).
- `histogram`: counts of values in equal bins (the health score distribution).
- `line_chart`: one polyline per series over the labels, None leaves a gap (cohort retention, trends).
"""

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# Colour-blind-safe (Okabe–Ito) palette; each series also has a distinct name in the legend and the table.
PALETTE = ("#0072b2", "#009e73", "#56b4e9", "#e69f00", "#d55e00", "#cc79a7", "#f0e442", "#000000")
WIDTH = 720
HEIGHT = 260
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 96, 16, 16, 40  # room for "USD 12,345.67" left of the axis


def _safe(markup: str) -> SafeString:
    """The one place markup is marked safe: every text in it went through escape(), every number through _n()."""
    return mark_safe(markup)  # noqa: S308


def _n(value) -> str:
    """A coordinate with one decimal, without a trailing .0."""
    rounded = Decimal(value).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    text = f"{rounded:f}"
    return text[:-2] if text.endswith(".0") else text


def _plain(value) -> str:
    return "—" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def _whole(value: Decimal):
    """An axis bound back in the caller's terms: an int when whole (money in minor units stays an int)."""
    return int(value) if value == value.to_integral_value() else value


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence  # one per label; int or Decimal, None = no value
    color: str = ""


@dataclass(frozen=True)
class Chart:
    """A drawn chart: `svg` and the data `table` (headers, rows of formatted cells); `html` is both, ready to show."""

    title: str
    svg: SafeString
    headers: list[str]
    rows: list[list[str]]
    empty: bool = False

    @property
    def html(self) -> SafeString:
        head = "".join(f'<th scope="col">{escape(h)}</th>' for h in self.headers)
        body = "".join(
            "<tr>"
            + "".join(
                (f'<th scope="row">{escape(c)}</th>' if i == 0 else f'<td class="num">{escape(c)}</td>')
                for i, c in enumerate(row)
            )
            + "</tr>"
            for row in self.rows
        )
        table = (
            f'<details class="chart-data"><summary>{escape(self.title)}: data table</summary>'
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></details>"
        )
        return _safe(f'<figure class="chart">{self.svg}{table}</figure>')

    def __html__(self) -> str:
        return self.html

    def __str__(self) -> str:
        return self.html


def _colors(series: Sequence[Series]) -> list[str]:
    return [s.color or PALETTE[i % len(PALETTE)] for i, s in enumerate(series)]


def _open(title: str, description: str, width: int, height: int) -> tuple[str, str]:
    # Ids unique per title on a page, and the same for the same chart (deterministic markup).
    uid = "chart-" + hashlib.sha256(title.encode()).hexdigest()[:10]
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" class="chart-svg" aria-label="{escape(title)}" '
        f'aria-describedby="{uid}-desc"><title id="{uid}-title">{escape(title)}</title>'
        f'<desc id="{uid}-desc">{escape(description)}</desc>'
    )
    return uid, head


def _empty(title: str, headers: list[str], width: int, height: int, message: str) -> Chart:
    _, head = _open(title, message, width, height)
    svg = (
        f'{head}<rect x="0" y="0" width="{width}" height="{height}" fill="#f8f8f8" stroke="#ddd"/>'
        f'<text x="{width // 2}" y="{height // 2}" text-anchor="middle" fill="#666" class="chart-empty">'
        f"{escape(message)}</text></svg>"
    )
    return Chart(title=title, svg=_safe(svg), headers=headers, rows=[], empty=True)


def _legend(series: Sequence[Series], colors: list[str], y: int) -> str:
    parts = []
    x = PAD_LEFT
    for s, color in zip(series, colors, strict=True):
        parts.append(
            f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{color}"/>'
            f'<text x="{x + 14}" y="{y}" font-size="11" fill="#333" class="chart-legend">{escape(s.name)}</text>'
        )
        x += 24 + 7 * len(s.name)
    return "".join(parts)


def _table_rows(labels: Sequence[str], series: Sequence[Series], fmt: Callable) -> list[list[str]]:
    return [
        [str(label)] + [("—" if s.values[i] is None else fmt(s.values[i])) for s in series]
        for i, label in enumerate(labels)
    ]


def bar_chart(
    *,
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    fmt: Callable = _plain,
    description: str = "",
    width: int = WIDTH,
    height: int = HEIGHT,
    empty_message: str = "No data yet.",
) -> Chart:
    """Bars per label with the series stacked: positives upward from zero, negatives downward (below the axis)."""
    headers = [""] + [s.name for s in series]
    for s in series:
        if len(s.values) != len(labels):
            raise ValueError(f"Series {s.name!r} has {len(s.values)} values for {len(labels)} labels.")
    ups = [sum(Decimal(s.values[i]) for s in series if s.values[i] and s.values[i] > 0) for i in range(len(labels))]
    downs = [-sum(Decimal(s.values[i]) for s in series if s.values[i] and s.values[i] < 0) for i in range(len(labels))]
    top, bottom = max(ups, default=Decimal(0)), max(downs, default=Decimal(0))
    if not labels or (top == 0 and bottom == 0):
        return _empty(title, headers, width, height, empty_message)
    colors = _colors(series)
    plot_h = Decimal(height - PAD_TOP - PAD_BOTTOM)
    plot_w = Decimal(width - PAD_LEFT - PAD_RIGHT)
    scale = plot_h / (top + bottom)
    zero_y = PAD_TOP + top * scale
    slot = plot_w / len(labels)
    bar_w = slot * Decimal("0.7")
    uid, svg = _open(title, description or f"{title}, {len(labels)} bars.", width, height)
    parts = [svg]
    # Axis labels: the top and bottom of the range and zero.
    for value, y in ((top, PAD_TOP), (-bottom, PAD_TOP + plot_h)):
        if value:
            parts.append(
                f'<text x="{PAD_LEFT - 6}" y="{_n(y + 4)}" text-anchor="end" font-size="10" fill="#555">'
                f"{escape(fmt(_whole(value)))}</text>"
            )
    for i, label in enumerate(labels):
        x = PAD_LEFT + slot * i + (slot - bar_w) / 2
        up_y, down_y = zero_y, zero_y
        for s, color in zip(series, colors, strict=True):
            value = s.values[i]
            if not value:
                continue
            h = abs(Decimal(value)) * scale
            if value > 0:
                up_y -= h
                y = up_y
                kind = "pos"
            else:
                y = down_y
                down_y += h
                kind = "neg"
            parts.append(
                f'<rect class="bar bar-{kind}" data-series="{escape(s.name)}" data-label="{escape(label)}" '
                f'x="{_n(x)}" y="{_n(y)}" width="{_n(bar_w)}" height="{_n(h)}" fill="{color}">'
                f"<title>{escape(label)} — {escape(s.name)}: {escape(fmt(value))}</title></rect>"
            )
        if len(labels) <= 16 or i % max(1, len(labels) // 12) == 0:
            parts.append(
                f'<text x="{_n(x + bar_w / 2)}" y="{height - PAD_BOTTOM + 14}" text-anchor="middle" font-size="10" '
                f'fill="#555" class="chart-label">{escape(label)}</text>'
            )
    parts.append(
        f'<line class="axis-zero" x1="{PAD_LEFT}" x2="{width - PAD_RIGHT}" y1="{_n(zero_y)}" y2="{_n(zero_y)}" '
        'stroke="#333" stroke-width="1"/>'
    )
    if len(series) > 1:
        parts.append(_legend(series, colors, height - 6))
    parts.append("</svg>")
    return Chart(title=title, svg=_safe("".join(parts)), headers=headers, rows=_table_rows(labels, series, fmt))


def histogram(
    *,
    title: str,
    values: Sequence[int | None] = (),
    low: int = 0,
    high: int = 100,
    bins: int = 10,
    series_name: str = "Customers",
    description: str = "",
    empty_message: str = "No scores yet.",
    counts: Sequence[int] | None = None,
) -> Chart:
    """Counts of `values` in `bins` equal bins from `low` to `high` (the last bin includes `high`); None is skipped.
    A caller that counted in the database passes `counts` (one per bin) instead of the values."""
    step = Decimal(high - low) / bins
    if counts is not None:
        if len(counts) != bins:
            raise ValueError(f"histogram: {len(counts)} counts for {bins} bins")
        values, counts = (), list(counts)
    else:
        counts = [0] * bins
    for value in values:
        if value is None:
            continue
        index = int((Decimal(value) - low) / step)
        counts[min(max(index, 0), bins - 1)] += 1
    labels = []
    for i in range(bins):
        start = low + step * i
        end = low + step * (i + 1) - (0 if i == bins - 1 else 1)
        labels.append(f"{_n(start)}–{_n(end)}")
    return bar_chart(
        title=title,
        labels=labels,
        series=[Series(series_name, counts)],
        description=description or f"{title}: how many fall in each band from {low} to {high}.",
        empty_message=empty_message,
    )


def line_chart(
    *,
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    fmt: Callable = _plain,
    y_max=None,
    description: str = "",
    width: int = WIDTH,
    height: int = HEIGHT,
    empty_message: str = "No data yet.",
) -> Chart:
    """One polyline per series from 0 to `y_max` (default: the largest value); a None value breaks the line."""
    headers = [""] + [s.name for s in series]
    present = [Decimal(v) for s in series for v in s.values if v is not None]
    if not labels or not present:
        return _empty(title, headers, width, height, empty_message)
    top = Decimal(y_max) if y_max is not None else max(present)
    top = top if top > 0 else Decimal(1)
    colors = _colors(series)
    plot_h = Decimal(height - PAD_TOP - PAD_BOTTOM)
    plot_w = Decimal(width - PAD_LEFT - PAD_RIGHT)
    step = plot_w / max(1, len(labels) - 1)
    uid, svg = _open(title, description or f"{title}, {len(series)} line(s) over {len(labels)} points.", width, height)
    parts = [svg]
    base_y = PAD_TOP + plot_h
    parts.append(
        f'<line class="axis-zero" x1="{PAD_LEFT}" x2="{width - PAD_RIGHT}" y1="{_n(base_y)}" y2="{_n(base_y)}" '
        'stroke="#333" stroke-width="1"/>'
    )
    for value, y in ((top, PAD_TOP), (Decimal(0), base_y)):
        parts.append(
            f'<text x="{PAD_LEFT - 6}" y="{_n(y + 4)}" text-anchor="end" font-size="10" fill="#555">'
            f"{escape(fmt(_whole(value)))}</text>"
        )

    def point(i: int, value) -> tuple[Decimal, Decimal]:
        return PAD_LEFT + step * i, base_y - min(Decimal(value), top) / top * plot_h

    for s, color in zip(series, colors, strict=True):
        runs, run = [], []
        for i, value in enumerate(s.values):
            if value is None:
                if run:
                    runs.append(run)
                run = []
            else:
                run.append(point(i, value))
        if run:
            runs.append(run)
        for run in runs:
            if len(run) > 1:
                coords = " ".join(f"{_n(x)},{_n(y)}" for x, y in run)
                parts.append(
                    f'<polyline class="line" data-series="{escape(s.name)}" points="{coords}" fill="none" '
                    f'stroke="{color}" stroke-width="2"/>'
                )
        for i, value in enumerate(s.values):
            if value is not None:
                x, y = point(i, value)
                parts.append(
                    f'<circle class="point" cx="{_n(x)}" cy="{_n(y)}" r="3" fill="{color}">'
                    f"<title>{escape(s.name)}, {escape(labels[i])}: {escape(fmt(value))}</title></circle>"
                )
    for i, label in enumerate(labels):
        if len(labels) <= 16 or i % max(1, len(labels) // 12) == 0:
            parts.append(
                f'<text x="{_n(PAD_LEFT + step * i)}" y="{height - PAD_BOTTOM + 14}" text-anchor="middle" '
                f'font-size="10" fill="#555" class="chart-label">{escape(label)}</text>'
            )
    if len(series) > 1:
        parts.append(_legend(series, colors, height - 6))
    parts.append("</svg>")
    return Chart(title=title, svg=_safe("".join(parts)), headers=headers, rows=_table_rows(labels, series, fmt))
