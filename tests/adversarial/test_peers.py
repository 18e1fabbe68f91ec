"""Hostile peers: a callback the socket layer refuses, a TLS name on a shared address, a
request body that never ends (issue 10, cases 3, 6 and 10)."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator

import aiohttp
import httpx
import pytest
import trustme
import uvicorn

from tests.support import auth, wait_for
from tracker.core.records import DeliveryState, EventType
from tracker.devtools.receiver import Receiver
from tracker.net.callbacks import Callbacks
from tracker.net.client import http_client
from tracker.server import EmbeddedServer
from tracker.settings import Settings
from tracker.store.connection import connect
from workers.context import build_context
from workers.deliver import attempt_delivery


def test_a_delivery_to_an_impossible_port_is_a_recorded_failed_attempt(settings: Settings) -> None:
    """Registration refuses such a URL; this one was stored before that check existed."""

    async def run() -> None:
        redis = connect(str(settings.redis_url))
        callbacks = Callbacks(allow_private=False, limit=1)
        async with http_client(settings) as http:
            ctx = build_context(settings, redis, http, callbacks)
            store = ctx["store"]
            client, _ = await store.clients.create("old", time.time())
            now = time.time()
            await store.shards[0].registrations.register(
                client_id=client.id, task_id="veo3:1-port", callback_url="http://93.184.215.14:65536/",
                metadata={}, events=[EventType.STATUS_CHANGED], now=now, deadline_at=now + 60,
                first_poll_at=now + 60,
            )  # fmt: skip
            (delivery,) = await store.shards[0].polls.record_poll(
                "veo3:1-port", polls=1, rejections=0, status="pending", previous_status=None,
                upstream=None, next_poll_at=now + 60, now=now,
            )  # fmt: skip
            for attempt in range(1, len(settings.delivery_schedule) + 2):
                await attempt_delivery(ctx, ctx["store"].shards[0], delivery.id)
                found = await store.shards[0].deliveries.get(delivery.id)
                assert found is not None and found.attempts == attempt
            assert found.state is DeliveryState.DEAD
            log = await store.shards[0].deliveries.attempts(delivery.id)
            assert all(a.status_code is None and a.error for a in log)
        await callbacks.aclose()
        await redis.aclose()

    asyncio.run(run())


# -- TLS: a session made for one name is never used for another --------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_receiver(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A receiver on 127.0.0.1 whose certificate names a.test only."""
    folder = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("a.test")
    cert.private_key_and_cert_chain_pem.write_to_path(str(folder / "server.pem"))
    config = uvicorn.Config(
        Receiver().app(), host="127.0.0.1", port=0, log_level="warning",
        ssl_certfile=str(folder / "server.pem"), ssl_keyfile=str(folder / "server.pem"),
    )  # fmt: skip
    server = EmbeddedServer(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10, "the TLS receiver")
    yield server.port
    server.should_exit = True
    thread.join(10)


def test_a_tls_session_for_one_name_is_not_reused_for_another_on_the_same_address(
    ca: trustme.CA, tls_receiver: int
) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)

    async def loopback(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]  # both names "resolve" to the same address

    async def run() -> tuple[int, Exception | None]:
        callbacks = Callbacks(
            allow_private=False, limit=10, resolver=loopback, allow=lambda addresses: addresses,
            ssl_context=context,
        )  # fmt: skip
        try:
            first = await callbacks.post(f"https://a.test:{tls_receiver}/hooks/a", b"{}", {})
            try:
                await callbacks.post(f"https://b.test:{tls_receiver}/hooks/b", b"{}", {})
            except aiohttp.ClientConnectorCertificateError as exc:
                return first.status, exc
            return first.status, None
        finally:
            await callbacks.aclose()

    status, refused = asyncio.run(run())
    assert status == 204
    assert refused is not None  # b.test's certificate was checked, and failed


# -- slow bodies -------------------------------------------------------------------------------


def test_a_body_that_never_arrives_gets_408_and_others_are_served_meanwhile(
    settings: Settings, start_api: Callable[[Settings], httpx.Client], client: dict[str, str]
) -> None:
    api = start_api(dataclasses.replace(settings, request_body_timeout=0.5))
    host, port = api.base_url.host, api.base_url.port
    assert port is not None
    slow = []
    for _ in range(20):
        sock = socket.create_connection((host, port))
        sock.sendall(
            b"POST /v1/tasks HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"authorization: Bearer " + client["api_key"].encode() + b"\r\n"
            b'content-length: 100\r\n\r\n{"task_id"'
        )
        slow.append(sock)
    started = time.monotonic()
    assert api.get("/healthz").status_code == 200  # served while 20 bodies dawdle
    for sock in slow:
        sock.settimeout(10)
        answer = b""
        while chunk := sock.recv(4096):  # the server closes the connection after its answer
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"request_timeout" in answer
        sock.close()
    assert time.monotonic() - started < 10
    listed = api.get("/v1/tasks", headers=auth(client)).json()
    assert listed["tasks"] == []  # nothing half-registered
