"""`python -m bench cluster [N]`: what one task's whole life costs Redis, and so at how many
tasks a second one Redis would be saturated (issue 26).

N tasks (5 to 15 s on a clock ten times real time) are registered through the API, polled
and delivered by one worker, and left to expire (a short retention); Redis's own counters
(`INFO commandstats` and `INFO cpu`) are read before and after. The fleet's idle traffic (the
loops' claims, the clock, arq's queue poll) is measured for as long before the run and
subtracted, so what remains is what the tasks cost. Redis CPU is the process's user and
system time, which includes reading and writing the sockets, not only the commands.

The cluster half of the issue (each shard's share, throughput against standalone) waits for
the key layout with hash tags; this is its baseline.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import redis

from bench.capacity import register_all
from bench.harness import on_clock, rig

SPEED = 10.0
IDLE = 5.0  # seconds of idle traffic measured before the run


@dataclass(frozen=True)
class Counters:
    calls: dict[str, int]
    usec: dict[str, int]
    cpu: float  # Redis's user + system CPU seconds
    at: float

    @classmethod
    def read(cls, conn: redis.Redis) -> Counters:
        stats = conn.info("commandstats")
        cpu = conn.info("cpu")
        return cls(
            {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()},
            {name.removeprefix("cmdstat_"): int(v["usec"]) for name, v in stats.items()},
            float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
            time.monotonic(),
        )

    def since(self, before: Counters) -> tuple[dict[str, int], dict[str, int], float, float]:
        calls = {k: v - before.calls.get(k, 0) for k, v in self.calls.items()}
        usec = {k: v - before.usec.get(k, 0) for k, v in self.usec.items()}
        return calls, usec, self.cpu - before.cpu, self.at - before.at


def _task_keys(conn: redis.Redis) -> int:
    return sum(1 for _ in conn.scan_iter(match="qrt:task:*", count=1000))


def run(n: int = 500) -> dict[str, float]:
    with rig(
        speed=SPEED, **on_clock(SPEED), retention=2.0, delivery_schedule=(0.5,),
        job_timeout_override=3.0,
    ) as r:  # fmt: skip
        _, url = r.api()
        r.start("worker", "worker")
        client = r.client()
        conn = redis.Redis.from_url(r.redis.url)
        time.sleep(2.0)  # the worker is up and its loops settled
        idle_start = Counters.read(conn)
        time.sleep(IDLE)
        idle = Counters.read(conn).since(idle_start)
        rng = random.Random(26)
        before = Counters.read(conn)
        ids = [
            str(t["task_id"])
            for t in r.simulator.script([{"duration": rng.uniform(5, 15)} for _ in range(n)])
        ]
        asyncio.run(register_all(url, client["api_key"], ids, r.receiver.url + "/c"))
        deadline = time.monotonic() + 120 + r.settings.delivery_window + r.settings.retention
        while len(r.receiver.accepted("/c")) < n or _task_keys(conn):
            if time.monotonic() > deadline:
                raise RuntimeError("the tasks were not all delivered and expired in time")
            time.sleep(0.5)
        calls, usec, cpu, elapsed = Counters.read(conn).since(before)
        conn.close()
    idle_calls, idle_usec, idle_cpu, idle_elapsed = idle
    scale = elapsed / idle_elapsed  # the idle traffic, for as long as the run took
    net_calls = {k: v - idle_calls.get(k, 0) * scale for k, v in calls.items()}
    total_calls = sum(net_calls.values())
    command_us = (sum(usec.values()) - sum(idle_usec.values()) * scale) / n
    cpu_us = (cpu - idle_cpu * scale) * 1e6 / n
    print(f"One Redis, {n} tasks registered, polled, delivered and expired "
          f"({elapsed:.0f} s; idle traffic of {elapsed:.0f} s subtracted)")  # fmt: skip
    print(f"  Redis commands per task:            {total_calls / n:8.1f}")
    print(f"  Redis command time per task:        {command_us:8.1f} µs")
    print(f"  Redis CPU per task (process):       {cpu_us:8.1f} µs")
    print(f"  saturated at (one core, CPU):       {1e6 / cpu_us:8.0f} tasks/s")
    print("  commands per task, the most frequent:")
    for name, count in sorted(net_calls.items(), key=lambda kv: -kv[1])[:8]:
        each = usec.get(name, 0) / max(calls[name], 1)
        print(f"    {name:<14}{count / n:8.1f}  ({each:.1f} µs each)")
    return {
        "commands_per_task": total_calls / n,
        "command_us_per_task": command_us,
        "cpu_us_per_task": cpu_us,
        "saturation_tasks_per_s": 1e6 / cpu_us,
    }
