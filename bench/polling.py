"""Learned polling, offline: `tracker.core.estimates.next_poll_at` and `polling.first_delay`
replayed on synthetic Veo-like tasks, with no simulator, Redis or clock.

`bench lag` measures the real thing, but one run takes minutes and its tail (p99: two tasks
of 200) moves from run to run with the machine's load. The decisions are pure functions, so
the same task mix (the simulator's status steps, step lengths varying by task) can be replayed
through them exactly: thousands of tasks a second, the same figures for the same seed, and the
worst tasks printed with the statuses they were seen in. Each seed: a model taught by 30 tasks
(each polled as a model not learned yet is, so it learns only the steps it saw), then `n`
tasks polled with what it learned, and it alone (the hardest case: a running model keeps
learning). Lag = the poll that saw the task final - its end; the tracker's own time (a
fraction of a second at x2) is not in it. Then, per seed, `bench lag`'s groups: 200 tasks
registered one after another, the model learning from those that end, taught first by a
warm-up of 30 or never seen, against the 5 s loop on the same tasks.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Mapping, Sequence

from bench.harness import percentile
from tracker.core import estimates, polling
from tracker.core.upstream import Running
from tracker.devtools.scenarios import STEPS, Scenario, step_starts
from tracker.settings import Settings
from tracker.store.learning import read_again_after

Timeline = list[tuple[str, float]]  # each status step and when it begins (seconds from creation)


def synthetic_task(rng: random.Random, low: float, high: float) -> tuple[float, Timeline]:
    """A task of the simulator's `success` scenario: its duration and its status steps."""
    duration = rng.uniform(low, high)
    steps, _ = STEPS[Scenario.SUCCESS]
    starts = step_starts(steps, f"synthetic-{rng.random()}")
    return duration, [(step, start * duration) for step, start in zip(steps, starts, strict=True)]


def replay(
    duration: float,
    timeline: Timeline,
    learned: Mapping[str, Sequence[float]],
    settings: Settings,
) -> tuple[float, int, Timeline]:
    """Poll one task as a worker would: its lag, its requests, and the statuses seen."""
    at = polling.first_delay(settings, 0.5, learned, 0.0, 0.0)
    seen: Timeline = []
    polls = 0
    while True:
        polls += 1
        if at >= duration:
            return at - duration, polls, seen
        at += wait_after(at, polls, timeline, seen, learned, settings)


def wait_after(
    at: float,
    polls: int,
    timeline: Timeline,
    seen: Timeline,
    learned: Mapping[str, Sequence[float]],
    settings: Settings,
) -> float:
    """What a worker decides after poll number `polls` of a running task (created at 0 and
    registered then), seeing its status at `at` (added to `seen`): the wait to the next."""
    status, since = max((s for s in timeline if s[1] <= at), key=lambda s: s[1])
    if not seen or seen[-1][0] != status:
        seen.append((status, since))
    predicted = estimates.next_poll_at(
        at, 0.0, seen, learned, polling.min_gap(settings), settings.poll_probe_step,
        young_gap=settings.poll_unlearned_max_delay, window_gap=settings.poll_window_gap,
    )  # fmt: skip
    step = polling.next_step(
        Running(status, {}), task_id="veo3.1-fast:0-replay", polls=polls, rejections=0,
        last_status=status, now=at, deadline_at=math.inf, settings=settings, draw=0.5,
        predicted_at=predicted, registered_at=0.0,
    )  # fmt: skip
    assert isinstance(step, polling.Wait)
    return step.delay


def learn(tasks: Sequence[tuple[float, Timeline]], settings: Settings) -> dict[str, list[float]]:
    """What finished tasks teach a model, each polled as an unlearned model's task is."""
    learned: dict[str, list[float]] = {}
    for duration, timeline in tasks:
        _, _, seen = replay(duration, timeline, {}, settings)
        for key, value in estimates.samples(seen, 0.0, duration):
            learned.setdefault(key, []).append(value)
    return learned


def measure(seed: int, low: float, high: float, n: int, worst: int = 0) -> dict[str, float]:
    settings = Settings()
    rng = random.Random(seed)
    learned = learn([synthetic_task(rng, low, high) for _ in range(30)], settings)
    results = []
    for _ in range(n):
        duration, timeline = synthetic_task(rng, low, high)
        results.append((*replay(duration, timeline, learned, settings), duration))
    lags = [lag for lag, _, _, _ in results]
    row = {
        "p50": percentile(lags, 0.5), "p95": percentile(lags, 0.95),
        "p99": percentile(lags, 0.99), "requests": sum(r[1] for r in results) / n,
    }  # fmt: skip
    print(f"{low:g}-{high:g} s, seed {seed}: p50 {row['p50']:.2f}  p95 {row['p95']:.2f}  "
          f"p99 {row['p99']:.2f}  requests/task {row['requests']:.2f}")  # fmt: skip
    for lag, polls, seen, duration in sorted(results, key=lambda r: -r[0])[:worst]:
        steps = ", ".join(f"{status}@{since:.0f}" for status, since in seen)
        print(f"    lag {lag:5.1f} s after {polls} polls, ended at {duration:.0f} s; seen: {steps}")
    return row


def batch(
    seed: int, low: float, high: float, n: int, spread: float, warm: int = 0
) -> dict[str, float]:
    """`n` tasks, each registered as it is created, one every `spread / n` seconds, as `bench
    lag` registers them: each polled as a worker would, the model learning from each one
    that ends (so the later ones are polled on what the earlier taught), against the 5 s loop
    started at the same moment (a poll then and every 5 s until final). A model never seen
    with `warm` 0; else one taught first by `warm` tasks polled as a new model's are (as
    `bench lag`'s warm-up does), whose first polls of the batch rest on those alone. The
    tasks are polled on what a worker last read of the model, read again as `Learning` does
    (every `TRACKER_LEARNING_REFRESH`, a fifteenth of it while the model is young): what
    ended since is not known yet."""
    settings = Settings()
    rng = random.Random(seed)
    learned = learn([synthetic_task(rng, low, high) for _ in range(warm)], settings)
    tasks = [synthetic_task(rng, low, high) for _ in range(n)]
    made = [i * spread / n for i in range(n)]
    due = [(made[i], i) for i in range(n)]  # a task's first entry is its registration
    seen: list[Timeline] = [[] for _ in range(n)]
    polls, lags = [0] * n, [0.0] * n
    heapq.heapify(due)
    view, read_at = learned, -math.inf
    while due:
        at, i = heapq.heappop(due)
        if at - read_at > read_again_after(view, settings.learning_refresh):
            view, read_at = {key: list(values) for key, values in learned.items()}, at
        (duration, timeline), age = tasks[i], at - made[i]
        if age > 0:
            polls[i] += 1
        if age >= duration:
            lags[i] = age - duration
            for key, value in estimates.samples(seen[i], 0.0, duration):
                kept = learned.setdefault(key, [])
                kept.append(value)
                del kept[: -estimates.SAMPLE_LIMIT]
        elif age > 0:
            wait = wait_after(age, polls[i], timeline, seen[i], view, settings)
            heapq.heappush(due, (at + wait, i))
        else:  # registered: the first poll is placed on what the model taught so far
            heapq.heappush(due, (at + polling.first_delay(settings, 0.5, view, 0.0, 0.0), i))
    loop = sum(math.ceil(duration / 5) + 1 for duration, _ in tasks) / n
    row = {
        "p50": percentile(lags, 0.5), "p95": percentile(lags, 0.95),
        "p99": percentile(lags, 0.99), "requests": sum(polls) / n, "loop": loop,
    }  # fmt: skip
    group = f"learned from {warm}" if warm else "never seen"
    print(f"{low:g}-{high:g} s, seed {seed}, {group}: p50 {row['p50']:.2f}  "
          f"p95 {row['p95']:.2f}  p99 {row['p99']:.2f}  requests/task {row['requests']:.2f} "
          f"(the loop's {loop:.2f}: {row['requests'] / loop:.2f} x)")  # fmt: skip
    return row


def run(n: int = 2000, seeds: int = 5, worst: int = 3) -> list[dict[str, float]]:
    """Long tasks (90-250 s) and short ones (5-15 s), `seeds` replays of `n` tasks each, of a
    model taught by 30 and learning no more; then, per seed and size, 200 tasks as `bench
    lag` runs them: of a model taught by a warm-up of 30, and of a model never seen."""
    print(
        f"Learned polling replayed offline: {n} tasks a seed after 30 taught the model "
        "(upstream seconds, the tracker's own time left out)"
    )
    rows = []
    sizes = ((90.0, 250.0), (5.0, 15.0))
    for low, high in sizes:
        rows += [measure(seed, low, high, n, worst) for seed in range(seeds)]
    for warm in (30, 0):
        for low, high in sizes:
            # 200 registrations over 25 s (at x2 in `bench lag`, 12.5 real seconds)
            rows += [batch(seed, low, high, 200, 25.0, warm) for seed in range(seeds)]
    return rows
