"""Callback destinations: which origin a delivery goes to, which answers count against it, and
how long a delivery waits when its origin cannot take it. Pure; `tracker.store.origins` keeps
each origin's in-flight attempts and circuit breaker in Redis, shared by the fleet.

A circuit breaker per client and origin (as Convoy has one per endpoint): after
`TRACKER_BREAKER_FAILURES` failures in a row (no answer in time, a refused connection, a 5xx)
the origin is open, and its deliveries wait without spending attempts; when the open interval
ends one probe goes through, a success closes the origin, a failure opens it again for twice
as long (up to `TRACKER_BREAKER_MAX_OPEN`).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

# A delivery whose origin is busy (all its slots in flight) looks again after about this long:
# a fast receiver frees a slot in milliseconds, a dead one only at the time-out, and the
# breaker soon takes over from there.
BUSY_RETRY = 0.5


class Circuit(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"  # the open interval is over: one probe may go


@functools.lru_cache(maxsize=4096)  # asked at every attempt, for the same few URLs
def origin_of(url: str) -> str:
    """`scheme://host:port` of a callback URL, the unit of fairness and of the breaker."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port: int | str = parts.port or (443 if scheme == "https" else 80)
    except ValueError:  # a port no socket takes: still an origin, whose attempts all fail
        port = parts.netloc.rpartition(":")[2]
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def origin_key(client_id: str, origin: str) -> str:
    """A short fixed-size name of one client's origin, for Redis keys (an origin can be long).

    Slots and breaker are kept per client and origin: clients that share a destination (a
    relay, an automation service) each have their own, so one client's failing paths never
    open the origin for another's webhooks, nor show it their failures."""
    return hashlib.sha256(f"{client_id}\n{origin}".encode()).hexdigest()[:20]


def is_failure(status_code: int | None) -> bool:
    """Whether an attempt's outcome counts against its origin: no answer, or a 5xx.

    A 4xx is an answer (the receiver is up and has decided), so it does not."""
    return status_code is None or status_code >= 500


@dataclass(frozen=True)
class Gate:
    """Whether an attempt may go now; else when to look again."""

    admitted: bool
    retry_at: float = 0.0
    probe: bool = False  # the one attempt let through a half-open origin


def wait_until(answer: int, at: float, now: float, draw: float) -> Gate:
    """The gate from the store's answer: 1 admitted, 2 admitted as the probe, 0 open until
    `at`, -1 busy. Waits are spread by `draw` in [0, 1) so a crowd of deliveries does not come
    back at one instant."""
    if answer > 0:
        return Gate(True, probe=answer == 2)
    if answer == 0:
        return Gate(False, retry_at=max(at, now) + BUSY_RETRY * draw)
    return Gate(False, retry_at=now + BUSY_RETRY * (1 + draw))


def circuit(open_until: float, now: float) -> Circuit:
    """An origin's circuit, from when its open interval ends (0: it is closed)."""
    if open_until <= 0:
        return Circuit.CLOSED
    return Circuit.OPEN if now < open_until else Circuit.HALF_OPEN
