"""Each client's own object storage: where its copies go (instead of the operator's
TRACKER_STORAGE_URL), with the credentials sealed like every stored credential, and whether its
registrations keep copies unless they say.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracker.core.vault import Vault
from tracker.store.clients import Place
from tracker.store.codec import text


@dataclass(frozen=True)
class ClientStorage:
    """A client's storage settings. `url` empty: the operator's store is used (if any)."""

    url: str = ""
    access_key_id: str = ""
    secret_access_key: str = ""
    keep_by_default: bool | None = None  # None: keep where a store is configured

    def has_store(self, operator_store: bool) -> bool:
        """Whether copies can be kept: a bucket of its own, or the deployment's store."""
        return bool(self.url) or operator_store

    def keeps_by_default(self, operator_store: bool) -> bool:
        """Whether a registration that does not say keeps copies: wherever a store is, unless
        the client said not to."""
        return self.has_store(operator_store) and self.keep_by_default is not False

    @property
    def masked(self) -> dict[str, object]:
        """As the API and the CLI show it: the secret never, the key id cut short."""
        return {
            "url": self.url or None,
            "access_key_id": (self.access_key_id[:4] + "…") if self.access_key_id else None,
            "secret_access_key": "********" if self.secret_access_key else None,
            "keep_by_default": self.keep_by_default,
        }


class Buckets:
    """Each client's own object storage, kept in its partition (`place`)."""

    def __init__(self, vault: Vault | None, place: Place) -> None:
        self.vault = vault
        self.place = place

    async def get(self, client_id: str) -> ClientStorage:
        where, space = self.place(client_id)
        return self.parse(text(await where.hgetall(space.client_storage(client_id))))

    def parse(self, raw: dict[str, str]) -> ClientStorage:
        """A client's storage settings from their hash (its secret opened)."""
        keep = raw.get("keep")
        secret = raw.get("secret", "")
        return ClientStorage(
            url=raw.get("url", ""),
            access_key_id=raw.get("access_key_id", ""),
            secret_access_key=self.vault.open(secret) if secret and self.vault else "",
            keep_by_default=None if keep is None else keep == "1",
        )

    async def put(self, client_id: str, storage: ClientStorage) -> None:
        """Keep the client's storage settings (all of them: what is not given is cleared)."""
        if storage.secret_access_key and self.vault is None:
            raise ValueError("sealing a storage secret needs TRACKER_ENCRYPTION_KEYS")
        fields = {"url": storage.url, "access_key_id": storage.access_key_id}
        if storage.secret_access_key and self.vault is not None:
            fields["secret"] = self.vault.seal(storage.secret_access_key)
        if storage.keep_by_default is not None:
            fields["keep"] = "1" if storage.keep_by_default else "0"
        where, space = self.place(client_id)
        async with where.pipeline(transaction=True) as pipe:
            pipe.delete(space.client_storage(client_id))
            pipe.hset(space.client_storage(client_id), mapping=fields)
            await pipe.execute()

    async def remove(self, client_id: str) -> bool:
        """Forget the client's storage settings (its copies go to the operator's store)."""
        where, space = self.place(client_id)
        return bool(await where.delete(space.client_storage(client_id)))
