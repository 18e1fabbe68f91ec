"""Clients as tenants: hashed keys, isolation, revocation, secret rotation."""

from __future__ import annotations

from typing import Any

import httpx
import redis
from click.testing import CliRunner

from tests.support import auth, create_client
from tracker.cli import main
from tracker.core.credentials import hash_api_key

TASK = "veo3.1-fast:1770350082-tenant"


def register(api: httpx.Client, client: dict[str, str], task_id: str = TASK) -> httpx.Response:
    return api.post(
        "/v1/tasks",
        headers=auth(client),
        json={"task_id": task_id, "callback_url": "https://hooks.example.com/x"},
    )


def cli(redis_url: str, *args: str, **env: str) -> Any:
    return CliRunner().invoke(main, list(args), env={"REDIS_URL": redis_url, **env})


def test_api_keys_are_stored_only_as_hashes(client: dict[str, str], redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as conn:
        dump = b"".join(
            b"".join(conn.hgetall(k).values()) if conn.type(k) == b"hash" else k
            for k in conn.keys("*")
        )
        assert client["api_key"].encode() not in dump
        assert hash_api_key(client["api_key"]).encode() in dump


def test_clients_cannot_see_or_cancel_each_others_tasks(
    api: httpx.Client, client: dict[str, str], redis_url: str
) -> None:
    other = create_client(redis_url, "other")
    assert register(api, client).status_code == 201
    unknown = api.get("/v1/tasks/veo3.1-fast:1-nobody", headers=auth(other))
    for response in (
        api.get(f"/v1/tasks/{TASK}", headers=auth(other)),
        api.delete(f"/v1/tasks/{TASK}", headers=auth(other)),
        api.post(f"/v1/tasks/{TASK}/redeliver", headers=auth(other)),
    ):
        assert response.status_code == 404
        assert response.json()["type"] == unknown.json()["type"]
    assert api.get("/v1/tasks", headers=auth(other)).json()["tasks"] == []
    mine = api.get(f"/v1/tasks/{TASK}", headers=auth(client)).json()
    assert mine["state"] == "tracking"


def test_a_revoked_key_is_refused_at_once(
    api: httpx.Client, client: dict[str, str], redis_url: str
) -> None:
    assert register(api, client).status_code == 201
    result = cli(redis_url, "clients", "revoke", client["id"])
    assert result.exit_code == 0, result.output
    refused = api.get("/v1/tasks", headers=auth(client))
    assert refused.status_code == 401
    listed = cli(redis_url, "clients", "list")
    assert "revoked" in listed.output
    assert cli(redis_url, "clients", "revoke", "cli_nope").exit_code == 1


def test_rotate_secret_prints_a_new_secret_and_keeps_the_key(
    api: httpx.Client, client: dict[str, str], redis_url: str
) -> None:
    import json

    result = cli(redis_url, "clients", "rotate-secret", client["id"], "--json")
    assert result.exit_code == 0, result.output
    rotated = json.loads(result.output)
    assert rotated["webhook_secret"].startswith("whsec_")
    assert rotated["webhook_secret"] != client["webhook_secret"]
    assert client["webhook_secret"] not in result.output
    assert register(api, client).status_code == 201
    assert cli(redis_url, "clients", "rotate-secret", "cli_nope").exit_code == 1
