"""`qrtracker`: run the tracker, its halves, the simulator, forward events (`listen`), and
manage clients."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx

from tracker import listen, logs
from tracker.api import create_app
from tracker.api.storage import StorageSettings, checked_storage
from tracker.client import ApiError, Tracker
from tracker.core import upstream_keys
from tracker.core.vault import new_key, vault_of
from tracker.devtools.receiver import Receiver
from tracker.devtools.simulator import Simulator
from tracker.embedded_redis import EmbeddedRedis
from tracker.errors import ConfigurationError, TrackerError, Unavailable
from tracker.server import EmbeddedServer, start
from tracker.settings import Settings
from tracker.store import Store, layout, store_for
from tracker.store.clients import Clients
from tracker.store.connection import connect
from tracker.store.identity import start_over
from workers.supervisor import Stop, supervise

T = TypeVar("T")

URL_FILE = "redis.url"  # where `up` tells the other commands the embedded Redis's address
KEY_FILE = "encryption.keys"  # the key `up` made, where TRACKER_ENCRYPTION_KEYS is unset
# The operator token `up` made, where TRACKER_ADMIN_TOKEN is unset (a file name, not a token).
ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105


def load_settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigurationError as exc:
        raise click.UsageError(exc.detail) from None


def resolve_redis(settings: Settings) -> Settings:
    """`REDIS_URL`, else the embedded Redis of a running `qrtracker up` in the data folder;
    likewise the encryption keys: TRACKER_ENCRYPTION_KEYS, else the data folder's."""
    key_file = settings.data_dir / KEY_FILE
    if not settings.encryption_keys and key_file.exists():
        settings = dataclasses.replace(settings, encryption_keys=key_file.read_text().strip())
    try:
        vault_of(settings)  # a missing or malformed key is a usage error, said up front
    except ConfigurationError as exc:
        raise click.UsageError(exc.detail) from None
    if settings.redis_url:
        return settings
    url_file = settings.data_dir / URL_FILE
    if url_file.exists():
        return dataclasses.replace(settings, redis_url=url_file.read_text().strip())
    raise click.UsageError("set REDIS_URL, or start `qrtracker up` in this folder first")


def ensure_key(settings: Settings) -> Settings:
    """TRACKER_ENCRYPTION_KEYS, else the data folder's key, made on first use: `up` works on
    a fresh machine and keeps its secrets sealed."""
    if settings.encryption_keys:
        return settings
    return dataclasses.replace(settings, encryption_keys=kept(settings, KEY_FILE, new_key))


def ensure_admin_token(settings: Settings) -> Settings:
    """TRACKER_ADMIN_TOKEN, else the data folder's operator token, made on first use: `up`
    shows the operator's view with no setting to make first."""
    if settings.admin_token:
        return settings
    token = kept(settings, ADMIN_TOKEN_FILE, lambda: "qrtop_" + secrets.token_urlsafe(24))
    return dataclasses.replace(settings, admin_token=token)


def kept(settings: Settings, name: str, make: Callable[[], str]) -> str:
    """The secret in the data folder's file `name`, made (readable by this user only) first
    if there is none."""
    path = settings.data_dir / name
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(make() + "\n")
    return path.read_text().strip()


@click.group()
@click.version_option(package_name="quickrouter-tracker")
def main() -> None:
    """quickrouter-tracker: QuickRouter video tasks in, signed webhooks out."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
@click.option(
    "--simulate/--no-simulate",
    default=None,
    help="Run the QuickRouter simulator and point the tracker at it "
    "(the default when QUICKROUTER_API_KEY is unset).",
)
def up(host: str, port: int, simulate: bool | None) -> None:
    """API and worker in one process; with no REDIS_URL, an embedded Redis too."""
    settings = ensure_admin_token(ensure_key(load_settings()))
    logs.configure(settings.log_format, settings.log_level)
    if simulate is None:
        simulate = not settings.quickrouter_api_key
    with embedded_redis(settings) as settings:
        asyncio.run(run_up(settings, host, port, simulate))


@contextlib.contextmanager
def embedded_redis(settings: Settings) -> Iterator[Settings]:
    """Start the embedded Redis unless REDIS_URL is set; it is stopped last, on exit."""
    if settings.redis_url:
        yield settings
        return
    url_file = settings.data_dir / URL_FILE
    with EmbeddedRedis(settings.data_dir / "redis") as server:
        url_file.write_text(server.url)
        try:
            yield dataclasses.replace(settings, redis_url=server.url)
        finally:
            url_file.unlink(missing_ok=True)


async def run_up(settings: Settings, host: str, port: int, simulate: bool) -> None:
    # Copies of the videos go to a folder of the data folder unless a store is set, and the
    # API serves them by signed link: the whole round trip with no cloud account.
    settings = dataclasses.replace(
        settings,
        storage_url=settings.storage_url or (settings.data_dir / "videos").resolve().as_uri(),
        public_url=settings.public_url or f"http://{host}:{port}",
    )
    servers: list[tuple[EmbeddedServer, asyncio.Task[None]]] = []
    demo: dict[str, Any] = {}
    # `up` runs the whole fleet: the embedded Redis of an earlier version is migrated here.
    pool = connect(str(settings.redis_url))
    if moved := await layout.migrate(pool):
        click.echo(f"moved {moved} records to this version's key layout")
    await pool.aclose()
    if simulate:
        simulator = Simulator(any_key=True, serve_files=True)
        receiver = Receiver()
        servers.append(await start(simulator.app()))
        simulator.url = sim_url = f"http://127.0.0.1:{servers[-1][0].port}"
        servers.append(await start(receiver.app()))
        receiver.url = f"http://127.0.0.1:{servers[-1][0].port}"
        hooks_url = receiver.url + "/hooks/demo"
        settings = dataclasses.replace(
            settings,
            quickrouter_base_url=sim_url,
            quickrouter_api_key=simulator.api_key,
            allow_private_callbacks=True,
        )
        pool = connect(str(settings.redis_url))
        client, api_key = await Clients(pool, vault_of(settings)).create("demo", time.time())
        await pool.aclose()
        receiver.secret = client.secret
        demo = {
            "sim": sim_url,
            "hooks": hooks_url,
            "key": api_key,
            "secret": client.secret,
            "sim_key": simulator.api_key,
        }
    servers.append(await start(create_app(settings), host, port))
    stop = Stop.on_signals()
    worker = asyncio.create_task(supervise(settings, stop))
    click.echo(banner(settings, f"http://{host}:{port}", demo))
    waiter = asyncio.create_task(stop.event.wait())
    await asyncio.wait(
        {waiter, worker, *(t for _, t in servers)}, return_when=asyncio.FIRST_COMPLETED
    )
    click.echo("stopping: in-flight jobs finish or go back to the queue; Redis stops last")
    stop.set(stop.signal)
    await worker
    waiter.cancel()
    for server, task in reversed(servers):
        server.should_exit = True
        await task


def banner(settings: Settings, api_url: str, demo: dict[str, Any]) -> str:
    lines = [f"quickrouter-tracker is up: API {api_url}, Redis {settings.redis_url}"]
    lines.append(f"dashboard at {api_url}/ui/ (sign in with a client's API key)")
    lines.append(f"copies of the videos kept in {settings.storage_url}")
    made = settings.data_dir / ADMIN_TOKEN_FILE
    if settings.admin_token and made.exists() and made.read_text().strip() == settings.admin_token:
        lines.append(f"operator sign-in:       {settings.admin_token}  (kept in {made})")
    elif settings.admin_token:
        lines.append("operator sign-in:       the TRACKER_ADMIN_TOKEN you set")
    if not demo:
        lines.append(f"polling QuickRouter at {settings.quickrouter_base_url}")
        return "\n".join(lines)
    lines += [
        f"simulated QuickRouter at {demo['sim']} (key {demo['sim_key']})",
        f"demo client API key:   {demo['key']}",
        f"demo webhook secret:   {demo['secret']}",
        f"webhooks go to {demo['hooks']} and are printed here as they arrive.",
        "",
        "Try a round trip (the simulated video takes 30 s):",
        f"  TASK=$(curl -s -X POST {demo['sim']}/v1/video/create "
        f"-H 'authorization: Bearer {demo['sim_key']}' -d '{{\"model\": \"veo3.1-fast\"}}' "
        "| python3 -c 'import json,sys; print(json.load(sys.stdin)[\"id\"])')",
        f"  curl -s -X POST {api_url}/v1/tasks -H 'authorization: Bearer {demo['key']}' "
        "-H 'content-type: application/json' "
        f'-d \'{{"task_id": "\'$TASK\'", "callback_url": "{demo["hooks"]}"}}\'',
        f"  curl -s {api_url}/v1/tasks/$TASK -H 'authorization: Bearer {demo['key']}'",
    ]
    return "\n".join(lines)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
def api(host: str, port: int) -> None:
    """The HTTP API alone (run as many as needed behind a load balancer)."""
    import uvicorn

    settings = resolve_redis(load_settings())
    logs.configure(settings.log_format, settings.log_level)
    uvicorn.run(create_app(settings), host=host, port=port, access_log=False, log_config=None)


@main.command()
def worker() -> None:
    """An arq worker alone: polls, deliveries and the sweeper (run as many as needed)."""

    settings = resolve_redis(load_settings())
    logs.configure(settings.log_format, settings.log_level)

    async def run() -> None:
        await supervise(settings, Stop.on_signals())

    asyncio.run(run())


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8010, show_default=True)
@click.option("--api-key", default="sim-key", show_default=True)
@click.option("--speed", default=1.0, show_default=True, help="Simulated seconds per second.")
@click.option("--duration", default=30.0, show_default=True, help="Default task duration (s).")
def simulate(host: str, port: int, api_key: str, speed: float, duration: float) -> None:
    """The QuickRouter simulator alone."""
    import uvicorn

    logs.configure()
    sim = Simulator(api_key=api_key, speed=speed, default_duration=duration, serve_files=True)
    sim.url = f"http://{host}:{port}"  # where its result files are served
    click.echo(f"simulated QuickRouter at http://{host}:{port} (key {api_key})")
    uvicorn.run(sim.app(), host=host, port=port, access_log=False, log_config=None)


@main.command("listen")
@click.option("--forward-to", required=True, help="The local URL each event is POSTed to.")
@click.option(
    "--api", "api_url", default="http://127.0.0.1:8000", show_default=True,
    envvar="QRTRACKER_API", help="The tracker's API (or QRTRACKER_API).",
)  # fmt: skip
@click.option("--type", "types", multiple=True, help="Only events of this type (repeatable).")
@click.option("--task-id", default=None, help="Only events of this task.")
@click.option("--after", default=None, help="Start after this cursor (default: where it stopped).")
@click.option(
    "--cursor-file", type=click.Path(path_type=Path), default=None,
    help="Where it keeps its place (default: under TRACKER_DATA_DIR).",
)  # fmt: skip
def listen_command(
    forward_to: str,
    api_url: str,
    types: tuple[str, ...],
    task_id: str | None,
    after: str | None,
    cursor_file: Path | None,
) -> None:
    """Forward this client's events to a local URL as webhooks (QRTRACKER_API_KEY: its key)."""
    api_key = os.environ.get("QRTRACKER_API_KEY", "")
    if not api_key:
        raise click.UsageError("set QRTRACKER_API_KEY to the client's API key")
    path = cursor_file or listen.cursor_file(load_settings().data_dir, api_url, api_key)
    click.echo(f"forwarding events from {api_url} to {forward_to} (cursor in {path})")
    with Tracker(api_url, api_key) as tracker, httpx.Client(timeout=30) as http:
        try:
            listen.listen(
                tracker, forward_to, path, after=after, types=list(types) or None,
                task_id=task_id, echo=click.echo, http=http,
            )  # fmt: skip
        except KeyboardInterrupt:
            pass
        except ApiError as exc:
            raise click.ClickException(str(exc)) from None


@main.group()
def clients() -> None:
    """Create and list the clients that may register tasks."""


def with_store(settings: Settings, action: Callable[[Store], Awaitable[T]]) -> T:
    """Run one store action against the configured Redis, for the `clients` commands, on
    the fleet's clock."""

    async def run() -> T:
        pool = connect(str(settings.redis_url))
        try:
            store = store_for(settings, pool, patient=False, vault=vault_of(settings))
            try:
                await store.clock.sync(pool)
                try:  # a new Redis gets its epoch here, or at a start
                    await store.identity.establish()
                except Unavailable as exc:  # an earlier layout, another partition count
                    raise click.ClickException(exc.detail) from None
                return await action(store)
            finally:
                await store.aclose()
        finally:
            await pool.aclose()

    return asyncio.run(run())


@clients.command("create")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def clients_create(name: str, as_json: bool) -> None:
    """Create a client; prints its API key and webhook secret (the key is shown only once)."""
    settings = resolve_redis(load_settings())
    client, api_key = with_store(
        settings, lambda store: store.clients.create(name, store.clock.now())
    )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "id": client.id,
                    "name": client.name,
                    "api_key": api_key,
                    "webhook_secret": client.secret,
                }
            )
        )
    else:
        click.echo(
            f"client {client.id} ({client.name})\napi key:        {api_key}\n"
            f"webhook secret: {client.secret}\nThe API key is not shown again."
        )


@clients.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
def clients_list(as_json: bool) -> None:
    """List the clients (never their keys or secrets)."""
    settings = resolve_redis(load_settings())
    found = with_store(settings, lambda store: store.clients.all())
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "id": client.id,
                        "name": client.name,
                        "state": "revoked" if client.revoked else "active",
                        "created_at": client.created_at,
                    }
                    for client in found
                ]
            )
        )
        return
    for client in found:
        click.echo(f"{client.id}  {'revoked' if client.revoked else 'active':8}  {client.name}")


@clients.command("rotate-secret")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def clients_rotate_secret(client_id: str, as_json: bool) -> None:
    """Give a client a new webhook secret; the old one also signs for the overlap."""
    settings = resolve_redis(load_settings())
    client = with_store(
        settings,
        lambda store: store.clients.rotate_secret(
            client_id, store.clock.now(), settings.secret_rotation_overlap
        ),
    )
    if client is None:
        raise click.ClickException(f"no client {client_id}")
    if as_json:
        click.echo(
            json.dumps(
                {
                    "id": client.id,
                    "webhook_secret": client.secret,
                    "previous_secret_until": client.previous_until,
                }
            )
        )
    else:
        click.echo(
            f"new webhook secret: {client.secret}\nthe old one also signs for "
            f"{settings.secret_rotation_overlap:g} s"
        )


@clients.command("reencrypt")
def clients_reencrypt() -> None:
    """Seal every stored secret with the first of TRACKER_ENCRYPTION_KEYS (see
    docs/commands.md, Secrets at rest)."""
    settings = resolve_redis(load_settings())
    count = with_store(settings, lambda store: store.clients.reseal())
    click.echo(f"{count} secrets sealed again with the first key")


@main.command("new-key")
def new_key_command() -> None:
    """Print a fresh key for TRACKER_ENCRYPTION_KEYS."""
    click.echo(new_key())


@clients.command("revoke")
@click.argument("client_id")
def clients_revoke(client_id: str) -> None:
    """Revoke a client: its key refused, its credentials deleted, its subscriptions cancelled
    (its records are kept until they expire)."""
    settings = resolve_redis(load_settings())
    if not with_store(
        settings, lambda store: store.shard(client_id).revoke_client(client_id, store.clock.now())
    ):
        raise click.ClickException(f"no client {client_id}")
    click.echo(f"client {client_id} revoked")


@clients.command("set-upstream-key")
@click.argument("client_id")
def clients_set_upstream_key(client_id: str) -> None:
    """Keep one of a client's own QuickRouter keys, read from stdin (or a hidden prompt on a
    terminal, never from the command line: shells keep history). Prints its fingerprint."""
    settings = resolve_redis(load_settings())
    on_terminal = sys.stdin.isatty()
    raw = click.prompt("QuickRouter key", hide_input=True) if on_terminal else sys.stdin.read()
    try:
        key = upstream_keys.checked_key(raw)
    except TrackerError as exc:
        raise click.ClickException(exc.detail) from None

    async def add(store: Store) -> str | None:
        if await store.clients.get(client_id) is None:
            return None
        return await store.clients.add_upstream_key(client_id, key)

    name = with_store(settings, add)
    if name is None:
        raise click.ClickException(f"no client {client_id}")
    click.echo(name)


@clients.command("upstream-keys")
@click.argument("client_id")
def clients_upstream_keys(client_id: str) -> None:
    """List the fingerprints of a client's own QuickRouter keys."""
    settings = resolve_redis(load_settings())
    for name in with_store(settings, lambda store: store.clients.upstream_key_names(client_id)):
        click.echo(name)


@clients.command("remove-upstream-key")
@click.argument("client_id")
@click.argument("fingerprint")
def clients_remove_upstream_key(client_id: str, fingerprint: str) -> None:
    """Forget one of a client's QuickRouter keys (its tasks' next polls are refused)."""
    settings = resolve_redis(load_settings())
    if not with_store(settings, lambda s: s.clients.remove_upstream_key(client_id, fingerprint)):
        raise click.ClickException(f"client {client_id} has no key {fingerprint}")
    click.echo(f"{fingerprint} removed")


@clients.command("set-storage")
@click.argument("client_id")
@click.argument("url")
@click.option("--access-key-id", default=None, help="The bucket's access key id.")
@click.option(
    "--keep/--no-keep", default=None, help="Whether registrations keep copies unless they say."
)
def clients_set_storage(
    client_id: str, url: str, access_key_id: str | None, keep: bool | None
) -> None:
    """Send a client's copies to its own S3 bucket (URL: s3://bucket/prefix, with
    ?endpoint=…&region=… for MinIO, R2 or GCS). The secret access key is read from stdin (or
    a hidden prompt on a terminal), never from the command line."""
    settings = resolve_redis(load_settings())
    on_terminal = sys.stdin.isatty()
    secret = (
        click.prompt("secret access key", hide_input=True) if on_terminal else sys.stdin.read()
    ).strip()
    try:
        given = StorageSettings(
            url=url, access_key_id=access_key_id, secret_access_key=secret or None,
            keep_by_default=keep,
        )  # fmt: skip
        kept = asyncio.run(checked_storage(given, allow_private=settings.allow_private_callbacks))
    except (TrackerError, ValueError) as exc:
        raise click.ClickException(getattr(exc, "detail", None) or str(exc)) from None

    async def put(store: Store) -> bool:
        if await store.clients.get(client_id) is None:
            return False
        await store.buckets.put(client_id, kept)
        return True

    if not with_store(settings, put):
        raise click.ClickException(f"no client {client_id}")
    click.echo(json.dumps(kept.masked))


@clients.command("storage")
@click.argument("client_id")
def clients_storage(client_id: str) -> None:
    """Show a client's own storage (the secret never), as one JSON object."""
    settings = resolve_redis(load_settings())
    click.echo(json.dumps(with_store(settings, lambda s: s.buckets.get(client_id)).masked))


@clients.command("remove-storage")
@click.argument("client_id")
def clients_remove_storage(client_id: str) -> None:
    """Forget a client's own storage: its copies go to the deployment's (if any)."""
    settings = resolve_redis(load_settings())
    if not with_store(settings, lambda s: s.buckets.remove(client_id)):
        raise click.ClickException(f"client {client_id} has no storage of its own")
    click.echo(f"storage of {client_id} removed")


@main.group("redis")
def redis_group() -> None:
    """The tracker's Redis: its identity (see docs/reliability.md)."""


@redis_group.command("start-over")
@click.option("--yes", is_flag=True, help="Confirm: serve from what Redis holds now.")
def redis_start_over(yes: bool) -> None:
    """After Redis lost its data: write a new epoch, so every process serves and works again
    on what Redis holds now (the lost tasks, clients and deliveries stay lost)."""
    if not yes:
        raise click.UsageError(
            "this makes every process serve from what Redis holds now; what it lost stays "
            "lost. Run it again with --yes to go on"
        )
    settings = resolve_redis(load_settings())

    async def run(store: Store) -> str:
        return (await start_over(store.redis, store.clock.now(), settings.partitions)).id

    click.echo(f"started over: new epoch {with_store(settings, run)}")


@redis_group.command("migrate")
def redis_migrate() -> None:
    """Move records kept by a version before hash-tagged keys (`qrt:…`) to this version's
    layout, in place. Stop every API and worker first; running it again is harmless."""
    settings = resolve_redis(load_settings())

    async def run() -> int:
        pool = connect(str(settings.redis_url))
        try:
            return await layout.migrate(pool)
        finally:
            await pool.aclose()

    moved = asyncio.run(run())
    click.echo(f"migrated: {moved} keys renamed to the layout of this version")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
