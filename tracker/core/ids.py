"""Record ids: random ones for new records, derived ones where the same parts must give the
same id (a subscription is one per task, client and callback)."""

from __future__ import annotations

import hashlib
import secrets


def derived_id(prefix: str, *parts: str) -> str:
    """A record id that the same parts always give, such as one subscription's."""
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()
    return f"{prefix}_{digest[:24]}"


def new_id(prefix: str) -> str:
    """A random record id such as `sub_…` or `cli_…`."""
    return f"{prefix}_{secrets.token_hex(12)}"
