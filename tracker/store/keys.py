"""Every Redis key and arq job id the tracker uses, built in one place, and the partitions the
records are spread over.

Every key begins with a hash tag, so on a Redis Cluster the keys of one tag share a slot and
each script, MULTI and WATCH stays within it (`tracker.store.cluster`). The home tag (`{qrt}`)
holds what the whole deployment shares (the client index, API keys, the epoch, what polling
learned, the rate buckets, dashboard sessions); each client's records (its own record, keys
and storage settings, its tasks, subscriptions, deliveries, feed, destinations, copies) and
the due sets they sit in live in its partition's tag (`partition_of`). With one partition
(the default) the partition is the home tag, which is the layout every deployment had before
partitions. What came before hash tags used `qrt:` (`tracker.store.layout` moves such
records).
"""

from __future__ import annotations

import zlib

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

HOME_TAG = "qrt"
PREFIX = "{" + HOME_TAG + "}:"


def partition_tags(count: int) -> list[str]:
    """The hash tags of `count` partitions: with one, the home tag (the layout from before
    partitions); with more, tag k's slot sits in the middle half of the k-th of `count` equal
    runs of the 16,384 slots. A cluster whose primaries serve equal runs of slots (as
    `redis-cli --cluster create` and managed clusters assign them) so holds an equal share of
    the partitions on each primary when `count` is a multiple of their number."""
    if count < 1:
        raise ValueError(f"a partition count is 1 or more, not {count}")
    if count == 1:
        return [HOME_TAG]
    step = REDIS_CLUSTER_HASH_SLOTS / count
    tags = []
    for index in range(count):
        low, high = index * step + step / 4, index * step + 3 * step / 4
        attempt = 0
        while not low <= key_slot(f"{HOME_TAG}.{index}.{attempt}".encode()) < high:
            attempt += 1
        tags.append(f"{HOME_TAG}.{index}.{attempt}")
    return tags


def partition_of(client_id: str, count: int) -> int:
    """The partition a client's records live in: fixed by its id, spread evenly."""
    return zlib.crc32(client_id.encode()) % count


class Keyspace:
    """The keys under one hash tag: the home tag's (`HOME`) or a partition's."""

    def __init__(self, tag: str = HOME_TAG) -> None:
        self.tag = tag
        self.prefix = prefix = "{" + tag + "}:"
        # Sorted sets: task id -> next poll time; delivery id -> next attempt time.
        self.DUE_TASKS = prefix + "due:tasks"
        self.DUE_DELIVERIES = prefix + "due:deliveries"
        self.CLIENTS = prefix + "clients"  # set of client ids
        # Written, then waited for (`Store.replicated`).
        self.REPLICATION_MARK = prefix + "replication:mark"
        # String: this Redis's epoch (`tracker.store.identity`).
        self.IDENTITY = prefix + "identity"
        # Sorted set: "client origin" -> when it closes again.
        self.OPEN_ORIGINS = prefix + "origins:open"
        # Sorted set: copy id -> when its copy (or its objects' removal) is due
        # (`tracker.store.copies`).
        self.DUE_COPIES = prefix + "due:copies"
        # Hash: the objects stored and their bytes, in all (`objects`, `bytes`) and per client
        # (`objects:{client id}`, `bytes:{client id}`), for the operator's view.
        self.STORAGE_TOTALS = prefix + "storage:totals"
        # Sorted set: operational events noted and not yet announced, note -> when noted
        # (`tracker.core.operations`).
        self.OPERATIONS = prefix + "operations"

    def client(self, client_id: str) -> str:
        return f"{self.prefix}client:{client_id}"

    def client_tasks(self, client_id: str) -> str:
        """Sorted set: the client's task ids by first registration time, for listing."""
        return f"{self.prefix}client:{client_id}:tasks"

    def client_upstream_keys(self, client_id: str) -> str:
        """Hash: the client's own QuickRouter keys, fingerprint -> the key, sealed."""
        return f"{self.prefix}client:{client_id}:upstream_keys"

    def client_key_scopes(self, client_id: str) -> str:
        """Sorted set: the fingerprints of the client's own keys it registered tasks with, by the
        latest such registration, so its tasks are found after it drops a key (trimmed by the
        sweeper once no task of theirs can be left)."""
        return f"{self.prefix}client:{client_id}:scopes"

    def idempotency(self, client_id: str, key_digest: str) -> str:
        """Hash: what one client's request with one Idempotency-Key came to (24 h)."""
        return f"{self.prefix}client:{client_id}:idem:{key_digest}"

    def client_events(self, client_id: str) -> str:
        """Stream: the client's event feed, each entry one event as its webhook carries it."""
        return f"{self.prefix}client:{client_id}:events"

    def client_streams(self, client_id: str) -> str:
        """Sorted set: the client's open streams and waits, token -> lease end, for its limit."""
        return f"{self.prefix}client:{client_id}:streams"

    def client_live_tasks(self, client_id: str) -> str:
        """Set: the tracked tasks the client has subscriptions to, for its limit."""
        return f"{self.prefix}client:{client_id}:live"

    def client_sending(self, client_id: str) -> str:
        """Sorted set: the client's delivery attempts in flight, across all its origins and the
        whole fleet, by lease end (TRACKER_DELIVERIES_PER_CLIENT)."""
        return f"{self.prefix}client:{client_id}:sending"

    def client_copying(self, client_id: str) -> str:
        """Sorted set: the client's copies in flight across the fleet, by lease end
        (TRACKER_STORAGE_PER_CLIENT)."""
        return f"{self.prefix}client:{client_id}:copying"

    def client_storage(self, client_id: str) -> str:
        """Hash: the client's own object storage (its location, credentials sealed, default)."""
        return f"{self.prefix}client:{client_id}:storage"

    def client_operations(self, client_id: str) -> str:
        """String: the id of the client's operational subscription
        (`PUT /v1/operational-webhook`)."""
        return f"{self.prefix}client:{client_id}:operations"

    def copy(self, copy_id: str) -> str:
        """Hash: one client's copies of one task's videos (`tracker.store.copies`)."""
        return f"{self.prefix}copy:{copy_id}"

    def recovery(self, client_id: str, recovery_id: str) -> str:
        """String: the deliveries one recovery of the client's sent again (JSON list; a day)."""
        return f"{self.prefix}client:{client_id}:recovery:{recovery_id}"

    def redeliveries(self, client_id: str, minute: int) -> str:
        """Counter of one client's redeliver calls within one minute, for the rate limit."""
        return f"{self.prefix}client:{client_id}:redeliveries:{minute}"

    def registrations(self, client_id: str, second: int) -> str:
        """Counter of one client's registrations within one second, for the rate limit."""
        return f"{self.prefix}client:{client_id}:registrations:{second}"

    def ui_session(self, session_id: str) -> str:
        """Hash: one dashboard session (`tracker.store.sessions`), expiring with it."""
        return f"{self.prefix}ui:session:{session_id}"

    def sign_in_failures(self, address: str, minute: int) -> str:
        """Counter of the failed dashboard sign-ins from one address within one minute."""
        return f"{self.prefix}ui:signin:{address}:{minute}"

    def api_key(self, key_hash: str) -> str:
        return f"{self.prefix}apikey:{key_hash}"

    def task(self, task_id: str) -> str:
        return f"{self.prefix}task:{task_id}"

    def task_owner(self, task_id: str) -> str:
        """String: the client that owns a task tracked under the shared key, in the partition
        its tracking id maps to, for every partition to read (`tracker.store.owners`)."""
        return f"{self.prefix}owner:{task_id}"

    def task_answer(self, task_id: str) -> str:
        """String: an ended task's whole final answer, compressed (`codec.answer_bytes`), kept
        apart so the task's own hash stays small enough for Redis's compact encoding."""
        return f"{self.prefix}task:{task_id}:answer"

    def subscription(self, subscription_id: str) -> str:
        return f"{self.prefix}sub:{subscription_id}"

    def subscription_deliveries(self, subscription_id: str) -> str:
        """List of the delivery ids of a subscription, oldest first."""
        return f"{self.prefix}sub:{subscription_id}:deliveries"

    def delivery(self, delivery_id: str) -> str:
        return f"{self.prefix}delivery:{delivery_id}"

    def delivery_attempts(self, delivery_id: str) -> str:
        return f"{self.prefix}delivery:{delivery_id}:attempts"

    def delivery_body(self, delivery_id: str) -> str:
        """A pending final event's body, kept apart from its hash: a body longer than Redis's
        compact-encoding limit would turn the hash into a full one for good, even once dropped."""
        return f"{self.prefix}delivery:{delivery_id}:body"

    def learned(self, model: str) -> str:
        """List of what the latest completed tasks of one model taught
        (`tracker.core.estimates`)."""
        return f"{self.prefix}learn:{model}"

    def upstream_bucket(self, key_digest: str) -> str:
        """The token bucket of one QuickRouter key (named by a digest, never the key)."""
        return f"{self.prefix}bucket:{key_digest}"

    def task_record_keys(self, task_id: str, *subscription_ids: str) -> list[str]:
        """The keys that live and expire with a task: its own, and its subscriptions'."""
        found = [self.task(task_id), self.task_answer(task_id)]
        for subscription_id in subscription_ids:
            found += [
                self.subscription(subscription_id),
                self.subscription_deliveries(subscription_id),
            ]
        return found

    def origin_inflight(self, origin_key: str) -> str:
        """Sorted set: the deliveries in flight to one origin, by lease end."""
        return f"{self.prefix}origin:{origin_key}:inflight"

    def origin_figures(self, origin_key: str) -> str:
        """Hash: one client's destination's figures by the hour (`scripts.RELEASE_SLOT`)."""
        return f"{self.prefix}origin:{origin_key}:figures"

    def origin_waiting(self, origin_key: str) -> str:
        """Sorted set: one client's destination's pending deliveries, by creation time (what
        waits for it, `GET /v1/destinations`)."""
        return f"{self.prefix}origin:{origin_key}:waiting"

    def client_destinations(self, client_id: str) -> str:
        """Sorted set: the client's callback origins, by their last attempt (two days)."""
        return f"{self.prefix}client:{client_id}:destinations"

    def origin_breaker(self, origin_key: str) -> str:
        """Hash: one origin's circuit breaker (failures in a row, open until, interval, probe)."""
        return f"{self.prefix}origin:{origin_key}:breaker"


HOME = Keyspace()
