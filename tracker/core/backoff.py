"""When to try again: pure functions of the attempt count, the settings and a random draw."""

from __future__ import annotations

import email.utils
import math
from collections.abc import Sequence

# A Retry-After longer than this is treated as this: a receiver or upstream must not be able to
# park a job for days with one header.
MAX_RETRY_AFTER = 3600.0


def jittered(delay: float, jitter: float, draw: float) -> float:
    """`delay` spread by +/- `jitter` (a fraction) using `draw` in [0, 1)."""
    return max(0.0, delay * (1.0 + jitter * (2.0 * draw - 1.0)))


def poll_delay(
    polls: int, *, first: float, factor: float, cap: float, jitter: float, draw: float
) -> float:
    """Seconds until the next poll, after `polls` polls so far (0 before the first one)."""
    exponent = max(0, polls - 1)
    # Bound the exponent before it overflows: the cap is reached long before.
    base = cap if exponent > 64 else min(cap, first * factor**exponent)
    return jittered(base, jitter, draw)


def delivery_delay(
    attempts: int, schedule: Sequence[float], *, jitter: float, draw: float
) -> float | None:
    """Seconds until the next delivery attempt after `attempts` failed ones; None when spent."""
    if attempts < 1 or attempts > len(schedule):
        return None
    return jittered(schedule[attempts - 1], jitter, draw)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a `Retry-After` header: delta-seconds or an HTTP date; None if unreadable."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None or now is None:
            return None
        seconds = when.timestamp() - now
    if math.isnan(seconds):
        return None
    return min(MAX_RETRY_AFTER, max(0.0, seconds))
