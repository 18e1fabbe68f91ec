"""Record ids: random ones for new records, derived ones where the same parts must give the
same id (a subscription is one per task, client and callback)."""

from __future__ import annotations

import hashlib
import secrets


def derived_id(prefix: str, *parts: str) -> str:
    """A record id that the same parts always give, such as one subscription's."""
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()
    return f"{prefix}_{digest[:24]}"


def tracking_id(task_id: str, upstream_key: str) -> str:
    """The id a task is tracked under: its upstream id with the deployment's shared key
    (`upstream_key` empty), else the upstream id behind the fingerprint of the client's key it
    is polled with. QuickRouter shows a task only to the key that created it, so one upstream
    id under two keys is two tasks, each seeing what its key sees."""
    return f"{upstream_key}~{task_id}" if upstream_key else task_id


def new_id(prefix: str) -> str:
    """A random record id such as `sub_…` or `cli_…`."""
    return f"{prefix}_{secrets.token_hex(12)}"
