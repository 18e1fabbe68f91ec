"""The SSRF guard: refused callback URLs at registration, and the pinned delivery transport."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
from collections.abc import Callable

import httpx
import pytest

from tests.support import auth
from tracker.core.addresses import is_public
from tracker.errors import ValidationFailed
from tracker.net.guard import AddressRefused, GuardedTransport, check_callback_url
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


def sent_through(resolver_answers: list[list[str]], url: str) -> httpx.Request:
    """Send one request through the guard to a recording transport; return what it got."""
    seen: list[httpx.Request] = []
    answers = iter(resolver_answers)

    async def resolver(host: str, port: int) -> list[str]:
        return next(answers)

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    async def send() -> None:
        transport = GuardedTransport(
            lambda: httpx.MockTransport(record), allow_private=False, resolver=resolver
        )
        async with httpx.AsyncClient(transport=transport) as http:
            await http.post(url, content=b"{}")

    asyncio.run(send())
    return seen[0]


def test_delivery_connects_to_the_checked_address_with_host_and_sni_kept() -> None:
    request = sent_through([["93.184.216.34"]], "https://hooks.example.com/x?a=1")
    assert request.url.host == "93.184.216.34"
    assert request.url.path == "/x"
    assert request.headers["host"] == "hooks.example.com"
    assert request.extensions["sni_hostname"] == "hooks.example.com"


def test_a_name_rebound_to_a_private_address_is_refused_at_delivery() -> None:
    with pytest.raises(AddressRefused):
        sent_through([["127.0.0.1"]], "http://hooks.example.com/x")


def test_the_worker_client_sends_only_callbacks_through_the_guard(settings: Settings) -> None:
    from tracker.net.client import http_client

    guarded = dataclasses.replace(settings, allow_private_callbacks=False)

    async def send() -> tuple[int, str]:
        async with http_client(guarded) as http:
            upstream = await http.get(guarded.quickrouter_base_url + "/v1/video/query?id=x")
            with pytest.raises(AddressRefused):
                # The same host as the upstream, another port: a callback, so refused.
                await http.post("http://127.0.0.1:9/hook", content=b"{}")
            return upstream.status_code, type(http._transport).__name__

    status, default = asyncio.run(send())
    assert status == 401  # reached the simulator (no key sent): not refused by the guard
    assert default == "GuardedTransport"
