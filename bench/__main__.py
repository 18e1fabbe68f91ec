"""`python -m bench NAME [N]`: run one benchmark; each prints its table."""

from __future__ import annotations

import sys

from bench import (
    api,
    capacity,
    ceiling,
    cluster,
    delivery,
    events,
    isolation,
    lag,
    memory,
    polling,
    records,
    storage,
    ui,
)

BENCHMARKS = {
    "capacity": capacity.run,
    "lag": lag.run,
    "polling": polling.run,
    "ceiling": ceiling.run,
    "api": api.run,
    "memory": memory.run,
    "isolation": isolation.run,
    "delivery": delivery.run,
    "records": records.run,
    "events": events.run,
    "ui": ui.run,
    "storage": storage.run,
    "cluster": cluster.run,
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHMARKS:
        print(f"usage: python -m bench {{{'|'.join(BENCHMARKS)}}} [N]")
        return 2
    args = [int(a) for a in argv[1:]]
    BENCHMARKS[argv[0]](*args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
