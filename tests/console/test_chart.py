"""The activity chart is well-formed SVG with one bar per active hour, the incident's hours
in the severity colour, a labelled baseline, round axis ticks and escaped text."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

from breachwatch.console.chart import activity_svg
from breachwatch.incidents.activity import Activity, Hour

SVG = "{http://www.w3.org/2000/svg}"
START = datetime(2026, 11, 23, 12, tzinfo=UTC)


def _activity(values: list[int], incident_hours: range, baseline: float | None, subject: str = "u-hans") -> Activity:
    hours = [Hour(START + timedelta(hours=i), v, i in incident_hours, 0) for i, v in enumerate(values)]
    return Activity(
        subject=subject,
        metric="records",
        hours=hours,
        baseline=baseline,
        baseline_label="usual busiest hour (95th percentile)",
        incident_start=START + timedelta(hours=incident_hours.start),
        incident_end=START + timedelta(hours=incident_hours.stop),
    )


def test_bars_baseline_and_axis() -> None:
    values = [0] * 24 + [120, 0, 40, 9000, 3100]
    root = ET.fromstring(str(activity_svg(_activity(values, range(27, 29), 310.0), "critical")))
    bars = [r for r in root.iter(f"{SVG}rect") if "bar" in r.get("class", "")]
    assert [int(b.get("data-value", "0")) for b in bars] == [120, 40, 9000, 3100]
    assert [b.get("class") for b in bars] == ["bar bar-other", "bar bar-other", "bar bar-critical", "bar bar-critical"]
    assert bars[2].find(f"{SVG}title").text == "2026-11-24 15:00 UTC: 9,000 records"  # type: ignore[union-attr]
    heights = [float(b.get("height", "0")) for b in bars]
    assert heights[2] > heights[3] > heights[0] > heights[1] > 0
    baseline = [line for line in root.iter(f"{SVG}line") if line.get("class") == "chart-baseline"]
    assert len(baseline) == 1
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert "usual busiest hour (95th percentile): 310" in labels
    assert {"0", "2k", "4k", "6k", "8k", "10k"} <= set(labels)
    assert root.get("data-peak") == "9000" and root.get("data-baseline") == "310"


def test_without_a_baseline_there_is_no_line_but_a_note() -> None:
    act = _activity([0, 5, 0], range(1, 2), None)
    root = ET.fromstring(str(activity_svg(act, "low")))
    assert not [line for line in root.iter(f"{SVG}line") if line.get("class") == "chart-baseline"]
    assert root.get("data-baseline") == ""


def test_text_is_escaped() -> None:
    act = _activity([3], range(0, 1), None, subject='<script>alert("x")</script>')
    svg = str(activity_svg(act, "high"))
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    ET.fromstring(svg)  # still well-formed
