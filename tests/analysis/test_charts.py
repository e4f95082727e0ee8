"""The dashboard's SVG charts: well-formed, described in words, escaped, and drawn where the data says."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from analysis.charts import (
    Mark,
    Series,
    TimelineRow,
    line_chart,
    outcome_timeline,
    score_chart,
    sparkline,
)

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    """No cache to reset: the charts are pure, and these tests run without Django too
    (``-p no:django``), where the suite's own cache reset could not."""


HOSTILE = "<script>alert(1)</script> & \"double\" 'single'"
START = date(2026, 11, 1)
NOON = datetime(2026, 11, 20, 10, 31, tzinfo=UTC)


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def desc(root: ET.Element) -> str:
    element = root.find(f"{SVG}desc")
    assert element is not None and element.text
    return element.text


def every(root: ET.Element, tag: str) -> list[ET.Element]:
    return list(root.iter(f"{SVG}{tag}"))


def titles(root: ET.Element, tag: str) -> list[str]:
    """The tooltip of each ``tag`` element, in document order (for rects: the result marks)."""
    found = []
    for element in every(root, tag):
        if tag == "rect" and "mark" not in (element.get("class") or "").split():
            continue  # a legend swatch
        title = element.find(f"{SVG}title")
        assert title is not None and title.text
        found.append(title.text)
    return found


def texts(root: ET.Element, css_class: str) -> list[str]:
    return [
        "".join(t.itertext())
        for t in every(root, "text")
        if css_class in (t.get("class") or "").split()
    ]


def flaky_month() -> list[tuple[date, float]]:
    """30 days from 3 to 7, highest 9 on the 20th."""
    values = [3.0] + [5.0] * 18 + [9.0] + [6.0] * 9 + [7.0]
    return [(START + timedelta(days=i), v) for i, v in enumerate(values)]


def mark(outcome: str, minutes: int, *, url: str = "", run: str = "812 attempt 1") -> Mark:
    return Mark(outcome, NOON + timedelta(minutes=minutes), "main", "abc1234" + "f" * 33, run, url)


def polyline_points(element: ET.Element) -> list[tuple[float, float]]:
    pairs = (p.split(",") for p in (element.get("points") or "").split())
    return [(float(x), float(y)) for x, y in pairs]


# --- what every chart has in common ---------------------------------------------------

CHARTS: dict[str, Callable[[], str]] = {
    "sparkline": lambda: sparkline(flaky_month(), title="Flaky tests over 30 days"),
    "sparkline-empty": lambda: sparkline([], title="Flaky tests"),
    "line": lambda: line_chart(
        [Series("flaky", flaky_month()), Series("failing", [(START, 1.0)])],
        title="Tests",
        y_label="tests",
    ),
    "line-empty": lambda: line_chart([], title="Tests"),
    "timeline": lambda: outcome_timeline(
        [TimelineRow("ubuntu", [mark("passed", 0), mark("failed", 5)])], title="Results"
    ),
    "timeline-empty": lambda: outcome_timeline([TimelineRow("ubuntu", [])], title="Results"),
    "score": lambda: score_chart(
        [(NOON, 0.2), (NOON + timedelta(days=1), 0.6)], title="Score", threshold=0.5
    ),
    "score-empty": lambda: score_chart([], title="Score"),
}


@pytest.mark.parametrize("name", sorted(CHARTS))
def test_every_chart_is_an_accessible_well_formed_svg_image(name: str) -> None:
    svg = CHARTS[name]()
    root = parse(svg)
    assert root.get("role") == "img"
    title = root.find(f"{SVG}title")
    assert title is not None and title.text
    assert root.get("aria-label") == title.text
    assert desc(root).startswith(title.text)
    assert desc(root).endswith(".")
    assert root.get("viewBox", "").startswith("0 0 ")
    assert root.get("preserveAspectRatio") == "xMidYMid meet"
    assert svg == CHARTS[name](), "the same input must give the same string"


@pytest.mark.parametrize("name", sorted(CHARTS))
def test_coordinates_are_rounded_to_one_decimal(name: str) -> None:
    root = parse(CHARTS[name]())
    numbers = []
    for element in root.iter():
        for attribute in ("x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "width", "height"):
            if attribute in element.attrib and element.attrib[attribute] != "100%":
                numbers.append(element.attrib[attribute])
        numbers.extend(
            re.split(r"[ ,]", element.get("points", "")) if "points" in element.attrib else []
        )
    assert numbers
    assert all(re.fullmatch(r"-?\d+(\.\d)?", n) for n in numbers), numbers


def test_fluid_charts_fill_the_width_and_scale_by_the_view_box() -> None:
    root = parse(line_chart([Series("a", flaky_month())], title="T", width=360, fluid=True))
    assert root.get("width") == "100%"
    assert root.get("height") is None
    assert root.get("viewBox") == "0 0 360 220"


def test_sizes_must_be_positive() -> None:
    with pytest.raises(ValueError):
        sparkline(flaky_month(), title="T", width=0)
    with pytest.raises(ValueError):
        outcome_timeline([], title="T", row_height=-1)


# --- escaping -------------------------------------------------------------------------


def test_hostile_text_comes_out_escaped_everywhere() -> None:
    hostile_mark = Mark("failed", NOON, HOSTILE, HOSTILE, HOSTILE, url=f"/runs/?q={HOSTILE}")
    svgs = [
        sparkline(flaky_month(), title=HOSTILE),
        line_chart([Series(HOSTILE, flaky_month())], title=HOSTILE, y_label=HOSTILE),
        outcome_timeline([TimelineRow(HOSTILE, [hostile_mark])], title=HOSTILE),
        score_chart([(NOON, 0.5)], title=HOSTILE, threshold=0.3),
    ]
    for svg in svgs:
        assert "<script>" not in svg
        assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;double&quot;" in svg
        root = parse(svg)
        assert HOSTILE in desc(root)
        assert every(root, "script") == []

    line = parse(svgs[1])
    assert HOSTILE in [t.text for t in every(line, "text")]  # the legend and the y label
    timeline = parse(svgs[2])
    (link,) = every(timeline, "a")
    assert link.get("href") == f"/runs/?q={HOSTILE}"
    assert titles(timeline, "rect")[0].startswith(
        f"failed on {HOSTILE} at {HOSTILE[:7]} (run {HOSTILE})"
    )


def test_characters_xml_cannot_carry_are_replaced_not_passed_through() -> None:
    ansi = "\x1b[31mtest_login\x1b[0m\x00"
    root = parse(outcome_timeline([TimelineRow(ansi, [mark("failed", 0)])], title=ansi))
    assert "\ufffd[31mtest_login" in desc(root)


def test_css_classes_keep_valid_tokens_only() -> None:
    svg = line_chart(
        [Series("a", flaky_month(), css_class='series-flaky bad" onload="alert(1)')], title="T"
    )
    root = parse(svg)
    group = next(g for g in every(root, "g") if "series-1" in (g.get("class") or ""))
    assert group.get("class") == "series series-1 series-flaky"
    assert all("onload" not in element.attrib for element in root.iter())


def test_only_http_and_relative_urls_become_links() -> None:
    rows = [
        TimelineRow(
            "ubuntu",
            [
                mark("failed", 0, url="https://github.com/o/r/actions/runs/812?a=1&b=2"),
                mark("failed", 1, url="/runs/812/"),
                mark("failed", 2, url="javascript:alert(1)"),
                mark("failed", 3, url=" JavaScript:alert(1)"),
                mark("failed", 4, url="java\nscript:alert(1)"),
                mark("failed", 5, url="data:text/html,<b>"),
                mark("failed", 6),
            ],
        )
    ]
    svg = outcome_timeline(rows, title="T")
    root = parse(svg)
    hrefs = [a.get("href") for a in every(root, "a")]
    assert hrefs == ["https://github.com/o/r/actions/runs/812?a=1&b=2", "/runs/812/"]
    assert 'href="https://github.com/o/r/actions/runs/812?a=1&amp;b=2"' in svg
    assert len(mark_x(root)) == 7  # the marks without a link are drawn all the same
    for link in every(root, "a"):
        (rect,) = list(link)
        assert rect.tag == f"{SVG}rect" and "outcome-failed" in (rect.get("class") or "")


# --- sparkline ------------------------------------------------------------------------


def test_sparkline_desc_states_first_last_and_highest() -> None:
    root = parse(sparkline(flaky_month(), title="Flaky tests over 30 days"))
    assert desc(root) == (
        "Flaky tests over 30 days: from 3 on 2026-11-01 to 7 on 2026-11-30, "
        "highest 9 on 2026-11-20."
    )


def test_sparkline_draws_the_points_in_time_order_and_marks_the_last() -> None:
    points = flaky_month()
    root = parse(sparkline(list(reversed(points)), title="T", width=120, height=28))
    (line,) = every(root, "polyline")
    xy = polyline_points(line)
    assert len(xy) == 30
    assert [x for x, _ in xy] == sorted(x for x, _ in xy)
    assert xy[0][0] == 3 and xy[-1][0] == 117
    highest = min(y for _, y in xy)  # SVG y grows downwards
    assert xy[19][1] == highest == 3
    (last,) = every(root, "circle")
    assert (float(last.get("cx", "")), float(last.get("cy", ""))) == xy[-1]
    assert titles(root, "circle") == ["last: 7 on 2026-11-30"]


def test_sparkline_of_equal_values_is_flat_across_the_middle() -> None:
    root = parse(sparkline([(START + timedelta(days=i), 4.0) for i in range(5)], title="T"))
    (line,) = every(root, "polyline")
    assert {y for _, y in polyline_points(line)} == {14.0}


def test_sparkline_without_points_says_no_data() -> None:
    root = parse(sparkline([], title="Flaky tests"))
    assert desc(root) == "Flaky tests: no data."
    assert texts(root, "chart-empty") == ["no data"]
    assert every(root, "polyline") == []


def test_sparkline_of_one_point_is_its_mark_alone() -> None:
    root = parse(sparkline([(START, 4.0)], title="Flaky tests"))
    assert every(root, "polyline") == []
    (dot,) = every(root, "circle")
    assert (dot.get("cx"), dot.get("cy")) == ("60", "14")
    assert desc(root) == "Flaky tests: 4 on 2026-11-01."


def test_sparkline_skips_values_that_are_not_numbers() -> None:
    points = [(START, 1.0), (START + timedelta(days=1), float("nan")), (START + timedelta(2), 3.0)]
    root = parse(sparkline(points, title="T"))
    (line,) = every(root, "polyline")
    assert len(polyline_points(line)) == 2
    assert "nan" not in desc(root)


# --- line chart -----------------------------------------------------------------------


def two_series() -> list[Series]:
    failing = [(START + timedelta(days=i), float(i % 3)) for i in range(0, 30, 2)]
    return [Series("flaky", flaky_month(), "series-flaky"), Series("failing", failing)]


def test_line_chart_draws_one_polyline_and_a_dot_per_point_for_each_series() -> None:
    root = parse(line_chart(two_series(), title="Tests over 30 days"))
    assert len(every(root, "polyline")) == 2
    assert len(every(root, "circle")) == 30 + 15
    tooltips = titles(root, "circle")
    assert tooltips[0] == "flaky: 3 on 2026-11-01"
    assert tooltips[19] == "flaky: 9 on 2026-11-20"
    assert tooltips[30] == "failing: 0 on 2026-11-01"
    legend = next(g for g in every(root, "g") if g.get("class") == "legend")
    assert [t.text for t in legend.iter(f"{SVG}text")] == ["flaky", "failing"]


def test_line_chart_desc_states_each_series() -> None:
    root = parse(line_chart(two_series(), title="Tests over 30 days", y_label="tests"))
    assert desc(root) == (
        "Tests over 30 days (tests): flaky: from 3 on 2026-11-01 to 7 on 2026-11-30, "
        "highest 9 on 2026-11-20; failing: from 0 on 2026-11-01 to 1 on 2026-11-29, "
        "highest 2 on 2026-11-03."
    )
    assert texts(root, "axis-label") == ["tests"]


def test_line_chart_y_ticks_run_from_zero_to_a_round_maximum() -> None:
    root = parse(line_chart(two_series(), title="T"))
    assert texts(root, "tick")[:3] == ["0", "5", "10"]
    seven = [(START, 7.0), (START + timedelta(days=1), 1.0)]
    assert texts(parse(line_chart([Series("a", seven)], title="T")), "tick")[:5] == [
        "0",
        "2",
        "4",
        "6",
        "8",
    ]
    fractions = [(START, 0.3), (START + timedelta(days=1), 0.05)]
    assert texts(parse(line_chart([Series("a", fractions)], title="T")), "tick")[:4] == [
        "0",
        "0.1",
        "0.2",
        "0.3",
    ]


def test_line_chart_points_share_one_time_axis_and_the_ticks_name_first_middle_last() -> None:
    root = parse(line_chart(two_series(), title="T"))
    flaky, failing = every(root, "polyline")
    flaky_xy, failing_xy = polyline_points(flaky), polyline_points(failing)
    assert [x for x, _ in flaky_xy] == sorted(x for x, _ in flaky_xy)
    assert failing_xy[0][0] == flaky_xy[0][0]  # both start on the 1st
    assert failing_xy[7][0] == flaky_xy[14][0]  # the 15th in both
    x_axis = next(g for g in every(root, "g") if g.get("class") == "axis axis-x")
    ticks = [t.text for t in x_axis.iter(f"{SVG}text")]
    assert ticks == ["2026-11-01", "2026-11-15", "2026-11-30"]
    # The highest value is drawn highest, and the rounded maximum sits above it.
    top_tick_y = min(
        float(line.get("y1", "")) for line in every(root, "line") if line.get("class") == "grid"
    )
    assert top_tick_y < min(y for _, y in flaky_xy)


def test_line_chart_takes_a_value_format() -> None:
    points = [(START, 0.25), (START + timedelta(days=1), 0.5)]
    root = parse(line_chart([Series("rate", points)], title="Rate", value_format="{:.0%}".format))
    assert "from 25% on 2026-11-01 to 50% on 2026-11-02" in desc(root)
    assert titles(root, "circle") == ["rate: 25% on 2026-11-01", "rate: 50% on 2026-11-02"]
    assert texts(root, "tick")[:4] == ["0%", "20%", "40%", "60%"]


def test_line_chart_over_hours_ticks_with_times() -> None:
    points = [(NOON + timedelta(hours=h), float(h)) for h in range(5)]
    root = parse(line_chart([Series("a", points)], title="T"))
    assert texts(root, "tick")[-3:] == ["2026-11-20 10:31", "2026-11-20 12:31", "2026-11-20 14:31"]
    assert titles(root, "circle")[0] == "a: 0 on 2026-11-20 10:31 UTC"


def test_line_chart_without_points_says_no_data() -> None:
    for series in ([], [Series("flaky", [])]):
        root = parse(line_chart(series, title="Tests"))
        assert desc(root) == "Tests: no data."
        assert texts(root, "chart-empty") == ["no data"]


def test_line_chart_of_one_point_is_a_dot_in_the_middle() -> None:
    root = parse(line_chart([Series("a", [(START, 3.0)]), Series("b", [])], title="T"))
    assert every(root, "polyline") == []
    (dot,) = every(root, "circle")
    (tick,) = [t for t in every(root, "text") if t.get("text-anchor") == "middle"]
    assert tick.text == "2026-11-01" and tick.get("x") == dot.get("cx")
    assert desc(root) == "T: a: 3 on 2026-11-01; b: no data."


# --- outcome timeline -----------------------------------------------------------------


def mark_x(root: ET.Element) -> list[float]:
    return [float(r.get("x", "")) for r in every(root, "rect") if "mark" in (r.get("class") or "")]


def test_timeline_mark_tooltips_name_outcome_branch_commit_run_and_time() -> None:
    root = parse(outcome_timeline([TimelineRow("ubuntu", [mark("failed", 0)])], title="T"))
    assert (
        titles(root, "rect")[0]
        == "failed on main at abc1234 (run 812 attempt 1), 2026-11-20 10:31 UTC"
    )
    other_zone = timezone(timedelta(hours=1))
    at_one = Mark("passed", datetime(2026, 11, 20, 11, 31, tzinfo=other_zone), "", "", "9")
    root = parse(outcome_timeline([TimelineRow("mac", [at_one])], title="T"))
    assert titles(root, "rect")[0] == "passed (run 9), 2026-11-20 10:31 UTC"


def test_timeline_draws_marks_in_time_order_on_a_shared_axis() -> None:
    rows = [
        TimelineRow("ubuntu", [mark("failed", 60), mark("passed", 0), mark("passed", 30)]),
        TimelineRow("windows", [mark("error", 30), mark("skipped", 120)]),
    ]
    root = parse(outcome_timeline(rows, title="T", width=640))
    ubuntu, windows = [g for g in every(root, "g") if g.get("class") == "timeline-row"]
    ubuntu_x = [float(r.get("x", "")) for r in ubuntu.iter(f"{SVG}rect")]
    windows_x = [float(r.get("x", "")) for r in windows.iter(f"{SVG}rect")]
    assert ubuntu_x == sorted(ubuntu_x)
    assert [r.get("class") for r in ubuntu.iter(f"{SVG}rect")] == [
        "mark outcome-passed",
        "mark outcome-passed",
        "mark outcome-failed",
    ]
    assert windows_x[0] == ubuntu_x[1]  # both at +30 minutes
    assert ubuntu_x[0] < windows_x[0] < ubuntu_x[2] < windows_x[1]
    # Positions follow time, not index: +30 is a quarter of the way to +120.
    assert windows_x[0] - ubuntu_x[0] == pytest.approx((windows_x[1] - ubuntu_x[0]) / 4, abs=0.2)
    width = float(next(iter(windows.iter(f"{SVG}rect"))).get("width", ""))
    assert windows_x[1] + width == 632  # the latest mark ends at the right edge
    labels = texts(root, "row-label")
    assert labels == ["ubuntu", "windows"]


def test_timeline_desc_counts_outcomes_per_row() -> None:
    rows = [
        TimelineRow(
            "ubuntu / py3.11",
            [mark("passed", i) for i in range(12)] + [mark("failed", 20), mark("FAILED", 21)],
        ),
        TimelineRow("macos", [mark("flaky", 5), mark("passed", 6), mark("timeout", 7)]),
        TimelineRow("windows", []),
    ]
    root = parse(outcome_timeline(rows, title="Results"))
    assert desc(root) == (
        "Results: 17 results from 2026-11-20 10:31 UTC to 2026-11-20 10:52 UTC. "
        "ubuntu / py3.11: 12 passed, 2 failed. "
        "macos: 1 passed, 1 flaky (passed on rerun), 1 timeout. "
        "windows: no results shown."
    )
    classes = {r.get("class") for r in every(root, "rect") if "mark" in (r.get("class") or "")}
    assert classes == {
        "mark outcome-passed",
        "mark outcome-failed",
        "mark outcome-flaky",
        "mark outcome-other",
    }
    legend = next(g for g in every(root, "g") if g.get("class") == "legend")
    assert [t.text for t in legend.iter(f"{SVG}text")] == [
        "passed",
        "flaky (passed on rerun)",
        "failed",
        "timeout",
    ]


def test_timeline_keeps_the_most_recent_marks_past_max_marks() -> None:
    rows = [
        TimelineRow("old", [mark("passed", i) for i in range(6)]),
        TimelineRow("new", [mark("failed", 10 + i, run=f"{900 + i} attempt 1") for i in range(4)]),
    ]
    root = parse(outcome_timeline(rows, title="Results", max_marks=5))
    tooltips = titles(root, "rect")
    assert len(mark_x(root)) == 5
    assert tooltips[0].startswith("passed") and "10:36 UTC" in tooltips[0]  # the last "old" one
    assert [t.split("(run ")[1][:3] for t in tooltips[1:]] == ["900", "901", "902", "903"]
    text = desc(root)
    assert "Showing the most recent 5 of 10 results." in text
    assert "old: 1 passed." in text and "new: 4 failed." in text
    assert "Showing" not in desc(parse(outcome_timeline(rows, title="Results", max_marks=10)))
    with pytest.raises(ValueError):
        outcome_timeline(rows, title="Results", max_marks=0)


def test_timeline_of_one_result_and_of_none() -> None:
    root = parse(outcome_timeline([TimelineRow("ubuntu", [mark("passed", 0)])], title="T"))
    assert len(mark_x(root)) == 1
    assert "ubuntu: 1 passed." in desc(root)
    for rows in ([], [TimelineRow("ubuntu", [])]):
        empty = parse(outcome_timeline(rows, title="Results"))
        assert desc(empty) == "Results: no data."
        assert texts(empty, "chart-empty") == ["no data"]


def test_timeline_cuts_long_labels_and_keeps_them_whole_in_a_tooltip() -> None:
    label = "tests/integration/test_checkout.py::TestPayments::test_refund[postgres-16]"
    root = parse(outcome_timeline([TimelineRow(label, [mark("passed", 0)])], title="T", width=360))
    (shown,) = [t for t in every(root, "text") if t.get("class") == "row-label"]
    tooltip = shown.find(f"{SVG}title")
    assert tooltip is not None and tooltip.text == label
    visible = "".join(shown.itertext()).removeprefix(label)
    assert visible.endswith("…") and len(visible) < len(label)
    assert f"{label}: 1 passed." in desc(root)


# --- score chart ----------------------------------------------------------------------


def grid_y(root: ET.Element) -> dict[str, float]:
    """The y of each y tick, by its label."""
    axis = next(g for g in every(root, "g") if g.get("class") == "axis axis-y")
    return {t.text or "": float(t.get("y", "")) for t in axis.iter(f"{SVG}text")}


def test_score_chart_has_a_fixed_zero_to_one_axis_and_clamps_values() -> None:
    points = [(NOON + timedelta(days=i), v) for i, v in enumerate([0.1, 1.7, -0.3, 0.4])]
    root = parse(score_chart(points, title="Score of test_login"))
    ticks = grid_y(root)
    assert list(ticks) == ["0", "0.25", "0.5", "0.75", "1"]
    dots = [float(c.get("cy", "")) for c in every(root, "circle")]
    assert dots[1] == ticks["1"] and dots[2] == ticks["0"]
    assert titles(root, "circle")[1:3] == [
        "score: 1 on 2026-11-21 10:31 UTC",
        "score: 0 on 2026-11-22 10:31 UTC",
    ]
    assert desc(root) == (
        "Score of test_login: from 0.1 on 2026-11-20 10:31 UTC to 0.4 on 2026-11-23 10:31 UTC, "
        "highest 1 on 2026-11-21 10:31 UTC."
    )
    small = parse(score_chart([(NOON, 0.01), (NOON + timedelta(days=1), 0.02)], title="T"))
    assert list(grid_y(small)) == ["0", "0.25", "0.5", "0.75", "1"]


def test_score_chart_steps_from_one_evaluation_to_the_next() -> None:
    points = [(NOON + timedelta(days=i), v) for i, v in enumerate([0.2, 0.8, 0.5])]
    root = parse(score_chart(points, title="T"))
    (line,) = every(root, "polyline")
    xy = polyline_points(line)
    assert len(xy) == 5
    for (x0, y0), (x1, y1), (x2, y2) in zip(xy[0::2], xy[1::2], xy[2::2], strict=False):
        assert y1 == y0 and x1 > x0  # holds its value...
        assert x2 == x1 and y2 != y1  # ...then changes at the next evaluation
    assert "flaky threshold" not in "".join(root.itertext())


def test_score_chart_draws_the_threshold_as_a_labelled_dashed_line() -> None:
    points = [(NOON + timedelta(days=i), v) for i, v in enumerate([0.2, 0.8, 0.5, 0.3])]
    root = parse(score_chart(points, title="T", threshold=0.5))
    threshold = next(g for g in every(root, "g") if g.get("class") == "threshold")
    (line,) = threshold.iter(f"{SVG}line")
    assert line.get("stroke-dasharray")
    assert float(line.get("y1", "")) == grid_y(root)["0.5"] == float(line.get("y2", ""))
    assert [t.text for t in threshold.iter(f"{SVG}text")] == ["flaky threshold"]
    assert desc(root).endswith("Flaky threshold 0.5, reached in 2 of 4 evaluations.")
    with pytest.raises(ValueError):
        score_chart(points, title="T", threshold=float("nan"))


def test_score_chart_of_one_point_and_of_none() -> None:
    root = parse(score_chart([(NOON.replace(tzinfo=None), 0.3)], title="Score"))
    assert every(root, "polyline") == []
    assert len(every(root, "circle")) == 1
    assert desc(root) == "Score: 0.3 on 2026-11-20 10:31 UTC."  # naive times are UTC
    assert desc(parse(score_chart([], title="Score"))) == "Score: no data."
