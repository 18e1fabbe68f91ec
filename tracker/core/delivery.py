"""What a receiver's answer means for a delivery, and what happens next: pure decisions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from tracker.core import backoff


class Verdict(StrEnum):
    DELIVERED = "delivered"  # a 2xx
    GONE = "gone"  # 410: the receiver wants no more; the subscription is disabled
    RETRY = "retry"  # anything else, a 3xx and a transport error included
    DEAD = "dead"  # retry, but the schedule is spent


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    delay: float | None = None  # seconds to the next attempt, for RETRY


def judge(status_code: int | None) -> Verdict:
    """Classify one attempt: `status_code` is None when no HTTP answer came back."""
    if status_code is None:
        return Verdict.RETRY
    if 200 <= status_code < 300:
        return Verdict.DELIVERED
    if status_code == 410:
        return Verdict.GONE
    return Verdict.RETRY


def decide(
    status_code: int | None,
    *,
    attempts: int,
    retry_after: float | None,
    schedule: Sequence[float],
    jitter: float,
    draw: float,
) -> Decision:
    """After attempt number `attempts` (counting this one), what the delivery does next.

    `Retry-After` is honoured on 429 and 5xx, as DESIGN.md asks; it can lengthen a wait but
    does not add attempts to the schedule.
    """
    verdict = judge(status_code)
    if verdict is not Verdict.RETRY:
        return Decision(verdict)
    delay = backoff.delivery_delay(attempts, schedule, jitter=jitter, draw=draw)
    if delay is None:
        return Decision(Verdict.DEAD)
    honours_retry_after = status_code is not None and (status_code == 429 or status_code >= 500)
    if honours_retry_after and retry_after is not None:
        delay = max(delay, retry_after)
    return Decision(Verdict.RETRY, delay)


# What an attempt keeps of a receiver's answer (docs/api.md, attempt records): enough to tell why it
# refused, never enough for a receiver to fill Redis.
MAX_BODY_KEPT = 4096  # bytes of the body, as text
MAX_HEADERS_KEPT = 32
MAX_HEADER_NAME = 64
MAX_HEADER_VALUE = 512


def body_excerpt(raw: bytes) -> str:
    """The first `MAX_BODY_KEPT` bytes of an answer's body as text, bytes that are not UTF-8
    replaced (U+FFFD)."""
    return raw[:MAX_BODY_KEPT].decode("utf-8", "replace")


def headers_excerpt(headers: Iterable[tuple[str, str]]) -> list[list[str]]:
    """An answer's headers as kept: the first `MAX_HEADERS_KEPT`, names lower-cased, each name
    and value cut to its bound, in the order they came (a name may repeat)."""
    kept: list[list[str]] = []
    for name, value in headers:
        if len(kept) == MAX_HEADERS_KEPT:
            break
        kept.append([name.lower()[:MAX_HEADER_NAME], value[:MAX_HEADER_VALUE]])
    return kept
