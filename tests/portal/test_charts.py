"""portal.charts: the SVG says what the numbers say (bar heights, bars below the axis, empty data, accessibility)."""

import re
from decimal import Decimal

import pytest

from portal.charts import HEIGHT, PAD_BOTTOM, PAD_TOP, Series, bar_chart, histogram, line_chart

PLOT_H = HEIGHT - PAD_TOP - PAD_BOTTOM  # 204 px


def rects(chart) -> list[dict]:
    found = []
    pattern = r'<rect class="bar bar-(\w+)" data-series="([^"]*)" data-label="([^"]*)" ([^>]*)>'
    for match in re.finditer(pattern, chart.svg):
        attrs = dict(re.findall(r'(\w+)="([^"]*)"', match.group(4)))
        found.append(
            {
                "kind": match.group(1),
                "series": match.group(2),
                "label": match.group(3),
                "y": Decimal(attrs["y"]),
                "height": Decimal(attrs["height"]),
            }
        )
    return found


def zero_axis(chart) -> Decimal:
    return Decimal(re.search(r'class="axis-zero"[^>]* y1="([\d.]+)"', chart.svg).group(1))


def test_bar_heights_are_proportional_to_values():
    chart = bar_chart(title="MRR", labels=["Jan", "Feb"], series=[Series("New", [100, 50])])
    bars = {bar["label"]: bar for bar in rects(chart)}
    assert bars["Jan"]["height"] == PLOT_H  # the largest bar fills the plot
    assert bars["Feb"]["height"] == PLOT_H / 2
    # Both stand on the zero axis, which is at the bottom when nothing is negative.
    assert zero_axis(chart) == PAD_TOP + PLOT_H
    assert bars["Feb"]["y"] + bars["Feb"]["height"] == zero_axis(chart)


def test_negative_bars_hang_below_the_axis_and_positives_stack_above():
    chart = bar_chart(
        title="MRR movements",
        labels=["Jan"],
        series=[Series("New", [300]), Series("Expansion", [100]), Series("Churned", [-200])],
    )
    axis = zero_axis(chart)
    assert axis == PAD_TOP + Decimal(PLOT_H) * 400 / 600  # 400 up, 200 down: the axis two thirds down
    bars = {bar["series"]: bar for bar in rects(chart)}
    assert bars["New"]["kind"] == "pos" and bars["Churned"]["kind"] == "neg"
    assert bars["New"]["y"] + bars["New"]["height"] == axis
    assert bars["Expansion"]["y"] + bars["Expansion"]["height"] == bars["New"]["y"]  # stacked on top of New
    assert bars["Churned"]["y"] == axis  # starts at the axis and goes down
    assert bars["Churned"]["height"] == Decimal(PLOT_H) * 200 / 600
    assert bars["Churned"]["y"] + bars["Churned"]["height"] == PAD_TOP + PLOT_H


def test_accessible_title_role_and_data_table():
    chart = bar_chart(
        title="MRR <movements>",
        labels=["2026-01"],
        series=[Series("New", [12345])],
        fmt=lambda minor: f"${minor / 100:,.2f}" if isinstance(minor, int) else str(minor),
    )
    assert 'role="img"' in chart.svg
    assert 'aria-label="MRR &lt;movements&gt;"' in chart.svg
    assert "<title" in chart.svg and "MRR &lt;movements&gt;</title>" in chart.svg
    assert "<movements>" not in chart.html  # escaped everywhere
    assert chart.headers == ["", "New"]
    assert chart.rows == [["2026-01", "$123.45"]]
    assert '<th scope="row">2026-01</th><td class="num">$123.45</td>' in chart.html
    assert "style=" not in chart.html  # the strict CSP allows no inline styles on the portal; the charts need none


@pytest.mark.parametrize(
    "chart",
    [
        bar_chart(title="Movements", labels=[], series=[]),
        bar_chart(title="Movements", labels=["Jan"], series=[Series("New", [0])]),
        histogram(title="Health", values=[]),
        line_chart(title="Retention", labels=["M0"], series=[Series("2026-01", [None])]),
    ],
)
def test_empty_data_draws_a_message_not_bars(chart):
    assert chart.empty
    assert rects(chart) == [] and "<polyline" not in chart.svg
    assert "No " in chart.svg and 'role="img"' in chart.svg


def test_mismatched_series_is_a_programming_error():
    with pytest.raises(ValueError, match="2 values for 1 labels"):
        bar_chart(title="x", labels=["a"], series=[Series("s", [1, 2])])


def test_histogram_bins_scores_and_puts_100_in_the_last_bin():
    chart = histogram(title="Health", values=[0, 5, 9, 10, 55, 99, 100, None])
    counts = {row[0]: row[1] for row in chart.rows}
    assert counts["0–9"] == "3"
    assert counts["10–19"] == "1"
    assert counts["50–59"] == "1"
    assert counts["90–100"] == "2"
    assert sum(int(c) for c in counts.values()) == 7  # None (no score) is not counted
    bars = {bar["label"]: bar for bar in rects(chart)}
    assert bars["0–9"]["height"] == PLOT_H and bars["10–19"]["height"] == PLOT_H / 3


def test_line_chart_points_and_gaps():
    chart = line_chart(
        title="Cohort retention",
        labels=["M0", "M1", "M2", "M3"],
        series=[Series("2026-01", [100, 80, None, 50]), Series("2026-02", [100, 90, None, None])],
        y_max=100,
    )
    lines = re.findall(r'<polyline class="line" data-series="([^"]+)" points="([^"]+)"', chart.svg)
    # 2026-01 is broken by its gap: M0–M1 is a line, M3 stands alone (a point, no line).
    assert [name for name, _ in lines] == ["2026-01", "2026-02"]
    first = [tuple(Decimal(v) for v in p.split(",")) for p in lines[0][1].split()]
    assert first[0][1] == PAD_TOP  # 100 % at the top
    assert first[1][1] == PAD_TOP + Decimal(PLOT_H) * Decimal("0.2")  # 80 %
    assert chart.svg.count('<circle class="point"') == 5
    assert chart.rows[2] == ["M2", "—", "—"]


def test_same_data_same_markup():
    make = lambda: bar_chart(title="MRR", labels=["a", "b"], series=[Series("s", [1, -1])])  # noqa: E731
    assert make().html == make().html
