"""`verify_webhook`: what a receiver checks of a webhook before it trusts it."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from tracker.client.protocol import TOLERANCE
from tracker.core import signing


class WebhookError(Exception):
    """A webhook whose signature or timestamp does not check out."""


def verify_webhook(
    body: bytes, headers: Mapping[str, str], secret: str, *, now: float | None = None
) -> dict[str, Any]:
    """The event of a webhook, once its Standard Webhooks signature (made with the client's
    `whsec_…` secret) and its timestamp (within 5 minutes) check out; else WebhookError."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id = lowered["webhook-id"]
        timestamp = int(lowered["webhook-timestamp"])
        signatures = lowered["webhook-signature"]
    except (KeyError, ValueError):
        raise WebhookError("missing or malformed webhook-* headers") from None
    if abs((time.time() if now is None else now) - timestamp) > TOLERANCE:
        raise WebhookError("the webhook's timestamp is too far from now")
    if not signing.verify(secret, msg_id, timestamp, body, signatures):
        raise WebhookError("no signature matches the secret")
    event = json.loads(body)
    if not isinstance(event, dict):
        raise WebhookError("the webhook's body is not an event")
    return event
