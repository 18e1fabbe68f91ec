"""Client records: who may use the API, with which key (stored as a hash) and which secret."""

from __future__ import annotations

from dataclasses import replace

from redis.asyncio import Redis

from tracker.core import credentials, signing
from tracker.core.ids import new_id
from tracker.core.records import Client
from tracker.store import keys
from tracker.store.codec import text


class Clients:
    """The clients in Redis: created, looked up by key, rotated, revoked."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def create(self, name: str, now: float) -> tuple[Client, str]:
        """Create a client; returns it with its API key, which is stored only as a hash."""
        client = Client(id=new_id("cli"), name=name, secret=signing.new_secret(), created_at=now)
        api_key = credentials.new_api_key()
        key_hash = credentials.hash_api_key(api_key)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                keys.client(client.id),
                mapping={
                    "name": name,
                    "secret": client.secret,
                    "key_hash": key_hash,
                    "created_at": repr(now),
                    "revoked": "0",
                },
            )
            pipe.set(keys.api_key(key_hash), client.id)
            pipe.sadd(keys.CLIENTS, client.id)
            await pipe.execute()
        return client, api_key

    async def get(self, client_id: str) -> Client | None:
        raw = text(await self.redis.hgetall(keys.client(client_id)))
        return _client(client_id, raw) if raw else None

    async def for_key(self, api_key: str) -> Client | None:
        """The client that holds `api_key`, unless it is unknown or revoked."""
        key_hash = credentials.hash_api_key(api_key)
        client_id = await self.redis.get(keys.api_key(key_hash))
        if client_id is None:
            return None
        raw = text(await self.redis.hgetall(keys.client(client_id.decode())))
        if not raw or not credentials.same_hash(raw.get("key_hash", ""), key_hash):
            return None
        found = _client(client_id.decode(), raw)
        return None if found.revoked else found

    async def rotate_secret(self, client_id: str, now: float, overlap: float) -> Client | None:
        """Give the client a new webhook secret; the old one keeps signing for `overlap` s."""
        current = await self.get(client_id)
        if current is None:
            return None
        new_secret = signing.new_secret()
        await self.redis.hset(
            keys.client(client_id),
            mapping={
                "secret": new_secret,
                "previous_secret": current.secret,
                "previous_until": repr(now + overlap),
            },
        )
        return replace(
            current, secret=new_secret, previous_secret=current.secret, previous_until=now + overlap
        )

    async def revoke(self, client_id: str) -> bool:
        """Refuse the client's API key from now on. False if there is no such client."""
        raw = text(await self.redis.hgetall(keys.client(client_id)))
        if not raw:
            return False
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.client(client_id), "revoked", "1")
            pipe.delete(keys.api_key(raw["key_hash"]))
            await pipe.execute()
        return True

    async def all(self) -> list[Client]:
        ids = sorted(member.decode() for member in await self.redis.smembers(keys.CLIENTS))
        async with self.redis.pipeline(transaction=False) as pipe:
            for client_id in ids:
                pipe.hgetall(keys.client(client_id))
            found = [
                _client(client_id, text(raw))
                for client_id, raw in zip(ids, await pipe.execute(), strict=True)
                if raw
            ]
        return sorted(found, key=lambda c: c.created_at)


def _client(client_id: str, raw: dict[str, str]) -> Client:
    return Client(
        id=client_id,
        name=raw["name"],
        secret=raw["secret"],
        created_at=float(raw["created_at"]),
        revoked=raw.get("revoked") == "1",
        previous_secret=raw.get("previous_secret"),
        previous_until=float(raw.get("previous_until", "0")),
    )
