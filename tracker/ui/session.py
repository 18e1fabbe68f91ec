"""Who is looking at the dashboard: a client, signed in with its API key, or the operator,
with `TRACKER_ADMIN_TOKEN`. The key is exchanged for a session in a signed, HttpOnly,
SameSite=Strict cookie (Starlette's `SessionMiddleware`): the page never holds it. Each
session carries the CSRF token its forms must send back."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from starlette.requests import Request

from tracker.core.records import Client
from tracker.settings import Settings
from tracker.store import Store


@dataclass(frozen=True)
class Viewer:
    client: Client | None  # None: the operator

    @property
    def operator(self) -> bool:
        return self.client is None


def session_secret(settings: Settings) -> str:
    """The key that signs session cookies, derived from the first encryption key (rotating
    the encryption keys signs everyone out, and there is no other secret to keep)."""
    first = (settings.encryption_keys or "").split(",")[0].strip()
    return hmac.new(first.encode(), b"qrtracker ui session", hashlib.sha256).hexdigest()


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(24)
        request.session["csrf"] = token
    return token


def csrf_ok(request: Request, sent: object) -> bool:
    """Whether a form sent back its session's token (compared in constant time)."""
    expected = request.session.get("csrf")
    return (
        isinstance(sent, str) and isinstance(expected, str) and hmac.compare_digest(sent, expected)
    )


async def viewer(request: Request) -> Viewer | None:
    """The signed-in viewer; None (and the session forgotten) for none, or for a client
    revoked since it signed in."""
    settings: Settings = request.app.state.settings
    await request.app.state.store.identity.require()
    session = request.session
    if session.get("role") == "operator" and settings.admin_token:
        return Viewer(None)
    client_id = session.get("client")
    if isinstance(client_id, str):
        store: Store = request.app.state.store
        client = await store.clients.get(client_id)
        if client is not None and not client.revoked:
            return Viewer(client)
    session.pop("client", None)
    session.pop("role", None)
    return None


async def sign_in(request: Request, secret: str) -> Viewer | None:
    """Exchange a client's API key (or the operator's token) for a new session."""
    settings: Settings = request.app.state.settings
    store: Store = request.app.state.store
    found: Viewer | None = None
    if settings.admin_token and hmac.compare_digest(secret.encode(), settings.admin_token.encode()):
        found = Viewer(None)
    else:
        client = await store.clients.for_key(secret)
        found = Viewer(client) if client is not None else None
    if found is not None:
        request.session.clear()  # a new session: nothing carried over from before
        if found.client is None:
            request.session["role"] = "operator"
        else:
            request.session["client"] = found.client.id
        csrf_token(request)
    return found


def sign_out(request: Request) -> None:
    request.session.clear()
