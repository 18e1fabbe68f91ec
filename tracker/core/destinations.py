"""A client's destination (one callback origin) as its figures tell it: its state, and its
attempts, success rate and latency over the last hour and day, from the hourly slots that
`tracker.store.scripts.RELEASE_SLOT` counts into. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tracker.core.events import iso_time

HOURS = 24


class DestinationState(StrEnum):
    HEALTHY = "healthy"  # its last attempt succeeded (or none failed)
    FAILING = "failing"  # its attempts fail, its circuit not (yet) open
    OPEN = "open"  # its circuit is open: attempts wait
    DISABLED = "disabled"  # it failed without a break for TRACKER_DISABLE_AFTER: until enabled


@dataclass(frozen=True)
class Window:
    attempts: int
    failed: int
    total_ms: float

    @property
    def success_rate(self) -> float | None:
        return (self.attempts - self.failed) / self.attempts if self.attempts else None

    @property
    def latency_ms(self) -> float | None:
        return round(self.total_ms / self.attempts, 1) if self.attempts else None


@dataclass(frozen=True)
class Hour:
    start: float  # Unix seconds of the hour's start
    ok: int
    failed: int
    total_ms: float


def hours(raw: dict[str, str], now: float) -> list[Hour]:
    """The last 24 hours, oldest first, each with what its slot holds (nothing for a slot
    that holds another hour's figures: a day old, or never written)."""
    current = int(now // 3600)
    found = []
    for hour in range(current - HOURS + 1, current + 1):
        slot = str(hour % HOURS)
        mine = raw.get(f"{slot}:h") == str(hour)
        found.append(
            Hour(
                start=hour * 3600.0,
                ok=int(raw.get(f"{slot}:ok", 0)) if mine else 0,
                failed=int(raw.get(f"{slot}:fail", 0)) if mine else 0,
                total_ms=float(raw.get(f"{slot}:ms", 0)) if mine else 0.0,
            )
        )
    return found


def window(found: list[Hour], now: float, span_hours: int) -> Window:
    """The attempts of the last `span_hours` hours. Slots are whole hours: the oldest one is
    counted for the part of it that falls inside the window (an estimate; exact at each hour's
    end)."""
    inside = found[-(span_hours + 1) :]
    share = 1.0 - (now % 3600) / 3600  # of the oldest slot, the part still in the window
    attempts = failed = 0.0
    total = 0.0
    for n, hour in enumerate(inside):
        weight = share if n == 0 and len(inside) > span_hours else 1.0
        attempts += (hour.ok + hour.failed) * weight
        failed += hour.failed * weight
        total += hour.total_ms * weight
    return Window(round(attempts), round(failed), total)


def state_of(circuit: str, failing_since: float | None, disabled: bool = False) -> DestinationState:
    """What the destination is now: disabled (until enabled), open (its circuit), failing
    (errors since a time), or healthy."""
    if disabled:
        return DestinationState.DISABLED
    if circuit in {"open", "half_open"}:
        return DestinationState.OPEN
    if failing_since is not None:
        return DestinationState.FAILING
    return DestinationState.HEALTHY


def view(
    origin: str, circuit: str, failures: int, figures: dict[str, str], now: float, waiting: int = 0
) -> dict[str, Any]:
    """One destination as the API and the dashboard show it: its state, its last success and
    error, how many deliveries wait for it, and its attempts over the last hour, day, and each
    hour of the day."""
    failing_since = float(figures["failing_since"]) if "failing_since" in figures else None
    hourly = hours(figures, now)

    def seen(span: int) -> dict[str, Any]:
        found = window(hourly, now, span)
        return {
            "attempts": found.attempts,
            "failed": found.failed,
            "success_rate": found.success_rate,
            "latency_ms": found.latency_ms,
        }

    def at(name: str) -> str | None:
        return iso_time(float(figures[name])) if name in figures else None

    return {
        "origin": origin,
        "state": str(state_of(circuit, failing_since, "disabled_at" in figures)),
        "disabled_at": at("disabled_at"),
        "circuit": circuit,
        "failures_in_a_row": failures,
        "waiting": waiting,
        "failing_since": iso_time(failing_since) if failing_since is not None else None,
        "last_error": figures.get("last_error"),
        "last_error_at": at("last_error_at"),
        "last_success_at": at("last_ok_at"),
        "last_hour": seen(1),
        "last_day": seen(HOURS),
        "hours": [
            {"start": iso_time(h.start), "delivered": h.ok, "failed": h.failed} for h in hourly
        ],
    }
