"""When a task will likely end, learned from the tasks of its model that already ended.

Pure functions. Two kinds of samples are kept per model (in Redis, shared by all workers):
`total`, the seconds from creation to completion, and, per status, the ratio of the time left
after the status began to the time spent before it. The ratio is what makes a step useful:
a task that took 60 s to reach `video_upsampling` will likely take a fixed share of that again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

TOTAL = "_total"  # the sample key of creation-to-completion durations
MIN_SAMPLES = 5
SAMPLE_LIMIT = 200
QUANTILES = (0.1, 0.3, 0.5, 0.7, 0.9, 0.97)
# Probe a little after a predicted end, as a share of the task's age there, so a poll lands
# just after the upstream turns final rather than just before.
PROBE_MARGIN = 0.005
_VEO_ID = re.compile(r":(\d{10})-")


@dataclass(frozen=True)
class Progress:
    """What is known of a running task's timeline, in Unix seconds."""

    created: float
    status: str | None = None
    status_since: float | None = None


def created_at(body: dict[str, Any] | None, task_id: str, fallback: float) -> float:
    """The task's creation: upstream `created_at`, else the time in a Veo id, else `fallback`."""
    detail = body.get("detail") if isinstance(body, dict) else None
    raw = detail.get("created_at") if isinstance(detail, dict) else None
    if isinstance(raw, int | float) and not isinstance(raw, bool) and raw > 1e12:
        return float(raw) / 1000.0
    match = _VEO_ID.search(task_id)
    if match:
        return float(match.group(1))
    return fallback


def status_since(body: dict[str, Any] | None, seen_at: float) -> float:
    """When the current status began: `status_update_time` if it is sane, else `seen_at`."""
    raw = body.get("status_update_time") if isinstance(body, dict) else None
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        since = float(raw) / 1000.0
        if seen_at - 86400 < since <= seen_at + 5:
            return min(since, seen_at)
    return seen_at


def samples(
    history: Sequence[tuple[str, float]], created: float, ended: float
) -> list[tuple[str, float]]:
    """What one completed task teaches: its total duration, and a ratio per status step."""
    found = [(TOTAL, ended - created)] if ended > created else []
    for status, since in history:
        before, after = since - created, ended - since
        if before > 0 and after >= 0:
            found.append((status, after / before))
    return found


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def next_poll_at(
    now: float, progress: Progress, learned: Mapping[str, Sequence[float]], min_gap: float
) -> float | None:
    """The next moment worth polling, or None when nothing learned applies.

    The candidates are the predicted ends at a spread of quantiles; the first one still ahead
    is the next poll. Once they are all behind (a task slower than nearly all seen), it is
    None and plain backoff takes over.
    """
    ratios = learned.get(progress.status or "", ())
    since = progress.status_since
    if since is not None and since > progress.created and len(ratios) >= MIN_SAMPLES:
        age = since - progress.created
        ends = [since + quantile(ratios, q) * age for q in QUANTILES]
    elif len(totals := learned.get(TOTAL, ())) >= MIN_SAMPLES:
        ends = [progress.created + quantile(totals, q) for q in QUANTILES]
    else:
        return None
    probes = [end + PROBE_MARGIN * (end - progress.created) for end in ends]
    ahead = [p for p in probes if p >= now + min_gap]
    return min(ahead) if ahead else None
