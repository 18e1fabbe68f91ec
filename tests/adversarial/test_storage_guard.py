"""Copies reach nothing private: a result link at a private address or redirected to one, a
name that resolves to one, and a client's own store at one; each refused and recorded, and
the next copy goes on."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from tests.support import S3, auth, create_client
from tracker.core.storage import Location, Source, Stored
from tracker.errors import StorageErrorCode
from tracker.net.downloads import Downloads
from tracker.net.objects import Credentials, FolderStore, ObjectStore, S3Store
from tracker.server import ServerThread
from tracker.settings import Settings
from tracker.store.copies import Copy, CopyState
from workers.context import WorkerContext
from workers.copy import copy_output

NAMES = {"cdn.test": ["127.0.0.1"], "inside.test": ["10.1.2.3"], "minio.test": ["127.0.0.1"]}


async def fake_resolve(host: str, port: int) -> list[str]:
    if host in NAMES:
        return NAMES[host]
    raise OSError(f"{host} does not resolve here")


def only_loopback(addresses: list[str]) -> list[str]:
    """The test's stand-in for 'public': loopback passes (the servers are there), the rest of
    the private ranges do not."""
    return [a for a in addresses if a == "127.0.0.1"]


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    """A result host: a file, and redirects to private places."""

    async def video(request: Request) -> Response:
        return Response(b"v" * 1000, media_type="video/mp4")

    async def to(request: Request) -> Response:
        return RedirectResponse(request.query_params["where"], status_code=302)

    app = Starlette(routes=[Route("/video.mp4", video), Route("/redirect", to)])
    with ServerThread(app) as server:
        yield server.url.replace("127.0.0.1", "cdn.test")


def copy_of(name: str) -> Copy:
    return Copy(
        id="copy_x", tracking_id="veo3:1-x", task_id="veo3:1-x", client_id="cli_x",
        state=CopyState.COPYING, deadline_at=0.0, sources=(), outputs=(), location="",
        remove_at=0.0, tries=0,
    )  # fmt: skip


def run_copy(tmp_path: Path, url: str, target: ObjectStore | None = None) -> Stored:
    async def go() -> Stored:
        downloads = Downloads(
            allow_private=False, limit=4, resolver=fake_resolve, allow=only_loopback
        )
        ctx = WorkerContext(settings=Settings(), downloads=downloads)  # type: ignore[typeddict-item]
        store = target or FolderStore(
            Location("file", str(tmp_path), ""), link_key=b"k", public_url=None
        )
        try:
            return await copy_output(ctx, store, copy_of("video"), Source("video", url), 10.0)
        finally:
            await downloads.aclose()
            await store.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize(
    "where",
    [
        "http://10.0.0.7/video.mp4",  # a private literal
        "http://169.254.169.254/latest/meta-data/",  # the cloud's metadata service
        "http://inside.test/video.mp4",  # a name that resolves inside
        "http://[::1]/video.mp4",
        "file:///etc/passwd",
    ],
)
def test_a_result_link_to_a_private_place_is_refused(
    tmp_path: Path, origin: str, where: str
) -> None:
    direct = run_copy(tmp_path, where)
    redirected = run_copy(tmp_path, f"{origin}/redirect?where={where}")
    for outcome in (direct, redirected):
        assert outcome.error is StorageErrorCode.SOURCE_REFUSED, outcome
    assert not list(tmp_path.rglob("*"))
    # The next copy, of a public link, goes through as ever.
    fine = run_copy(tmp_path, f"{origin}/video.mp4")
    assert fine.error is None
    assert fine.sha256 == hashlib.sha256(b"v" * 1000).hexdigest()


def test_a_client_store_at_a_private_address_is_refused_at_copy_time(
    tmp_path: Path, origin: str, s3: S3
) -> None:
    bucket = s3.bucket()
    port = s3.endpoint.rpartition(":")[2]
    for endpoint in (s3.endpoint, f"http://minio.test:{port}"):  # a literal, then a name
        store = S3Store(
            Location("s3", bucket, "", endpoint, "us-east-1"),
            Credentials("a", "b"),
            guarded=True,
            resolver=fake_resolve,
            allow=lambda addresses: [],  # nothing is public here: every address is refused
        )
        outcome = run_copy(tmp_path, f"{origin}/video.mp4", store)
        assert outcome.error is StorageErrorCode.STORE_REFUSED, outcome
    assert s3.keys(bucket) == []


def test_the_api_refuses_a_client_store_at_a_private_address(
    settings: Settings, start_api: Callable[..., httpx.Client], redis_url: str
) -> None:
    api = start_api(dataclasses.replace(settings, allow_private_callbacks=False))
    hostile, quiet = create_client(redis_url, "hostile"), create_client(redis_url, "quiet")
    for endpoint in ("http://127.0.0.1:9000", "http://169.254.169.254", "http://10.0.0.1"):
        refused = api.put(
            "/v1/storage",
            headers=auth(hostile),
            json={
                "url": f"s3://bucket-a/x?endpoint={endpoint}",
                "access_key_id": "AKIA",
                "secret_access_key": "s3cret-value",
            },
        )
        assert refused.status_code == 422, refused.text
        assert "public" in refused.json()["detail"]
    assert api.get("/v1/storage", headers=auth(hostile)).json()["url"] is None
    # A folder of the tracker's own disk is no client's to write into.
    folder = api.put("/v1/storage", headers=auth(hostile), json={"url": "file:///etc"})
    assert folder.status_code == 422
    # Nobody else is affected.
    assert api.get("/v1/storage", headers=auth(quiet)).status_code == 200
