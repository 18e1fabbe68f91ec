"""Where webhooks may go: the checks on a callback URL, and the guard on every delivery.

The address rule itself is `tracker.core.addresses`; this module resolves names and applies it.

A callback must be http(s) and its host must resolve only to public addresses, so a client
cannot make the tracker reach into its own network (SSRF). The delivery resolves again, checks
again, and connects to the address it checked: a DNS answer that changes in between (rebinding)
reaches nothing private. `allow_private` (TRACKER_ALLOW_PRIVATE_CALLBACKS) lifts both checks.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import httpx

from tracker.core.addresses import public_addresses
from tracker.errors import ValidationFailed

MAX_CALLBACK_URL_LENGTH = 2048

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (an IP literal resolves to itself)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def _parse(url: str) -> httpx.URL:
    if len(url) > MAX_CALLBACK_URL_LENGTH:
        raise ValidationFailed(f"callback_url is longer than {MAX_CALLBACK_URL_LENGTH} characters")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        raise ValidationFailed("callback_url is not a valid URL") from None
    if parsed.scheme not in {"http", "https"}:
        raise ValidationFailed("callback_url must be an http or https URL")
    if not parsed.host:
        raise ValidationFailed("callback_url has no host")
    return parsed


async def check_callback_url(url: str, *, allow_private: bool, resolver: Resolver = resolve) -> str:
    """Return `url` if webhooks may go there; raise ValidationFailed saying why not."""
    parsed = _parse(url)
    if allow_private:
        return url
    try:
        addresses = await resolver(parsed.host, parsed.port or _default_port(parsed))
    except (OSError, UnicodeError):
        raise ValidationFailed("callback_url's host does not resolve") from None
    if not public_addresses(addresses):
        raise ValidationFailed(
            "callback_url must resolve only to public addresses "
            "(not loopback, private, link-local, shared, multicast or metadata ones)"
        )
    return url


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80


class AddressRefused(httpx.TransportError):
    """The callback's host resolved to an address webhooks may not go to."""


class GuardedTransport(httpx.AsyncBaseTransport):
    """Connects only to public addresses, pinned to the address it checked."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        allow_private: bool,
        resolver: Resolver = resolve,
    ) -> None:
        self.inner = inner
        self.allow_private = allow_private
        self.resolver = resolver

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if self.allow_private:
            return await self.inner.handle_async_request(request)
        try:
            addresses = await self.resolver(host, request.url.port or _default_port(request.url))
        except (OSError, UnicodeError) as exc:
            raise httpx.ConnectError(f"cannot resolve {host}", request=request) from exc
        allowed = public_addresses(addresses)
        if not allowed:
            raise AddressRefused("callback host resolves to a non-public address", request=request)
        # The Host header already names the host; TLS must too, through SNI and verification.
        request.url = request.url.copy_with(host=allowed[0])
        if request.url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": host}
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()
