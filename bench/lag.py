"""Notification lag and upstream requests per task: the tracker against the 5-second loop.

One run, two sizes of task, each with its own simulator: short ones (durations spread over 5
to 15 s) and long ones (90 to 250 s, Veo-like), with the upstream's status steps, on a clock
`speed` times real time. Three groups of tasks with the same
durations: the tracker once it has learned the model (after a warm-up of finished tasks, as a
running service has), the tracker on a model it has never seen (plain backoff), and the loop
users write today (poll every 5 s until final). Lag = webhook received (or, for the loop, final
answer read) - the moment the simulator turned the task final. Times are shown in upstream
seconds (real seconds x speed).

The clock runs 2 times real time by default: faster clocks multiply the tracker's own
processing time too (at x20, a 100 ms pause of a busy process reads as 2 upstream seconds of
lag; at x5 the one worker, polling 600 tasks, is busy enough for its own time to show in the
tail), so they measure the machine as much as the polling. One run takes about 5 minutes.

Each group is shown beside the loop it replaces, computed from the same tasks' times
(`computed_loop`: a poll at the moment the task was registered, or the measured loop started,
and every 5 s after, exactly), which no busy process can bend; the ratios are against it. The
loop is also measured (600 loops on one event loop beside the rest cannot keep an exact 5 s
under load).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time

import httpx

from bench.harness import SIM_KEY, Rig, on_clock, percentile, rig

WORST = 3  # the latest tasks of each tracker group printed, with what each poll saw
FINAL = {"completed", "failed", "video_generation_failed", "video_upsampling_failed", "error"}


def register(
    rig_: Rig, http: httpx.Client, client: dict[str, str], task_ids: list[str], path: str
) -> dict[str, float]:
    """Register each task for a webhook at `path`; returns when each registration was sent
    (where the loop it replaces would have started)."""
    sent: dict[str, float] = {}
    for task_id in task_ids:
        sent[task_id] = time.time()
        answer = http.post(
            "/v1/tasks",
            headers={"authorization": f"Bearer {client['api_key']}"},
            json={"task_id": task_id, "callback_url": rig_.receiver.url + path},
        )
        answer.raise_for_status()
    return sent


async def five_second_loop(
    sim_url: str, task_ids: list[str], interval: float
) -> tuple[dict[str, float], dict[str, float]]:
    """The loop users write: poll every `interval` until final; returns when each was seen,
    and when each loop started."""
    seen: dict[str, float] = {}
    started: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=sim_url, timeout=30) as http:

        async def follow(task_id: str) -> None:
            started[task_id] = time.time()
            while True:
                answer = await http.get(
                    "/v1/video/query", params={"id": task_id},
                    headers={"authorization": f"Bearer {SIM_KEY}"},
                )  # fmt: skip
                if answer.status_code == 200 and answer.json().get("status") in FINAL:
                    seen[task_id] = time.time()
                    return
                await asyncio.sleep(interval)

        await asyncio.gather(*(follow(t) for t in task_ids))
    return seen, started


def computed_loop(start: float, final_at: float, interval: float) -> tuple[float, int]:
    """What an exact loop (a poll at `start`, then every `interval`) would have seen: the
    moment it reads the task final, and its number of requests. It follows from the task's
    times alone, so no busy process can bend it."""
    polls = max(0, math.ceil((final_at - start) / interval))
    return start + polls * interval, polls + 1


def wait_for_webhooks(rig_: Rig, path: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(rig_.receiver.accepted(path)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(rig_.receiver.accepted(path))}/{count} webhooks")
        time.sleep(0.1)


SIZES = {"short": (5.0, 15.0), "long": (90.0, 250.0)}


def measure(
    n: int, speed: float, probe_step: float, size: str = "long"
) -> dict[str, dict[str, float]]:
    scale = 1 / speed
    low, high = SIZES[size]
    with contextlib.ExitStack() as stack:
        clock = on_clock(speed)
        r = stack.enter_context(
            rig(speed=speed, **clock, poll_probe_step=probe_step, queue_poll_interval=0.02)
        )
        r.start("worker", "worker")
        _, api = r.api()
        client = r.client()
        http = stack.enter_context(httpx.Client(base_url=api, timeout=30))
        rng = random.Random(1)

        warm = r.simulator.script([{"duration": rng.uniform(low, high)} for _ in range(30)])
        register(r, http, client, [str(t["task_id"]) for t in warm], "/warm")
        wait_for_webhooks(r, "/warm", len(warm), 400 * scale + 60)
        # Every process re-reads what a model taught once a refresh: after one, all of them
        # know the warm-up, as a running service's processes do.
        time.sleep(r.settings.learning_refresh)

        durations = [rng.uniform(low, high) for _ in range(n)]
        groups = {
            "tracker, learned": ("veo3.1-fast", "/learned"),
            "tracker, new model": ("veo3-unseen", "/unseen"),
            "5 s loop (measured)": ("veo3.1-fast", None),
        }
        ids: dict[str, list[str]] = {name: [] for name in groups}
        started: dict[str, dict[str, float]] = {name: {} for name in groups}
        # Each task is registered as soon as it is made, as a client does: registering them
        # all after making them all would hand the tracker tasks already half done (200
        # registrations take seconds, and short tasks last 1 to 3 real seconds at x5).
        for duration in durations:
            for name, (model, path) in groups.items():
                if path is not None:
                    [task] = r.simulator.script([{"duration": duration, "model": model}])
                    ids[name].append(str(task["task_id"]))
                    started[name] |= register(r, http, client, ids[name][-1:], path)
        loop_tasks = r.simulator.script([{"duration": d} for d in durations])
        ids["5 s loop (measured)"] = [str(t["task_id"]) for t in loop_tasks]
        loop_seen, started["5 s loop (measured)"] = asyncio.run(
            five_second_loop(r.simulator.url, ids["5 s loop (measured)"], 5 * scale)
        )
        for _model, path in groups.values():
            if path is not None:
                wait_for_webhooks(r, path, n, 400 * scale + 60)
        final = r.simulator.tasks()

    def final_at(task_id: str) -> float:
        return float(final[task_id]["final_at"])  # type: ignore[arg-type]

    results: dict[str, dict[str, float]] = {}
    worst: dict[str, list[tuple[float, str]]] = {}
    for name, (_, path) in groups.items():
        if path is None:
            arrived = loop_seen
        else:
            arrived = {h.json()["data"]["task_id"]: h.at for h in r.receiver.accepted(path)}
        lags = [(arrived[t] - final_at(t)) * speed for t in ids[name]]
        if path is not None:
            worst[name] = sorted(zip(lags, ids[name], strict=True), reverse=True)[:WORST]
        requests = sum(int(final[t]["requests"]) for t in ids[name]) / n  # type: ignore[call-overload]
        # The loop each group replaces: the same tasks, polled every 5 s from the moment
        # they were registered (or, for the measured loop, from its own start).
        exact = [computed_loop(started[name][t], final_at(t), 5 * scale) for t in ids[name]]
        loop = summary(
            [(seen - final_at(t)) * speed for (seen, _), t in zip(exact, ids[name], strict=True)],
            sum(polls for _, polls in exact) / n,
        )
        # When the poll that saw it final was answered: the rest of the lag is the webhook's.
        seen_lags = [(float(final[t]["final_seen_at"]) - final_at(t)) * speed for t in ids[name]]  # type: ignore[arg-type]
        results[name] = {
            **summary(lags, requests), "seen p95": percentile(seen_lags, 0.95),
            **{f"loop {k}": v for k, v in loop.items()},
        }  # fmt: skip
    print(f"Notification lag and upstream cost, {n} {size} tasks per group, durations "
          f"{low:g}-{high:g} s, clock x{speed:g} (times in upstream seconds), "
          f"TRACKER_POLL_PROBE_STEP={probe_step:g}; each group beside the exact 5 s loop on "
          "the same tasks from the same moment")  # fmt: skip
    print(f"{'group':<22}{'p50 lag':>9}{'p95':>8}{'p99':>8}{'polled p95':>11}{'req/task':>10}  |"
          f"{'loop p50':>9}{'p95':>7}{'p99':>7}{'req':>7}  |{'p50 vs loop':>12}"
          f"{'req vs loop':>12}")  # fmt: skip
    for name, row in results.items():
        print(f"{name:<22}{row['p50']:>9.2f}{row['p95']:>8.2f}{row['p99']:>8.2f}"
              f"{row['seen p95']:>11.2f}{row['requests']:>10.1f}  |"
              f"{row['loop p50']:>9.2f}{row['loop p95']:>7.2f}"
              f"{row['loop p99']:>7.2f}{row['loop requests']:>7.1f}  |"
              f"{row['p50'] / row['loop p50']:>12.2f}"
              f"{row['requests'] / row['loop requests']:>12.2f}")  # fmt: skip
    for name, tasks in worst.items():
        print(f"{name}, its latest {len(tasks)}: what each poll saw (upstream s from creation)")
        for lag, task_id in tasks:
            polls = ", ".join(f"{status}@{at:.1f}" for at, status in final[task_id]["answers"])  # type: ignore[attr-defined]
            print(f"    lag {lag:5.2f} s, ended at {final[task_id]['duration']:.1f} s: {polls}")
    return results


def summary(lags: list[float], requests: float) -> dict[str, float]:
    return {
        "p50": percentile(lags, 0.5), "p95": percentile(lags, 0.95),
        "p99": percentile(lags, 0.99), "requests": requests,
    }  # fmt: skip


def run(
    n: int = 200, speed: float = 2.0, probe_step: float = 0.0
) -> list[dict[str, dict[str, float]]]:
    """Short tasks, then long ones, each group against the computed 5 s loop."""
    tables = []
    for size in SIZES:
        tables.append(measure(n, speed, probe_step, size))
        print()
    return tables
