"""When a task will likely end, learned from the tasks of its model that already ended.

Pure functions. Three kinds of samples are kept per model (in Redis, shared by all workers):
`total`, the seconds from creation to completion; per status, the ratio of the time left
after the status began to the time spent before it; and per status, the same ratio from the
moment the status was over (the next status seen began). The ratio is what makes a step
useful: a task that took 60 s to reach `video_upsampling` will likely take a fixed share of
that again, and one still in it at 70 s needs at least what follows the step, a share of 70.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

TOTAL = "_total"  # the sample key of creation-to-completion durations
OVER = ">"  # a status's key with this suffix: its samples of what was left once it was over
MIN_SAMPLES = 5
# Below this many finished tasks, a model's quantiles fall on a few distinct samples, far
# apart: the polls they place leave gaps that are all lag, so a young model is polled as the
# 5-second loop would be.
CONFIDENT_SAMPLES = 20
SAMPLE_LIMIT = 200
# Where the polls of a prediction go: a few quantiles of the predicted end, and one below the
# lowest sample (TAIL_REACH of its distance to the lower quartile below it), since with n
# samples one new task in n + 1 ends before the lowest: without that poll, such a task was
# seen 17 to 40 s late (`python -m bench polling`). Fewer, wider quantiles pay for it.
QUANTILES = (0.1, 0.3, 0.5, 0.7, 0.9, 0.99)
TAIL_REACH = 0.5
# Probe a little after a predicted end, as a share of the task's age there, so a poll lands
# just after the upstream turns final rather than just before.
PROBE_MARGIN = 0.001
# A task older than nearly every one seen is about to end, or stuck: poll it every few percent
# of its age (seconds for a Veo task), not at the backoff's cap.
OVERDUE_STEP = 0.03
# A predicted window this many window gaps wide or narrower (a task seen in its last steps,
# whose length varies little) is polled evenly, a window gap apart, rather than at quantiles:
# where samples bunch, quantiles bunch too and leave gaps of 3 to 4 s elsewhere, and those
# gaps were the learned tail's lag (`python -m bench polling`). Wider windows keep the
# quantiles: polled evenly they would cost dozens of requests, and their polls soon see a
# later status, whose window is narrower.
WINDOW_POLLS = 12
# A task that outlives its window most likely ends just after it: keep the window's gap for
# this many more polls before falling back to the overdue step (a task seen in its last step
# outlives a window taught by 20 to 200 samples once in 20 to 200; at the overdue step it was
# seen up to 4.7 s late).
PAST_WINDOW_POLLS = 4
# A task still in a step needs at least what follows the step: no poll before this quantile
# of that (as a share of the task's age) has passed. Where a step comes before a long last
# one (`video_upsampling`, then `video_upsampling_completed`), polls placed on the step's
# predicted end only saw the step again: 1.4 of a Veo task's 9.9 requests. A low quantile,
# not the lowest sample, since a step's next status is not always seen (it may last less
# than a poll's gap), and a task seen next completed taught a "nothing left" of 0.
FLOOR_QUANTILE = 0.05
# Nor further ahead than the task's age: from an early step (`pending` at 10 s) what follows
# is 10 to 30 times the time spent, varies most, and is less for a task still in the step
# (it overstayed it) than its peers' ratios say: such floors had tasks of 120 s, seen in
# `pending` at 10 s, next polled at 130 s.
FLOOR_REACH = 1.0
# A task is polled when this share of its model's tasks that lasted as long had ended, if its
# step's window opens later: see `next_poll_at`.
TOTAL_CHECK = 0.5
# Taught by fewer tasks than this, a step's FLOOR_QUANTILE falls on its lowest or second
# lowest sample (from 31 on, two lie below it): the floor is placed below the lowest instead
# (`lower_tail`), as a window's first probe is. A model just learned from its 20 fastest
# tasks placed such floors 35 s ahead of three of its slower tasks in `bench lag`, which
# ended 5 to 6 s before them. (From 40, as first tried, a model taught by 30 spent 0.14
# requests a task more in `bench polling`, and 10.3 in one run of `bench lag`.)
FLOOR_SAMPLES = 31
_VEO_ID = re.compile(r":(\d{10})-")


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
    """What one completed task teaches: its total duration, and per status step two ratios,
    of the time left to the time spent, once at the step's beginning and once at its end."""
    found = [(TOTAL, ended - created)] if ended > created else []
    # Each step is over when the next one seen began, the last when the task ended.
    overs = [since for _, since in history[1:]] + [ended] if history else []
    for (status, since), over in zip(history, overs, strict=True):
        before, after = since - created, ended - since
        if before > 0 and after >= 0:
            found.append((status, after / before))
        if over > created and ended >= over:
            found.append((status + OVER, (ended - over) / (over - created)))
    return found


def quantile(ordered: Sequence[float], q: float) -> float:
    """The sample at quantile `q` of `ordered`, a sorted sequence (sorted once per
    prediction by the caller, not once per quantile)."""
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def next_poll_at(
    now: float,
    created: float,
    history: Sequence[tuple[str, float]],
    learned: Mapping[str, Sequence[float]],
    min_gap: float,
    probe_step: float = 0.0,
    young_gap: float | None = None,
    window_gap: float = 0.0,
) -> float | None:
    """The next moment worth polling, or None when nothing learned applies.

    The prediction comes from the latest status in `history` that enough tasks were seen in
    (short steps are often never seen), else from the model's total durations. The candidates
    are the predicted ends at a spread of quantiles; the first one still ahead is the next
    poll. With `probe_step` > 0, polls also come every `probe_step` of the task's age between
    the first and the last candidate: more requests, less lag. Once they are all behind (a
    task slower than nearly all seen), polls come every `OVERDUE_STEP` of the task's age.

    With `young_gap` (the longest wait the 5-second loop a user would write allows, less the
    tracker's own time): a model that fewer than `CONFIDENT_SAMPLES` tasks taught predicts
    nothing (None), so it is polled as that loop would be (`polling.next_step`: the backoff,
    never longer than the gap), since its few samples place polls far apart. And once a task
    is inside its likely window (past its earliest plausible end), or past it, it never waits
    longer than the gap either: where the samples are sparse (a model still being learned,
    whose first finished tasks were its fastest) the quantiles fall far apart. So no task that
    ends inside or after its likely window is later than the loop it replaces, with one
    exception: a task still in a step is not polled before `FLOOR_QUANTILE` of what the
    model's tasks still had to go once that step was over, as a share of the task's age
    (it cannot end sooner, unless it is faster than 19 tasks in 20), never further ahead
    than its age, while its window lasts; taught by fewer than `FLOOR_SAMPLES` tasks, below
    the lowest. A step's window is also checked against the model's totals
    (`_checked_by_total`).

    With `window_gap` > 0, a window no wider than `WINDOW_POLLS` gaps is polled every
    `window_gap` from its earliest plausible end to its last quantile instead, and any window
    `PAST_WINDOW_POLLS` more times a gap apart after its end.
    """
    if young_gap is not None and len(learned.get(TOTAL, ())) < CONFIDENT_SAMPLES:
        return None  # the caller's plain rule: the backoff, never longer than `young_gap`
    for status, since in reversed(history):
        ratios = learned.get(status, ())
        if since > created and len(ratios) >= MIN_SAMPLES:
            base, scale, values = since, since - created, ratios
            break
    else:
        values = learned.get(TOTAL, ())
        if len(values) < MIN_SAMPLES:
            return None
        base, scale = created, 1.0
    ordered = sorted(values)
    ends = [base + quantile(ordered, q) * scale for q in QUANTILES]
    earliest = base + lower_tail(ordered) * scale
    at = _next_probe(now, created, ends, earliest, min_gap, probe_step, young_gap, window_gap)
    if base > created:  # a step's window: the total's second opinion
        at = _checked_by_total(at, now, created, learned, min_gap, young_gap)
    overs = learned.get(history[-1][0] + OVER, ()) if history else ()
    if len(overs) >= MIN_SAMPLES and at < ends[-1]:
        # Still in its step at `now`: the end is at least what follows the step away. Not
        # past the window's last quantile, so a task stuck in a step keeps the overdue step.
        reach = min(FLOOR_REACH, _floor_ratio(sorted(overs)))
        at = max(at, now + reach * (now - created))
    return at


def _floor_ratio(ordered: Sequence[float]) -> float:
    """The least share of its age a task still in a step has to go, from the sorted ratios
    `ordered` of what its model's tasks had to go once that step was over."""
    if len(ordered) >= FLOOR_SAMPLES:
        return quantile(ordered, FLOOR_QUANTILE)
    return lower_tail(ordered)


def _checked_by_total(
    at: float,
    now: float,
    created: float,
    learned: Mapping[str, Sequence[float]],
    min_gap: float,
    young_gap: float | None,
) -> float:
    """`at`, the next poll a step's window places, checked against the model's totals.

    A task whose early steps were slow has a low ratio (its time before the step was long),
    below every sample's, and its step's window opens after its end: one poll when
    `TOTAL_CHECK` of the tasks that lasted this long had ended, if that comes first and later
    than the loop's gap (on short tasks, where the window is seconds away, it only added
    requests: a new model's batch cost 1.03 x the loop's). If half of them had ended within
    the loop's gap from now, or none lasted this long, no longer apart than that gap: a
    model just learned, from its fastest tasks, has seen few tasks outlast its slower ones
    (such tasks of a new model, seen in `video_generating` the moment it was learned, were
    polled next 65 to 120 s later and seen 8 to 11 s late in `python -m bench polling`), and
    of a task older than every one it saw end it knows nothing."""
    gap = max(min_gap, young_gap or 0.0)
    longer = sorted(t for t in learned.get(TOTAL, ()) if created + t > now)
    by_total = created + quantile(longer, TOTAL_CHECK) if longer else now
    if by_total <= now + gap:
        return at if young_gap is None else min(at, now + gap)
    return min(at, by_total)


def lower_tail(ordered: Sequence[float]) -> float:
    """A value below the lowest of the sorted samples `ordered`, by TAIL_REACH of its
    distance to the lower quartile: where the next task's value may still fall (never
    below 0)."""
    lowest = ordered[0]
    return max(0.0, lowest - TAIL_REACH * (quantile(ordered, 0.25) - lowest))


def _next_probe(
    now: float,
    created: float,
    ends: Sequence[float],
    earliest: float,
    min_gap: float,
    probe_step: float,
    longest: float | None = None,
    window_gap: float = 0.0,
) -> float:
    """The first probe still ahead among the predicted `ends` (and the probe steps between
    them) and the `earliest` plausible end, else an overdue poll; once past the `earliest`,
    never more than `longest` ahead. A narrow window is probed every `window_gap`, and any
    window a few more times past its end."""
    probes = [end + PROBE_MARGIN * (end - created) for end in ends]
    if probe_step > 0:
        first, last = min(probes), max(probes)
        step = max(min_gap, probe_step * (first - created))
        probes += [first + i * step for i in range(1, int((last - first) / step) + 1)]
    tail = earliest + PROBE_MARGIN * (earliest - created)
    last = max(probes)
    if window_gap > 0 and last - tail <= WINDOW_POLLS * window_gap:
        count = max(1, math.ceil((last - tail) / window_gap))
        probes = [tail + i * window_gap for i in range(1, count + 1)]
    if window_gap > 0:
        last = max(probes)
        probes += [last + i * window_gap for i in range(1, PAST_WINDOW_POLLS + 1)]
    ahead = [p for p in (*probes, tail) if p >= now + min_gap]
    at = min(ahead) if ahead else now + max(min_gap, OVERDUE_STEP * (now - created))
    if longest is not None and now >= tail:
        return min(at, now + max(min_gap, longest))
    return at
