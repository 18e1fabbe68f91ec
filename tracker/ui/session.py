"""Who is looking at the dashboard: a client, signed in with its API key, or the operator,
with `TRACKER_ADMIN_TOKEN`. The key is exchanged for a session kept in Redis
(`tracker.store.sessions`), named by a signed, HttpOnly, SameSite=Strict cookie (Starlette's
`SessionMiddleware`): the page never holds the key, and the cookie is worth nothing once its
session ends (signed out, the client revoked, the operator token changed). Each session
carries the CSRF token its forms must send back."""

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
    session: str = ""  # its session's id

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


def operator_mark(settings: Settings) -> str:
    """A fingerprint of the current operator token: an operator session made under another
    one (the token was changed since) is over."""
    token = settings.admin_token or ""
    return (
        hashlib.sha256(b"qrtracker operator\n" + token.encode()).hexdigest()[:32] if token else ""
    )


async def viewer(request: Request) -> Viewer | None:
    """The signed-in viewer; None (and the session ended) for none, for a session that was
    signed out, for a client revoked since it signed in, or for an operator session made
    under another operator token."""
    settings: Settings = request.app.state.settings
    store: Store = request.app.state.store
    await store.identity.require()
    session_id = request.session.get("sid")
    found = await store.sessions.get(session_id) if isinstance(session_id, str) else None
    who: Viewer | None = None
    if found is not None and found.operator_mark:
        mark = operator_mark(settings)
        if mark and hmac.compare_digest(found.operator_mark, mark):
            who = Viewer(None, found.id)
    elif found is not None:
        client = await store.clients.get(found.client_id)
        if client is not None and not client.revoked:
            who = Viewer(client, found.id)
    if who is None:
        if found is not None:
            await store.sessions.close(found.id)
        request.session.pop("sid", None)
    return who


async def sign_in(request: Request, secret: str) -> Viewer | None:
    """Exchange a client's API key (or the operator's token) for a new session."""
    settings: Settings = request.app.state.settings
    store: Store = request.app.state.store
    client: Client | None = None
    mark = operator_mark(settings)
    is_operator = bool(mark) and hmac.compare_digest(
        secret.encode(), (settings.admin_token or "").encode()
    )
    if not is_operator:
        client = await store.clients.for_key(secret)
        if client is None:
            return None
    session = await store.sessions.open(
        client.id if client is not None else "", mark if is_operator else ""
    )
    request.session.clear()  # a new session: nothing carried over from before
    request.session["sid"] = session.id
    csrf_token(request)
    return Viewer(client, session.id)


async def sign_out(request: Request) -> None:
    """End the session for good: its cookie, saved anywhere, opens nothing any more."""
    session_id = request.session.get("sid")
    if isinstance(session_id, str):
        await request.app.state.store.sessions.close(session_id)
    request.session.clear()
