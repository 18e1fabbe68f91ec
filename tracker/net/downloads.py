"""Downloads of result videos from the upstream's links, behind the same address guard as the
webhooks (`tracker.net.callbacks`): the links come from the upstream's answer, which the
tracker does not control, so a link (or a redirect) to a private address reaches nothing.

Redirects are followed here, one at a time, so that each hop's host is checked (aiohttp does
not ask the resolver about an IP literal).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import yarl

from tracker.core.numerals import whole_number
from tracker.net.guard import AddressRefused
from tracker.net.guarded import GuardedSession, is_ip_literal

MAX_REDIRECTS = 5
CHUNK = 256 * 1024


@dataclass
class Download:
    """An answer being read: its status, announced length and type, and its body in chunks."""

    status: int
    length: int | None
    content_type: str
    chunks: AsyncIterator[bytes]


class Downloads(GuardedSession):
    """GETs result links from public addresses only (any, with `allow_private`)."""

    # Stalls are the caller's to bound too (its deadline), but a dead connection is found
    # sooner: nothing read for a minute ends the download.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=60)

    @contextlib.asynccontextmanager
    async def get(self, url: str) -> AsyncIterator[Download]:
        """The answer to a GET of `url`, redirects followed through the guard. Raises
        AddressRefused for a private address, OSError or aiohttp's errors for no answer."""
        for _ in range(MAX_REDIRECTS + 1):
            target = yarl.URL(url)
            if target.scheme not in {"http", "https"} or not target.raw_host:
                raise AddressRefused("a result link must be http(s) with a host")
            if is_ip_literal(target.raw_host) and not self.allow([target.raw_host]):
                raise AddressRefused(f"{target.raw_host} is not a public address")
            async with self._session().get(target, allow_redirects=False) as response:
                location = response.headers.get("location")
                if response.status in {301, 302, 303, 307, 308} and location:
                    url = str(target.join(yarl.URL(location)))
                    continue
                yield Download(
                    status=response.status,
                    length=whole_number(response.headers.get("content-length", "")),
                    content_type=response.headers.get("content-type", ""),
                    chunks=response.content.iter_chunked(CHUNK),
                )
                return
        raise AddressRefused(f"more than {MAX_REDIRECTS} redirects")
