"""Where webhooks may go: the checks on a callback URL, and the guard on every delivery.

The address rule itself is `tracker.core.addresses`; this module resolves names and applies it.

A callback must be http(s) and its host must resolve only to public addresses, so a client
cannot make the tracker reach into its own network (SSRF). The delivery resolves again, checks
again, and connects to the address it checked (`tracker.net.callbacks`): a DNS answer that
changes in between (rebinding) reaches nothing private. `allow_private`
(TRACKER_ALLOW_PRIVATE_CALLBACKS) lifts both checks.
"""

from __future__ import annotations

import asyncio
import functools
import re
import socket
from collections.abc import Awaitable, Callable

import httpx
import yarl

from tracker.core.addresses import public_addresses
from tracker.errors import ValidationFailed

MAX_CALLBACK_URL_LENGTH = 2048

# A host as it goes on the wire: IDNA names are already `xn--` here, IPv6 literals have no
# brackets (a zone, `%25eth0`, is refused: it names an interface of the tracker's own host).
_HOST_NAME = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*")

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
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        # httpx keeps a space in a host or a path as given, and no receiver could be reached
        # at such a URL: every attempt would fail for the whole schedule.
        raise ValidationFailed("callback_url must not contain spaces or control characters")
    if not _HOST_NAME.fullmatch(parsed.raw_host.decode("ascii", "replace")):
        raise ValidationFailed("callback_url's host is not a valid host name or IP address")
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise ValidationFailed("callback_url's port must be from 1 to 65535")
    if not _read_alike(url, parsed):
        raise ValidationFailed(
            "callback_url's host or port reads differently to different URL parsers "
            "(a backslash or '@' in the authority?): percent-encode it"
        )
    return parsed


def _read_alike(url: str, parsed: httpx.URL) -> bool:
    """Whether the sender (aiohttp, through yarl) reads `url`'s host and port as the check
    did: the check must judge the address the webhook will go to, and a URL that one parser
    reads as `1.1.1.1` and the other refuses (`http://127.0.0.1\\@1.1.1.1/`) would pass the
    check and then fail every attempt for a day."""
    try:
        wire = yarl.URL(url)
    except ValueError:
        return False
    checked_host = parsed.raw_host.decode("ascii", "replace").lower()
    return (wire.raw_host or "").lower() == checked_host and wire.port == (
        parsed.port or _default_port(parsed)
    )


def sender_host(url: str) -> str:
    """The host the sender connects to for `url`, as aiohttp reads it (an IPv6 literal
    without its brackets); "" if it reads none."""
    return _sender_url(url).raw_host or ""


@functools.lru_cache(maxsize=4096)  # asked at every POST, of a few thousand callbacks
def _sender_url(url: str) -> yarl.URL:
    return yarl.URL(url)


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


class AddressRefused(OSError):
    """The callback's host resolved to an address webhooks may not go to."""


def refused_by_guard(exc: BaseException) -> bool:
    """Whether `exc` is, or was caused by, the guard's refusal (aiohttp and botocore wrap the
    resolver's error in their own)."""
    cause: BaseException | None = exc
    for _ in range(10):  # a chain is short; a cycle must not hang
        if cause is None:
            return False
        if isinstance(cause, AddressRefused):
            return True
        cause = cause.__cause__ or cause.__context__
    return False
