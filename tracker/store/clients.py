"""Client records: who may use the API, with which key (stored as a hash), which webhook
secrets and which QuickRouter keys of its own (both sealed with `tracker.core.vault`: a copy of
Redis holds no usable secret)."""

from __future__ import annotations

from collections.abc import Iterable
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


class Clients:
    """The clients in Redis: created, looked up by key, rotated, revoked, resealed."""

    def __init__(self, redis: Redis, vault: Vault | None) -> None:
        self.redis = redis
        self._vault = vault
        self._purge = redis.register_script(scripts.END_ROTATION_OVERLAP)
        self._add_key = redis.register_script(scripts.ADD_UPSTREAM_KEY)
        self._find = redis.register_script(scripts.FIND_CLIENT)

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
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                keys.HOME.client(client.id),
                mapping={
                    "name": name,
                    "secret": self.vault.seal(client.secret),
                    "key_hash": key_hash,
                    "created_at": repr(now),
                    "revoked": "0",
                },
            )
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
        """Each client (as `get`), read in one round trip."""
        unique = list(dict.fromkeys(client_ids))
        async with self.redis.pipeline(transaction=False) as pipe:
            for client_id in unique:
                pipe.hgetall(keys.HOME.client(client_id))
            raws = await pipe.execute()
        clients: dict[str, Client | None] = {}
        for client_id, raw in zip(unique, raws, strict=True):
            if not raw:
                clients[client_id] = None
                continue
            found = self._client(client_id, text(raw))
            if (
                now is not None
                and found.previous_secret is not None
                and now >= found.previous_until
            ):
                await self.purge_previous(client_id, now)
                found = replace(found, previous_secret=None, previous_until=0.0)
            clients[client_id] = found
        return clients

    async def for_key(self, api_key: str) -> Client | None:
        """The client that holds `api_key`, unless it is unknown or revoked."""
        key_hash = credentials.hash_api_key(api_key)
        found = await self._find(keys=[keys.HOME.api_key(key_hash)], args=[keys.HOME.client("%s")])
        if not found:
            return None
        client_id, flat = found[0].decode(), found[1]
        raw = text(dict(zip(flat[::2], flat[1::2], strict=True)))
        if not raw or not credentials.same_hash(raw.get("key_hash", ""), key_hash):
            return None
        client = self._client(client_id, raw)
        return None if client.revoked else client

    async def rotate_secret(self, client_id: str, now: float, overlap: float) -> Client | None:
        """Give the client a new webhook secret; the old one keeps signing for `overlap` s."""
        current = await self.get(client_id)
        if current is None:
            return None
        new_secret = signing.new_secret()
        await self.redis.hset(
            keys.HOME.client(client_id),
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
        return bool(await self._purge(keys=[keys.HOME.client(client_id)], args=[repr(now)]))

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
        for client_id in [m.decode() for m in await self.redis.smembers(keys.HOME.CLIENTS)]:
            stored = text(await self.redis.hgetall(keys.HOME.client(client_id)))
            fresh = {
                name: self.vault.seal(self.vault.open(stored[name]))
                for name in _SECRET_FIELDS
                if name in stored and self.vault.needs_resealing(stored[name])
            }
            if fresh:
                await self.redis.hset(keys.HOME.client(client_id), mapping=fresh)
                resealed += len(fresh)
            own = text(await self.redis.hgetall(keys.HOME.client_upstream_keys(client_id)))
            fresh = {
                name: self.vault.seal(self.vault.open(sealed))
                for name, sealed in own.items()
                if self.vault.needs_resealing(sealed)
            }
            if fresh:
                await self.redis.hset(keys.HOME.client_upstream_keys(client_id), mapping=fresh)
                resealed += len(fresh)
            storage = await self.redis.hget(keys.HOME.client_storage(client_id), "secret")
            if storage is not None and self.vault.needs_resealing(storage.decode()):
                opened = self.vault.open(storage.decode())
                await self.redis.hset(
                    keys.HOME.client_storage(client_id), "secret", self.vault.seal(opened)
                )
                resealed += 1
        return resealed

    async def add_upstream_key(self, client_id: str, key: str) -> str:
        """Keep one of the client's own QuickRouter keys, sealed; returns its fingerprint.
        LimitReached past `upstream_keys.MAX_PER_CLIENT` (a key kept already can be again)."""
        name = upstream_keys.fingerprint(key)
        added = await self._add_key(
            keys=[keys.HOME.client_upstream_keys(client_id)],
            args=[name, self.vault.seal(key), upstream_keys.MAX_PER_CLIENT],
        )
        if not added:
            raise LimitReached(
                f"a client may keep at most {upstream_keys.MAX_PER_CLIENT} QuickRouter keys"
            )
        return name

    async def remove_upstream_key(self, client_id: str, name: str) -> bool:
        """Forget one of the client's keys (its tasks' next polls fail as unauthorized)."""
        return bool(await self.redis.hdel(keys.HOME.client_upstream_keys(client_id), name))

    async def upstream_key_names(self, client_id: str) -> list[str]:
        """The fingerprints of the client's own keys, sorted."""
        names = await self.redis.hkeys(keys.HOME.client_upstream_keys(client_id))
        return sorted(n.decode() for n in names)

    async def quickrouter_key(self, holder: str, name: str, shared: str | None) -> str | None:
        """The key to call QuickRouter with: `shared` (the deployment's) for the shared scope
        (`name` empty), else `holder`'s own key `name`, None once `holder` dropped it."""
        return await self.open_upstream_key(holder, name) if name else shared

    async def open_upstream_key(self, client_id: str, name: str) -> str | None:
        """The client's key by fingerprint, opened; None if it no longer holds it."""
        sealed = await self.redis.hget(keys.HOME.client_upstream_keys(client_id), name)
        return self.vault.open(sealed.decode()) if sealed is not None else None

    async def revoke(self, client_id: str) -> bool:
        """Refuse the client's API key from now on, and delete the credentials kept for it (its
        webhook secrets, its own QuickRouter keys, its storage's credentials): nothing can be
        signed, polled or stored on its behalf any more. Its record stays, marked revoked, for
        the operator. False if there is no such client."""
        raw = text(await self.redis.hgetall(keys.HOME.client(client_id)))
        if not raw:
            return False
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.HOME.client(client_id), "revoked", "1")
            pipe.hdel(keys.HOME.client(client_id), "secret", "previous_secret", "previous_until")
            pipe.delete(
                keys.HOME.api_key(raw["key_hash"]),
                keys.HOME.client_upstream_keys(client_id),
                keys.HOME.client_storage(client_id),
            )
            await pipe.execute()
        return True

    async def all(self) -> list[Client]:
        ids = await self.ids()
        async with self.redis.pipeline(transaction=False) as pipe:
            for client_id in ids:
                pipe.hgetall(keys.HOME.client(client_id))
            found = [
                self._client(client_id, text(raw))
                for client_id, raw in zip(ids, await pipe.execute(), strict=True)
                if raw
            ]
        return sorted(found, key=lambda c: c.created_at)

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
