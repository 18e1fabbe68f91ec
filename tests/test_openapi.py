"""The API against its own OpenAPI document (schemathesis), and fuzzed request bodies."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from tests.support import auth
from tracker.api.app import api_document, create_app
from tracker.settings import Settings

# The event stream is left out: it never ends by design (tests/test_events.py drives it).
schema = schemathesis.openapi.from_dict(api_document()).exclude(path="/v1/events/stream")


@schema.auth()
class ClientKey:
    """The test's client key, as schemathesis's auth provider."""

    current = ""

    def get(self, case: Any, context: Any) -> str:
        return self.current

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


BOUNDED = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)


def served(app: Starlette) -> set[tuple[str, str]]:
    """Each (path, method) the app routes, but the dashboard's (HTML, under /ui)."""
    found = set()
    for route in app.routes:
        if isinstance(route, Mount):
            continue
        assert isinstance(route, Route)
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)  # {key:path} is {key}
        if route.methods:  # a function's
            methods = {m.lower() for m in route.methods} - {"head"}
        else:  # an HTTPEndpoint's: the verbs its class has
            methods = {m for m in ("get", "post", "put", "delete") if hasattr(route.endpoint, m)}
        found |= {(path, method) for method in methods}
    return found


def test_the_served_document_lists_every_route_the_app_serves_and_no_other(
    open_api: httpx.Client, settings: Settings
) -> None:
    document = open_api.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    routes = {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert routes == served(create_app(settings))
    assert routes == {
        ("/v1/tasks", "post"), ("/v1/tasks", "get"), ("/v1/tasks/{task_id}", "get"),
        ("/v1/tasks/{task_id}", "delete"), ("/v1/tasks/{task_id}/redeliver", "post"),
        ("/v1/videos", "post"), ("/v1/upstream-keys", "post"), ("/v1/upstream-keys", "get"),
        ("/v1/upstream-keys/{fingerprint}", "delete"), ("/v1/events", "get"),
        ("/v1/storage", "get"), ("/v1/storage", "put"), ("/v1/storage", "delete"),
        ("/v1/files/{key}", "get"), ("/v1/deliveries/{delivery_id}", "get"),
        ("/v1/destinations", "get"), ("/v1/destinations/recover", "post"),
        ("/v1/destinations/enable", "post"), ("/v1/operational-webhook", "get"),
        ("/v1/operational-webhook", "put"), ("/v1/operational-webhook", "delete"),
        ("/v1/recoveries/{recovery_id}", "get"), ("/v1/deliveries/{delivery_id}/resend", "post"),
        ("/v1/events/stream", "get"),
        ("/healthz", "get"), ("/readyz", "get"), ("/openapi.json", "get"), ("/metrics", "get"),
    }  # fmt: skip


@schema.parametrize()
@BOUNDED
def test_the_api_keeps_to_its_openapi_document(
    case: Any, open_api: httpx.Client, client: dict[str, str]
) -> None:
    # The key comes from the auth provider, so the credential probes (ignored_auth,
    # missing_required_header) know it, take it away and check that a 401 follows. Left out
    # only: "positive data acceptance" expects no 422 for schema-valid values, while a JSON
    # schema cannot say "a URL whose host resolves to a public address" or "a cursor this API
    # gave".
    ClientKey.current = client["api_key"]
    response = case.call(base_url=str(open_api.base_url))
    if response.status_code == 400 and response.text == "Invalid HTTP request received.":
        # uvicorn's HTTP parser refused the request before the API saw it (a generated
        # header such as `content-length;` with no value): no route answered, nothing to check.
        return
    case.validate_response(response, excluded_checks=[positive_data_acceptance])


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=25,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "task_id": st.one_of(st.text(max_size=210), JSON),
        "callback_url": st.one_of(st.sampled_from(["http://127.0.0.1:9/h", "https://x.example/",
                                                   "ftp://x", "http://[::1", ""]),
                                  st.text(max_size=50), JSON),
        "metadata": JSON,
        "events": st.one_of(st.lists(st.sampled_from(["video.completed", "video.status_changed",
                                                      "nope"]), max_size=5), JSON),
    },
)  # fmt: skip


@given(body=st.one_of(st.binary(max_size=300), FIELDS.map(lambda d: json.dumps(d).encode())))
@BOUNDED
def test_no_request_body_makes_a_server_error(
    body: bytes, open_api: httpx.Client, client: dict[str, str]
) -> None:
    response = open_api.post(
        "/v1/tasks", content=body, headers={**auth(client), "content-type": "application/json"}
    )
    assert response.status_code in {200, 201, 400, 413, 422}, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json"
