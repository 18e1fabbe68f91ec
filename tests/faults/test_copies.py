"""Copies under failure: a worker SIGKILLed in the middle of a multipart upload, and a store
that cannot be reached and then can."""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Callable

import boto3
import pytest
import redis

from tests.support import S3, Trip, WorkerProcess, wait_for
from tracker.devtools.scenarios import file_sha256, file_token
from tracker.embedded_redis import free_port
from tracker.settings import Settings
from tracker.store import keys

pytestmark = pytest.mark.slow

MiB = 1024 * 1024


def test_a_worker_killed_mid_upload_leaves_one_object_and_no_open_upload(
    settings: Settings,
    s3: S3,
    launch: Callable[..., Trip],
    start_worker: Callable[[Settings], WorkerProcess],
) -> None:
    bucket = s3.bucket()
    kept = dataclasses.replace(
        settings, storage_url=s3.url(bucket), storage_deadline=60.0, storage_copy_timeout=5.0
    )
    trip = launch(kept)
    assert trip.worker is not None
    victim = trip.worker
    # 24 MiB at 8 MiB/s: three parts, about 3 s a file, so the kill lands mid-upload.
    size = 24 * MiB
    task = trip.script(files={"size": size, "rate": 8 * MiB})
    trip.register(task.task_id)
    wait_for(lambda: s3.open_uploads(bucket), 30, "a multipart upload under way")
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait(10)
    for key in s3.keys(bucket):  # an object is there whole (the first file, done) or not at all
        assert s3.client.head_object(Bucket=bucket, Key=key)["ContentLength"] == size
    assert trip.receiver.at(trip.path) == []
    start_worker(kept)  # takes the copy over once the dead worker's lease runs out (15 s)
    wait_for(lambda: trip.receiver.accepted(trip.path), 60, "the webhook after the takeover")
    _, event = trip.only_webhook()
    token = file_token(task.task_id)
    found = {o["name"]: o for o in event["data"]["outputs"]}
    assert found["video"]["sha256"] == file_sha256(f"{token}-4k.mp4", size)
    assert found["original"]["sha256"] == file_sha256(f"{token}-clip.mp4", size)
    prefix = f"kept/{trip.client['id']}/{task.task_id}/"
    assert s3.keys(bucket) == [prefix + "original", prefix + "video"]
    assert s3.open_uploads(bucket) == []


def test_a_store_unreachable_then_back_gets_the_copy(
    settings: Settings,
    launch: Callable[..., Trip],
    redis_url: str,
) -> None:
    from moto.server import ThreadedMotoServer

    port = free_port()  # nothing listens here until the store comes back
    store = S3(f"http://127.0.0.1:{port}", None)
    kept = dataclasses.replace(settings, storage_url=store.url("comes-back"), storage_deadline=60.0)
    trip = launch(kept)
    task = trip.script(files={})
    trip.register(task.task_id)
    db = redis.Redis.from_url(redis_url)

    def tried() -> bool:
        return any(
            int(db.hget(key, "tries") or 0) >= 1 for key in db.scan_iter(keys.HOME.copy("*"))
        )

    wait_for(tried, 30, "a failed try of the copy")
    assert trip.receiver.at(trip.path) == []  # the event waits for its copies
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        admin = boto3.client(
            "s3", endpoint_url=store.endpoint, region_name="us-east-1",
            aws_access_key_id="a", aws_secret_access_key="b",
        )  # fmt: skip
        admin.create_bucket(Bucket="comes-back")
        admin.close()
        trip.settled(task.task_id)
        _, event = trip.only_webhook()
        assert all(o["stored"] for o in event["data"]["outputs"]), event["data"]["outputs"]
    finally:
        db.close()
        server.stop()
