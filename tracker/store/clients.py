"""Client records: who may use the API, with which key (stored as a hash), which webhook
secrets and which QuickRouter keys of its own (both sealed with `tracker.core.vault`: a copy of
Redis holds no usable secret)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from redis.asyncio import Redis

from tracker.core import credentials, signing, upstream_keys
from tracker.core.ids import new_id
from tracker.core.records import Client
from tracker.core.vault import Vault
from tracker.errors import ConfigurationError, LimitReached
from tracker.store import keys, scripts
from tracker.store.codec import text

_SECRET_FIELDS = ("secret", "previous_secret")

# The connection and the keys of the partition that holds a client id's records.
Place = Callable[[str], tuple[Redis, keys.Keyspace]]


class Clients:
    """The clients in Redis: created, looked up by key, rotated, revoked, resealed.

    The index of clients and each API key's entry live under the home tag (a key is looked up
    before its client is known); everything else of a client (its record, its own QuickRouter
    keys, its storage settings) lives in its partition (`place`: the connection and keys of
    the partition that holds a client id's records)."""

    def __init__(self, redis: Redis, vault: Vault | None, place: Place) -> None:
        self.redis = redis
        self._vault = vault
        self.place = place
        self._purge = redis.register_script(scripts.END_ROTATION_OVERLAP)
        self._add_key = redis.register_script(scripts.ADD_UPSTREAM_KEY)

    @property
    def vault(self) -> Vault:
        if self._vault is None:
            raise ConfigurationError(
                "client secrets need TRACKER_ENCRYPTION_KEYS (`qrtracker new-key` makes one)"
            )
        return self._vault

    async def create(self, name: str, now: float) -> tuple[Client, str]:
        """Create a client; returns it with its API key, which is stored only as a hash."""
        client = Client(id=new_id("cli"), name=name, secret=signing.new_secret(), created_at=now)
        api_key = credentials.new_api_key()
        key_hash = credentials.hash_api_key(api_key)
        where, space = self.place(client.id)
        await where.hset(
            space.client(client.id),
            mapping={
                "name": name,
                "secret": self.vault.seal(client.secret),
                "key_hash": key_hash,
                "created_at": repr(now),
                "revoked": "0",
            },
        )
        # Then its key and its place in the index (the home tag's: another slot). A crash in
        # between leaves a record no key reaches and no list shows; the operator creates it
        # again.
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.HOME.api_key(key_hash), client.id)
            pipe.sadd(keys.HOME.CLIENTS, client.id)
            await pipe.execute()
        return client, api_key

    async def get(self, client_id: str, now: float | None = None) -> Client | None:
        """The client; given `now`, a previous secret whose overlap has ended is deleted."""
        return (await self.get_many([client_id], now))[client_id]

    async def get_many(
        self, client_ids: Iterable[str], now: float | None = None
    ) -> dict[str, Client | None]:
        """Each client (as `get`), read in one round trip per partition."""
        clients: dict[str, Client | None] = {}
        for (where, space), ids in self._by_place(client_ids).items():
            async with where.pipeline(transaction=False) as pipe:
                for client_id in ids:
                    pipe.hgetall(space.client(client_id))
                raws = await pipe.execute()
            for client_id, raw in zip(ids, raws, strict=True):
                clients[client_id] = await self._current(client_id, raw, now)
        return clients

    async def _current(
        self, client_id: str, raw: dict[bytes, bytes], now: float | None
    ) -> Client | None:
        if not raw:
            return None
        found = self._client(client_id, text(raw))
        if now is not None and found.previous_secret is not None and now >= found.previous_until:
            await self.purge_previous(client_id, now)
            found = replace(found, previous_secret=None, previous_until=0.0)
        return found

    def _by_place(self, client_ids: Iterable[str]) -> dict[tuple[Redis, keys.Keyspace], list[str]]:
        grouped: dict[tuple[Redis, keys.Keyspace], list[str]] = {}
        for client_id in dict.fromkeys(client_ids):
            grouped.setdefault(self.place(client_id), []).append(client_id)
        return grouped

    async def for_key(self, api_key: str) -> Client | None:
        """The client that holds `api_key`, unless it is unknown or revoked."""
        key_hash = credentials.hash_api_key(api_key)
        client_id = await self.redis.get(keys.HOME.api_key(key_hash))
        if client_id is None:
            return None
        where, space = self.place(client_id.decode())
        raw = text(await where.hgetall(space.client(client_id.decode())))
        if not raw or not credentials.same_hash(raw.get("key_hash", ""), key_hash):
            return None
        found = self._client(client_id.decode(), raw)
        return None if found.revoked else found

    async def rotate_secret(self, client_id: str, now: float, overlap: float) -> Client | None:
        """Give the client a new webhook secret; the old one keeps signing for `overlap` s."""
        current = await self.get(client_id)
        if current is None:
            return None
        new_secret = signing.new_secret()
        where, space = self.place(client_id)
        await where.hset(
            space.client(client_id),
            mapping={
                "secret": self.vault.seal(new_secret),
                "previous_secret": self.vault.seal(current.secret),
                "previous_until": repr(now + overlap),
            },
        )
        return replace(
            current, secret=new_secret, previous_secret=current.secret, previous_until=now + overlap
        )

    async def purge_previous(self, client_id: str, now: float) -> bool:
        """Delete the client's previous secret if its overlap has ended by `now`."""
        where, space = self.place(client_id)
        return bool(
            await self._purge(keys=[space.client(client_id)], args=[repr(now)], client=where)
        )

    async def purge_all_previous(self, now: float) -> int:
        """Delete every previous secret whose overlap has ended; how many were deleted."""
        return sum([await self.purge_previous(client_id, now) for client_id in await self.ids()])

    async def ids(self) -> list[str]:
        """Every client's id, revoked ones included."""
        return sorted(member.decode() for member in await self.redis.smembers(keys.HOME.CLIENTS))

    async def reseal(self) -> int:
        """Seal every secret kept with the clients with the first key (after a key is added, or
        to encrypt what was stored in clear; `Store.reseal` does the subscriptions' too);
        returns how many values were sealed again."""
        resealed = 0
        for client_id in await self.ids():
            where, space = self.place(client_id)
            stored = text(await where.hgetall(space.client(client_id)))
            fresh = {
                name: self.vault.seal(self.vault.open(stored[name]))
                for name in _SECRET_FIELDS
                if name in stored and self.vault.needs_resealing(stored[name])
            }
            if fresh:
                await where.hset(space.client(client_id), mapping=fresh)
                resealed += len(fresh)
            own = text(await where.hgetall(space.client_upstream_keys(client_id)))
            fresh = {
                name: self.vault.seal(self.vault.open(sealed))
                for name, sealed in own.items()
                if self.vault.needs_resealing(sealed)
            }
            if fresh:
                await where.hset(space.client_upstream_keys(client_id), mapping=fresh)
                resealed += len(fresh)
            storage = await where.hget(space.client_storage(client_id), "secret")
            if storage is not None and self.vault.needs_resealing(storage.decode()):
                opened = self.vault.open(storage.decode())
                await where.hset(space.client_storage(client_id), "secret", self.vault.seal(opened))
                resealed += 1
        return resealed

    async def add_upstream_key(self, client_id: str, key: str) -> str:
        """Keep one of the client's own QuickRouter keys, sealed; returns its fingerprint.
        LimitReached past `upstream_keys.MAX_PER_CLIENT` (a key kept already can be again)."""
        name = upstream_keys.fingerprint(key)
        where, space = self.place(client_id)
        added = await self._add_key(
            keys=[space.client_upstream_keys(client_id)],
            args=[name, self.vault.seal(key), upstream_keys.MAX_PER_CLIENT],
            client=where,
        )
        if not added:
            raise LimitReached(
                f"a client may keep at most {upstream_keys.MAX_PER_CLIENT} QuickRouter keys"
            )
        return name

    async def remove_upstream_key(self, client_id: str, name: str) -> bool:
        """Forget one of the client's keys (its tasks' next polls fail as unauthorized)."""
        where, space = self.place(client_id)
        return bool(await where.hdel(space.client_upstream_keys(client_id), name))

    async def upstream_key_names(self, client_id: str) -> list[str]:
        """The fingerprints of the client's own keys, sorted."""
        where, space = self.place(client_id)
        names = await where.hkeys(space.client_upstream_keys(client_id))
        return sorted(n.decode() for n in names)

    async def quickrouter_key(self, holder: str, name: str, shared: str | None) -> str | None:
        """The key to call QuickRouter with: `shared` (the deployment's) for the shared scope
        (`name` empty), else `holder`'s own key `name`, None once `holder` dropped it."""
        return await self.open_upstream_key(holder, name) if name else shared

    async def open_upstream_key(self, client_id: str, name: str) -> str | None:
        """The client's key by fingerprint, opened; None if it no longer holds it."""
        where, space = self.place(client_id)
        sealed = await where.hget(space.client_upstream_keys(client_id), name)
        return self.vault.open(sealed.decode()) if sealed is not None else None

    async def revoke(self, client_id: str) -> bool:
        """Refuse the client's API key from now on, and delete the credentials kept for it (its
        webhook secrets, its own QuickRouter keys, its storage's credentials): nothing can be
        signed, polled or stored on its behalf any more. Its record stays, marked revoked, for
        the operator. False if there is no such client."""
        where, space = self.place(client_id)
        raw = text(await where.hgetall(space.client(client_id)))
        if not raw:
            return False
        async with where.pipeline(transaction=True) as pipe:
            pipe.hset(space.client(client_id), "revoked", "1")
            pipe.hdel(space.client(client_id), "secret", "previous_secret", "previous_until")
            pipe.delete(space.client_upstream_keys(client_id), space.client_storage(client_id))
            await pipe.execute()
        # Then its key's entry (the home tag's: another slot). Marked revoked first, so a
        # crash in between leaves a key that reaches a revoked client: refused all the same.
        await self.redis.delete(keys.HOME.api_key(raw["key_hash"]))
        return True

    async def all(self) -> list[Client]:
        found = await self.get_many(await self.ids())
        return sorted((c for c in found.values() if c is not None), key=lambda c: c.created_at)

    def _client(self, client_id: str, raw: dict[str, str]) -> Client:
        previous = raw.get("previous_secret")
        return Client(
            id=client_id,
            name=raw["name"],
            secret=self.vault.open(raw["secret"]) if "secret" in raw else "",  # "": revoked
            created_at=float(raw["created_at"]),
            revoked=raw.get("revoked") == "1",
            previous_secret=self.vault.open(previous) if previous is not None else None,
            previous_until=float(raw.get("previous_until", "0")),
        )
