"""Every Redis key and arq job id the tracker uses, built in one place."""

from __future__ import annotations

# Every key begins with one hash tag, so on a Redis Cluster all the records share one slot:
# each script, MULTI and WATCH stays within it (`tracker.store.cluster`). What came before
# this layout used `qrt:` (`tracker.store.layout` moves such records).
PREFIX = "{qrt}:"

DUE_TASKS = PREFIX + "due:tasks"  # sorted set: task id -> next poll time
DUE_DELIVERIES = PREFIX + "due:deliveries"  # sorted set: delivery id -> next attempt time
CLIENTS = PREFIX + "clients"  # set of client ids
REPLICATION_MARK = PREFIX + "replication:mark"  # written, then waited for (Store.replicated)
IDENTITY = PREFIX + "identity"  # string: this Redis's epoch (`tracker.store.identity`)
OPEN_ORIGINS = PREFIX + "origins:open"  # sorted set: "client origin" -> when it closes again
# Sorted set: copy id -> when its copy (or its objects' removal) is due (`tracker.store.copies`).
DUE_COPIES = PREFIX + "due:copies"
# Hash: the objects stored and their bytes, in all (`objects`, `bytes`) and per client
# (`objects:{client id}`, `bytes:{client id}`), for the operator's view.
STORAGE_TOTALS = PREFIX + "storage:totals"
# Sorted set: operational events noted and not yet announced, note -> when noted
# (`tracker.core.operations`).
OPERATIONS = PREFIX + "operations"


def client(client_id: str) -> str:
    return f"{PREFIX}client:{client_id}"


def client_tasks(client_id: str) -> str:
    """Sorted set: the client's task ids by first registration time, for listing."""
    return f"{PREFIX}client:{client_id}:tasks"


def client_upstream_keys(client_id: str) -> str:
    """Hash: the client's own QuickRouter keys, fingerprint -> the key, sealed."""
    return f"{PREFIX}client:{client_id}:upstream_keys"


def client_key_scopes(client_id: str) -> str:
    """Sorted set: the fingerprints of the client's own keys it registered tasks with, by the
    latest such registration, so its tasks are found after it drops a key (trimmed by the
    sweeper once no task of theirs can be left)."""
    return f"{PREFIX}client:{client_id}:scopes"


def idempotency(client_id: str, key_digest: str) -> str:
    """Hash: what one client's request with one Idempotency-Key came to (24 h)."""
    return f"{PREFIX}client:{client_id}:idem:{key_digest}"


def client_events(client_id: str) -> str:
    """Stream: the client's event feed, each entry one event as its webhook carries it."""
    return f"{PREFIX}client:{client_id}:events"


def client_streams(client_id: str) -> str:
    """Sorted set: the client's open streams and waits, token -> lease end, for its limit."""
    return f"{PREFIX}client:{client_id}:streams"


def client_live_tasks(client_id: str) -> str:
    """Set: the tracked tasks the client has subscriptions to, for its limit."""
    return f"{PREFIX}client:{client_id}:live"


def client_sending(client_id: str) -> str:
    """Sorted set: the client's delivery attempts in flight, across all its origins and the
    whole fleet, by lease end (TRACKER_DELIVERIES_PER_CLIENT)."""
    return f"{PREFIX}client:{client_id}:sending"


def client_copying(client_id: str) -> str:
    """Sorted set: the client's copies in flight across the fleet, by lease end
    (TRACKER_STORAGE_PER_CLIENT)."""
    return f"{PREFIX}client:{client_id}:copying"


def client_storage(client_id: str) -> str:
    """Hash: the client's own object storage (its location, credentials sealed, default)."""
    return f"{PREFIX}client:{client_id}:storage"


def client_operations(client_id: str) -> str:
    """String: the id of the client's operational subscription (`PUT /v1/operational-webhook`)."""
    return f"{PREFIX}client:{client_id}:operations"


def copy(copy_id: str) -> str:
    """Hash: one client's copies of one task's videos (`tracker.store.copies`)."""
    return f"{PREFIX}copy:{copy_id}"


def recovery(client_id: str, recovery_id: str) -> str:
    """String: the deliveries one recovery of the client's sent again (JSON list; a day)."""
    return f"{PREFIX}client:{client_id}:recovery:{recovery_id}"


def redeliveries(client_id: str, minute: int) -> str:
    """Counter of one client's redeliver calls within one minute, for the rate limit."""
    return f"{PREFIX}client:{client_id}:redeliveries:{minute}"


def registrations(client_id: str, second: int) -> str:
    """Counter of one client's registrations within one second, for the rate limit."""
    return f"{PREFIX}client:{client_id}:registrations:{second}"


def ui_session(session_id: str) -> str:
    """Hash: one dashboard session (`tracker.store.sessions`), expiring with it."""
    return f"{PREFIX}ui:session:{session_id}"


def sign_in_failures(address: str, minute: int) -> str:
    """Counter of the failed dashboard sign-ins from one address within one minute."""
    return f"{PREFIX}ui:signin:{address}:{minute}"


def api_key(key_hash: str) -> str:
    return f"{PREFIX}apikey:{key_hash}"


def task(task_id: str) -> str:
    return f"{PREFIX}task:{task_id}"


def task_answer(task_id: str) -> str:
    """String: an ended task's whole final answer, compressed (`codec.answer_bytes`), kept
    apart so the task's own hash stays small enough for Redis's compact encoding."""
    return f"{PREFIX}task:{task_id}:answer"


def subscription(subscription_id: str) -> str:
    return f"{PREFIX}sub:{subscription_id}"


def subscription_deliveries(subscription_id: str) -> str:
    """List of the delivery ids of a subscription, oldest first."""
    return f"{PREFIX}sub:{subscription_id}:deliveries"


def delivery(delivery_id: str) -> str:
    return f"{PREFIX}delivery:{delivery_id}"


def delivery_attempts(delivery_id: str) -> str:
    return f"{PREFIX}delivery:{delivery_id}:attempts"


def delivery_body(delivery_id: str) -> str:
    """A pending final event's body, kept apart from its hash: a body longer than Redis's
    compact-encoding limit would turn the hash into a full one for good, even once dropped."""
    return f"{PREFIX}delivery:{delivery_id}:body"


def learned(model: str) -> str:
    """List of what the latest completed tasks of one model taught (`tracker.core.estimates`)."""
    return f"{PREFIX}learn:{model}"


def upstream_bucket(key_digest: str) -> str:
    """The token bucket of one QuickRouter key (named by a digest, never the key)."""
    return f"{PREFIX}bucket:{key_digest}"


def delivery_job(delivery_id: str) -> str:
    return f"deliver:{delivery_id}"


def task_record_keys(task_id: str, *subscription_ids: str) -> list[str]:
    """The keys that live and expire with a task: its own, and its subscriptions'."""
    found = [task(task_id), task_answer(task_id)]
    for subscription_id in subscription_ids:
        found += [subscription(subscription_id), subscription_deliveries(subscription_id)]
    return found


def origin_inflight(origin_key: str) -> str:
    """Sorted set: the deliveries in flight to one origin, by lease end."""
    return f"{PREFIX}origin:{origin_key}:inflight"


def origin_figures(origin_key: str) -> str:
    """Hash: one client's destination's figures by the hour (`scripts.RELEASE_SLOT`)."""
    return f"{PREFIX}origin:{origin_key}:figures"


def origin_waiting(origin_key: str) -> str:
    """Sorted set: one client's destination's pending deliveries, by creation time (what
    waits for it, `GET /v1/destinations`)."""
    return f"{PREFIX}origin:{origin_key}:waiting"


def client_destinations(client_id: str) -> str:
    """Sorted set: the client's callback origins, by their last attempt (two days)."""
    return f"{PREFIX}client:{client_id}:destinations"


def origin_breaker(origin_key: str) -> str:
    """Hash: one origin's circuit breaker (failures in a row, open until, interval, probe)."""
    return f"{PREFIX}origin:{origin_key}:breaker"
