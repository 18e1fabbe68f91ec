"""Which QuickRouter key polls a client's task: the client's own, or the deployment's shared
one. Pure: the store keeps the keys (sealed), this module only decides."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from tracker.errors import ValidationFailed

SHARED = ""  # the deployment's QUICKROUTER_API_KEY
# Where a registration of a shared-key task that another client owns goes: tracked as an id
# the caller's key cannot see, never polled, ending `upstream_unknown_task` as an unknown id
# does, so the answer tells nothing about someone else's task.
DENIED = "denied"

MAX_KEY_LENGTH = 512
# Keys one client may keep: each is sealed and stored, so their number is bounded too.
MAX_PER_CLIENT = 20
FINGERPRINT_PATTERN = r"^qrk_[0-9a-f]{16}$"  # what `fingerprint` makes


def fingerprint(key: str) -> str:
    """How a key is named everywhere but its sealed copy: not the key, and not a way back to
    it, but the same for the same key (so one key's tasks and quota are shared)."""
    return "qrk_" + hashlib.sha256(key.encode()).hexdigest()[:16]


def checked_key(key: str) -> str:
    """`key` stripped, if it can be a bearer key at all; else ValidationFailed."""
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise ValidationFailed(
            f"an upstream key is 1 to {MAX_KEY_LENGTH} printable ASCII characters"
        )
    return key


def choose(requested: str | None, own: Sequence[str], *, shared_allowed: bool) -> str:
    """The fingerprint to poll a registration with, or SHARED.

    A key named in the request must be one of the client's own. Else the client's only key;
    with several, the request must name one; with none, the shared key if the operator allows
    its use (TRACKER_SHARED_UPSTREAM_KEY).
    """
    if requested:
        if requested not in own:
            raise ValidationFailed(f"upstream_key {requested!r} is not one of your keys")
        return requested
    if len(own) == 1:
        return own[0]
    if own:
        raise ValidationFailed("you hold several upstream keys: name one in upstream_key")
    if not shared_allowed:
        raise ValidationFailed(
            "this tracker polls only with each client's own QuickRouter key: add one first"
        )
    return SHARED
