"""Headers a client has sent with its webhooks (an `Authorization` its receiver checks, say):
which it may set, and how they are shown. Their values are credentials: sealed at rest, never
logged, shown masked."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from tracker.errors import ValidationFailed

MAX_HEADERS = 10
MAX_NAME = 64
MAX_VALUE = 1024
MAX_TOTAL = 4096
MASK = "********"
# What the tracker sets itself (the Standard Webhooks headers, the body's framing) and what
# belongs to the connection, not the message (RFC 9110's hop-by-hop fields).
REFUSED = frozenset(
    {
        "host", "content-length", "content-type", "content-encoding", "transfer-encoding",
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
        "te", "trailer", "trailers", "upgrade", "expect",
    }
)  # fmt: skip
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def checked(given: Mapping[str, str]) -> dict[str, str]:
    """`given` as sent with each webhook (names lower-cased); ValidationFailed saying which
    one is refused and why."""
    if len(given) > MAX_HEADERS:
        raise ValidationFailed(f"headers: at most {MAX_HEADERS}")
    found: dict[str, str] = {}
    for raw_name, value in given.items():
        name = raw_name.lower()
        if not 1 <= len(name) <= MAX_NAME or not _TOKEN.match(name):
            raise ValidationFailed(f"headers: {raw_name!r} is not a header name")
        if name in REFUSED or name.startswith("webhook-"):
            raise ValidationFailed(f"headers: {name} is set by the tracker or the connection")
        if len(value) > MAX_VALUE or any(not (" " <= ch <= "~") for ch in value):
            raise ValidationFailed(
                f"headers: the value of {name} must be at most {MAX_VALUE} printable ASCII "
                "characters"
            )
        if name in found:
            raise ValidationFailed(f"headers: {name} is given twice")
        found[name] = value
    if sum(len(n) + len(v) for n, v in found.items()) > MAX_TOTAL:
        raise ValidationFailed(f"headers: at most {MAX_TOTAL} bytes in all")
    return found


def masked(names: Iterable[str]) -> dict[str, str]:
    """The headers as shown: their names, never their values."""
    return dict.fromkeys(names, MASK)
