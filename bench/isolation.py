"""Isolation: a quiet client's webhook lag alone, and beside a noisy client whose N tasks end
at the same moment with callbacks to a black hole (a port that accepts and never answers), to
a receiver that answers after 10 s, or to N distinct dead origins (ten subscriptions to each
of N / 10 tasks, each to a port of its own that never answers: issue 23).

The noisy client's receivers are other origins than the quiet client's (per-origin limits and
breakers are by origin: two clients sharing a receiver share its slots). One worker and one
API with the default settings (polling times scaled to the simulator's
clock, x2; delivery time-outs real). Every task, quiet and noisy, is scripted to end at the
same moment. Lag = the quiet client's webhook received - the moment the simulator turned its
task final, in real seconds. Target (issue 11): p95 beside the noisy client <= 1.5 x p95 alone
+ 1 s.
"""

from __future__ import annotations

import asyncio
import contextlib

from bench.capacity import register_all
from bench.harness import lags_at, on_clock, percentile, rig
from tracker.devtools.peers import BlackHole, DeadOrigins
from tracker.devtools.receiver import Receiver
from tracker.server import ServerThread

SPEED = 2.0
QUIET = 30
DURATION = 40.0  # upstream seconds: room to register 3,000 tasks before they end
SLOW = 10.0  # seconds the slow receiver takes to answer
ORIGINS = 1000  # distinct dead origins of the noisy client in the many-origins case


def scenario(noisy: int, kind: str) -> list[float]:
    """The quiet client's lags, with `noisy` tasks of another client going to `kind`."""
    with rig(speed=SPEED, **on_clock(SPEED)) as r, contextlib.ExitStack() as stack:
        r.start("worker", "worker")
        _, api = r.api()
        quiet_client, noisy_client = r.client(), r.client()
        specs: list[dict[str, object]] = [{"duration": DURATION} for _ in range(QUIET + noisy)]
        ids = [str(t["task_id"]) for t in r.simulator.script(specs)]
        quiet_ids, noisy_ids = ids[:QUIET], ids[QUIET:]
        targets: str | list[str]
        if kind == "origins":  # ten subscriptions a task, each to an origin of its own
            targets = stack.enter_context(DeadOrigins(noisy)).urls
            noisy_ids = [t for t in noisy_ids[: noisy // 10] for _ in range(10)]
        elif kind == "black hole":
            targets = stack.enter_context(BlackHole()).url + "/void"
        else:  # a receiver of its own: another origin than the quiet client's
            slow = Receiver()
            slow.hold("/slow", SLOW)
            slow.url = stack.enter_context(ServerThread(slow.app())).url
            targets = slow.url + "/slow"
        if noisy_ids:
            asyncio.run(register_all(api, noisy_client["api_key"], noisy_ids, targets))
        asyncio.run(register_all(api, quiet_client["api_key"], quiet_ids,
                                 r.receiver.url + "/quiet"))  # fmt: skip
        return lags_at(r, "/quiet", quiet_ids, DURATION / SPEED + 120)


def run(*sizes: int) -> dict[str, dict[str, float]]:
    sizes = sizes or (300, 3000)
    rows = {"alone": scenario(0, "black hole")}
    for n in sizes:
        rows[f"{n} to a black hole"] = scenario(n, "black hole")
        rows[f"{n} to a 10 s receiver"] = scenario(n, "slow")
    rows[f"{ORIGINS} dead origins"] = scenario(ORIGINS, "origins")
    alone = percentile(rows["alone"], 0.95)
    target = 1.5 * alone + 1.0
    print(f"Isolation: a quiet client's {QUIET} webhooks beside a noisy client whose tasks "
          f"end at the same moment (one worker, default settings, clock x{SPEED:g}; "
          "real seconds)")  # fmt: skip
    print(f"{'noisy neighbour':<24}{'p50 lag':>9}{'p95':>8}{'max':>8}{'p95 vs alone':>14}"
          f"{'target p95':>12}")  # fmt: skip
    table = {}
    for name, lags in rows.items():
        p50, p95 = percentile(lags, 0.5), percentile(lags, 0.95)
        table[name] = {"p50": p50, "p95": p95, "max": max(lags)}
        print(f"{name:<24}{p50:>9.2f}{p95:>8.2f}{max(lags):>8.2f}{p95 / alone:>14.2f}"
              f"{target:>12.2f}")  # fmt: skip
    return table
