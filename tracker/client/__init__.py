"""A Python client for the tracker's API, sync (`Tracker`) and async (`AsyncTracker`), and
`verify_webhook` for receivers.

    from tracker.client import Tracker, verify_webhook

    with Tracker("https://tracker.example.com", api_key) as tracker:
        video = tracker.create_video(
            model="veo3.1-fast", prompt="a cat on a skateboard",
            callback_url="https://example.com/hooks", idempotency_key="order-42",
        )
        print(tracker.get(video["task_id"])["state"])

Both classes build each request the same way (`protocol`: `_Requests`, and `_Stream` for
following the event stream); they differ only in how it is sent (`sync`, `aio`). Errors come
back as `ApiError`, carrying the problem document's `type`, `status` and `detail`.
"""

from __future__ import annotations

from tracker.client.aio import AsyncTracker
from tracker.client.protocol import ApiError
from tracker.client.sync import Tracker
from tracker.client.webhooks import WebhookError, verify_webhook

__all__ = ["ApiError", "AsyncTracker", "Tracker", "WebhookError", "verify_webhook"]
