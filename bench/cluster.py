"""`python -m bench cluster [N]`: what one task's whole life costs Redis, on one Redis and on a
Redis Cluster of three primaries (each with a replica) with the records spread over three
partitions (TRACKER_PARTITIONS=3), side by side, and each primary's share (issue 26).

N tasks (5 to 15 s on a clock ten times real time), of CLIENTS clients, are registered through
the API, polled
and delivered by one worker, and left to expire (a short retention); each primary's own
counters (`INFO commandstats` and `INFO cpu`) are read before and after. The fleet's idle
traffic (the loops' claims, the clock, arq's queue poll; on the cluster arq has a Redis of its
own, not counted) is measured for as long before the run and subtracted, so what remains is
what the tasks cost. Redis CPU is the process's user and system time, which includes reading
and writing the sockets, not only the commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from bench.capacity import register_all
from bench.harness import Rig, on_clock, rig
from tracker.devtools.cluster import EmbeddedCluster
from tracker.store import keys

SPEED = 10.0
IDLE = 5.0  # seconds of idle traffic measured before the run
# The unit a partition holds is a client (`keys.partition_of`): the work spreads as evenly as
# the clients' ids do, so a deployment's tens of clients, not one.
CLIENTS = 60
PARTITIONS = 3


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


@dataclass(frozen=True)
class Cost:
    """What N tasks cost each primary (idle traffic subtracted), per task."""

    calls: dict[str, float]  # command -> calls per task, all primaries
    command_us: float
    cpu_us: list[float]  # per primary
    elapsed: float
    commands: list[float]  # per primary, per task
    memory: list[int]  # per primary: what the tracker's keys held once all were registered
    clients: list[int]  # per partition: how many of the clients it holds

    @property
    def busiest_share(self) -> float:
        return max(self.cpu_us) / sum(self.cpu_us)


def _task_keys(conns: list[redis.Redis]) -> int:
    # On the connections already open: a client opened per look would ask the cluster for
    # its slot map each time, and count those commands as the tasks'.
    pattern = "{" + keys.HOME_TAG + "*}:task:*"  # every partition's
    return sum(1 for c in conns for _ in c.scan_iter(match=pattern, count=1000))


def _records_memory(conn: redis.Redis) -> int:
    """The bytes the tracker's keys on this primary take now (`MEMORY USAGE` of each): what
    its partitions hold, without the buffers, scripts and replication backlog that move a
    process's own figures."""
    pattern = "{" + keys.HOME_TAG + "*}:*"
    names = list(conn.scan_iter(match=pattern, count=1000))
    pipe = conn.pipeline(transaction=False)
    for name in names:
        pipe.memory_usage(name, samples=0)
    return sum(int(size or 0) for size in pipe.execute())


@contextlib.contextmanager
def _fleet(on: str) -> Iterator[tuple[Rig, list[redis.Redis]]]:
    """The rig, its records on one Redis or on a cluster (arq then on the rig's Redis); the
    connections to each records primary."""
    changes = dict(on_clock(SPEED), retention=2.0, delivery_schedule=(0.5,),
                   job_timeout_override=3.0)  # fmt: skip
    with rig(speed=SPEED, **changes) as r, contextlib.ExitStack() as stack:
        ports = [r.redis.port]
        if on == "cluster":
            data = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            cluster = stack.enter_context(EmbeddedCluster(data))
            r.settings = dataclasses.replace(
                r.settings, redis_url=cluster.url, arq_redis_url=r.redis.url,
                partitions=PARTITIONS,
            )  # fmt: skip
            ports = [node.port for node in cluster.primaries]
        conns = [redis.Redis(port=port) for port in ports]
        try:
            yield r, conns
        finally:
            for conn in conns:
                conn.close()


def balanced(r: Rig, count: int, partitions: int) -> list[dict[str, str]]:
    """`count` clients, as many in each partition: clients are made until each holds its
    share (the others register nothing), so the run measures how the layout spreads the work,
    not how evenly `count` random ids happened to fall (each primary's share follows its
    clients' share: see docs/performance.md)."""
    chosen: list[dict[str, str]] = []
    held = [0] * partitions
    while len(chosen) < count:
        client = r.client()
        partition = keys.partition_of(client["id"], partitions)
        if held[partition] < count // partitions:
            held[partition] += 1
            chosen.append(client)
    return chosen


def measure(n: int, on: str) -> Cost:
    with _fleet(on) as (r, conns):
        _, url = r.api()
        r.start("worker", "worker")
        clients = balanced(r, CLIENTS, r.settings.partitions)
        time.sleep(2.0)  # the worker is up and its loops settled
        idle_start = [Counters.read(c) for c in conns]
        time.sleep(IDLE)
        idle = [Counters.read(c).since(b) for c, b in zip(conns, idle_start, strict=True)]
        rng = random.Random(26)
        before = [Counters.read(c) for c in conns]
        ids = [
            str(t["task_id"])
            for t in r.simulator.script([{"duration": rng.uniform(5, 15)} for _ in range(n)])
        ]
        # The clients' tasks interleaved: each partition's tasks are as young as another's
        # when the memory is read, once all are registered.
        owners = [clients[n % CLIENTS]["api_key"] for n in range(len(ids))]
        asyncio.run(register_all(url, owners, ids, r.receiver.url + "/c"))
        held = [_records_memory(c) for c in conns]
        deadline = time.monotonic() + 120 + r.settings.delivery_window + r.settings.retention
        while len(r.receiver.accepted("/c")) < n or _task_keys(conns):
            if time.monotonic() > deadline:
                raise RuntimeError("the tasks were not all delivered and expired in time")
            time.sleep(0.5)
        spent = [Counters.read(c).since(b) for c, b in zip(conns, before, strict=True)]
    calls: dict[str, float] = {}
    command_us, cpu_us, commands = 0.0, [], []
    for (run_calls, usec, cpu, elapsed), (idle_calls, idle_usec, idle_cpu, idle_for) in zip(
        spent, idle, strict=True
    ):
        scale = elapsed / idle_for  # the idle traffic, for as long as the run took
        mine = 0.0
        for name, count in run_calls.items():
            mine += (count - idle_calls.get(name, 0) * scale) / n
            calls[name] = calls.get(name, 0) + (count - idle_calls.get(name, 0) * scale) / n
        commands.append(max(0.0, mine))
        command_us += (sum(usec.values()) - sum(idle_usec.values()) * scale) / n
        cpu_us.append(max(0.0, (cpu - idle_cpu * scale) * 1e6 / n))
    spread = [
        sum(keys.partition_of(c["id"], PARTITIONS) == p for c in clients) for p in range(PARTITIONS)
    ]
    return Cost(calls, command_us, cpu_us, spent[0][3], commands, held, spread)


def run(n: int = 500) -> dict[str, float]:
    one, cluster = measure(n, "standalone"), measure(n, "cluster")
    print(f"{n} tasks registered, polled, delivered and expired, idle traffic subtracted; "
          f"one Redis ({one.elapsed:.0f} s) and a cluster of three primaries "
          f"({cluster.elapsed:.0f} s)")  # fmt: skip
    print(f"  {CLIENTS} clients, {PARTITIONS} partitions on the cluster holding "
          f"{' / '.join(map(str, cluster.clients))} of them")  # fmt: skip
    print(f"  {'per task':<34}{'one Redis':>12}{'cluster':>12}")
    for label, a, b in (
        ("Redis commands", sum(one.calls.values()), sum(cluster.calls.values())),
        ("Redis command time (µs)", one.command_us, cluster.command_us),
        ("Redis CPU, all primaries (µs)", sum(one.cpu_us), sum(cluster.cpu_us)),
        ("Redis CPU, busiest primary (µs)", max(one.cpu_us), max(cluster.cpu_us)),
    ):
        print(f"  {label:<34}{a:12.1f}{b:12.1f}")
    for label, values in (
        ("Redis CPU", cluster.cpu_us),
        ("commands", cluster.commands),
        ("memory (tasks registered)", [float(m) for m in cluster.memory]),
    ):
        shares = " / ".join(f"{v / (sum(values) or 1):.0%}" for v in values)
        print(f"  each primary's share of the cluster's {label}: {shares}")
    saturation = 1e6 / max(cluster.cpu_us)
    print(f"  saturated at (busiest core): {1e6 / max(one.cpu_us):.0f} tasks/s on one Redis, "
          f"{saturation:.0f} tasks/s on the cluster")  # fmt: skip
    print("  commands per task on one Redis, the most frequent:")
    for name, count in sorted(one.calls.items(), key=lambda kv: -kv[1])[:8]:
        print(f"    {name:<14}{count:8.1f}")
    return {
        "commands_per_task": sum(one.calls.values()),
        "cpu_us_per_task": sum(one.cpu_us),
        "saturation_tasks_per_s": 1e6 / max(one.cpu_us),
        "cluster_cpu_us_per_task": sum(cluster.cpu_us),
        "cluster_busiest_share": cluster.busiest_share,
        "cluster_busiest_command_share": max(cluster.commands) / (sum(cluster.commands) or 1),
        "cluster_busiest_memory_share": max(cluster.memory) / (sum(cluster.memory) or 1),
        "cluster_saturation_tasks_per_s": saturation,
    }
