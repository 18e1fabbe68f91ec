"""Copies of the videos (issue 24), in three parts, all on loopback with moto's S3 server as the
store (its own process) and the simulator serving the files (its own process):

1. Throughput: N files of 50 MB copied by the tracker's own path (`workers.copy.copy_output`:
   the guarded download, the length checks, sha256, the multipart upload) against a plain
   streaming copy with the same libraries (aiohttp GET, aiobotocore multipart upload with the
   same 8 MiB parts, nothing checked), taken in turn, in one process. Target: >= 80 %.
2. Memory: a real worker process copying one 1 GiB file; its RSS before, and its highest
   while copying (sampled every 50 ms from /proc). Target: growth <= 64 MiB.
3. Isolation: a quiet client's webhook lag (its tasks keep copies of small videos) alone, and
   while another client copies 50 MB videos from a slow link (a copy storm), one worker with
   the default settings but polls every 0.5 s (so the lag is the copy's and the webhook's).
   Lag = webhook received - the simulator turned the task final. Target: p95 during the
   storm <= 1.5 x p95 alone + 1 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import boto3
from aiobotocore.session import get_session

from bench.capacity import register_all
from bench.harness import Rig, lags_at, percentile, rig, wait_until_up
from tracker.core.storage import Source, parse_location
from tracker.embedded_redis import free_port
from tracker.net.downloads import Downloads
from tracker.net.objects import PART_SIZE, S3Store
from tracker.settings import Settings
from tracker.store.copies import Copy, CopyState
from workers.context import WorkerContext
from workers.copy import copy_output

MB = 1000 * 1000
MiB = 1024 * 1024
ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's S3 API in a process of its own (its memory is not the tracker's); its URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + "/moto-api/")
        yield url
    finally:
        process.terminate()
        process.wait(20)


def bucket_at(endpoint: str, name: str) -> str:
    admin = boto3.client("s3", endpoint_url=endpoint, **_credentials())
    admin.create_bucket(Bucket=name)
    admin.close()
    return f"s3://{name}/bench?endpoint={endpoint}&region=us-east-1"


def _credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": ENV["AWS_DEFAULT_REGION"],
    }


# -- 1. throughput ----------------------------------------------------------------------------


async def plain_copy(
    http: aiohttp.ClientSession, s3: object, bucket: str, url: str, key: str
) -> int:
    """The baseline: stream the GET into a multipart upload, checking nothing."""
    client: object = s3
    upload = await client.create_multipart_upload(Bucket=bucket, Key=key)
    parts, buffer, size = [], bytearray(), 0
    async with http.get(url) as response:
        async for chunk in response.content.iter_chunked(256 * 1024):
            buffer += chunk
            size += len(chunk)
            if len(buffer) >= PART_SIZE:
                part = await client.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload["UploadId"],
                    PartNumber=len(parts) + 1, Body=bytes(buffer[:PART_SIZE]),
                )  # fmt: skip
                parts.append({"ETag": part["ETag"], "PartNumber": len(parts) + 1})
                del buffer[:PART_SIZE]
    if buffer:
        part = await client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=len(parts) + 1,
            Body=bytes(buffer),
        )  # fmt: skip
        parts.append({"ETag": part["ETag"], "PartNumber": len(parts) + 1})
    await client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )
    return size


async def throughput(r: Rig, storage_url: str, files: int) -> tuple[float, float]:
    """MB/s of the tracker's copy and of the plain copy, taken in turn."""
    tasks = r.simulator.script([{"files": {"size": 50 * MB}} for _ in range(files)])
    urls = [f"{r.simulator.url}/sim/files/{_token(str(t['task_id']))}-4k.mp4" for t in tasks]
    location = parse_location(storage_url)
    downloads = Downloads(allow_private=True, limit=4)
    ctx = WorkerContext(settings=Settings(), downloads=downloads)  # type: ignore[typeddict-item]
    target = S3Store(location)
    times = {"tracker": 0.0, "plain": 0.0}
    async with (
        aiohttp.ClientSession() as http,
        get_session().create_client("s3", endpoint_url=location.endpoint, **_credentials()) as s3,
    ):
        for n, url in enumerate(urls):
            for way in ("tracker", "plain") if n % 2 == 0 else ("plain", "tracker"):
                started = time.perf_counter()
                if way == "tracker":
                    copy = _copy(f"veo3:{n}")
                    stored = await copy_output(ctx, target, copy, Source("video", url), 300)
                    assert stored.error is None, stored
                else:
                    await plain_copy(http, s3, location.bucket, url, f"plain/{n}")
                times[way] += time.perf_counter() - started
    await downloads.aclose()
    await target.aclose()
    return files * 50 / times["tracker"], files * 50 / times["plain"]


def _token(task_id: str) -> str:
    from tracker.devtools.scenarios import file_token

    return file_token(task_id)


def _copy(task_id: str) -> Copy:
    return Copy(
        id="copy_bench", tracking_id=task_id, task_id=task_id, client_id="cli_bench",
        state=CopyState.COPYING, deadline_at=0.0, sources=(), outputs=(), location="",
        remove_at=0.0, tries=0,
    )  # fmt: skip


# -- 2. memory --------------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def memory(endpoint: str) -> tuple[float, float]:
    """A worker's RSS before and at its highest while it copies one 1 GiB file."""
    storage = bucket_at(endpoint, "memory")
    with rig(storage_url=storage, storage_copy_timeout=600.0, storage_deadline=900.0) as r:
        worker = r.start("worker", "worker")
        _, api = r.api()
        client = r.client()
        time.sleep(2.0)  # the worker's start-up done, its memory settled
        before = rss_mb(worker.popen.pid)
        task = r.simulator.script(
            [{"files": {"size": 1024 * MiB}, "scenario": "success_no_upscale"}]
        )
        asyncio.run(register_all(api, client["api_key"], [str(task[0]["task_id"])],
                                 r.receiver.url + "/memory"))  # fmt: skip
        highest = before
        deadline = time.monotonic() + 900
        while not r.receiver.accepted("/memory"):
            highest = max(highest, rss_mb(worker.popen.pid))
            if time.monotonic() > deadline:
                raise RuntimeError("the 1 GiB copy did not finish")
            time.sleep(0.05)
        event = r.receiver.accepted("/memory")[0].json()
        stored = event["data"]["outputs"][0]
        assert stored["stored"] and stored["size"] == 1024 * MiB, stored
        return before, highest


# -- 3. isolation -----------------------------------------------------------------------------

QUIET = 20
NOISY = 40


def lags(endpoint: str, noisy: int, name: str) -> list[float]:
    """The quiet client's webhook lags, with `noisy` 50 MB copies of another client at once."""
    storage = bucket_at(endpoint, name)
    # Polls every 0.5 s: the lag is then the copy's and the webhook's, not the polling's.
    with rig(storage_url=storage, poll_first_delay=0.5, poll_unlearned_max_delay=0.5) as r:
        r.start("worker", "worker")
        _, api = r.api()
        quiet, storm = r.client(), r.client()
        duration = 20.0
        specs = [{"duration": duration, "files": {"size": 256 * 1024}} for _ in range(QUIET)]
        specs += [
            {"duration": duration, "files": {"size": 50 * MB, "rate": 10 * MB}}
            for _ in range(noisy)
        ]
        ids = [str(t["task_id"]) for t in r.simulator.script(specs)]
        if noisy:
            asyncio.run(register_all(api, storm["api_key"], ids[QUIET:],
                                     r.receiver.url + "/storm"))  # fmt: skip
        asyncio.run(register_all(api, quiet["api_key"], ids[:QUIET], r.receiver.url + "/quiet"))
        found = lags_at(r, "/quiet", ids[:QUIET], duration + 120)
        in_flight = len(r.receiver.accepted("/storm"))
        print(f"  ({name}: the storm's webhooks when the quiet client's last came: "
              f"{in_flight} of {noisy})")  # fmt: skip
    return found


def run(files: int = 8) -> dict[str, float]:
    os.environ.update(ENV)  # the operator's credentials, read the usual way by every process
    with moto_server() as endpoint:
        storage = bucket_at(endpoint, "throughput")
        with rig() as r:
            tracker_rate, plain_rate = asyncio.run(throughput(r, storage, files))
        print("Storage: copies of the videos (moto's S3 server and the simulator on loopback)")
        print(f"1. {files} files of 50 MB, taken in turn, one at a time")
        print(f"{'':<46}{'MB/s':>8}")
        print(f"{'plain streaming copy (aiohttp + aiobotocore)':<46}{plain_rate:>8.1f}")
        print(f"{'the tracker (guard, checks, sha256)':<46}{tracker_rate:>8.1f}")
        print(f"{'ratio (target >= 0.80)':<46}{tracker_rate / plain_rate:>8.2f}")
        before, highest = memory(endpoint)
        print("2. one worker copying one 1 GiB file")
        print(f"   RSS before {before:.1f} MiB, highest {highest:.1f} MiB: growth "
              f"{highest - before:.1f} MiB (target <= 64)")  # fmt: skip
        alone = lags(endpoint, 0, "alone")
        storm = lags(endpoint, NOISY, "storm")
        target = 1.5 * percentile(alone, 0.95) + 1.0
        print(
            f"3. a quiet client's {QUIET} webhooks (copies of 256 KiB videos), alone and "
            f"beside {NOISY} copies of 50 MB at 10 MB/s of another client"
        )
        print(f"{'':<10}{'p50 lag':>9}{'p95':>8}{'max':>8}{'target p95':>12}")
        for label, found in (("alone", alone), ("storm", storm)):
            print(f"{label:<10}{percentile(found, 0.5):>9.2f}{percentile(found, 0.95):>8.2f}"
                  f"{max(found):>8.2f}{target:>12.2f}")  # fmt: skip
    return {
        "tracker_mb_s": tracker_rate, "plain_mb_s": plain_rate,
        "rss_growth_mib": highest - before,
        "alone_p95": percentile(alone, 0.95), "storm_p95": percentile(storm, 0.95),
    }  # fmt: skip
