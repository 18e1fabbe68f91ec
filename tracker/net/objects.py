"""Object stores the copies go to: any S3 API (through aiobotocore), and a local folder.

Why aiobotocore rather than obstore (which covers S3, GCS, Azure and folders behind one API):
a worker killed in the middle of a multipart upload leaves that upload open, and only the
S3 API's own ListMultipartUploads and AbortMultipartUpload find and end it. obstore keeps the
upload's id to itself, so the next worker could not clean up after the dead one. aiobotocore
gives the whole S3 API on aiohttp (the tracker's HTTP stack), presigned links included; Google
Cloud Storage (its XML API with HMAC keys), Cloudflare R2 and MinIO speak it too.

An upload streams: parts of `PART_SIZE` go out as they fill, so a copy holds about two parts
in memory whatever the video's size. An object appears whole (CompleteMultipartUpload, or a
rename in a folder) or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import yarl
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from tracker.core.addresses import public_addresses
from tracker.core.events import iso_time
from tracker.core.storage import Location, Stored, parse_location
from tracker.core.vault import Vault
from tracker.errors import ConfigurationError, ValidationFailed
from tracker.net.guard import Resolver, refused_by_guard, resolve
from tracker.net.guarded import GuardedResolver, is_ip_literal
from tracker.settings import Settings

log = logging.getLogger("tracker.storage")

# S3's parts are 5 MiB at least (but the last); 8 MiB keeps a 4 GiB copy under 10,000 parts.
PART_SIZE = 8 * 1024 * 1024
# S3's SigV4 presigned links live 7 days at most.
MAX_S3_LINK = 7 * 86400
PARTIAL = ".partial-"  # a folder's object being written: `{name}.partial-{random}`


class StoreFailed(Exception):
    """The store refused or could not be reached; `for_good` when trying again cannot help
    (credentials refused, no such bucket)."""

    def __init__(self, message: str, *, for_good: bool) -> None:
        super().__init__(message)
        self.for_good = for_good


class Upload(Protocol):
    async def write(self, data: bytes) -> None: ...

    async def finish(self) -> None: ...

    async def abort(self) -> None: ...


class ObjectStore(Protocol):
    """What a copy needs of a store."""

    location: Location

    async def clean(self, key: str) -> None:
        """End whatever an earlier, interrupted copy to `key` left (open uploads, partials)."""

    def upload(self, key: str, content_type: str) -> Upload: ...

    async def delete(self, keys: list[str]) -> None: ...

    async def link(self, key: str, ttl: float) -> tuple[str, float] | None:
        """A link that downloads `key` for `ttl` seconds, and when it expires (None: none)."""

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str


def _failed(exc: BaseException) -> StoreFailed:
    if refused_by_guard(exc):
        return StoreFailed("the store's endpoint is not at a public address", for_good=True)
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        for_good = status in {400, 401, 403, 404} or code in {
            "AccessDenied", "NoSuchBucket", "InvalidAccessKeyId", "SignatureDoesNotMatch",
        }  # fmt: skip
        return StoreFailed(f"the store answered {code or status}", for_good=for_good)
    return StoreFailed(f"the store could not be reached ({type(exc).__name__})", for_good=False)


class S3Store:
    """A bucket and prefix on any S3 API. With `guarded`, the endpoint is reached only at
    public addresses (a client's own endpoint passes the same address guard as a callback)."""

    def __init__(
        self,
        location: Location,
        credentials: Credentials | None = None,
        *,
        guarded: bool = False,
        resolver: Resolver = resolve,
        allow: Callable[[list[str]], list[str]] = public_addresses,
        timeout: float = 30.0,
    ) -> None:
        self.location = location
        self.credentials = credentials
        self.guarded = guarded
        self.resolver = resolver
        self.allow = allow
        self.timeout = timeout
        self._client: Any = None
        self._stack = contextlib.AsyncExitStack()
        self._lock = asyncio.Lock()

    async def client(self) -> Any:
        """The S3 client, made on first use (in the event loop that uses it)."""
        async with self._lock:
            if self._client is None:
                host = yarl.URL(self.location.endpoint or "").raw_host or ""
                if self.guarded and is_ip_literal(host) and not self.allow([host]):
                    # aiohttp asks no resolver about an IP literal: checked here instead.
                    raise StoreFailed(
                        "the store's endpoint is not at a public address", for_good=True
                    )
                connector: dict[str, Any] = {}
                if self.guarded:
                    connector["resolver"] = GuardedResolver(self.resolver, self.allow)
                config = AioConfig(
                    connect_timeout=self.timeout,
                    read_timeout=self.timeout,
                    retries={"max_attempts": 2, "mode": "standard"},
                    connector_args=connector or None,
                    signature_version="s3v4",
                    s3={"addressing_style": "path"},
                )
                options: dict[str, Any] = {"config": config}
                if self.location.endpoint:
                    options["endpoint_url"] = self.location.endpoint
                if self.location.region:
                    options["region_name"] = self.location.region
                if self.credentials is not None:
                    options["aws_access_key_id"] = self.credentials.access_key_id
                    options["aws_secret_access_key"] = self.credentials.secret_access_key
                self._client = await self._stack.enter_async_context(
                    get_session().create_client("s3", **options)
                )
            return self._client

    async def clean(self, key: str) -> None:
        client = await self.client()
        try:
            found = await client.list_multipart_uploads(Bucket=self.location.bucket, Prefix=key)
            for upload in found.get("Uploads", []):
                if upload.get("Key") == key:
                    await client.abort_multipart_upload(
                        Bucket=self.location.bucket, Key=key, UploadId=upload["UploadId"]
                    )
        except (ClientError, BotoCoreError, OSError) as exc:
            raise _failed(exc) from None

    def upload(self, key: str, content_type: str) -> Upload:
        return _S3Upload(self, key, content_type)

    async def delete(self, keys: list[str]) -> None:
        if not keys:
            return
        client = await self.client()
        try:
            await client.delete_objects(
                Bucket=self.location.bucket,
                Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True},
            )
        except (ClientError, BotoCoreError, OSError) as exc:
            raise _failed(exc) from None

    async def link(self, key: str, ttl: float) -> tuple[str, float] | None:
        seconds = max(1, min(int(ttl), MAX_S3_LINK))
        client = await self.client()
        url = await client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.location.bucket, "Key": key},
            ExpiresIn=seconds,
        )
        return str(url), time.time() + seconds

    async def aclose(self) -> None:
        await self._stack.aclose()
        self._client = None


class _S3Upload:
    """One object's upload: a plain PUT when it fits in one part, else a multipart upload
    whose parts go as they fill; `abort` ends an unfinished one."""

    def __init__(self, store: S3Store, key: str, content_type: str) -> None:
        self.store = store
        self.key = key
        self.content_type = content_type or "application/octet-stream"
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []

    async def write(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= PART_SIZE:
            await self._send_part(bytes(self.buffer[:PART_SIZE]))
            del self.buffer[:PART_SIZE]

    async def _send_part(self, part: bytes) -> None:
        client = await self.store.client()
        bucket = self.store.location.bucket
        try:
            if self.upload_id is None:
                started = await client.create_multipart_upload(
                    Bucket=bucket, Key=self.key, ContentType=self.content_type
                )
                self.upload_id = started["UploadId"]
            number = len(self.parts) + 1
            sent = await client.upload_part(
                Bucket=bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=part
            )
        except (ClientError, BotoCoreError, OSError) as exc:
            raise _failed(exc) from None
        self.parts.append({"ETag": sent["ETag"], "PartNumber": number})

    async def finish(self) -> None:
        client = await self.store.client()
        bucket = self.store.location.bucket
        try:
            if self.upload_id is None:
                await client.put_object(
                    Bucket=bucket, Key=self.key, Body=bytes(self.buffer),
                    ContentType=self.content_type,
                )  # fmt: skip
                return
            if self.buffer:
                await self._send_part(bytes(self.buffer))
                self.buffer.clear()
            await client.complete_multipart_upload(
                Bucket=bucket, Key=self.key, UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            )  # fmt: skip
        except (ClientError, BotoCoreError, OSError) as exc:
            raise _failed(exc) from None

    async def abort(self) -> None:
        self.buffer.clear()
        if self.upload_id is None:
            return
        client = await self.store.client()
        with contextlib.suppress(ClientError, BotoCoreError, OSError):
            await client.abort_multipart_upload(
                Bucket=self.store.location.bucket, Key=self.key, UploadId=self.upload_id
            )


class FolderStore:
    """A local folder (the default under `qrtracker up`). Its links point at the API's
    `/v1/files/…` route, signed with a key derived from the tracker's encryption key, when
    the API's address is known (TRACKER_PUBLIC_URL)."""

    def __init__(self, location: Location, *, link_key: bytes, public_url: str | None) -> None:
        self.location = location
        self.root = Path(location.bucket)
        self.link_key = link_key
        self.public_url = public_url.rstrip("/") if public_url else None

    def path(self, key: str) -> Path:
        """Where `key` lives; refuses a key that would leave the folder."""
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()) or PARTIAL in path.name:
            raise StoreFailed("the object key leaves the storage folder", for_good=True)
        return path

    async def clean(self, key: str) -> None:
        path = self.path(key)
        if path.parent.is_dir():
            for partial in path.parent.glob(path.name + PARTIAL + "*"):
                partial.unlink(missing_ok=True)

    def upload(self, key: str, content_type: str) -> Upload:
        return _FolderUpload(self.path(key))

    async def delete(self, keys: list[str]) -> None:
        for key in keys:
            self.path(key).unlink(missing_ok=True)

    async def link(self, key: str, ttl: float) -> tuple[str, float] | None:
        if self.public_url is None:
            return None
        expires = int(time.time() + ttl)
        signature = file_signature(self.link_key, key, expires)
        return (
            f"{self.public_url}/v1/files/{quote(key)}?expires={expires}&signature={signature}",
            float(expires),
        )

    async def aclose(self) -> None:
        return None


def file_signature(link_key: bytes, key: str, expires: int) -> str:
    """The signature of a folder link to `key` that works until `expires` (Unix seconds)."""
    return hmac.new(link_key, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()


class _FolderUpload:
    """Written to a partial file beside the object, renamed over it when whole."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = path.with_name(path.name + PARTIAL + secrets.token_hex(6))
        self.file: Any = None

    async def _opened(self) -> Any:
        """The partial file, made on the first write (or at the finish of an empty one)."""
        if self.file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = await asyncio.to_thread(open, self.partial, "wb")
        return self.file

    async def write(self, data: bytes) -> None:
        await asyncio.to_thread((await self._opened()).write, data)

    async def finish(self) -> None:
        await asyncio.to_thread(_close_synced, await self._opened())
        self.file = None
        os.replace(self.partial, self.path)

    async def abort(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self.partial.unlink(missing_ok=True)


def _close_synced(file: Any) -> None:
    file.flush()
    os.fsync(file.fileno())
    file.close()


class Stores:
    """The stores copies go to: the operator's (TRACKER_STORAGE_URL) and each client's own,
    one client per distinct configuration, made on first use and kept for the process."""

    def __init__(
        self,
        operator: Location | None,
        *,
        link_key: bytes,
        public_url: str | None,
        allow_private: bool,
        resolver: Resolver = resolve,
        allow: Callable[[list[str]], list[str]] = public_addresses,
    ) -> None:
        self.link_key = link_key
        self.public_url = public_url
        self.allow_private = allow_private
        self.resolver = resolver
        self.allow = allow
        self.operator: ObjectStore | None = None
        if operator is not None:
            self.operator = (
                FolderStore(operator, link_key=link_key, public_url=public_url)
                if operator.scheme == "file"
                else S3Store(operator)  # the operator's own: reached wherever it is
            )
        self._own: dict[tuple[str, str, str], ObjectStore] = {}

    def for_client(self, url: str, access_key_id: str, secret: str) -> ObjectStore | None:
        """The client's own store when it has one (`url`), else the operator's (None: none).
        A client's store is always S3 (a folder would be the tracker's own disk) and is
        reached through the address guard."""
        if not url:
            return self.operator
        found = self._own.get((url, access_key_id, secret))
        if found is None:
            found = self._own[(url, access_key_id, secret)] = S3Store(
                parse_location(url),
                Credentials(access_key_id, secret) if access_key_id else None,
                guarded=not self.allow_private,
                resolver=self.resolver,
                allow=self.allow,
            )
        return found

    async def warm(self) -> None:
        """Make the operator's S3 client now (botocore reads its service model, about a
        second), so the first copy does not wait for it."""
        if isinstance(self.operator, S3Store):
            try:
                await self.operator.client()
            except StoreFailed as exc:
                log.warning("the storage could not be prepared: %s", exc)

    def folder(self) -> FolderStore | None:
        """The operator's folder store, whose files the API serves by signed link."""
        return self.operator if isinstance(self.operator, FolderStore) else None

    async def aclose(self) -> None:
        for store in [self.operator, *self._own.values()]:
            if store is not None:
                await store.aclose()
        self._own.clear()


LINK_PURPOSE = "stored-file-links"


def stores_of(settings: Settings, vault: Vault) -> Stores:
    """The stores of `settings` (TRACKER_STORAGE_URL, TRACKER_PUBLIC_URL), with folder links
    signed by a key derived from the vault's. A TRACKER_STORAGE_URL that is not one is refused
    here, when a process starts."""
    try:
        operator = parse_location(settings.storage_url) if settings.storage_url else None
    except ValidationFailed as exc:
        raise ConfigurationError(f"TRACKER_STORAGE_URL: {exc.detail}") from None
    return Stores(
        operator,
        link_key=vault.derive(LINK_PURPOSE),
        public_url=settings.public_url,
        allow_private=settings.allow_private_callbacks,
    )


async def links_to(
    target: ObjectStore, outputs: Iterable[Stored], ttl: float
) -> dict[str, tuple[str, str]]:
    """Links, made now, to each stored output in `target`: name -> (url, expiry in ISO 8601).
    A link is a convenience: one that cannot be made is left out (the location stays)."""
    links = {}
    for output in outputs:
        if output.error is not None:
            continue
        try:
            link = await target.link(output.key, ttl)
        except Exception:
            log.exception("could not sign a link to a stored object")
            continue
        if link is not None:
            links[output.name] = (link[0], iso_time(link[1]))
    return links
