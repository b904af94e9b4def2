"""The incident page's charts as inline SVG, drawn in Python: what fired the incident as
stacked bars over time with its limits and baselines as dashed lines (``series_svg``), each
measure against its limit (``gauge_svg``), and an actor's hourly activity (``activity_svg``).

Only presentation attributes and classes are used (no inline ``style``), so the page's
Content-Security-Policy needs no ``unsafe-inline``; every text is escaped.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from markupsafe import Markup, escape

from breachwatch.incidents.activity import Activity
from breachwatch.incidents.trigger import Gauge, Series

WIDTH, HEIGHT = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 28, 46


def _nice(value: float) -> float:
    """The smallest round number (1, 2, 2.5 or 5 x 10^n) at or above ``value``."""
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for m in (1, 2, 2.5, 5, 10):
        if value <= m * exp + 1e-9:
            return m * exp
    return 10 * exp


def _axis(top: float) -> tuple[float, int]:
    """A round axis maximum just above ``top`` and its number of intervals (3 to 5)."""
    options = []
    for k in (5, 4, 3):
        step = _nice(max(top / k, 1.0))
        if step == int(step):  # counts: never a tick at 2.5 records
            options.append((step * k, -k))
    best = min(options)
    return best[0], -best[1]


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:,.1f}".rstrip("0").rstrip(".") + "k"
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def activity_svg(activity: Activity, severity: str = "high") -> Markup:
    """The chart of ``activity`` as an ``<svg>`` element (safe to put in a template)."""
    hours = activity.hours
    n = max(len(hours), 1)
    top_value = max([float(activity.peak), activity.baseline or 0.0, 1.0])
    y_max, ticks = _axis(top_value * 1.05)
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    slot = plot_w / n
    bar_w = max(1.0, slot * 0.78)
    unit = "records" if activity.metric == "records" else "events"

    def y(v: float) -> float:
        return TOP + plot_h - (v / y_max) * plot_h

    title = f"{unit.capitalize()} per hour of {activity.subject}"
    desc = f"{activity.total:,} {unit} in the incident's hours; peak hour {activity.peak:,}; " + (
        f"baseline ({activity.baseline_label}) {activity.baseline:,.0f}"
        if activity.baseline is not None
        else activity.baseline_label
    )
    parts: list[str] = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
        f'aria-labelledby="chart-title chart-desc" data-hours="{len(hours)}" data-peak="{activity.peak}" '
        f'data-baseline="{"" if activity.baseline is None else f"{activity.baseline:g}"}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart-title">{escape(title)}</title>',
        f'<desc id="chart-desc">{escape(desc)}</desc>',
    ]
    # Shade the incident's hours so the eye finds them first.
    if hours:
        first = next((i for i, h in enumerate(hours) if h.in_incident), None)
        last = max((i for i, h in enumerate(hours) if h.in_incident), default=None)
        if first is not None and last is not None:
            parts.append(
                f'<rect class="chart-window" x="{LEFT + first * slot:.1f}" y="{TOP}" '
                f'width="{(last - first + 1) * slot:.1f}" height="{plot_h}"/>'
            )
            parts.append(f'<text class="chart-note" x="{LEFT + first * slot + 4:.1f}" y="{TOP - 8}">incident</text>')
    # Grid and y axis labels.
    for t in range(ticks + 1):
        v = y_max * t / ticks
        yy = y(v)
        parts.append(f'<line class="chart-grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{yy:.1f}" y2="{yy:.1f}"/>')
        parts.append(f'<text class="chart-axis" x="{LEFT - 8}" y="{yy + 4:.1f}" text-anchor="end">{_fmt(v)}</text>')
    # Bars.
    for i, h in enumerate(hours):
        if h.value <= 0:
            continue
        x = LEFT + i * slot + (slot - bar_w) / 2
        top = y(h.value)
        cls = f"bar bar-{escape(severity)}" if h.in_incident else "bar bar-other"
        label = f"{h.start:%Y-%m-%d %H}:00 UTC: {h.value:,} {unit}"
        if h.failures:
            label += f" ({h.failures} denied or failed)"
        parts.append(
            f'<rect class="{cls}" x="{x:.1f}" y="{top:.1f}" width="{bar_w:.1f}" '
            f'height="{TOP + plot_h - top:.1f}" data-value="{h.value}"><title>{escape(label)}</title></rect>'
        )
    # Baseline.
    if activity.baseline is not None:
        yy = y(activity.baseline)
        parts.append(
            f'<line class="chart-baseline" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{yy:.1f}" y2="{yy:.1f}" '
            f'stroke-dasharray="6 4"/>'
        )
        anchor_y = yy - 6 if yy - 6 > TOP + 10 else yy + 14
        parts.append(
            f'<text class="chart-baseline-label" x="{LEFT + 6}" y="{anchor_y:.1f}">'
            f"{escape(activity.baseline_label)}: {_fmt(activity.baseline)}</text>"
        )
    # X axis: a label every few hours, dates at midnight.
    step = max(1, math.ceil(n / 12))
    for i in range(0, n, step):
        h = hours[i] if i < len(hours) else None
        if h is None:
            continue
        x = LEFT + i * slot + slot / 2
        text = h.start.strftime("%d %b %H:00") if h.start.hour < step or i == 0 else h.start.strftime("%H:00")
        y_text = HEIGHT - BOTTOM + 16
        parts.append(f'<text class="chart-axis" x="{x:.1f}" y="{y_text}" text-anchor="middle">{escape(text)}</text>')
    parts.append(
        f'<line class="chart-axisline" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}"/>'
    )
    parts.append(
        f'<text class="chart-axis" x="{LEFT}" y="{HEIGHT - 8}">{escape(unit)} per hour (UTC) · '
        f"grey: the actor's other evidence</text>"
    )
    parts.append("</svg>")
    return Markup("".join(parts))


def _x_label(start: datetime, step: timedelta | None, first: bool) -> str:
    if step is None or step < timedelta(hours=1):
        return (
            start.strftime("%d %b %H:%M")
            if first or (start.hour == 0 and start.minute == 0)
            else start.strftime("%H:%M")
        )
    return (
        start.strftime("%d %b %H:00") if first or start.hour < step.total_seconds() / 3600 else start.strftime("%H:00")
    )


def series_svg(series: Series, severity: str = "high") -> Markup:
    """A stacked bar chart of ``series`` with its limit and baseline lines, as ``<svg>``."""
    buckets = series.buckets
    n = max(len(buckets), 1)
    top_value = max([float(series.peak), *(line.value for line in series.lines), 1.0])
    y_max, ticks = _axis(top_value * 1.05)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / n
    bar_w = max(1.0, slot * (0.6 if series.step is None else 0.78))
    single = len(series.groups) <= 1

    def y(v: float) -> float:
        return TOP + plot_h - (v / y_max) * plot_h

    desc = f"{series.total:,} {series.unit} during the incident; largest bar {series.peak:,}" + "".join(
        f"; {line.label} {line.value:,.0f}" for line in series.lines
    )
    parts: list[str] = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
        f'aria-labelledby="chart-title chart-desc" data-bars="{len(buckets)}" data-peak="{series.peak}" '
        f'data-lines="{escape(",".join(f"{line.value:g}" for line in series.lines))}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart-title">{escape(series.title)}</title>',
        f'<desc id="chart-desc">{escape(desc)}</desc>',
    ]
    inside = [i for i, b in enumerate(buckets) if b.in_incident]
    if inside and series.step is not None:
        first, last = inside[0], inside[-1]
        parts.append(
            f'<rect class="chart-window" x="{LEFT + first * slot:.1f}" y="{TOP}" '
            f'width="{(last - first + 1) * slot:.1f}" height="{plot_h}"/>'
            f'<text class="chart-note" x="{LEFT + first * slot + 4:.1f}" y="{TOP - 8}">incident</text>'
        )
    for t in range(ticks + 1):
        v = y_max * t / ticks
        yy = y(v)
        parts.append(
            f'<line class="chart-grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{yy:.1f}" y2="{yy:.1f}"/>'
            f'<text class="chart-axis" x="{LEFT - 8}" y="{yy + 4:.1f}" text-anchor="end">{_fmt(v)}</text>'
        )
    for i, b in enumerate(buckets):
        x = LEFT + i * slot + (slot - bar_w) / 2
        base = 0.0
        for g, group in enumerate(series.groups):
            value = b.values.get(group, 0)
            if value <= 0:
                continue
            if single:
                cls = f"bar bar-{escape(severity)}" if b.in_incident else "bar bar-other"
            else:
                cls = f"bar seg-{g}" + ("" if b.in_incident else " is-outside")
            top, bottom = y(base + value), y(base)
            when = b.start.strftime("%Y-%m-%d %H:%M UTC")
            label = f"{when}: {value:,} {series.unit}" + ("" if single else f" from {group}")
            parts.append(
                f'<rect class="{cls}" x="{x:.1f}" y="{top:.1f}" width="{bar_w:.1f}" height="{bottom - top:.1f}" '
                f'data-value="{value}"><title>{escape(label)}</title></rect>'
            )
            base += value
    label_ys: list[float] = []
    for k, line in enumerate(series.lines):
        yy = y(line.value)
        parts.append(
            f'<line class="chart-baseline chart-line-{k}" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{yy:.1f}" '
            f'y2="{yy:.1f}" stroke-dasharray="{"6 4" if k == 0 else "2 3"}"/>'
        )
        anchor_y = yy - 6 if yy - 6 > TOP + 10 else yy + 14
        # Labels of lines close together would overprint: the later one moves clear of the others.
        while any(abs(anchor_y - other) < 14 for other in label_ys):
            anchor_y += 14
        label_ys.append(anchor_y)
        x_text, anchor = LEFT + 6, "start"
        parts.append(
            f'<text class="chart-baseline-label chart-line-{k}" x="{x_text}" y="{anchor_y:.1f}" '
            f'text-anchor="{anchor}">{escape(line.label)}: {_fmt(line.value)}</text>'
        )
    step_labels = max(1, math.ceil(n / (8 if series.step is None else 10)))
    for i in range(0, len(buckets), step_labels):
        x = LEFT + i * slot + slot / 2
        text = _x_label(buckets[i].start, series.step, i == 0)
        y_text = HEIGHT - BOTTOM + 16
        parts.append(f'<text class="chart-axis" x="{x:.1f}" y="{y_text}" text-anchor="middle">{escape(text)}</text>')
    parts.append(
        f'<line class="chart-axisline" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}"/>'
        f'<text class="chart-axis" x="{LEFT}" y="{HEIGHT - 8}">{escape(series.unit)}'
        f"{' per export' if series.step is None else ''} (UTC)</text></svg>"
    )
    return Markup("".join(parts))


GAUGE_W, GAUGE_H = 320, 22


def gauge_svg(gauge: Gauge) -> Markup:
    """A bar for ``gauge.value`` on a scale that shows its limit as a tick, as ``<svg>``."""
    top = max(gauge.value, gauge.limit) * 1.15 or 1.0
    width = GAUGE_W * min(gauge.value / top, 1.0)
    tick = GAUGE_W * gauge.limit / top
    state = "crossed" if gauge.crossed else "below"
    return Markup(
        f'<svg class="gauge gauge-{state}" viewBox="0 0 {GAUGE_W} {GAUGE_H}" width="100%" height="{GAUGE_H}" '
        f'aria-hidden="true" focusable="false" data-value="{gauge.value:g}" data-limit="{gauge.limit:g}" '
        f'xmlns="http://www.w3.org/2000/svg">'
        f'<rect class="gauge-track" x="0" y="5" width="{GAUGE_W}" height="12" rx="3"/>'
        f'<rect class="gauge-bar" x="0" y="5" width="{width:.1f}" height="12" rx="3"/>'
        f'<line class="gauge-limit" x1="{tick:.1f}" x2="{tick:.1f}" y1="0" y2="{GAUGE_H}"/></svg>'
    )
