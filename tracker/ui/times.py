"""Times as the dashboard shows them: relative to now ("3 min ago"), the exact time on hover
and in the markup (`<time datetime=… title=…>`). Pure: numbers in, text out."""

from __future__ import annotations

from datetime import datetime

from markupsafe import Markup, escape

from tracker.core.events import iso_time

STEPS = ((60.0, "s", 1.0), (3600.0, "min", 60.0), (86400.0, "h", 3600.0))


def relative(at: float, now: float) -> str:
    """`at` as a reader says it: "just now", "40 s ago", "3 min ago", "2 h ago", "4 days ago",
    or "in 5 min" ahead."""
    gap = now - at
    ahead = gap < 0
    gap = abs(gap)
    if gap < 1:
        return "just now"
    for limit, unit, size in STEPS:
        if gap < limit:
            amount = f"{int(gap // size)} {unit}"
            break
    else:
        days = int(gap // 86400)
        amount = f"{days} day" + ("" if days == 1 else "s")
    return f"in {amount}" if ahead else f"{amount} ago"


def when(at: float | str | None, now: float) -> Markup:
    """A `<time>` element: relative text, the exact ISO 8601 time in `datetime` and `title`.
    `at` is Unix seconds, or an ISO time the API's views already made."""
    if at is None or at == "":
        return Markup("")
    if isinstance(at, str):
        exact = at
        seconds = datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
    else:
        exact, seconds = iso_time(at), at
    text = relative(seconds, now)
    return Markup('<time datetime="{0}" title="{0}">{1}</time>').format(escape(exact), text)
