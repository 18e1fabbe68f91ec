"""The SSRF guard: refused callback URLs at registration, and the pinned delivery transport."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
from collections.abc import Callable

import aiohttp
import httpx
import pytest

from tests.support import auth
from tracker.core.addresses import is_public, public_addresses
from tracker.devtools.receiver import Received, Receiver
from tracker.errors import ValidationFailed
from tracker.net.callbacks import Callbacks
from tracker.net.client import http_client
from tracker.net.guard import AddressRefused, check_callback_url
from tracker.server import ServerThread
from tracker.settings import Settings

REFUSED = [
    "http://127.0.0.1/",
    "http://127.1.2.3:8080/hook",
    "http://[::1]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://0.0.0.0/",
    "http://224.0.0.1/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[2002:7f00:1::]/",
    "http://[fd00:ec2::254]/",
    "http://[fe80::1]/",
    "http://0x7f000001/",
    "http://2130706433/",
    "http://localhost/",
    "ftp://example.com/",
    "javascript:alert(1)",
    "file:///etc/passwd",
    "http:///nohost",
    "http://[fec0::1]/",
    "http://93.184.215.14:65536/",
    "http://93.184.215.14:0/",
    "http://xn--localhost/",
    "https://" + "a" * 2100 + ".com/",
]


@pytest.fixture
def guarded_api(settings: Settings, start_api: Callable[[Settings], httpx.Client]) -> httpx.Client:
    return start_api(dataclasses.replace(settings, allow_private_callbacks=False))


@pytest.mark.parametrize("url", REFUSED)
def test_private_and_odd_callbacks_are_refused_with_422(
    guarded_api: httpx.Client, client: dict[str, str], url: str
) -> None:
    response = guarded_api.post(
        "/v1/tasks", headers=auth(client), json={"task_id": "veo3:1-x", "callback_url": url}
    )
    assert response.status_code == 422, response.text
    assert response.json()["type"] == "urn:qrtracker:problem:validation_failed"
    assert "callback_url" in response.json()["detail"]


def test_a_public_address_is_accepted(guarded_api: httpx.Client, client: dict[str, str]) -> None:
    # An address literal: nothing is resolved or contacted (no worker runs in this test).
    response = guarded_api.post(
        "/v1/tasks",
        headers=auth(client),
        json={"task_id": "veo3:1-x", "callback_url": "https://8.8.8.8/h"},
    )
    assert response.status_code == 201


def test_a_public_name_is_accepted_and_a_name_with_one_private_answer_is_not() -> None:
    async def public(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]

    async def mixed(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.1.1.1"]

    url = "https://hooks.example.com/x"
    assert asyncio.run(check_callback_url(url, allow_private=False, resolver=public)) == url
    with pytest.raises(ValidationFailed):
        asyncio.run(check_callback_url(url, allow_private=False, resolver=mixed))


def test_an_unresolvable_host_is_refused() -> None:
    async def nowhere(host: str, port: int) -> list[str]:
        raise OSError("no such host")

    with pytest.raises(ValidationFailed, match="does not resolve"):
        asyncio.run(check_callback_url("https://x.invalid/", allow_private=False, resolver=nowhere))


def test_allow_private_lifts_the_address_check_but_not_the_scheme() -> None:
    assert asyncio.run(check_callback_url("http://127.0.0.1:9/", allow_private=True))
    with pytest.raises(ValidationFailed):
        asyncio.run(check_callback_url("ftp://127.0.0.1/", allow_private=True))


@pytest.mark.parametrize(
    ("url", "why"),
    [("http://exa mple.com/", "spaces"), ("http://example.com/a b", "spaces"),
     ("http://example.com/\u2028", "spaces"), ("http://example.com/\x85", "control"),
     ("http://a..b/", "host name"),
     ("http://[fe80::1%25eth0]/", "host name"), ("http://a!b.com/", "host name")],
)  # fmt: skip
def test_a_url_no_receiver_could_have_is_refused_even_where_private_ones_are_allowed(
    url: str, why: str
) -> None:
    with pytest.raises(ValidationFailed, match=why):
        asyncio.run(check_callback_url(url, allow_private=True))


@pytest.mark.parametrize(
    "url",
    ["http://example.com/a%20b", "http://b\u00fccher.de/", "http://localhost./", "http://[::1]:8/x",
     "http://a_b.example/", "https://hooks.example.com/x?y=1#z"],
)  # fmt: skip
def test_urls_a_receiver_may_have_pass(url: str) -> None:
    assert asyncio.run(check_callback_url(url, allow_private=True)) == url


@pytest.mark.parametrize(
    ("address", "public"),
    [("8.8.8.8", True), ("2001:4860:4860::8888", True), ("127.0.0.1", False),
     ("::ffff:8.8.8.8", True), ("::ffff:10.0.0.1", False), ("2002:0808:0808::", True),
     ("2002:0a00:0001::", False), ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),
     ("198.18.0.1", False), ("240.0.0.1", False), ("255.255.255.255", False),
     ("fec0::1", False), ("64:ff9b::7f00:1", False), ("2001:db8::1", False),
     ("3fff::1", False), ("192.0.0.8", False)],
)  # fmt: skip
def test_is_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


def sent_through(answers: list[str], url: str, *, allow_private: bool = False) -> Received:
    """POST once through the worker's sender, with `host` "resolving" to `answers`, to a real
    receiver on 127.0.0.1 (the loopback answer let through for the test); what arrived."""
    receiver = Receiver()

    async def resolver(host: str, port: int) -> list[str]:
        return answers

    def allow(addresses: list[str]) -> list[str]:  # public, or this test's own loopback
        return addresses if addresses == ["127.0.0.1"] else public_addresses(addresses)

    async def send(port: int) -> None:
        callbacks = Callbacks(allow_private=allow_private, limit=1, resolver=resolver, allow=allow)
        try:
            await callbacks.post(url.format(port=port), b"{}", {"webhook-id": "msg_1"})
        finally:
            await callbacks.aclose()

    with ServerThread(receiver.app()) as server:
        asyncio.run(send(server.server.port))
    (hit,) = receiver.received
    return hit


def test_delivery_connects_to_the_checked_address_with_the_host_name_kept() -> None:
    hit = sent_through(["127.0.0.1"], "http://hooks.example.com:{port}/x?a=1")
    assert hit.path == "/x"
    assert hit.headers["host"].startswith("hooks.example.com:")
    assert hit.headers["webhook-id"] == "msg_1"


def test_a_name_rebound_to_a_private_address_is_refused_at_delivery() -> None:
    with pytest.raises(aiohttp.ClientConnectorError) as refused:
        sent_through(["10.0.0.7"], "http://hooks.example.com:{port}/x")
    assert isinstance(refused.value.os_error, AddressRefused)  # the guard's, in aiohttp's


def test_an_ip_literal_is_checked_though_no_name_is_resolved() -> None:
    with pytest.raises(AddressRefused):
        sent_through(["93.184.216.34"], "http://10.0.0.7:{port}/x")
    with pytest.raises(AddressRefused):
        sent_through(["93.184.216.34"], "http://[::1]:{port}/x")


def test_the_worker_sends_upstream_freely_and_webhooks_through_the_guard(
    settings: Settings,
) -> None:
    async def send() -> int:
        async with http_client(settings) as http:
            upstream = await http.send(
                "GET", settings.quickrouter_base_url + "/v1/video/query", params={"id": "x"},
                headers={}, time_limit=5,
            )  # fmt: skip
        callbacks = Callbacks(allow_private=False, limit=1)
        try:
            with pytest.raises(AddressRefused):
                # The same host as the upstream, another port: a callback, so refused.
                await callbacks.post("http://127.0.0.1:9/hook", b"{}", {})
        finally:
            await callbacks.aclose()
        return upstream.status

    assert asyncio.run(send()) == 401  # reached the simulator (no key sent): nothing in the way
