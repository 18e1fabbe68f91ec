"""Secrets at rest and the metrics route (issue 10, case 11): webhook secrets are sealed in
Redis, a rotated-out secret is deleted when its overlap ends, the encryption key rotates."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable

import httpx
import pytest
import redis
from click.testing import CliRunner

from tests.support import create_client
from tracker.cli import main
from tracker.core.vault import Vault, new_key
from tracker.errors import ConfigurationError
from tracker.settings import Settings
from tracker.store import Store, keys
from tracker.store.connection import connect


def stored(redis_url: str, client_id: str) -> dict[str, str]:
    with redis.Redis.from_url(redis_url, decode_responses=True) as conn:
        return conn.hgetall(keys.HOME.client(client_id))  # type: ignore[return-value]


def test_webhook_secrets_are_sealed_in_redis(redis_url: str) -> None:
    client = create_client(redis_url)
    record = stored(redis_url, client["id"])
    assert record["secret"].startswith("fernet:")
    assert client["webhook_secret"] not in str(record)
    with redis.Redis.from_url(redis_url) as conn:
        dump = b"".join(conn.dump(k) or b"" for k in conn.keys("*"))
    assert client["webhook_secret"].encode() not in dump
    assert client["api_key"].encode() not in dump  # the API key is kept only as a hash


def test_the_previous_secret_is_deleted_when_the_overlap_ends(redis_url: str) -> None:
    client = create_client(redis_url)
    result = CliRunner().invoke(
        main, ["clients", "rotate-secret", client["id"]],
        env={"REDIS_URL": redis_url, "TRACKER_SECRET_ROTATION_OVERLAP": "0.3"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "previous_secret" in stored(redis_url, client["id"])

    async def purge() -> int:
        pool = connect(redis_url)
        try:
            clients = Store(pool).clients
            early = await clients.purge_all_previous(time.time())
            assert early == 0  # still inside the overlap
            return await clients.purge_all_previous(time.time() + 0.5)
        finally:
            await pool.aclose()

    assert asyncio.run(purge()) == 1
    record = stored(redis_url, client["id"])
    assert "previous_secret" not in record and "previous_until" not in record


def test_the_encryption_key_rotates_without_losing_a_secret(
    redis_url: str, encryption_keys: str
) -> None:
    client = create_client(redis_url)
    fresh = new_key()
    both = {"REDIS_URL": redis_url, "TRACKER_ENCRYPTION_KEYS": f"{fresh},{encryption_keys}"}
    result = CliRunner().invoke(main, ["clients", "reencrypt"], env=both)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("1 secrets sealed again")
    sealed = stored(redis_url, client["id"])["secret"]
    assert Vault(fresh).open(sealed) == client["webhook_secret"]  # the new key alone opens it
    again = CliRunner().invoke(main, ["clients", "reencrypt"], env=both)
    assert again.output.startswith("0 secrets")
    listed = CliRunner().invoke(
        main, ["clients", "list"], env={"REDIS_URL": redis_url, "TRACKER_ENCRYPTION_KEYS": fresh}
    )
    assert listed.exit_code == 0 and client["id"] in listed.output


def test_commands_refuse_to_run_without_a_key(redis_url: str, tmp_path: object) -> None:
    result = CliRunner().invoke(
        main, ["clients", "list"],
        env={"REDIS_URL": redis_url, "TRACKER_ENCRYPTION_KEYS": "",
             "TRACKER_DATA_DIR": str(tmp_path)},
    )  # fmt: skip
    assert result.exit_code == 2
    assert "TRACKER_ENCRYPTION_KEYS" in result.output


def test_metrics_can_require_a_bearer_token(
    settings: Settings, start_api: Callable[[Settings], httpx.Client]
) -> None:
    api = start_api(dataclasses.replace(settings, metrics_token="scrape-me"))
    assert api.get("/metrics").status_code == 401
    assert api.get("/metrics", headers={"authorization": "Bearer wrong"}).status_code == 401
    scraped = api.get("/metrics", headers={"authorization": "Bearer scrape-me"})
    assert scraped.status_code == 200
    assert "qrtracker_registrations_total" in scraped.text


def test_a_value_opened_once_opens_the_same_again_and_a_foreign_one_never() -> None:
    vault, other = Vault(new_key()), Vault(new_key())
    sealed = vault.seal("whsec_one")
    assert vault.open(sealed) == vault.open(sealed) == "whsec_one"  # the second from the cache
    foreign = other.seal("whsec_two")
    for _ in range(2):  # a refusal is never remembered as an opening
        with pytest.raises(ConfigurationError):
            vault.open(foreign)
