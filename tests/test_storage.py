"""Copies of the videos in object storage, end to end: a real S3 API (moto in server mode on
loopback), the local folder behind the API's signed links, real worker processes, the
simulator serving real bytes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from click.testing import CliRunner

from tests.support import S3, Trip, WorkerProcess, auth, create_client, signed_in, wait_for
from tracker.cli import main
from tracker.client import Tracker
from tracker.devtools.receiver import Receiver
from tracker.devtools.scenarios import file_bytes, file_sha256, file_token
from tracker.devtools.simulator import Simulator
from tracker.embedded_redis import free_port
from tracker.settings import Settings
from tracker.store import keys

pytestmark = pytest.mark.slow

MiB = 1024 * 1024


@pytest.fixture
def bucket(s3: S3) -> str:
    return s3.bucket()


@pytest.fixture
def kept(settings: Settings, s3: S3, bucket: str) -> Settings:
    return dataclasses.replace(
        settings, storage_url=s3.url(bucket), storage_deadline=15.0, metrics_port=free_port()
    )


@pytest.fixture
def storing(
    kept: Settings,
    launch: Callable[..., Trip],
) -> Trip:
    """A round trip whose deployment keeps copies in the test's bucket."""
    return launch(kept)


def outputs_of(event: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["name"]: o for o in event["data"]["outputs"]}


def test_the_event_carries_stored_copies_whose_bytes_match(
    storing: Trip, s3: S3, bucket: str
) -> None:
    # 9 MiB: past one 8 MiB part, so the copy goes as a multipart upload.
    task = storing.script(files={"size": 9 * MiB})
    storing.register(task.task_id)
    storing.settled(task.task_id)
    _, event = storing.only_webhook()
    found = outputs_of(event)
    token = file_token(task.task_id)
    client_id = storing.client["id"]
    assert sorted(found) == ["original", "video"]
    for name, file in (("video", f"{token}-4k.mp4"), ("original", f"{token}-clip.mp4")):
        output = found[name]
        assert output["stored"] is True
        assert output["size"] == 9 * MiB
        assert output["sha256"] == file_sha256(file, 9 * MiB)
        assert output["content_type"] == "video/mp4"
        assert output["location"] == f"s3://{bucket}/kept/{client_id}/{task.task_id}/{name}"
        assert output["source_url"].endswith(file)
        downloaded = httpx.get(output["url"], timeout=10)  # the presigned link works
        assert downloaded.status_code == 200
        assert hashlib.sha256(downloaded.content).hexdigest() == output["sha256"]
    # The upstream's own links are still in the event, as before.
    assert event["data"]["video_url"].endswith(f"{token}-4k.mp4")
    assert s3.keys(bucket) == [
        f"kept/{client_id}/{task.task_id}/original", f"kept/{client_id}/{task.task_id}/video",
    ]  # fmt: skip
    assert s3.open_uploads(bucket) == []
    # The API shows the copies, with links made at the time of asking.
    view = storing.view(task.task_id)
    assert view["storage"]["state"] == "stored"
    shown = {o["name"]: o for o in view["storage"]["outputs"]}
    assert shown["video"]["sha256"] == found["video"]["sha256"]
    assert httpx.get(shown["video"]["url"], timeout=10).status_code == 200


def test_a_registration_can_decline_copies(storing: Trip, s3: S3, bucket: str) -> None:
    task = storing.script(files={})
    storing.register(task.task_id, keep_videos=False)
    storing.settled(task.task_id)
    _, event = storing.only_webhook()
    assert "outputs" not in event["data"]
    assert s3.keys(bucket) == []
    assert storing.view(task.task_id)["storage"] is None


def test_without_any_store_asking_for_copies_is_refused(trip: Trip) -> None:
    task = trip.script(files={})
    refused = trip.register(task.task_id, expect=422, keep_videos=True)
    assert "no object storage" in refused["detail"]


def test_an_expired_link_does_not_hold_the_event_back(
    storing: Trip, s3: S3, bucket: str, kept: Settings
) -> None:
    task = storing.script(files={"gone_after": 0.0})
    storing.register(task.task_id)
    storing.settled(task.task_id)
    _, event = storing.only_webhook()
    for output in event["data"]["outputs"]:
        assert output["stored"] is False
        assert output["error"]["code"] == "storage_source_gone"
    assert event["data"]["video_url"]  # the upstream's link is still given
    assert s3.keys(bucket) == []
    # Counted, and shown on the task.
    scraped = httpx.get(f"http://127.0.0.1:{kept.metrics_port}/metrics", timeout=10).text
    assert 'qrtracker_storage_copies_total{outcome="storage_source_gone"} 2.0' in scraped
    shown = storing.view(task.task_id)["storage"]["outputs"]
    assert {o["error"]["code"] for o in shown} == {"storage_source_gone"}


def test_a_content_length_of_5_gib_is_refused_before_a_byte_is_read(
    storing: Trip, s3: S3, bucket: str
) -> None:
    task = storing.script(files={"announce": 5 * 1024**3})
    storing.register(task.task_id)
    storing.settled(task.task_id)
    _, event = storing.only_webhook()
    assert {o["error"]["code"] for o in event["data"]["outputs"]} == {"storage_too_large"}
    assert s3.keys(bucket) == []
    assert s3.open_uploads(bucket) == []


def test_a_download_cut_short_is_copied_again_whole(storing: Trip, s3: S3, bucket: str) -> None:
    # The first GET of each file stops after 1 MiB of 10 MiB (past its first part's start).
    task = storing.script(files={"size": 10 * MiB, "cut_at": 9 * MiB, "cuts": 1})
    storing.register(task.task_id)
    storing.settled(task.task_id)
    _, event = storing.only_webhook()
    found = outputs_of(event)
    token = file_token(task.task_id)
    assert found["video"]["stored"] is True
    assert found["video"]["sha256"] == file_sha256(f"{token}-4k.mp4", 10 * MiB)
    assert storing.simulator.file_requests[f"{token}-4k.mp4"] == 2
    assert s3.open_uploads(bucket) == []


def test_a_store_that_refuses_sends_the_event_with_its_error(
    settings: Settings,
    s3: S3,
    launch: Callable[..., Trip],
) -> None:
    missing = dataclasses.replace(settings, storage_url=s3.url("no-such-bucket-here"))
    trip = launch(missing)
    task = trip.script(files={})
    trip.register(task.task_id)
    trip.settled(task.task_id)
    _, event = trip.only_webhook()
    assert {o["error"]["code"] for o in event["data"]["outputs"]} == {"storage_store_refused"}


def test_copies_in_a_folder_are_served_by_signed_links(
    settings: Settings,
    tmp_path: Path,
    launch: Callable[..., Trip],
) -> None:
    port = free_port()
    folder = dataclasses.replace(
        settings,
        storage_url=(tmp_path / "videos").as_uri(),
        public_url=f"http://127.0.0.1:{port}",
    )
    trip = launch(folder, port)
    task = trip.script(files={"size": 300_000})
    trip.register(task.task_id)
    trip.settled(task.task_id)
    _, event = trip.only_webhook()
    video = outputs_of(event)["video"]
    stored = tmp_path / "videos" / trip.client["id"] / task.task_id / "video"
    assert stored.read_bytes()[:16] and stored.stat().st_size == 300_000
    assert not list(stored.parent.glob("*.partial-*"))
    fetched = httpx.get(video["url"], timeout=10)
    assert fetched.status_code == 200
    assert hashlib.sha256(fetched.content).hexdigest() == video["sha256"]
    # A link whose signature or expiry was changed opens nothing.
    forged = video["url"].replace("expires=", "expires=9")
    assert httpx.get(forged, timeout=10).status_code == 401
    # Deleting the task removes its copies.
    deleted = trip.api.delete(f"/v1/tasks/{task.task_id}", headers=auth(trip.client))
    assert deleted.status_code == 204
    wait_for(lambda: not stored.exists(), 15, "the copy to be removed")
    assert httpx.get(video["url"], timeout=10).status_code == 404


def test_a_client_keeps_its_copies_in_its_own_bucket(
    storing: Trip, s3: S3, bucket: str, redis_url: str
) -> None:
    own = s3.bucket()
    secret = "own-secret-value-1234"
    put = storing.api.put(
        "/v1/storage",
        headers=auth(storing.client),
        json={
            "url": s3.url(own, "mine"),
            "access_key_id": "own-key-id",
            "secret_access_key": secret,
        },
    )
    assert put.status_code == 200, put.text
    shown = storing.api.get("/v1/storage", headers=auth(storing.client)).json()
    assert shown["secret_access_key"] == "********" and shown["access_key_id"] == "own-…"
    assert secret not in put.text + json.dumps(shown)
    task = storing.script(files={})
    storing.register(task.task_id)
    storing.settled(task.task_id)
    _, event = storing.only_webhook()
    assert {o["location"].split("/")[2] for o in event["data"]["outputs"]} == {own}
    assert len(s3.keys(own)) == 2 and s3.keys(bucket) == []
    # Sealed at rest: Redis holds no clear copy of the secret.
    db = redis.Redis.from_url(redis_url)
    try:
        stored = db.hgetall(keys.HOME.client_storage(storing.client["id"]))
        assert secret.encode() not in b"".join(stored.values())
    finally:
        db.close()
    # Gone again: the deployment's store takes over.
    assert storing.api.delete("/v1/storage", headers=auth(storing.client)).status_code == 204
    assert storing.api.delete("/v1/storage", headers=auth(storing.client)).status_code == 404


def test_the_cli_sets_and_shows_a_client_bucket(
    s3: S3, redis_url: str, client: dict[str, str]
) -> None:
    runner = CliRunner()
    # The endpoint is on loopback: allowed as the deployment allows it (its own setting).
    env = {"REDIS_URL": redis_url, "TRACKER_ALLOW_PRIVATE_CALLBACKS": "1"}
    url = s3.url(s3.bucket(), "cli")
    made = runner.invoke(
        main,
        [
            "clients",
            "set-storage",
            client["id"],
            url,
            "--access-key-id",
            "AKIAEXAMPLE",
            "--no-keep",
        ],
        input="cli-secret-value\n",
        env=env,
    )
    assert made.exit_code == 0, made.output
    assert "cli-secret-value" not in made.output
    shown = json.loads(runner.invoke(main, ["clients", "storage", client["id"]], env=env).output)
    assert shown == {
        "url": url, "access_key_id": "AKIA…", "secret_access_key": "********",
        "keep_by_default": False,
    }  # fmt: skip
    bad = runner.invoke(
        main, ["clients", "set-storage", client["id"], "s3://Bad_Bucket/x"], input="s\n", env=env
    )
    assert bad.exit_code != 0 and "bucket name" in bad.output
    removed = runner.invoke(main, ["clients", "remove-storage", client["id"]], env=env)
    assert removed.exit_code == 0


def test_the_dashboard_shows_the_copies_and_the_operator_their_totals(
    kept: Settings,
    launch: Callable[..., Trip],
) -> None:
    admin = "operator-token-for-storage"
    settings = dataclasses.replace(kept, admin_token=admin)
    trip = launch(settings)
    task = trip.script(files={"size": 4096})
    trip.register(task.task_id)
    trip.settled(task.task_id)
    video = outputs_of(trip.only_webhook()[1])["video"]
    opened: list[httpx.Client] = []
    try:
        page = signed_in(opened, str(trip.api.base_url), trip.client["api_key"]).get(
            f"/ui/tasks/{task.task_id}"
        )
        assert "Stored copies" in page.text
        assert video["sha256"] in page.text and video["location"] in page.text
        operator = signed_in(opened, str(trip.api.base_url), admin).get("/ui/operator")
        assert "videos stored" in operator.text
        assert "2 (8.0 KiB)" in operator.text  # the client's two outputs of 4 KiB
    finally:
        for browser in opened:
            browser.close()


def test_deleting_a_task_mid_copy_leaves_nothing_stored(
    storing: Trip, s3: S3, bucket: str, redis_url: str
) -> None:
    task = storing.script(files={"size": 16 * MiB, "rate": 8 * MiB})
    storing.register(task.task_id)
    wait_for(lambda: s3.open_uploads(bucket), 30, "the copy under way")
    deleted = storing.api.delete(f"/v1/tasks/{task.task_id}", headers=auth(storing.client))
    assert deleted.status_code == 204
    db = redis.Redis.from_url(redis_url)
    try:
        # The copy ends, then what it stored is removed at once, and its record goes.
        wait_for(lambda: not list(db.scan_iter(keys.HOME.copy("*"))), 30, "the copy's record to go")
    finally:
        db.close()
    assert s3.keys(bucket) == [] and s3.open_uploads(bucket) == []
    assert storing.receiver.at(storing.path) == []  # a deleted task's event is not sent


def test_one_clients_copies_never_hold_up_anothers(
    kept: Settings,
    start_api: Callable[..., httpx.Client],
    start_worker: Callable[[Settings], WorkerProcess],
    simulator: Simulator,
    receiver: Receiver,
    redis_url: str,
) -> None:
    # One copy in flight per client, four per worker: the busy client's backlog of slow
    # copies takes one slot, and the quiet client's copy goes beside it.
    fair = dataclasses.replace(kept, storage_per_client=1, storage_copies_per_worker=4)
    start_worker(fair)
    api = start_api(fair)
    busy, quiet = create_client(redis_url, "busy"), create_client(redis_url, "quiet")
    slow = [simulator.script(files={"size": 2 * MiB, "rate": 1 * MiB}) for _ in range(4)]
    for n, task in enumerate(slow):
        body = {"task_id": task.task_id, "callback_url": f"{receiver.url}/busy/{n}"}
        assert api.post("/v1/tasks", headers=auth(busy), json=body).status_code == 201
    db = redis.Redis.from_url(redis_url)
    try:
        wait_for(
            lambda: db.zcard(keys.HOME.client_copying(busy["id"])), 30, "the busy client's copy"
        )
        task = simulator.script(files={"size": 4096})
        hook = f"{receiver.url}/quiet/{uuid.uuid4().hex}"
        body = {"task_id": task.task_id, "callback_url": hook}
        assert api.post("/v1/tasks", headers=auth(quiet), json=body).status_code == 201
        most = 0

        def quiet_delivered() -> bool:
            nonlocal most
            most = max(most, db.zcard(keys.HOME.client_copying(busy["id"])))
            return bool(receiver.accepted(hook.removeprefix(receiver.url)))

        wait_for(quiet_delivered, 30, "the quiet client's webhook")
        busy_done = sum(len(receiver.accepted(f"/busy/{n}")) for n in range(len(slow)))
        assert busy_done < len(slow)  # it came while the busy client's copies were under way
        assert most == 1  # never more than its one copy in flight
    finally:
        db.close()


def test_the_client_library_asks_for_copies_and_reads_fresh_links(storing: Trip) -> None:
    task = storing.script(files={"size": 1234})
    with Tracker(str(storing.api.base_url), storing.client["api_key"]) as tracker:
        tracker.track(task.task_id, storing.receiver.url + storing.path, keep_videos=True)
        ended = tracker.wait(task.task_id, timeout=20)
        assert ended["state"] == "completed"
        wait_for(lambda: tracker.outputs(task.task_id), 20, "the copies")
        outputs = {o["name"]: o for o in tracker.outputs(task.task_id)}
    assert outputs["video"]["size"] == 1234
    assert httpx.get(outputs["video"]["url"], timeout=10).content == b"".join(
        file_bytes(f"{file_token(task.task_id)}-4k.mp4", 1234)
    )


def test_stored_objects_are_removed_when_their_retention_ends(
    kept: Settings,
    s3: S3,
    bucket: str,
    launch: Callable[..., Trip],
) -> None:
    brief = dataclasses.replace(kept, storage_retention=2.0)
    trip = launch(brief)
    task = trip.script(files={})
    trip.register(task.task_id)
    trip.settled(task.task_id)
    assert len(s3.keys(bucket)) == 2
    wait_for(lambda: s3.keys(bucket) == [], 20, "the objects to be removed")
    wait_for(lambda: trip.view(task.task_id)["storage"] is None, 10, "the copy's record to go")


def test_a_new_subscription_to_an_ended_task_gets_copies_counted_once(
    storing: Trip, s3: S3, bucket: str, redis_url: str
) -> None:
    task = storing.script(files={"size": 1000})
    storing.register(task.task_id)
    storing.settled(task.task_id)
    storing.register(task.task_id, suffix="/later")  # the task has ended: copied again
    wait_for(lambda: storing.receiver.accepted(storing.path + "/later"), 20, "its webhook")
    _, later = storing.only_webhook("/later")
    assert {o["size"] for o in later["data"]["outputs"]} == {1000}
    assert len(s3.keys(bucket)) == 2  # the same objects, written again
    db = redis.Redis.from_url(redis_url)
    try:
        totals = db.hgetall(keys.HOME.STORAGE_TOTALS)
    finally:
        db.close()
    client_id = storing.client["id"]
    assert totals[b"objects"] == b"2" and totals[f"objects:{client_id}".encode()] == b"2"
    assert totals[b"bytes"] == b"2000"
