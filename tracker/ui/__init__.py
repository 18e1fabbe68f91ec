"""The dashboard, served by the API at `/ui`: a client's tasks and deliveries, and the
operator's view of the fleet. `create_ui(settings, state)` builds it on the API's own state
(its store, settings and clock), to be mounted by `tracker.api.create_app`."""

from __future__ import annotations

from pathlib import Path

from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tracker.errors import DataLost
from tracker.settings import Settings
from tracker.store.sessions import SESSION_SECONDS
from tracker.ui import operator, pages
from tracker.ui.session import session_secret

# No inline script or style anywhere, so none is allowed: a value that slipped past escaping
# still could not run.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    """Every dashboard answer carries the headers above."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


async def unavailable(request: Request, exc: Exception) -> Response:
    return pages.failure(request, None, 503, "Redis cannot be reached; try again shortly.")


async def data_lost(request: Request, exc: Exception) -> Response:
    return pages.failure(request, None, 503, str(exc))


async def no_such_page(request: Request, exc: Exception) -> Response:
    return pages.failure(request, None, 404, "No such page.")


def create_ui(settings: Settings, state: State) -> Starlette:
    """The dashboard on the API's `state` (filled by the API's lifespan)."""
    ui = Starlette(
        routes=[
            Route("/", pages.home),
            Route("/login", pages.login, methods=["GET", "POST"]),
            Route("/logout", pages.logout, methods=["GET", "POST"]),
            Route("/tasks", pages.tasks_page),
            Route("/tasks/{task_id}", pages.task_page),
            Route("/tasks/{task_id}/redeliver", pages.redeliver, methods=["POST"]),
            Route("/destinations", pages.destinations_page),
            Route("/destination", pages.destination_page),
            Route("/destinations/enable", pages.enable_destination, methods=["POST"]),
            Route("/operator", operator.operator_page),
            Route("/operator/task", operator.operator_task),
            Route(
                "/operator/clients/{client_id}/{action}", operator.client_action, methods=["POST"]
            ),
            Mount("/static", StaticFiles(directory=Path(__file__).parent / "static")),
        ],
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=session_secret(settings),
                session_cookie="qrt_ui",
                max_age=SESSION_SECONDS,
                same_site="strict",
                https_only=settings.ui_secure_cookie,
                path="/ui",  # sent to the dashboard only, never to the API
            ),
        ],
        exception_handlers={
            404: no_such_page,
            RedisError: unavailable,
            ConnectionError: unavailable,
            DataLost: data_lost,
        },
    )
    ui.state = state
    return ui
