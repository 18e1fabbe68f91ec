"""Pictures for the dashboard, drawn on the server as SVG (no script, nothing to load): a
task's timeline and the notification-lag distribution. Pure: records in, markup out; every
text is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH = 640
BAR = 22
LABELS = 200  # the width of the status names' column
LABEL_CHARS = 30  # QuickRouter's longest status word, `video_upsampling_completed`, is 26
PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756", "#72b7b2", "#eeca3b")


def timeline(steps: Sequence[tuple[str, float]], start: float, end: float, polls: int) -> str:
    """A task's upstream statuses as bars on one time axis, from `start` (registration) to
    `end` (its end, or now), with the number of polls it took."""
    span = max(end - start, 1e-3)
    rows = []
    for n, (status, since) in enumerate(steps):
        until = steps[n + 1][1] if n + 1 < len(steps) else end
        x = LABELS + (max(since, start) - start) / span * (WIDTH - LABELS - 10)
        w = max(2.0, (min(until, end) - max(since, start)) / span * (WIDTH - LABELS - 10))
        y = 10 + n * (BAR + 6)
        rows.append(
            f'<text x="{LABELS - 6}" y="{y + 15}" text-anchor="end">'
            f"{escape(status[:LABEL_CHARS])}</text>"
            f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{BAR}" '
            f'fill="{PALETTE[n % len(PALETTE)]}"><title>{escape(status)}: '
            f"{until - since:.1f} s</title></rect>"
        )
    height = 10 + len(steps) * (BAR + 6) + 24
    axis = (
        f'<line x1="{LABELS}" y1="{height - 20}" x2="{WIDTH - 10}" y2="{height - 20}" '
        f'stroke="#888"/><text x="{LABELS}" y="{height - 4}">0 s</text>'
        f'<text x="{WIDTH - 10}" y="{height - 4}" text-anchor="end">{span:.1f} s, '
        f"{polls} polls</text>"
    )
    return _svg(height, "".join(rows) + axis, "The task's upstream statuses over time")


def with_final(
    history: Sequence[tuple[str, float]], final: str | None, ended: bool, end: float
) -> list[tuple[str, float]]:
    """A task's status steps, with its final status drawn too once it ended (a step of its
    own at `end`, unless it is already the last one)."""
    steps = list(history)
    if ended and final and (not steps or steps[-1][0] != final):
        steps.append((final, end))
    return steps


def histogram(buckets: Sequence[tuple[str, float]], title: str) -> str:
    """Bars of (label, count), e.g. the notification lag's histogram buckets."""
    top = max((count for _, count in buckets), default=0) or 1
    width = (WIDTH - 20) / max(len(buckets), 1)
    bars = []
    for n, (label, count) in enumerate(buckets):
        h = count / top * 120
        x = 10 + n * width
        bars.append(
            f'<rect x="{x + 2:.1f}" y="{140 - h:.1f}" width="{width - 4:.1f}" height="{h:.1f}" '
            f'fill="#4c78a8"><title>{escape(label)}: {count:g}</title></rect>'
            f'<text x="{x + width / 2:.1f}" y="156" text-anchor="middle">{escape(label)}</text>'
            f'<text x="{x + width / 2:.1f}" y="{136 - h:.1f}" text-anchor="middle">'
            f"{count:g}</text>"
        )
    return _svg(164, "".join(bars), title)


def hourly(hours: Sequence[tuple[str, int, int]], title: str) -> str:
    """Stacked bars of (hour label, delivered, failed): a destination's day, hour by hour,
    failures in red on top of successes."""
    top = max((ok + failed for _, ok, failed in hours), default=0) or 1
    width = (WIDTH - 20) / max(len(hours), 1)
    bars = []
    for n, (label, ok, failed) in enumerate(hours):
        x = 10 + n * width
        h_ok, h_failed = ok / top * 120, failed / top * 120
        bars.append(
            f'<rect x="{x + 1:.1f}" y="{140 - h_ok:.1f}" width="{width - 2:.1f}" '
            f'height="{h_ok:.1f}" fill="#54a24b"><title>{escape(label)}: {ok} delivered'
            f"</title></rect>"
            f'<rect x="{x + 1:.1f}" y="{140 - h_ok - h_failed:.1f}" width="{width - 2:.1f}" '
            f'height="{h_failed:.1f}" fill="#e45756"><title>{escape(label)}: {failed} failed'
            f"</title></rect>"
        )
        if n % 6 == 0:
            bars.append(f'<text x="{x:.1f}" y="156">{escape(label)}</text>')
    return _svg(164, "".join(bars), title)


def _svg(height: float, body: str, label: str) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height:.0f}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">{body}</svg>'
    )
