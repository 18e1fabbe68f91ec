"""Signatures verify with the reference `standardwebhooks` package, as receivers will use it."""

from __future__ import annotations

import base64
import json
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tracker.core import signing


def headers(secrets: list[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signing.sign(secrets, msg_id, timestamp, body),
    }


def test_new_secrets_are_whsec_and_32_random_bytes() -> None:
    secret = signing.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert secret != signing.new_secret()


def test_a_signature_verifies_with_standardwebhooks() -> None:
    secret = signing.new_secret()
    body = json.dumps({"type": "video.completed", "data": {"x": "é"}}, ensure_ascii=False).encode()
    now = int(time.time())
    payload = Webhook(secret).verify(body, headers([secret], "msg_1", now, body))
    assert payload["data"]["x"] == "é"


def test_a_tampered_body_or_other_secret_is_refused() -> None:
    secret, other = signing.new_secret(), signing.new_secret()
    body, now = b'{"a":1}', int(time.time())
    signed = headers([secret], "msg_1", now, body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"a":2}', signed)
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, signed)


def test_several_secrets_each_verify() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    body, now = b"{}", int(time.time())
    signed = headers([new, old], "msg_2", now, body)
    assert len(signed["webhook-signature"].split()) == 2
    Webhook(old).verify(body, signed)
    Webhook(new).verify(body, signed)
    assert signing.verify(old, "msg_2", now, body, signed["webhook-signature"])
    assert not signing.verify(signing.new_secret(), "msg_2", now, body, signed["webhook-signature"])
