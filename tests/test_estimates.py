"""Learning when tasks end, and the shared upstream token bucket."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools

import pytest
import redis.asyncio

from tracker.core import estimates, polling
from tracker.core.estimates import OVER, TOTAL
from tracker.core.upstream import Running, TryLater
from tracker.settings import Settings
from tracker.store.ratelimit import UpstreamBucket


def test_created_at_prefers_the_upstream_then_the_veo_id() -> None:
    assert estimates.created_at({"detail": {"created_at": 1770350082099}}, "x", 5.0) == (
        1770350082.099
    )
    assert estimates.created_at({}, "veo3.1-fast:1770350082-abc", 5.0) == 1770350082.0
    assert estimates.created_at(None, "grok:uuid", 5.0) == 5.0
    assert estimates.created_at({"detail": {"created_at": True}}, "grok:x", 5.0) == 5.0


NOW = 1_770_000_000.0


@pytest.mark.parametrize(
    ("update_ms", "expected"),
    [
        (NOW * 1000 - 30_000, NOW - 30),  # began 30 s ago
        (NOW * 1000 + 2_000, NOW),  # a little ahead of our clock: now
        (NOW * 1000 + 60_000, NOW),  # far ahead: not believed
        (1_000, NOW),  # 1970: not believed
        (None, NOW),
        ("x", NOW),
    ],
)
def test_status_since_is_the_upstream_time_when_sane(update_ms: object, expected: float) -> None:
    assert estimates.status_since({"status_update_time": update_ms}, NOW) == expected


def test_samples_are_the_total_and_two_ratios_per_step() -> None:
    history = [("pending", 100.0), ("video_generating", 110.0), ("video_upsampling", 160.0)]
    found = dict(estimates.samples(history, created=100.0, ended=180.0))
    assert found == {
        TOTAL: 80.0,
        # what was left when the step began, as a share of the time spent until then
        "video_generating": 7.0,
        "video_upsampling": 20 / 60,
        # and when it was over (the next status seen began, or the task ended)
        "pending" + OVER: 7.0,
        "video_generating" + OVER: 20 / 60,
        "video_upsampling" + OVER: 0.0,
    }


def test_a_task_seen_final_on_its_first_poll_teaches_its_total_only() -> None:
    assert estimates.samples([], created=100.0, ended=180.0) == [(TOTAL, 80.0)]


GENERATING = [("pending", 0.0), ("video_generating", 10.0)]


def test_no_prediction_without_enough_samples() -> None:
    learned = {"video_generating": [7.0] * 4, TOTAL: [80.0] * 4}
    assert estimates.next_poll_at(11.0, 0.0, GENERATING, learned, 0.1) is None


def test_a_young_model_never_waits_longer_than_its_gap() -> None:
    few = {TOTAL: [80.0, 82.0, 84.0, 200.0, 210.0]}  # five tasks: quantiles far apart
    free = estimates.next_poll_at(90.0, 0.0, [("pending", 0.0)], few, 0.1)
    held = estimates.next_poll_at(90.0, 0.0, [("pending", 0.0)], few, 0.1, young_gap=10.0)
    assert free is not None and free > 200.0
    assert held is None  # polled by the plain rule, never longer apart than the gap
    many = {TOTAL: few[TOTAL] * 4}  # confident: the prediction stands before its window
    assert estimates.next_poll_at(50.0, 0.0, [("pending", 0.0)], many, 0.1, young_gap=10.0) > 75
    # Inside the window, where these samples leave a gap from 84 to 200 s: no longer than 10 s.
    assert estimates.next_poll_at(90.0, 0.0, [("pending", 0.0)], many, 0.1, young_gap=10.0) == 100
    # Never seen at all: no prediction either (`polling.next_step` caps the backoff).
    assert estimates.next_poll_at(11.0, 0.0, GENERATING, {}, 0.1, young_gap=4.8) is None


def test_an_overdue_task_of_a_learned_model_never_waits_longer_than_the_gap() -> None:
    history = [("pending", 0.0)]
    learned = {TOTAL: [float(d) for d in range(90, 251)]}
    capped = estimates.next_poll_at(300.0, 0.0, history, learned, 0.1, young_gap=4.8)
    assert capped == pytest.approx(304.8)  # 3 % of its age would be 9 s
    before = estimates.next_poll_at(50.0, 0.0, history, learned, 0.1, young_gap=4.8)
    assert before == estimates.next_poll_at(50.0, 0.0, history, learned, 0.1)  # before: as ever


def test_the_first_poll_of_a_model_not_learned_comes_as_the_loops_would() -> None:
    settings = Settings()
    learned = {TOTAL: [float(d) for d in range(90, 251)]}  # long tasks: first likely at 70 s
    assert polling.first_delay(settings, 0.5, learned, 0.0, 0.0) == settings.poll_first_delay
    assert polling.first_delay(settings, 0.5, {}, 0.0, 0.0) == settings.poll_unlearned_max_delay
    short = {TOTAL: [5.0 + d / 20 for d in range(200)]}  # short tasks: sooner than 10 s
    assert polling.first_delay(settings, 0.5, short, 0.0, 0.0) < settings.poll_first_delay


def test_an_exact_ratio_predicts_the_end_with_a_small_margin() -> None:
    at = estimates.next_poll_at(11.0, 0.0, GENERATING, {"video_generating": [7.0] * 10}, 0.1)
    assert at == pytest.approx(80.0 * (1 + estimates.PROBE_MARGIN))


def test_an_unlearned_short_step_uses_the_step_before_it() -> None:
    history = [*GENERATING, ("video_upsampling_completed", 75.0)]
    at = estimates.next_poll_at(76.0, 0.0, history, {"video_generating": [7.0] * 10}, 0.1)
    assert at == pytest.approx(80.0 * (1 + estimates.PROBE_MARGIN))


def test_spread_samples_probe_below_the_lowest_then_the_quantiles_then_every_few_percent() -> None:
    history = [("pending", 0.0)]
    learned = {TOTAL: [float(d) for d in range(90, 251)]}
    # Below the lowest (90 s) by half its distance to the lower quartile (130 s): 70 s.
    first = estimates.next_poll_at(1.0, 0.0, history, learned, 0.1)
    assert first == pytest.approx(70.0 * (1 + estimates.PROBE_MARGIN))
    second = estimates.next_poll_at(first + 0.01, 0.0, history, learned, 0.1)
    assert second is not None and 100 < second < 110  # about the 10th percentile
    third = estimates.next_poll_at(second + 0.01, 0.0, history, learned, 0.1)
    assert third is not None and 30 < third - second < 40  # the 30th: quantiles far apart
    overdue = estimates.next_poll_at(300.0, 0.0, history, learned, 0.1)
    assert overdue == pytest.approx(300.0 + estimates.OVERDUE_STEP * 300.0)


def test_the_lower_tail_reaches_below_the_lowest_sample_never_below_zero() -> None:
    assert estimates.lower_tail([10.0, 12.0, 14.0, 16.0, 18.0]) == 9.0
    assert estimates.lower_tail([1.0, 100.0, 100.0, 100.0]) == 0.0


def test_a_probe_step_adds_polls_inside_the_likely_window() -> None:
    history = [("pending", 0.0)]
    learned = {TOTAL: [float(d) for d in range(90, 251)]}
    sparse = estimates.next_poll_at(150.0, 0.0, history, learned, 0.1)
    dense = estimates.next_poll_at(150.0, 0.0, history, learned, 0.1, probe_step=0.002)
    assert sparse is not None and dense is not None
    assert dense - 150.0 <= 0.002 * 95 + 0.1 < sparse - 150.0


def test_a_narrow_window_is_polled_evenly_a_window_gap_apart() -> None:
    # Seen in its last step at 100 s: it ends 10 to 18 s later, samples bunched at both ends
    # (quantiles there would leave a gap of several seconds in the middle).
    history = [("pending", 0.0), ("video_upsampling_completed", 100.0)]
    ratios = [0.1] * 10 + [0.18] * 10
    learned = {"video_upsampling_completed": ratios, TOTAL: [118.0] * 20}
    polls, at = [], 101.0
    while at < 125.0:
        next_at = estimates.next_poll_at(at, 0.0, history, learned, 0.1, window_gap=1.5)
        assert next_at is not None
        polls.append(next_at)
        at = next_at
    inside = [p for p in polls if 110.0 <= p <= 118.0]
    assert max(b - a for a, b in itertools.pairwise(inside)) <= 1.5 + 1e-9
    assert polls[0] == pytest.approx(110.0 * (1 + estimates.PROBE_MARGIN))  # from its start
    by_quantiles = estimates.next_poll_at(111.0, 0.0, history, learned, 0.1)
    assert by_quantiles is not None and by_quantiles - 111.0 > 5.0  # what the gap replaces


def test_past_a_narrow_window_polls_keep_its_gap_a_few_more_times() -> None:
    history = [("pending", 0.0), ("video_upsampling_completed", 100.0)]
    learned = {"video_upsampling_completed": [0.1] * 10 + [0.18] * 10, TOTAL: [118.0] * 20}
    # The window (110.11 to 118.12 s) is polled every 1.5 s from 110.11: its last at 119.11.
    last = 110.0 * (1 + estimates.PROBE_MARGIN) + 6 * 1.5
    for i in range(1, estimates.PAST_WINDOW_POLLS + 1):
        at = estimates.next_poll_at(last + (i - 1) * 1.5 + 0.2, 0.0, history, learned, 0.1, 0.0,
                                    window_gap=1.5)  # fmt: skip
        assert at == pytest.approx(last + i * 1.5)
    beyond = last + estimates.PAST_WINDOW_POLLS * 1.5 + 0.1
    at = estimates.next_poll_at(beyond, 0.0, history, learned, 0.1, window_gap=1.5)
    assert at == pytest.approx(beyond * (1 + estimates.OVERDUE_STEP))  # then the overdue step


def test_past_its_earliest_plausible_end_a_task_waits_no_longer_than_the_gap() -> None:
    history = [("pending", 0.0)]
    learned = {TOTAL: [float(d) for d in range(90, 251)]}  # earliest 70 s, 10th percentile 106
    assert estimates.next_poll_at(60.0, 0.0, history, learned, 0.1, young_gap=4.7) == (
        pytest.approx(70.0 * (1 + estimates.PROBE_MARGIN))
    )
    # Past the probe below the lowest sample and before the first quantile: a task ending
    # there was seen up to 36 s late; now no later than the loop's gap.
    assert estimates.next_poll_at(75.0, 0.0, history, learned, 0.1, young_gap=4.7) == 79.7
    assert estimates.next_poll_at(75.0, 0.0, history, learned, 0.1) > 106.0  # without the gap


def test_a_task_still_in_a_step_is_not_polled_before_what_follows_the_step() -> None:
    # Seen in video_upsampling at 170 s (it began at 140 s): it ends 168 to 195 s if it ends
    # as the 20 tasks before it did, but once their step was over, 5.5 % or more of the time
    # until then was still to come, in all but two of 40 tasks: at least 9.35 s from now.
    history = [("pending", 0.0), ("video_upsampling", 140.0)]
    ratios = {"video_upsampling": [0.2 + i / 100 for i in range(20)], TOTAL: [180.0] * 20}
    overs = [0.05 + i / 400 for i in range(40)]
    learned = {**ratios, "video_upsampling" + OVER: overs}
    args = {"min_gap": 0.1, "young_gap": 4.7, "window_gap": 1.5}
    without = estimates.next_poll_at(170.0, 0.0, history, ratios, **args)
    floored = estimates.next_poll_at(170.0, 0.0, history, learned, **args)
    assert without is not None and without < 172.0  # its next quantile
    assert floored == pytest.approx(170.0 + 0.055 * 170.0)
    # Once past the window, stuck in its step: the overdue step, the floor no longer holds.
    assert estimates.next_poll_at(300.0, 0.0, history, learned, **args) == pytest.approx(304.7)
    # A last step teaches that nothing followed it: no floor.
    last = [("pending", 0.0), ("video_upsampling_completed", 140.0)]
    ends = {"video_upsampling_completed": ratios["video_upsampling"], TOTAL: [180.0] * 20}
    nothing = {**ends, "video_upsampling_completed" + OVER: [0.0] * 20}
    assert estimates.next_poll_at(170.0, 0.0, last, nothing, **args) == (
        estimates.next_poll_at(170.0, 0.0, last, ends, **args)
    )


def test_a_floor_reaches_no_further_ahead_than_the_tasks_age() -> None:
    # Seen in `pending` at 10 s: its peers had 13 times their time to go once it was over,
    # but a task still in it has overstayed it. The floor (140 s) would pass the model's
    # earliest plausible end (87.5 s); it reaches 20 s at most, so that probe stands.
    learned = {TOTAL: [100.0 + 5 * i for i in range(20)], "pending" + OVER: [13.0] * 20}
    at = estimates.next_poll_at(10.0, 0.0, [("pending", 0.0)], learned, 0.1, young_gap=4.7)
    assert at == pytest.approx(87.5 * (1 + estimates.PROBE_MARGIN))


def test_a_task_is_polled_when_half_the_tasks_that_lasted_as_long_had_ended() -> None:
    # Seen in video_generating at 73 s, the step began at 55 s: slow early steps, so its
    # ratio is low; by the ratios its window opens at 191 s, but half the model's tasks had
    # ended by 150 s: polled then too, and then when half of those still running at 150 s
    # had (175 s); older than every task the model saw end, at the loop's gap.
    history = [("pending", 0.0), ("video_generating", 55.0)]
    ratios = {"video_generating": [2.6 + i / 20 for i in range(20)]}
    learned = {**ratios, TOTAL: [100.0 + 5 * i for i in range(20)]}
    by_ratio = estimates.next_poll_at(73.0, 0.0, history, ratios, 0.1)
    assert by_ratio == pytest.approx(55.0 * 3.475 * (1 + estimates.PROBE_MARGIN))
    checked = estimates.next_poll_at(73.0, 0.0, history, learned, 0.1, young_gap=4.7)
    assert checked == 150.0
    assert estimates.next_poll_at(150.0, 0.0, history, learned, 0.1, young_gap=4.7) == 175.0
    assert estimates.next_poll_at(175.0, 0.0, history, learned, 0.1, young_gap=4.7) == 190.0
    older = estimates.next_poll_at(196.0, 0.0, history, learned, 0.1, young_gap=4.7)
    assert older == pytest.approx(200.7)
    assert estimates.next_poll_at(196.0, 0.0, history, learned, 0.1) > 203.0  # its window's
    # Older than every task seen while its window opens later still (at 224 s): the gap too.
    late = {"video_generating": [3.2 + i / 20 for i in range(20)], TOTAL: learned[TOTAL]}
    assert estimates.next_poll_at(196.0, 0.0, history, late, 0.1) > 224.0
    assert estimates.next_poll_at(196.0, 0.0, history, late, 0.1, young_gap=4.7) == (
        pytest.approx(200.7)
    )


def test_a_task_half_whose_longer_peers_ended_within_the_gap_waits_no_longer_than_it() -> None:
    # A model just learned from its 20 fastest tasks (90 to 109 s); three of them lasted
    # longer than this task's 106 s, and half of those had ended by 108 s. Its window opens
    # at 190 s by its step's ratios, which a task with slow early steps falls below: the
    # loop's gap, not the window (without that gap, when half had ended).
    history = [("pending", 0.0), ("video_generating", 55.0)]
    learned = {
        "video_generating": [2.6 + i / 20 for i in range(20)],
        TOTAL: [90.0 + i for i in range(20)],
    }
    at = estimates.next_poll_at(106.0, 0.0, history, learned, 0.1, young_gap=4.7)
    assert at == pytest.approx(110.7)
    assert estimates.next_poll_at(106.0, 0.0, history, learned, 0.1) == 108.0  # half ended


def test_a_floor_taught_by_few_samples_stands_below_the_lowest() -> None:
    # 20 samples: the 5 % quantile would be the second lowest (0.31); the floor goes below
    # the lowest instead (0.3 less half the way to the quartile, 0.35: 0.275 of the task's
    # age, 41 s from 150 s, past the window's first probe at 155 s). From 31 samples, the
    # quantile (of 40 here, the third lowest: 0.31).
    history = [("pending", 0.0), ("video_upsampling", 100.0)]
    ratios = {"video_upsampling": [0.6 + i / 100 for i in range(40)], TOTAL: [300.0] * 40}
    few = {**ratios, "video_upsampling" + OVER: [0.3 + i / 100 for i in range(20)]}
    at = estimates.next_poll_at(150.0, 0.0, history, few, 0.1, young_gap=4.7)
    assert at == pytest.approx(150.0 * 1.275)
    many = {**ratios, "video_upsampling" + OVER: [0.3 + i / 200 for i in range(40)]}
    at = estimates.next_poll_at(150.0, 0.0, history, many, 0.1, young_gap=4.7)
    assert at == pytest.approx(150.0 * 1.31)


def test_a_wide_window_keeps_its_quantiles() -> None:
    history = [("pending", 0.0)]
    learned = {TOTAL: [float(d) for d in range(90, 251)]}  # 90 to 250 s: far wider than 12 gaps
    wide = estimates.next_poll_at(110.0, 0.0, history, learned, 0.1, window_gap=1.5)
    assert wide == estimates.next_poll_at(110.0, 0.0, history, learned, 0.1)
    assert wide is not None and wide - 110.0 > 1.5


@pytest.mark.parametrize("duration", [3.0, 12.0, 79.0, 80.5, 170.0, 250.0, 900.0])
def test_a_model_not_learned_yet_never_costs_more_than_the_loop(duration: float) -> None:
    """Polled by the plain rule from its registration (at 0), a task never makes more than
    one request beyond the 5 s loop started then, by any moment, and never waits longer."""
    settings = Settings()
    at, polls = polling.first_delay(settings, 0.5, {}, 0.0, 0.0), 1
    times = [at]
    while at < duration:
        step = polling.next_step(
            Running("video_generating", {}), task_id="veo3:1-x", polls=polls, rejections=0,
            last_status=None, now=at, deadline_at=10_000.0, settings=settings, draw=0.5,
            registered_at=0.0,
        )  # fmt: skip
        assert isinstance(step, polling.Wait)
        assert step.delay <= settings.poll_loop_interval
        at, polls = at + step.delay, polls + 1
        times.append(at)
    for count, moment in enumerate(times, start=1):  # the loop: a poll at 0, then every 5 s
        assert count <= moment // settings.poll_loop_interval + 2
    if duration > 160:  # the slack spent: on the loop's beat from then on
        assert times[-1] % settings.poll_loop_interval == pytest.approx(0.0, abs=1e-6)
    assert len(times) == 1 or times[1] - times[0] == settings.poll_unlearned_max_delay
    unbounded = dataclasses.replace(settings, poll_loop_interval=0.0)
    step = polling.next_step(
        Running("video_generating", {}), task_id="veo3:1-x", polls=40, rejections=0,
        last_status=None, now=188.0, deadline_at=10_000.0, settings=unbounded, draw=0.5,
        registered_at=0.0,
    )  # fmt: skip
    assert step.delay == settings.poll_unlearned_max_delay  # type: ignore[union-attr]


def test_a_prediction_replaces_the_backoff_up_to_a_cap() -> None:
    settings = Settings()
    args = {"task_id": "veo3:1-x", "polls": 2, "rejections": 0, "last_status": "pending",
            "now": 100.0, "deadline_at": 10_000.0, "settings": settings, "draw": 0.5}  # fmt: skip
    running = Running("video_generating", {})
    assert polling.next_step(running, predicted_at=160.0, **args).delay == 60.0  # type: ignore[union-attr,arg-type]
    capped = polling.next_step(running, predicted_at=5000.0, **args)  # type: ignore[arg-type]
    assert capped.delay == settings.poll_adaptive_max_delay  # type: ignore[union-attr]
    unlearned = polling.next_step(running, predicted_at=None, **args)  # type: ignore[arg-type]
    assert polling.poll_delay(2, settings, 0.5) > settings.poll_unlearned_max_delay
    assert unlearned.delay == settings.poll_unlearned_max_delay  # type: ignore[union-attr]
    later = polling.next_step(TryLater("a 503"), predicted_at=None, **args)  # type: ignore[arg-type]
    assert later.delay == polling.poll_delay(2, settings, 0.5)  # type: ignore[union-attr]


def test_the_token_bucket_is_shared_and_refills(redis_url: str) -> None:
    async def run() -> tuple[list[float], float]:
        conn = redis.asyncio.Redis.from_url(redis_url)
        one = UpstreamBucket(conn, "sk-key", rate=5.0, burst=2)
        two = UpstreamBucket(conn, "sk-key", rate=5.0, burst=2)  # another worker, same key
        waits = [await one.take(), await two.take(), await one.take()]
        await asyncio.sleep(waits[2])
        after = await two.take()
        await conn.aclose()
        return waits, after

    waits, after = asyncio.run(run())
    assert waits[:2] == [0.0, 0.0]
    assert 0.1 < waits[2] <= 0.2
    assert after == 0.0


def test_no_rate_means_no_limit(redis_url: str) -> None:
    async def run() -> list[float]:
        conn = redis.asyncio.Redis.from_url(redis_url)
        bucket = UpstreamBucket(conn, None, rate=0.0, burst=1)
        waits = [await bucket.take() for _ in range(5)]
        await conn.aclose()
        return waits

    assert asyncio.run(run()) == [0.0] * 5


def test_the_bucket_key_never_holds_the_api_key(redis_url: str) -> None:
    bucket = UpstreamBucket(redis.asyncio.Redis.from_url(redis_url), "sk-secret", 1.0, 1)
    assert "sk-secret" not in bucket.key
