"""Which callback URLs the tracker accepts."""

from __future__ import annotations

import httpx

from tracker.errors import ValidationFailed

MAX_CALLBACK_URL_LENGTH = 2048


def check_callback_url(url: str) -> str:
    """Return `url` if it is an absolute http(s) URL with a host; raise ValidationFailed if not."""
    if len(url) > MAX_CALLBACK_URL_LENGTH:
        raise ValidationFailed(f"callback_url is longer than {MAX_CALLBACK_URL_LENGTH} characters")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        raise ValidationFailed("callback_url is not a valid URL") from None
    if parsed.scheme not in {"http", "https"}:
        raise ValidationFailed("callback_url must be an http or https URL")
    if not parsed.host:
        raise ValidationFailed("callback_url has no host")
    return url
