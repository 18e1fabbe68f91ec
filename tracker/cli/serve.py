"""`qrtracker up`, `api`, `worker` and `simulate`: run the tracker, one of its halves, or the
QuickRouter simulator."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import click

from tracker import logs
from tracker.api import create_app
from tracker.cli.local import (
    ADMIN_TOKEN_FILE,
    URL_FILE,
    ensure_admin_token,
    ensure_key,
    load_settings,
    resolve_redis,
)
from tracker.core.vault import vault_of
from tracker.devtools.receiver import Receiver
from tracker.devtools.simulator import Simulator
from tracker.embedded_redis import EmbeddedRedis
from tracker.server import EmbeddedServer, start
from tracker.settings import Settings
from tracker.store import layout, store_for
from tracker.store.connection import connect
from workers.supervisor import Stop, supervise


@click.command()
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
        store = store_for(settings, pool, patient=False, vault=vault_of(settings))
        client, api_key = await store.clients.create("demo", time.time())
        await store.aclose()
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


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
def api(host: str, port: int) -> None:
    """The HTTP API alone (run as many as needed behind a load balancer)."""
    import uvicorn

    settings = resolve_redis(load_settings())
    logs.configure(settings.log_format, settings.log_level)
    uvicorn.run(create_app(settings), host=host, port=port, access_log=False, log_config=None)


@click.command()
def worker() -> None:
    """An arq worker alone: polls, deliveries and the sweeper (run as many as needed)."""

    settings = resolve_redis(load_settings())
    logs.configure(settings.log_format, settings.log_level)

    async def run() -> None:
        await supervise(settings, Stop.on_signals())

    asyncio.run(run())


@click.command()
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
