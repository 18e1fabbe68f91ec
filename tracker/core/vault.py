"""Credentials kept at rest: sealed with Fernet (AES-128-CBC with HMAC-SHA256) under keys from
the environment, so a copy of Redis (a backup, a replica, a dump) holds no usable secret.

Several keys make rotation possible: the first seals, every one opens (`MultiFernet`). Stored
values carry a prefix, so a value written before encryption was turned on still opens, and
`needs_resealing` finds what `qrtracker clients reencrypt` should seal again.
"""

from __future__ import annotations

import functools
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from tracker.errors import ConfigurationError
from tracker.settings import Settings

SEALED_PREFIX = "fernet:"

# Sealed values opened lately, kept opened: a client's secret is opened on every request and
# every webhook batch, and a Fernet open (HMAC, then AES) costs more than the rest of the
# lookup. A sealed value is immutable and names its one opening, so the cache is never stale.
OPENED_KEPT = 4096


def new_key() -> str:
    """A fresh key for TRACKER_ENCRYPTION_KEYS."""
    return Fernet.generate_key().decode()


class Vault:
    """Seals and opens credentials with the keys of TRACKER_ENCRYPTION_KEYS (first one seals)."""

    def __init__(self, keys: str) -> None:
        parts = [part.strip() for part in keys.split(",") if part.strip()]
        try:
            self._fernets = [Fernet(part) for part in parts]
        except (ValueError, TypeError):
            raise ConfigurationError(
                "TRACKER_ENCRYPTION_KEYS must be Fernet keys (32 url-safe base64 bytes), "
                "comma separated; `qrtracker new-key` makes one"
            ) from None
        if not self._fernets:
            raise ConfigurationError("TRACKER_ENCRYPTION_KEYS is empty")
        self._keys = MultiFernet(self._fernets)
        self._primary = parts[0].encode()
        self._opened = functools.lru_cache(maxsize=OPENED_KEPT)(self._decrypt)

    def seal(self, secret: str) -> str:
        return SEALED_PREFIX + self._keys.encrypt(secret.encode()).decode()

    def open(self, stored: str) -> str:
        """The secret in `stored`; a value from before encryption is returned as it is."""
        if not stored.startswith(SEALED_PREFIX):
            return stored
        return self._opened(stored)

    def _decrypt(self, stored: str) -> str:
        try:
            return self._keys.decrypt(stored.removeprefix(SEALED_PREFIX).encode()).decode()
        except InvalidToken:
            raise ConfigurationError(
                "a stored credential opens with none of TRACKER_ENCRYPTION_KEYS "
                "(was a key removed before `qrtracker clients reencrypt` ran?)"
            ) from None

    def derive(self, purpose: str) -> bytes:
        """A key for `purpose` (signing the links to stored files, say), derived from the
        first key: it changes when that key does."""
        return hmac.new(self._primary, purpose.encode(), hashlib.sha256).digest()

    def needs_resealing(self, stored: str) -> bool:
        """Whether `stored` is not sealed with the first key (plain, or an older key)."""
        if not stored.startswith(SEALED_PREFIX):
            return True
        try:
            self._fernets[0].decrypt(stored.removeprefix(SEALED_PREFIX).encode())
        except InvalidToken:
            return True
        return False


def vault_of(settings: Settings) -> Vault:
    """The vault of TRACKER_ENCRYPTION_KEYS, for every process that handles client secrets."""
    if not settings.encryption_keys:
        raise ConfigurationError(
            "set TRACKER_ENCRYPTION_KEYS (`qrtracker new-key` makes one), or start "
            "`qrtracker up` in this folder, which keeps one in its data folder"
        )
    return Vault(settings.encryption_keys)
