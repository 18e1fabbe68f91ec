"""aiohttp sessions behind the address guard: the webhook sender's (`tracker.net.callbacks`)
and the result downloads' (`tracker.net.downloads`), and the resolver both put in them.

The guard sits in the session's resolver: every name is resolved, checked (the rule is
`tracker.core.addresses`), and connected to only at an address that passed, so a DNS answer
that changes between a check and a connection (rebinding) reaches nothing private. aiohttp
does not ask the resolver about IP literals, so callers check those with `is_ip_literal`
before a request.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from tracker import __version__
from tracker.core.addresses import public_addresses
from tracker.net.guard import AddressRefused, Resolver, resolve

# When a request's name was resolved and its connection made (`loop.time()`), noted into the
# dict a caller sets here for the request (the webhook sender, for its attempt records).
# A context variable rather than aiohttp's TraceConfig: tracing every request cost a worker a
# sixth of its CPU per webhook (measured), noting two moments costs nothing measurable.
MARKS: ContextVar[dict[str, float] | None] = ContextVar("marks", default=None)


def _mark(name: str) -> None:
    marks = MARKS.get()
    if marks is not None:
        marks[name] = asyncio.get_running_loop().time()


class GuardedResolver(AbstractResolver):
    """Resolves with `resolver` and hands aiohttp only the addresses `allow` lets through."""

    def __init__(self, resolver: Resolver, allow: Callable[[list[str]], list[str]]) -> None:
        self.resolver = resolver
        self.allow = allow

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        allowed = self.allow(await self.resolver(host, port))
        _mark("resolved")
        if not allowed:
            raise AddressRefused(f"{host} resolves to a non-public address")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in allowed
        ]

    async def close(self) -> None:
        return None


class _TimedConnector(aiohttp.TCPConnector):
    """Notes when each new connection is made (TLS included), for `MARKS`."""

    async def _create_connection(self, *args: Any, **kwargs: Any) -> Any:
        made = await super()._create_connection(*args, **kwargs)
        _mark("connected")
        return made


class GuardedSession:
    """One aiohttp session that reaches public addresses only (any address with
    `allow_private`), at most `limit` connections at once, made on first use (a session
    belongs to the event loop it was made in). Subclasses add the requests, and may set
    `timeout` (the default leaves every deadline to the caller)."""

    timeout = aiohttp.ClientTimeout(total=None)
    traces: list[aiohttp.TraceConfig] = []

    def __init__(
        self,
        *,
        allow_private: bool,
        limit: int,
        resolver: Resolver = resolve,
        allow: Callable[[list[str]], list[str]] = public_addresses,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.allow = (lambda addresses: addresses) if allow_private else allow
        self.resolver = resolver
        self.limit = limit
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.session: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None:
            connector = _TimedConnector(
                limit=self.limit,
                resolver=GuardedResolver(self.resolver, self.allow),
                ssl=self.ssl_context,
            )
            self.session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,  # an answer's bytes as they came, never inflated
                timeout=self.timeout,
                headers={"user-agent": f"quickrouter-tracker/{__version__}"},
            )
        return self.session

    async def aclose(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None


@functools.lru_cache(maxsize=4096)  # asked at every request; `ip_address` raises for a name
def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
