"""What every command runs with: the settings from the environment, and what `qrtracker up`
keeps in its data folder for the other commands (the embedded Redis's address, the
encryption key, the operator token); a store on the configured Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from tracker.core.vault import new_key, vault_of
from tracker.errors import ConfigurationError, Unavailable
from tracker.settings import Settings
from tracker.store import Store, store_for
from tracker.store.connection import connect

T = TypeVar("T")

URL_FILE = "redis.url"  # where `up` tells the other commands the embedded Redis's address
KEY_FILE = "encryption.keys"  # the key `up` made, where TRACKER_ENCRYPTION_KEYS is unset
# The operator token `up` made, where TRACKER_ADMIN_TOKEN is unset (a file name, not a token).
ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105


def load_settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigurationError as exc:
        raise click.UsageError(exc.detail) from None


def resolve_redis(settings: Settings) -> Settings:
    """`REDIS_URL`, else the embedded Redis of a running `qrtracker up` in the data folder;
    likewise the encryption keys: TRACKER_ENCRYPTION_KEYS, else the data folder's."""
    key_file = settings.data_dir / KEY_FILE
    if not settings.encryption_keys and key_file.exists():
        settings = dataclasses.replace(settings, encryption_keys=key_file.read_text().strip())
    try:
        vault_of(settings)  # a missing or malformed key is a usage error, said up front
    except ConfigurationError as exc:
        raise click.UsageError(exc.detail) from None
    if settings.redis_url:
        return settings
    url_file = settings.data_dir / URL_FILE
    if url_file.exists():
        return dataclasses.replace(settings, redis_url=url_file.read_text().strip())
    raise click.UsageError("set REDIS_URL, or start `qrtracker up` in this folder first")


def ensure_key(settings: Settings) -> Settings:
    """TRACKER_ENCRYPTION_KEYS, else the data folder's key, made on first use: `up` works on
    a fresh machine and keeps its secrets sealed."""
    if settings.encryption_keys:
        return settings
    return dataclasses.replace(settings, encryption_keys=kept(settings, KEY_FILE, new_key))


def ensure_admin_token(settings: Settings) -> Settings:
    """TRACKER_ADMIN_TOKEN, else the data folder's operator token, made on first use: `up`
    shows the operator's view with no setting to make first."""
    if settings.admin_token:
        return settings
    token = kept(settings, ADMIN_TOKEN_FILE, lambda: "qrtop_" + secrets.token_urlsafe(24))
    return dataclasses.replace(settings, admin_token=token)


def kept(settings: Settings, name: str, make: Callable[[], str]) -> str:
    """The secret in the data folder's file `name`, made (readable by this user only) first
    if there is none."""
    path = settings.data_dir / name
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(make() + "\n")
    return path.read_text().strip()


def with_store(settings: Settings, action: Callable[[Store], Awaitable[T]]) -> T:
    """Run one store action against the configured Redis, for the `clients` commands, on
    the fleet's clock."""

    async def run() -> T:
        pool = connect(str(settings.redis_url))
        try:
            store = store_for(settings, pool, patient=False, vault=vault_of(settings))
            try:
                await store.clock.sync(pool)
                try:  # a new Redis gets its epoch here, or at a start
                    await store.identity.establish()
                except Unavailable as exc:  # an earlier layout, another partition count
                    raise click.ClickException(exc.detail) from None
                return await action(store)
            finally:
                await store.aclose()
        finally:
            await pool.aclose()

    return asyncio.run(run())
