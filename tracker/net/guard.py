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
from collections import OrderedDict
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
        host = parsed.host  # decodes an IDNA (xn--) name, which can fail on its own
    except (httpx.InvalidURL, ValueError):  # idna's errors are UnicodeErrors, so ValueErrors
        raise ValidationFailed("callback_url is not a valid URL, or its host name is not") from None
    if parsed.scheme not in {"http", "https"}:
        raise ValidationFailed("callback_url must be an http or https URL")
    if not host:
        raise ValidationFailed("callback_url has no host")
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise ValidationFailed("callback_url's port must be from 1 to 65535")
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
    """Connects only to public addresses, pinned to the address it checked.

    The request's URL is rewritten to the checked address (the Host header and TLS's SNI and
    certificate check keep the name). Connection pools key connections by address, so one
    pool would hand a TLS session made for a.example to b.example on the same address without
    checking b's certificate: each host name gets a pool of its own, made by `new_pool`. The
    least recently used pools beyond `max_pools` are closed once their requests can no longer
    be running (`close_after` seconds).
    """

    def __init__(
        self,
        new_pool: Callable[[], httpx.AsyncBaseTransport],
        *,
        allow_private: bool,
        resolver: Resolver = resolve,
        allow: Callable[[list[str]], list[str]] = public_addresses,
        max_pools: int = 512,
        close_after: float = 60.0,
    ) -> None:
        self.new_pool = new_pool
        self.allow_private = allow_private
        self.resolver = resolver
        self.allow = allow
        self.max_pools = max_pools
        self.close_after = close_after
        self.pools: OrderedDict[tuple[str, str, int], httpx.AsyncBaseTransport] = OrderedDict()
        self.retired: set[httpx.AsyncBaseTransport] = set()

    def pool_for(self, url: httpx.URL) -> httpx.AsyncBaseTransport:
        """The pool of one (scheme, host name, port), made on first use."""
        name = (url.scheme, url.host, url.port or _default_port(url))
        pool = self.pools.get(name)
        if pool is None:
            pool = self.pools[name] = self.new_pool()
            while len(self.pools) > self.max_pools:
                _, old = self.pools.popitem(last=False)
                self._retire(old)
        self.pools.move_to_end(name)
        return pool

    def _retire(self, pool: httpx.AsyncBaseTransport) -> None:
        self.retired.add(pool)

        def close() -> None:
            if pool in self.retired:
                self.retired.discard(pool)
                asyncio.ensure_future(pool.aclose())  # noqa: RUF006 (ends on its own)

        asyncio.get_running_loop().call_later(self.close_after, close)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        pool = self.pool_for(request.url)
        if self.allow_private:
            return await pool.handle_async_request(request)
        host = request.url.host
        try:
            addresses = await self.resolver(host, request.url.port or _default_port(request.url))
        except (OSError, UnicodeError) as exc:
            raise httpx.ConnectError(f"cannot resolve {host}", request=request) from exc
        allowed = self.allow(addresses)
        if not allowed:
            raise AddressRefused("callback host resolves to a non-public address", request=request)
        request.url = request.url.copy_with(host=allowed[0])
        if request.url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": host}
        return await pool.handle_async_request(request)

    async def aclose(self) -> None:
        pools = [*self.pools.values(), *self.retired]
        self.pools.clear()
        self.retired.clear()
        for pool in pools:
            await pool.aclose()
