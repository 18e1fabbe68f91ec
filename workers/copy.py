"""One claimed copy: each output streamed from the upstream's link to the store, then the
`video.completed` events that waited for it; or, later, its objects removed.

The decisions (what a status, a length, an error means) are `tracker.core.storage`'s; this
wires them to the download, the upload and Redis. A copy never holds its event past its
deadline (TRACKER_STORAGE_DEADLINE): what is not stored by then goes out with its error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging

import aiohttp

from tracker import metrics, tracing
from tracker.core import storage
from tracker.core.storage import Source, Stored
from tracker.errors import StorageErrorCode
from tracker.net.guard import AddressRefused, refused_by_guard
from tracker.net.objects import ObjectStore, StoreFailed, links_to
from tracker.store import Shard
from tracker.store.copies import Copy, CopyState
from workers.context import WorkerContext
from workers.poll import wake_dispatcher

log = logging.getLogger("tracker.copy")


async def copy_videos(ctx: WorkerContext, store: Shard, member: str, found: Copy | None) -> None:
    """Work on a claimed copy of `store`'s partition: make it, or remove its objects once
    they are due to go."""
    now = store.clock.now()
    try:
        if found is None:  # its record is gone (the claim drops such entries)
            return
        if found.state is CopyState.REMOVING or (
            found.state is CopyState.STORED and now >= found.remove_at
        ):
            await remove_objects(ctx, store, found)
        elif found.state is CopyState.STORED:
            await store.copies.reschedule(member, found.remove_at)
        else:
            with tracing.task_span("copy", found.tracking_id, client_id=found.client_id):
                await make_copy(ctx, store, found)
    finally:
        if found is not None:
            await store.copies.vacate(member, found.client_id)


async def target_of(ctx: WorkerContext, client_id: str) -> ObjectStore | None:
    """The store the client's copies go to now (its own, else the operator's)."""
    own = await ctx["store"].buckets.get(client_id)
    return ctx["stores"].for_client(own.url, own.access_key_id, own.secret_access_key)


async def make_copy(ctx: WorkerContext, store: Shard, found: Copy) -> None:
    settings = ctx["settings"]
    owner = await store.clients.get(found.client_id)
    if owner is None or owner.revoked:  # nothing is stored for a revoked client any more
        await store.copies.forget(found)
        return
    target = await target_of(ctx, found.client_id)
    earlier = {
        o.name: o for o in found.outputs if o.error is None or storage.is_final_error(o.error)
    }
    outputs: list[Stored] = []
    for source in found.sources:
        if source.name in earlier:
            outputs.append(earlier[source.name])
        elif target is None:
            outputs.append(_failed(source, StorageErrorCode.NO_STORE, "no storage is set"))
        else:
            left = found.deadline_at - store.clock.now()
            outputs.append(
                await copy_output(
                    ctx, target, found, source, min(left, settings.storage_copy_timeout)
                )
                if left > 0
                else _failed(source, StorageErrorCode.DEADLINE, "not copied within the deadline")
            )
    now = store.clock.now()
    again = [o for o in outputs if o.error is not None and not storage.is_final_error(o.error)]
    delay = storage.retry_delay(found.tries, now, found.deadline_at) if again else None
    if delay is not None:
        await store.copies.progress(found.id, outputs, now + delay, found.tries + 1)
        log.info(
            "copy failed, trying again in %.0f s: %s", delay,
            ", ".join(f"{o.name} {o.error}" for o in again), extra={"task_id": found.task_id},
        )  # fmt: skip
        return
    links = await links_to(target, outputs, settings.storage_link_ttl) if target else {}
    event_outputs = storage.event_outputs(
        outputs, target.location if target is not None else None, links
    )
    deliveries = await store.copies.release(
        found,
        outputs,
        event_outputs,
        location=str(target.location) if target is not None else "",
        remove_at=now + settings.storage_retention,
        now=now,
    )
    for output in outputs:
        metrics.COPIES.labels(output.error.value if output.error else "stored").inc()
        metrics.COPIED_BYTES.inc(output.size)
    log.info(
        "copies made",
        extra={
            "task_id": found.task_id,
            "state": ",".join(str(o.error or "stored") for o in outputs),
        },
    )
    wake_dispatcher(ctx, deliveries)


def _failed(source: Source, code: StorageErrorCode, message: str) -> Stored:
    return Stored(source.name, source.url, error=code, message=message)


async def copy_output(
    ctx: WorkerContext, target: ObjectStore, found: Copy, source: Source, within: float
) -> Stored:
    """Stream one output to the store in `within` seconds: its sha256 and length checked on
    the way, the upload aborted on any failure (an object appears whole or not at all)."""
    max_bytes = ctx["settings"].storage_max_bytes
    key = storage.object_key(target.location, found.client_id, found.task_id, source.name)
    upload = None
    try:
        async with asyncio.timeout(within):
            await target.clean(key)  # what a worker killed mid-copy left open
            async with ctx["downloads"].get(source.url) as download:
                code = storage.source_status_error(download.status)
                if code is not None:
                    return _failed(source, code, f"the link answered {download.status}")
                verdict = storage.length_refused(download.length, max_bytes)
                digest, received = hashlib.sha256(), 0
                if verdict is None:
                    upload = target.upload(key, download.content_type)
                    async for chunk in download.chunks:
                        received += len(chunk)
                        verdict = storage.received_refused(received, download.length, max_bytes)
                        if verdict is not None:
                            break
                        digest.update(chunk)
                        await upload.write(chunk)
                    else:
                        verdict = storage.ended_refused(received, download.length)
                if verdict is not None:  # the upload is aborted below
                    return dataclasses.replace(verdict, name=source.name, source_url=source.url)
                assert upload is not None
                await upload.finish()
                upload = None
                return Stored(
                    source.name, source.url, key=key, size=received,
                    sha256=digest.hexdigest(),
                    content_type=download.content_type or "application/octet-stream",
                )  # fmt: skip
    except AddressRefused as exc:
        return _failed(source, StorageErrorCode.SOURCE_REFUSED, str(exc))
    except StoreFailed as exc:
        code = (
            StorageErrorCode.STORE_REFUSED if exc.for_good else StorageErrorCode.STORE_UNREACHABLE
        )
        return _failed(source, code, str(exc))
    except TimeoutError:
        return _failed(source, StorageErrorCode.SOURCE_FAILED, f"not copied within {within:.0f} s")
    except aiohttp.ClientPayloadError:
        return _failed(source, StorageErrorCode.SOURCE_CUT, "the download was cut short")
    except (aiohttp.ClientError, OSError) as exc:
        if refused_by_guard(exc):
            return _failed(source, StorageErrorCode.SOURCE_REFUSED, "not a public address")
        return _failed(source, StorageErrorCode.SOURCE_FAILED, type(exc).__name__)
    finally:
        if upload is not None:  # failed or cancelled mid-way: leave no open upload behind
            await asyncio.shield(upload.abort())
    raise AssertionError("unreachable")  # pragma: no cover (every path above returns)


async def remove_objects(ctx: WorkerContext, store: Shard, found: Copy) -> None:
    """Remove a copy's objects (its retention ended, or its task was deleted), then its
    record. A store that fails is tried again at the next sweep of due copies."""
    target = await target_of(ctx, found.client_id)
    stored = [o.key for o in found.outputs if o.error is None and o.key]
    if stored and target is not None and str(target.location) == found.location:
        try:
            await target.delete(stored)
        except StoreFailed as exc:
            if not exc.for_good:
                later = store.clock.now() + storage.MAX_RETRY_DELAY
                await store.copies.reschedule(found.id, later)
                return
            log.warning("stored objects could not be removed: %s", exc)
    await store.copies.forget(found)
