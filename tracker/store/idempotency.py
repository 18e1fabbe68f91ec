"""Idempotency-Key records, with the semantics users know from Stripe: the same key and body
within a day answer the first answer again; another body is refused; a request still running,
or one whose outcome is unknown, is never run twice.

A create-and-track request moves through three states, each written before the step that
follows it: `started` (before the upstream create), `created` (the upstream id, before the
registration), `done` (the answer). A retry finds where the first request stopped: `created`
is finished (registered) without a second create; `started` past the time one request can
take means the create may or may not have happened, and says so.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from redis.asyncio import Redis

from tracker.store import keys, scripts
from tracker.store.codec import text

KEEP = 86400  # seconds a key's record is kept


@dataclass(frozen=True)
class Intent:
    """What an earlier request with the same key came to, so far."""

    request: str  # the hash of its method, path and body
    state: str  # started | created | done
    started_at: float
    task_id: str | None = None
    status: int | None = None
    answer: str | None = None
    location: str | None = None  # the first answer's Location header


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class Idempotency:
    """One client's Idempotency-Keys. The request that takes a key holds it by a token of its
    own: only it moves the record on (a duplicate that arrives meanwhile is refused, never
    run beside it), so no duplicate overwrites its answer or deletes its record."""

    def __init__(self, redis: Redis, space: keys.Keyspace) -> None:
        self.redis = redis
        self.keys = space
        self._begin = redis.register_script(scripts.BEGIN_INTENT)
        self._settle = redis.register_script(scripts.SETTLE_INTENT)

    async def begin(
        self, client_id: str, key: str, request: str, now: float, token: str, stale: float = 0
    ) -> Intent | None:
        """Take `key` for this request under `token` (None), or what the request that took it
        came to. A record this same request left `started` more than `stale` s ago is taken
        over (0: never; only for requests that may safely run twice)."""
        found = await self._begin(
            keys=[self.keys.idempotency(client_id, digest(key))],
            args=[request, repr(now), KEEP, token, repr(stale)],
        )
        if not found:
            return None
        raw = text(dict(zip(found[::2], found[1::2], strict=True)))
        return Intent(
            request=raw.get("request", ""),
            state=raw.get("state", "started"),
            started_at=float(raw.get("started_at", "0")),
            task_id=raw.get("task_id"),
            status=int(raw["status"]) if "status" in raw else None,
            answer=raw.get("answer"),
            location=raw.get("location"),
        )

    async def created(self, client_id: str, key: str, token: str, task_id: str) -> None:
        """The upstream made the task: a retry registers it rather than creating again."""
        await self._write(client_id, key, token, "state", "created", "task_id", task_id)

    async def done(
        self, client_id: str, key: str, token: str, status: int, answer: str, location: str = ""
    ) -> None:
        """The answer, to be given again to the same key and body (with its Location)."""
        fields = ["state", "done", "status", str(status), "answer", answer]
        if location:
            fields += ["location", location]
        await self._write(client_id, key, token, *fields)

    async def release(self, client_id: str, key: str, token: str) -> None:
        """Nothing happened (the create never left): the key may be used again."""
        await self._write(client_id, key, token)

    async def _write(self, client_id: str, key: str, token: str, *fields: str) -> None:
        await self._settle(
            keys=[self.keys.idempotency(client_id, digest(key))], args=[token, *fields]
        )
