"""The `Idempotency-Key` header, as both POST routes read it (`tracker.store.idempotency`
keeps what each key came to)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tracker.errors import IdempotencyConflict, IdempotencyKeyReused, ValidationFailed
from tracker.store.idempotency import Intent

KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")


def key_of(request: Request) -> str | None:
    """The request's Idempotency-Key, if it sent one; ValidationFailed if it cannot be one."""
    key = request.headers.get("idempotency-key")
    if key is not None and not KEY_PATTERN.fullmatch(key):
        raise ValidationFailed("Idempotency-Key is 1 to 255 printable ASCII characters")
    return key


def fingerprint(route: str, body: Any) -> str:
    """What makes two requests "the same": the route and the body, key order aside."""
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(f"{route}\n{canonical}".encode()).hexdigest()


def replay(earlier: Intent, request: str) -> Response | None:
    """The first answer again, if `earlier` (the same key) ended with one for this request;
    None if it has not; IdempotencyConflict if it was another request."""
    if earlier.request != request:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used with another request body; use a new key"
        )
    if earlier.state != "done" or earlier.status is None or earlier.answer is None:
        return None
    media = "application/problem+json" if earlier.status >= 400 else "application/json"
    headers = {"idempotent-replayed": "true"}
    if earlier.location:
        headers["location"] = earlier.location
    return Response(earlier.answer, status_code=earlier.status, media_type=media, headers=headers)


def still_running() -> IdempotencyConflict:
    """The answer to a duplicate of a request that is still running: try again shortly."""
    conflict = IdempotencyConflict(
        "a request with this Idempotency-Key is still running; send it again shortly"
    )
    conflict.headers["retry-after"] = "1"
    return conflict
