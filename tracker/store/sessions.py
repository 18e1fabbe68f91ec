"""The dashboard's sessions, kept in Redis: the signed cookie carries only a session's id, so
signing out, revoking a client or changing the operator token ends a session for good (a
cookie saved before is worth nothing once its record is gone), and nothing a session holds
(a rotated secret to show once) travels in the cookie."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from redis.asyncio import Redis

from tracker.store import keys
from tracker.store.codec import text
from tracker.store.ratelimit import count

SESSION_SECONDS = 12 * 3600  # a dashboard session ends this long after it began
SIGN_IN_WINDOW = 60  # seconds of the sign-in attempt counters


@dataclass(frozen=True)
class Session:
    id: str
    client_id: str  # "" for the operator
    operator_mark: str  # the operator token's fingerprint when it signed in ("" for a client)


class Sessions:
    def __init__(self, redis: Redis, ttl: int) -> None:
        self.redis = redis
        self.ttl = ttl

    async def open(self, client_id: str, operator_mark: str = "") -> Session:
        """A new session, for a client, or for the operator (`operator_mark` set)."""
        session = Session("ses_" + secrets.token_urlsafe(24), client_id, operator_mark)
        key = keys.HOME.ui_session(session.id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"client": client_id, "operator": operator_mark})
            pipe.expire(key, self.ttl)
            await pipe.execute()
        return session

    async def get(self, session_id: str) -> Session | None:
        raw = text(await self.redis.hgetall(keys.HOME.ui_session(session_id)))
        if not raw:
            return None
        return Session(session_id, raw.get("client", ""), raw.get("operator", ""))

    async def close(self, session_id: str) -> None:
        await self.redis.delete(keys.HOME.ui_session(session_id))

    async def leave_notice(self, session_id: str, notice: str) -> None:
        """Something to show once on the session's next page (a rotated secret), kept
        server-side: the answer to a POST is a redirect, and a reload shows nothing again."""
        await self.redis.hset(keys.HOME.ui_session(session_id), "notice", notice)

    async def take_notice(self, session_id: str) -> str | None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hget(keys.HOME.ui_session(session_id), "notice")
            pipe.hdel(keys.HOME.ui_session(session_id), "notice")
            notice, _ = await pipe.execute()
        return notice.decode() if notice is not None else None

    async def count_failed_sign_in(self, address: str, now: float) -> None:
        """Count one failed sign-in from `address` in this minute's window."""
        await count(
            self.redis,
            keys.HOME.sign_in_failures(address, int(now // SIGN_IN_WINDOW)),
            SIGN_IN_WINDOW,
        )

    async def sign_ins_refused(self, address: str, now: float, per_minute: int) -> bool:
        """Whether `address` made `per_minute` failed sign-ins in this minute already."""
        count = await self.redis.get(
            keys.HOME.sign_in_failures(address, int(now // SIGN_IN_WINDOW))
        )
        return int(count or 0) >= per_minute
