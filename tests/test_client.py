"""The Python client (`tracker.client`) against a real API, worker and receiver."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from tests.support import WorkerProcess, wait_for
from tracker.client import ApiError, AsyncTracker, Tracker, WebhookError, verify_webhook
from tracker.devtools.receiver import Receiver
from tracker.devtools.simulator import Simulator


def test_the_sync_client_creates_follows_and_redelivers_and_verifies_the_webhook(
    api: httpx.Client,
    client: dict[str, str],
    receiver: Receiver,
    worker: WorkerProcess,
) -> None:
    path = f"/hooks/{uuid.uuid4().hex}"
    with Tracker(str(api.base_url), client["api_key"]) as tracker:
        video = tracker.create_video(
            model="veo3.1-fast", prompt="a cat", callback_url=receiver.url + path,
            metadata={"order": 1}, idempotency_key=f"k-{uuid.uuid4().hex}",
            simulate={"duration": 0.2},
        )  # fmt: skip
        task_id = video["task_id"]
        hit = wait_for(lambda: receiver.accepted(path), 20, "the webhook")[0]
        event = verify_webhook(hit.body, hit.headers, client["webhook_secret"])
        assert (event["type"], event["data"]["task_id"]) == ("video.completed", task_id)
        with pytest.raises(WebhookError):
            verify_webhook(hit.body + b" ", hit.headers, client["webhook_secret"])
        with pytest.raises(WebhookError):
            verify_webhook(hit.body, hit.headers, client["webhook_secret"], now=0)
        assert tracker.get(task_id)["state"] == "completed"
        assert list(tracker.redeliver(task_id)["was"].values()) == ["delivered"]
        with pytest.raises(ApiError) as missing:
            tracker.get("veo3.1-fast:1-nobody")
        assert missing.value.status == 404 and missing.value.type.endswith(":not_found")


def test_the_async_client_tracks_and_cancels(
    api: httpx.Client, client: dict[str, str], simulator: Simulator, receiver: Receiver
) -> None:
    task = simulator.script(duration=60)

    async def run() -> None:
        async with AsyncTracker(str(api.base_url), client["api_key"]) as tracker:
            sub = await tracker.track(task.task_id, receiver.url + "/hooks/async")
            assert sub["task_id"] == task.task_id
            assert (await tracker.get(task.task_id))["state"] == "tracking"
            await tracker.cancel(task.task_id)
            assert (await tracker.get(task.task_id))["state"] == "cancelled"

    asyncio.run(run())


def test_without_a_callback_the_clients_wait_and_follow_the_event_feed(
    api: httpx.Client, client: dict[str, str], worker: WorkerProcess
) -> None:
    with Tracker(str(api.base_url), client["api_key"]) as tracker:
        # A generator starts when first iterated: begin after what the feed holds now.
        now = tracker.list_events(limit=100)["next_cursor"]
        stream = tracker.events(after=now, types=["video.completed"])
        video = tracker.create_video(
            model="veo3.1-fast", prompt="a cat", simulate={"duration": 0.3}
        )  # no callback_url: the feed only
        assert video["subscription"]["callback_url"] is None
        task = tracker.wait(video["task_id"], timeout=30)
        assert task["state"] == "completed"
        item = next(stream)
        assert item["task_id"] == video["task_id"]
        event = verify_webhook(item["body"].encode(), item["headers"], client["webhook_secret"])
        assert event["type"] == "video.completed"
        page = tracker.list_events(limit=10)
        assert [e["id"] for e in page["data"]] == [item["id"]] and page["has_more"] is False

    async def run() -> None:
        async with AsyncTracker(str(api.base_url), client["api_key"]) as tracker:
            assert (await tracker.wait(video["task_id"], timeout=5))["state"] == "completed"
            stream = tracker.events(after="0-0")
            assert (await anext(stream))["id"] == item["id"]
            await stream.aclose()  # type: ignore[attr-defined]
            with pytest.raises(ApiError) as refused:
                await tracker.list_events(after="not-a-cursor")
            assert refused.value.status == 422

    asyncio.run(run())
